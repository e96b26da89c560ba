/** Pure parts of the DMA benchmark: plans, one-dimension comparisons, same-round ratios, parsers. */
import { describe, expect, it } from 'vitest';
import { buildComparisons, buildCopyRows, buildRows, type RoundPoint } from '../../../src/bench/dma/aggregate.js';
import { summarizeProfile } from '../../../src/bench/dma/cpuprof.js';
import { parseMemcpyOutput } from '../../../src/bench/dma/memcpy.js';
import { sizingFor } from '../../../src/bench/dma/models.js';
import { Progress } from '../../../src/bench/dma/progress.js';
import { evaluateTargets } from '../../../src/bench/dma/runner.js';
import { BASE_DRIVER, BASE_POINT, differingDims, FULL, MODEL_NAMES, planSession, QUICK, type DriverConfig, type ModelName, type PointSpec } from '../../../src/bench/dma/scenario.js';
import type { PointRaw } from '../../../src/bench/dma/workload.js';

function raw(iops: number, extra: Partial<PointRaw> = {}): PointRaw {
  return {
    requests: iops,
    wallMs: 1000,
    p50Us: 1e6 / iops,
    p99Us: 2e6 / iops,
    meanUs: 1e6 / iops,
    cpuVmmUs: 10,
    cpuDeviceUs: Number.NaN,
    bounceBytes: 0,
    messageBytes: 0,
    messages: 0,
    kicksPerReq: 0.1,
    interruptsPerReq: 0.1,
    peakRssVmm: 1 << 20,
    peakRssDevice: Number.NaN,
    peakRssReset: true,
    poolHighWaterBytes: 0,
    ...extra,
  };
}

const NEG = { mask: '0x100000000', names: ['VIRTIO_F_VERSION_1'], dma: 'direct' as const, interrupts: 'per-queue', queueSize: 256, bounceCopier: null };

function rp(round: number, model: ModelName, iops: number, driver: Partial<DriverConfig> = {}, point: Partial<PointSpec> = {}): RoundPoint {
  return { round, model, driver: { ...BASE_DRIVER, ...driver }, point: { ...BASE_POINT, ...point }, negotiated: NEG, raw: raw(iops) };
}

describe('bench dma: plans', () => {
  it.each([...MODEL_NAMES])('%s: every driver step and point differs from the base in at most one dimension', (m) => {
    for (const preset of [QUICK, FULL]) {
      const plan = planSession(m, preset);
      for (const step of plan.steps) {
        const dd = (Object.keys(BASE_DRIVER) as Array<keyof DriverConfig>).filter((k) => step.driver[k] !== BASE_DRIVER[k]);
        expect(dd.length).toBeLessThanOrEqual(1);
        for (const p of step.points) {
          const dp = (['depth', 'op', 'batch'] as const).filter((k) => p[k] !== BASE_POINT[k]);
          // size is the sweep axis; besides it at most one dimension changes, counting the driver's
          expect(dd.length + dp.length).toBeLessThanOrEqual(1);
        }
      }
      expect(plan.maxSize).toBe(Math.max(...preset.sizes, ...preset.depth1Sizes, ...preset.writeSizes));
    }
  });

  it('packed only where the device offers it, and the sweep covers every preset size', () => {
    expect(planSession('direct', FULL).steps.some((s) => s.driver.ring === 'packed')).toBe(false);
    expect(planSession('inproc', FULL).steps.some((s) => s.driver.ring === 'packed')).toBe(true);
    const base = planSession('message', QUICK).steps.find((s) => s.driver.queues === 1 && !s.driver.indirect && s.driver.eventIdx)!;
    expect(base.points.filter((p) => p.depth === 32 && p.op === 'read' && p.batch).map((p) => p.size)).toEqual(QUICK.sizes);
  });

  it('window and RAM sizes grow with size x depth (256 KiB mappings need free segments)', () => {
    const s = sizingFor({ maxSize: 256 * 1024, maxDepth: 32 });
    expect(s.windowSize).toBeGreaterThanOrEqual(2 * 2 * 32 * 256 * 1024);
    expect(s.windowSize & (s.windowSize - 1)).toBe(0);
    expect(s.ramSize).toBeGreaterThan(2 * 32 * 256 * 1024);
    expect(s.diskSize).toBeGreaterThanOrEqual(2 * 32 * 256 * 1024);
  });

  it('differingDims names exactly the changed dimensions', () => {
    const a = { model: 'inproc' as const, ...BASE_DRIVER, ...BASE_POINT };
    expect(differingDims(a, { ...a, ring: 'packed' })).toEqual(['ring']);
    expect(differingDims(a, { ...a, model: 'direct', depth: 1 })).toEqual(['model', 'depth']);
  });
});

describe('bench dma: aggregation', () => {
  it('ratios are taken within a round, then the median (not a ratio of medians)', () => {
    const pts = [rp(1, 'inproc', 100), rp(1, 'inproc-swiotlb', 50), rp(2, 'inproc', 300), rp(2, 'inproc-swiotlb', 100), rp(3, 'inproc', 200), rp(3, 'inproc-swiotlb', 180)];
    const rows = buildRows(pts);
    const sw = rows.find((r) => r.model === 'inproc-swiotlb')!;
    // per-round ratios 0.5, 0.333, 0.9 → median 0.5; medians' ratio would be 100/200 = 0.5 too, so check a case where they differ
    expect(sw.ratio_vs_direct).toBeCloseTo(0.5, 6);
    const pts2 = [rp(1, 'inproc', 100), rp(1, 'inproc-swiotlb', 90), rp(2, 'inproc', 400), rp(2, 'inproc-swiotlb', 100), rp(3, 'inproc', 300), rp(3, 'inproc-swiotlb', 60)];
    const sw2 = buildRows(pts2).find((r) => r.model === 'inproc-swiotlb')!;
    expect(sw2.ratio_vs_direct).toBeCloseTo(0.25, 6); // per round 0.9, 0.25, 0.2 → 0.25 (medians would give 90/300 = 0.3)
    expect(sw2.iops).toBe(90);
    expect(sw2.iops_min).toBe(60);
    expect(sw2.iops_max).toBe(100);
    expect(sw2.mbps).toBeCloseTo((90 * 4096) / 1e6, 9);
  });

  it('comparisons change exactly one dimension from its base value and hold the rest', () => {
    const pts = [rp(1, 'direct', 100), rp(1, 'direct', 80, { ring: 'split', indirect: true }), rp(1, 'swiotlb', 40), rp(1, 'direct', 150, { queues: 2 }), rp(1, 'swiotlb', 10, { indirect: true }, { depth: 1 })];
    const cs = buildComparisons(pts);
    const ind = cs.find((c) => c.dimension === 'indirect' && c.held['model'] === 'direct')!;
    expect(ind.from).toBe(false);
    expect(ind.to).toBe(true);
    expect(ind.iops_ratio).toBeCloseTo(0.8, 9);
    expect(ind.held['queues']).toBe(1);
    const model = cs.find((c) => c.dimension === 'model' && c.to === 'swiotlb')!;
    expect(model.from).toBe('direct');
    expect(model.iops_ratio).toBeCloseTo(0.4, 9);
    expect(cs.find((c) => c.dimension === 'queues')!.iops_ratio).toBeCloseTo(1.5, 9);
    // two changed dimensions → no comparison
    expect(cs.some((c) => c.to_key.includes('d1'))).toBe(false);
  });

  it('copy rows: pool / C per round, then the median', () => {
    const rows = buildCopyRows(
      [
        { pool: { 4096: [10] }, copyBatch: { 4096: [12] }, c: { 4096: [20] } },
        { pool: { 4096: [9] }, copyBatch: { 4096: [12] }, c: { 4096: [10] } },
        { pool: { 4096: [5] }, copyBatch: { 4096: [12] }, c: { 4096: [10] } },
      ],
      [4096],
    );
    expect(rows[0]!.pool_vs_c).toBeCloseTo(0.5, 9); // 0.5, 0.9, 0.5
    expect(rows[0]!.pool_vs_c_max).toBeCloseTo(0.9, 9);
  });

  it('targets are read from the ratios; two queues can be met only by the device process with queue workers', () => {
    const pts = [rp(1, 'direct', 100), rp(1, 'swiotlb', 75), rp(1, 'direct', 190, { queues: 2 })];
    const t = evaluateTargets(buildRows(pts), [{ size: 4096, pool_gbps: 9, copybatch_gbps: 10, c_memcpy_gbps: 10, pool_vs_c: 0.9, pool_vs_c_min: 0.9, pool_vs_c_max: 0.9, copybatch_vs_c: 1 }]);
    expect(t.find((x) => x.id === 'swiotlb-vs-direct-4k-qd32')).toMatchObject({ measured: 0.75, met: true });
    expect(t.find((x) => x.id === 'bounce-copy-vs-memcpy')).toMatchObject({ measured: 0.9, met: true });
    expect(t.find((x) => x.id === 'two-queues-two-workers')).toMatchObject({ measured: 1.9, met: true });
    const tIn = evaluateTargets(buildRows([rp(1, 'inproc', 100), rp(1, 'inproc', 190, { queues: 2 })]), []);
    expect(tIn.find((x) => x.id === 'two-queues-two-workers')).toMatchObject({ measured: 1.9, met: false });
    const t2 = evaluateTargets(buildRows([rp(1, 'direct', 100), rp(1, 'swiotlb', 20)]), []);
    expect(t2.find((x) => x.id === 'swiotlb-vs-direct-4k-qd32')).toMatchObject({ measured: 0.2, met: false });
    expect(t2.find((x) => x.id === 'bounce-copy-vs-memcpy')).toMatchObject({ measured: null, met: false });
  });
});

describe('bench dma: parsers and output helpers', () => {
  it('memcpy output: accepts well-formed, rejects missing sizes, non-positive rates and errors', () => {
    const ok = '{"ok":true,"results":[{"size":512,"nbuf":32,"gbps":[1.5,2]},{"size":4096,"nbuf":32,"gbps":[3,4]}],"check":1}';
    expect(parseMemcpyOutput(ok, [512, 4096], 2)).toEqual({ 512: [1.5, 2], 4096: [3, 4] });
    expect(() => parseMemcpyOutput(ok, [65536], 2)).toThrow(/65536/);
    expect(() => parseMemcpyOutput(ok, [512], 3)).toThrow(/3 positive rates/);
    expect(() => parseMemcpyOutput('{"ok":true,"results":[{"size":512,"gbps":[0]}]}', [512], 1)).toThrow();
    expect(() => parseMemcpyOutput('{"ok":false,"error":"--ms bad"}', [512], 1)).toThrow(/--ms bad/);
    expect(() => parseMemcpyOutput('garbage', [512], 1)).toThrow(/not JSON/);
  });

  it('profile summary: self time per function, idle apart, busiest first', () => {
    const s = summarizeProfile(
      {
        nodes: [
          { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: 0 } },
          { id: 2, callFrame: { functionName: 'hot', url: 'file:///x/a.js', lineNumber: 9 } },
          { id: 3, callFrame: { functionName: '(idle)', url: '', lineNumber: 0 } },
          { id: 4, callFrame: { functionName: '', url: '', lineNumber: 0 } },
        ],
        samples: [2, 2, 3, 4, 2],
        timeDeltas: [0, 100, 100, 100, 100, 100],
      },
      't',
    );
    expect(s.idleMs).toBeCloseTo(0.1, 9);
    expect(s.busyMs).toBeCloseTo(0.4, 9);
    expect(s.top[0]).toMatchObject({ fn: 'hot (/x/a.js:10)', share: 0.75 });
    expect(s.top[1]!.fn).toBe('(anonymous) [native]');
  });

  it('profile summary: a time window keeps only its samples; unnamed native code is named by its caller', () => {
    const prof = {
      startTime: 1000,
      nodes: [
        { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: 0 }, children: [2] },
        { id: 2, callFrame: { functionName: 'transact', url: 'file:///x/c.js', lineNumber: 0 }, children: [3] },
        { id: 3, callFrame: { functionName: '', url: '', lineNumber: 0 } },
      ],
      samples: [2, 3, 3, 2],
      timeDeltas: [10, 10, 10, 10],
    };
    const all = summarizeProfile(prof, 'a');
    expect(all.top.map((e) => e.fn)).toContain('native code called from transact (/x/c.js:1)');
    const part = summarizeProfile(prof, 'b', 10, { fromUs: 1015, toUs: 1035 }); // samples at 1020 and 1030
    expect(part.top).toHaveLength(1);
    expect(part.top[0]!.fn).toMatch(/^native code called from transact/);
    expect(part.busyMs).toBeCloseTo(0.02, 9);
  });

  it('progress: a first line, then one per 10 % step without a TTY, a redrawn bar with one', () => {
    const lines: string[] = [];
    const p = new Progress({ write: (s) => lines.push(s), isTTY: false }, 20);
    for (let i = 0; i < 20; i++) p.tick(1, `x${i}`);
    p.end();
    expect(lines.length).toBe(11); // the first tick, then each 10 % step up to 100 %
    expect(lines.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true);
    const tty: string[] = [];
    const q = new Progress({ write: (s) => tty.push(s), isTTY: true }, 2);
    q.tick(1, 'a');
    q.tick(1, 'b');
    q.end();
    expect(tty[0]!.startsWith('\r[')).toBe(true);
    expect(tty.join('')).toContain('100%');
  });
});

describe('bench dma: command line', () => {
  it('refuses unknown models and --quick with --full before measuring anything', async () => {
    const { benchDmaCommand } = await import('../../../src/cli/bench-dma.js');
    const io = { out: (): void => undefined, err: (): void => undefined };
    await expect(benchDmaCommand.run({ positionals: [], flags: { models: 'inproc,bogus' }, help: false }, io)).rejects.toThrow(/unknown model 'bogus'/);
    await expect(benchDmaCommand.run({ positionals: [], flags: { quick: true, full: true }, help: false }, io)).rejects.toThrow(/exclude each other/);
    await expect(benchDmaCommand.run({ positionals: ['x'], flags: {}, help: false }, io)).rejects.toThrow(/unexpected argument/);
  });
});
