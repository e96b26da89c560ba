/**
 * A tiny end-to-end run of the DMA benchmark (fresh processes, a handful of requests, 2 sizes):
 * rows are well-formed with positive figures, and the JSON report and the SVG plot are written and
 * parse. No timing thresholds.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMemcpyBench, runMemcpyBench } from '../../../src/bench/dma/memcpy.js';
import { writeDmaOutputs } from '../../../src/bench/dma/output.js';
import type { DmaBenchReport } from '../../../src/bench/dma/report-types.js';
import { runDmaBench } from '../../../src/bench/dma/runner.js';
import { tinyPreset, type ModelName } from '../../../src/bench/dma/scenario.js';
import { COMMANDS } from '../../../src/cli/commands.js';

const SIZES = [512, 4096];
const MODELS: ModelName[] = ['inproc', 'inproc-swiotlb', 'direct', 'message'];

describe('bench dma: tiny run', () => {
  let dir: string;
  let rep: DmaBenchReport;
  const lines: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vk-bench-dma-'));
    rep = await runDmaBench({ preset: tinyPreset(SIZES), models: MODELS, profile: false, progress: { write: (s) => lines.push(s), isTTY: false } });
  }, 120_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the CLI table lists `bench dma`', () => {
    expect(COMMANDS.some((c) => c.path.join(' ') === 'bench dma')).toBe(true);
  });

  it('in-process models produce one well-formed row per size with positive numbers', () => {
    for (const m of ['inproc', 'inproc-swiotlb'] as const) {
      const rows = rep.rows.filter((r) => r.model === m);
      expect(rows.map((r) => r.size).sort((a, b) => a - b)).toEqual(SIZES);
      for (const r of rows) {
        expect(r).toMatchObject({ depth: 32, queues: 1, op: 'read', ring: 'split', batch: true, rounds: 1 });
        for (const v of [r.iops, r.mbps, r.p50_us, r.p99_us, r.cpu_us_per_req_vmm, r.requests_per_round]) expect(v).toBeGreaterThan(0);
        expect(r.p99_us).toBeGreaterThanOrEqual(r.p50_us);
        expect(r.mbps).toBeCloseTo((r.iops * r.size) / 1e6, 6);
        expect(r.negotiated.names).toContain('VIRTIO_F_VERSION_1');
        expect(r.ratio_vs_direct).toBeGreaterThan(0);
        expect(r.cpu_us_per_req_device).toBeNull(); // no device process
      }
    }
    for (const r of rep.rows.filter((x) => x.model === 'inproc-swiotlb')) {
      expect(r.negotiated.dma).toBe('swiotlb');
      // header + data + status copied in on map, data + status copied back on unmap (reads)
      expect(r.bounce_bytes_per_req).toBe(16 + 2 * r.size + 2);
      expect(r.bounce_pool_high_water_bytes).toBeGreaterThan(0);
    }
    for (const r of rep.rows.filter((x) => x.model === 'inproc')) {
      expect(r.negotiated.dma).toBe('direct');
      expect(r.ratio_vs_direct).toBe(1);
      expect(r.bytes_copied_per_req).toBe(0);
    }
  });

  it('vfio-user models either measured (device CPU, message bytes) or reported skipped with a reason', () => {
    for (const m of ['direct', 'message'] as const) {
      const info = rep.models.find((x) => x.model === m)!;
      const rows = rep.rows.filter((r) => r.model === m);
      if (!info.measured) {
        expect(info.reason ?? rep.failures.map((f) => f.error).join()).not.toBe('');
        continue;
      }
      expect(rows.length).toBe(SIZES.length);
      for (const r of rows) {
        expect(r.iops).toBeGreaterThan(0);
        expect(r.cpu_us_per_req_device).not.toBeNull();
        expect(r.peak_rss_device_bytes).toBeGreaterThan(0);
      }
      if (m === 'message') {
        for (const r of rows) {
          // Every read moves its data through DMA_WRITE messages. The counters are sampled while up
          // to `depth` requests are in flight at each end of the window, so allow for 2 × depth
          // requests whose messages fell outside it (a tiny run under load showed 2141 < 4096).
          // (The tiny run's window holds only `depth` requests, so there this is a sanity check.)
          const reqs = r.requests_per_round;
          expect(Number.isFinite(r.message_bytes_per_req) && r.message_bytes_per_req >= 0).toBe(true);
          expect(r.message_bytes_per_req * reqs).toBeGreaterThanOrEqual(r.size * Math.max(0, reqs - 2 * r.depth));
        }
      }
    }
  });

  it('records machine, loadavg per round, the C memcpy comparison and the targets', () => {
    expect(rep.machine.cores).toBeGreaterThan(0);
    expect(rep.machine.loadavg_per_round).toHaveLength(1);
    expect(rep.copy.map((c) => c.size)).toEqual(SIZES);
    for (const c of rep.copy) for (const v of [c.pool_gbps, c.copybatch_gbps, c.c_memcpy_gbps, c.pool_vs_c]) expect(v).toBeGreaterThan(0);
    expect(Object.keys(rep.memcpy_ratio_vs_c ?? {})).toEqual(SIZES.map(String));
    expect(rep.vhost_user_vs_qsd).toBeNull();
    expect(rep.targets.map((t) => t.id)).toEqual(['bounce-copy-vs-memcpy', 'swiotlb-vs-direct-4k-qd32', 'two-queues-two-workers']);
    expect(lines.length).toBeGreaterThan(0);
  });

  it('writes valid JSON and an SVG plot with one path per line', async () => {
    const jp = join(dir, 'out', 'r.json');
    const sp = join(dir, 'out', 'r.svg');
    await writeDmaOutputs(rep, jp, sp);
    const back = JSON.parse(await readFile(jp, 'utf8')) as DmaBenchReport;
    expect(back.schema).toBe('virtiokit-bench-dma/1');
    expect(back.rows.length).toBe(rep.rows.length);
    for (const r of back.rows) for (const k of ['model', 'size', 'depth', 'queues', 'iops', 'mbps', 'p50_us', 'p99_us', 'ratio_vs_direct'] as const) expect(r).toHaveProperty(k);
    const svg = await readFile(sp, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('<path');
    expect(svg).toContain('inproc-swiotlb'); // legend
  });
});

describe('bench dma: C memcpy reference', () => {
  it('builds (cached) and reports positive GB/s per size', async () => {
    const bin = await buildMemcpyBench();
    const again = await buildMemcpyBench();
    expect(again.built).toBe(false);
    expect(again.path).toBe(bin.path);
    const r = await runMemcpyBench(bin.path, [512, 65536], 2, 2);
    for (const s of [512, 65536]) {
      expect(r[s]).toHaveLength(2);
      for (const g of r[s]!) expect(g).toBeGreaterThan(0);
    }
  }, 120_000);

  it('a missing compiler is a clear NATIVE_UNAVAILABLE error', async () => {
    const d = await mkdtemp(join(tmpdir(), 'vk-cc-'));
    try {
      await expect(buildMemcpyBench({ cc: 'no-such-cc-virtiokit', cacheDir: d })).rejects.toMatchObject({ code: 'NATIVE_UNAVAILABLE', message: expect.stringMatching(/install gcc or clang/) });
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
