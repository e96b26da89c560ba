import { describe, expect, it } from 'vitest';
import type { Check, CheckContext, Dut } from '../../src/conformance/check.js';
import { clauseMatcher, notApplicable, runCheck, runSuite } from '../../src/conformance/runner.js';
import type { Target } from '../../src/conformance/targets/target.js';
import { InprocTarget } from '../../src/conformance/targets/inproc.js';
import { combineVerdicts, fail, pass, reject, skip, type CheckResult } from '../../src/conformance/verdict.js';
import { CHECKS, checksByClause } from '../../src/conformance/registry.js';
import { loadClauses } from '../../src/conformance/clauses.js';

/** A target whose DUTs are empty shells (for checks that do not touch the device). */
function shellTarget(opts: { failOpen?: boolean } = {}): Target & { opened: number; closed: number } {
  const t = {
    name: 'shell',
    buildsVariants: false,
    devices: ['rng'] as const,
    transports: ['mmio'] as const,
    swiotlbModes: [false],
    opened: 0,
    closed: 0,
    async open(): Promise<Dut> {
      if (opts.failOpen === true) throw new Error('cannot build');
      t.opened++;
      return { kind: 'rng', transport: 'mmio', swiotlb: false, ram: undefined as never, io: {}, close: () => void t.closed++ };
    },
  };
  return t;
}

const cfg = { device: 'rng', transport: 'mmio', swiotlb: false } as const;
const fake = (run: (ctx: CheckContext) => Promise<CheckResult>, extra: Partial<Check> = {}): Check => ({ id: 'fake', title: 'fake', clauses: ['rng.dev-op.device.1'], role: 'device', run, ...extra });

describe('runner verdicts', () => {
  it('passes PASS, REJECT, FAIL and SKIP through and closes the DUT each time', async () => {
    const t = shellTarget();
    for (const r of [pass('ok'), reject('refused'), fail('bad'), skip('n/a')]) {
      const run = await runCheck(fake(async () => r), t, cfg);
      expect(run.verdict).toBe(r.verdict);
      expect(run.detail).toBe(r.detail);
    }
    expect(t.opened).toBe(4);
    expect(t.closed).toBe(4);
  });

  it('a hanging check is WEDGED at its time limit and the DUT is still closed', async () => {
    const t = shellTarget();
    let aborted = false;
    const run = await runCheck(
      fake(
        (ctx: CheckContext) =>
          new Promise<CheckResult>(() => {
            ctx.signal.addEventListener('abort', () => (aborted = true));
          }),
        { timeoutMs: 60 },
      ),
      t,
      cfg,
    );
    expect(run.verdict).toBe('WEDGED');
    expect(aborted).toBe(true);
    expect(t.closed).toBe(1);
  });

  it('a check that throws is FAIL with the error', async () => {
    const run = await runCheck(fake(async () => Promise.reject(new Error('boom'))), shellTarget(), cfg);
    expect(run.verdict).toBe('FAIL');
    expect(run.detail).toContain('boom');
  });

  it('SKIPs with a reason when the device type or transport differs, or the target cannot build', async () => {
    const t = shellTarget();
    const r1 = await runCheck(fake(async () => pass('x'), { devices: ['blk'] }), t, cfg);
    expect(r1.verdict).toBe('SKIP');
    expect(r1.detail).toMatch(/device type differs/);
    expect(notApplicable(fake(async () => pass('x'), { transports: ['pci'] }), cfg)).toMatch(/transport differs/);
    const r2 = await runCheck(fake(async () => pass('x')), shellTarget({ failOpen: true }), cfg);
    expect(r2.verdict).toBe('SKIP');
    expect(r2.detail).toMatch(/cannot build/);
    expect(t.opened).toBe(0);
  });

  it('SKIPs when a needed feature is not offered (real device)', async () => {
    const r = await runCheck(fake(async () => pass('x'), { needs: [17] }), new InprocTarget(), cfg);
    expect(r.verdict).toBe('SKIP');
    expect(r.detail).toMatch(/17 not offered/);
  });

  it('combines verdicts FAIL > WEDGED > PASS > REJECT > SKIP > UNCHECKED', () => {
    expect(combineVerdicts('PASS', 'FAIL')).toBe('FAIL');
    expect(combineVerdicts('WEDGED', 'PASS')).toBe('WEDGED');
    expect(combineVerdicts('REJECT', 'PASS')).toBe('PASS');
    expect(combineVerdicts('SKIP', 'REJECT')).toBe('REJECT');
    expect(combineVerdicts('UNCHECKED', 'SKIP')).toBe('SKIP');
  });

  it('filters checks by clause pattern', async () => {
    expect(clauseMatcher('pci.msix.*')('pci.msix.device.7')).toBe(true);
    expect(clauseMatcher('pci.msix.*')('pci.isr.device.1')).toBe(false);
    expect(clauseMatcher('rng')('rng.dev-op.device.1')).toBe(true);
    const s = await runSuite({ target: new InprocTarget(), checks: CHECKS, devices: ['rng'], transports: ['mmio'], swiotlb: [false], clauses: 'rng.dev-op.*' });
    expect(s.checks).toEqual(['rng.at-least-one-byte']);
    expect(s.runs.map((r) => r.verdict)).toEqual(['PASS']);
  });
});

describe('registry', () => {
  it('every check names known clause ids and a unique id', () => {
    const idx = loadClauses();
    const ids = new Set<string>();
    for (const c of CHECKS) {
      expect(ids.has(c.id), c.id).toBe(false);
      ids.add(c.id);
      for (const id of c.clauses) expect(idx.byId.has(id), `${c.id}: ${id}`).toBe(true);
    }
    expect(checksByClause().get('rng.dev-op.device.1')).toEqual(['rng.at-least-one-byte']);
  });
});
