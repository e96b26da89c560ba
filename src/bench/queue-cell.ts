/**
 * One round of one benchmark cell: the JS measurement (the library's real queues) and the C
 * reference measurement, back to back in the same process, so their ratio is taken under the
 * same machine conditions (perf-limits.md §7).
 */
import { runCBench } from './c-run.js';
import type { QueueCell } from './queue-layout.js';
import type { QueueApi } from './queue-agents.js';
import type { MeasureOptions, Measurement } from './measure.js';
import { runSingleThread } from './queue-single.js';
import { runTwoAgents } from './queue-two.js';

/** Run the JS side of a cell in this process. */
export async function runJsCell(cell: QueueCell, m: MeasureOptions, api: QueueApi = 'visit'): Promise<Measurement> {
  return cell.agents === 1 ? runSingleThread(cell.ring, cell.descs, m, api) : runTwoAgents(cell.ring, cell.descs, m, api);
}

/** JS and C results of one round of one cell. */
export interface CellRound {
  js: Measurement;
  c: Measurement;
}

/**
 * Run JS and C for one cell. `cFirst` alternates the order between rounds so neither side always
 * runs right after process start-up.
 */
export async function runCellRound(cell: QueueCell, m: MeasureOptions, cBinary: string, cFirst: boolean, api: QueueApi = 'visit'): Promise<CellRound> {
  if (cFirst) {
    const c = await runCBench(cBinary, cell, m);
    const js = await runJsCell(cell, m, api);
    return { js, c };
  }
  const js = await runJsCell(cell, m, api);
  const c = await runCBench(cBinary, cell, m);
  return { js, c };
}

/** What the round process receives (JSON in argv[2]). */
export interface CellRoundRequest {
  cell: QueueCell;
  measure: MeasureOptions;
  cBinary: string;
  cFirst: boolean;
  api: QueueApi;
}

/** What the round process prints (one JSON line). */
export type CellRoundReply = { ok: true; result: CellRound } | { ok: false; code: string; message: string };
