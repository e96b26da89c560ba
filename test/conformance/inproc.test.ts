/**
 * The whole suite against virtiokit's own devices (every device × PCI/MMIO × SWIOTLB on/off):
 * no FAIL, no WEDGED; the coverage figure is printed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadClauses } from '../../src/conformance/clauses.js';
import { CHECKS } from '../../src/conformance/registry.js';
import { buildReport, formatReport } from '../../src/conformance/report.js';
import { findCheck } from '../../src/conformance/registry.js';
import { runCheck, runSuite, type CheckRun, type SuiteResult } from '../../src/conformance/runner.js';
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
      // The driver-side checks really ran their workload on the live device.
      const sim = runs.filter((r) => (r.check === 'driver.sim-pci' && r.transport === 'pci') || (r.check === 'driver.sim-mmio' && r.transport === 'mmio'));
      expect(sim.length).toBe(4); // sim-pci on PCI, sim-mmio on MMIO, SWIOTLB off/on
      for (const r of sim) expect(`${r.verdict}: ${r.detail}`, `${r.check} ${r.transport}/swiotlb-${r.swiotlb}`).toMatch(/^PASS: .*request on queue \d+ was served/);
    });
  }

  it('[init.dev-init.driver.4][rfc-swiotlb.feature.driver.1] driver.sim-*: the workload request is served well before the wait limit', { timeout: 60_000 }, async () => {
    const limit = 9000; // waitMs = 3000: a request that never completes costs ≥ 3000 ms
    for (const id of ['driver.sim-pci', 'driver.sim-mmio'] as const) {
      const check = findCheck(id)!;
      for (const device of ['blk', 'net', 'rng', 'console'] as const) {
        for (const swiotlb of [false, true]) {
          const r = await runCheck(check, new InprocTarget(), { device, transport: id === 'driver.sim-pci' ? 'pci' : 'mmio', swiotlb }, limit);
          const what = `${id} ${device}/swiotlb-${swiotlb}: ${r.verdict}: ${r.detail}`;
          expect(`${r.verdict}: ${r.detail}`, what).toMatch(/^PASS: .*request on queue \d+ was served/);
          if (swiotlb) expect(r.detail, what).toContain('SWIOTLB negotiated');
          expect(r.ms, what).toBeLessThan(1000);
        }
      }
    }
  });

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
