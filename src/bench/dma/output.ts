/** Writing the DMA benchmark's JSON report and SVG plot. */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { VirtioError } from '../../errors.js';
import { renderThroughputSvg } from './plot.js';
import type { DmaBenchReport } from './report-types.js';

/** Default report path: `bench-results/<timestamp>.json` (colons replaced, UTC). */
export function defaultReportPath(t: Date): string {
  return `bench-results/${t.toISOString().replace(/:/g, '-').replace(/\..*$/, '')}.json`;
}

/** The SVG path next to a JSON path. */
export function svgPathFor(jsonPath: string): string {
  return `${jsonPath.replace(/\.json$/i, '')}.svg`;
}

/**
 * Write `report` as JSON to `jsonPath` and its throughput plot to `svgPath` (directories created).
 * @throws VirtioError INVALID_ARGUMENT when a file cannot be written
 */
export async function writeDmaOutputs(report: DmaBenchReport, jsonPath: string, svgPath: string): Promise<void> {
  const svg = await renderThroughputSvg(report);
  for (const [path, text] of [
    [jsonPath, `${JSON.stringify(report, null, 2)}\n`],
    [svgPath, svg],
  ] as const) {
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, text);
    } catch (e) {
      throw new VirtioError('INVALID_ARGUMENT', `cannot write ${path}: ${(e as Error).message}`, { cause: e });
    }
  }
}
