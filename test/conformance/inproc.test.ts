/**
 * The whole suite against virtiokit's own devices (every device × PCI/MMIO × SWIOTLB on/off):
 * no FAIL, no WEDGED; the coverage figure is printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadClauses } from '../../src/conformance/clauses.js';
import { CHECKS } from '../../src/conformance/registry.js';
import { buildReport, formatReport } from '../../src/conformance/report.js';
import { runSuite, type CheckRun, type SuiteResult } from '../../src/conformance/runner.js';
import { InprocTarget } from '../../src/conformance/targets/inproc.js';

const all: CheckRun[] = [];
let ms = 0;

async function runDevice(device: 'blk' | 'net' | 'rng' | 'console'): Promise<CheckRun[]> {
  const s = await runSuite({ target: new InprocTarget(), checks: CHECKS, devices: [device] });
  all.push(...s.runs);
  ms += s.ms;
  return [...s.runs];
}

const bad = (runs: CheckRun[]): string[] => runs.filter((r) => r.verdict === 'FAIL' || r.verdict === 'WEDGED').map((r) => `${r.verdict} ${r.check} [${r.device}/${r.transport}/swiotlb-${r.swiotlb}]: ${r.detail}`);

describe('conformance suite against the in-process devices', () => {
  for (const device of ['blk', 'net', 'rng', 'console'] as const) {
    it(`${device}: no FAIL or WEDGED over PCI/MMIO × SWIOTLB on/off`, { timeout: 60_000 }, async () => {
      const runs = await runDevice(device);
      expect(bad(runs)).toEqual([]);
      expect(runs.some((r) => r.verdict === 'PASS')).toBe(true);
      expect(runs.some((r) => r.verdict === 'REJECT')).toBe(true);
    });
  }

  afterAll(() => {
    const suite: SuiteResult = { target: 'inproc', configs: [], runs: all, checks: [], ms };
    const rep = buildReport(suite, loadClauses());
    const d = rep.summary.deviceMust;
    // The tracked figure, printed for the log.
    process.stdout.write(`\n${formatReport(rep, { unchecked: true })}\n`);
    expect(d.checked).toBeGreaterThan(0);
    expect(d.observed).toBeLessThanOrEqual(d.checked);
  });
});
