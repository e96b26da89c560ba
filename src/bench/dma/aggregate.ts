/**
 * From per-round measurements to report rows: medians over rounds, and every ratio taken within
 * one round first, then the median (reference/perf-limits.md §7: same-round ratios).
 */
import { median } from '../stats.js';
import type { CopyResult } from './child.js';
import type { CopyRow, DmaComparison, DmaRow } from './report-types.js';
import { BASE_DRIVER, BASE_POINT, differingDims, scenarioKey, type Dimension, type ModelName, type Scenario } from './scenario.js';
import type { SessionPoint } from './session.js';

/** A point measured in one round. */
export interface RoundPoint extends SessionPoint {
  round: number;
  model: ModelName;
}

function scenarioOf(p: RoundPoint): Scenario {
  return { model: p.model, ...p.driver, ...p.point };
}

const iopsOf = (p: RoundPoint): number => (p.raw.requests / p.raw.wallMs) * 1000;
const nn = (x: number): number | null => (Number.isFinite(x) ? x : null);

/**
 * Direct-DMA counterpart with the same process boundary (vhost-user: qemu-storage-daemon behind
 * the same front-end, so `ratio_vs_direct` of `vhost-ours` is ours / qemu-storage-daemon).
 */
export function directCounterpart(m: ModelName): ModelName {
  if (m === 'vhost-qsd' || m === 'vhost-ours') return 'vhost-qsd';
  return m === 'inproc' || m === 'inproc-swiotlb' ? 'inproc' : 'direct';
}

/** Median over rounds of a(round) / b(round) for rounds where both exist. */
function roundRatio(a: RoundPoint[], b: RoundPoint[], f: (p: RoundPoint) => number): number | null {
  const r: number[] = [];
  for (const x of a) {
    const y = b.find((q) => q.round === x.round);
    if (y !== undefined) {
      const d = f(y);
      if (d > 0 && Number.isFinite(d) && Number.isFinite(f(x))) r.push(f(x) / d);
    }
  }
  return r.length > 0 ? median(r) : null;
}

/** Group points by scenario key. */
export function groupPoints(points: RoundPoint[]): Map<string, RoundPoint[]> {
  const g = new Map<string, RoundPoint[]>();
  for (const p of points) {
    const k = scenarioKey(scenarioOf(p));
    const l = g.get(k);
    if (l === undefined) g.set(k, [p]);
    else l.push(p);
  }
  return g;
}

/** Build the rows. */
export function buildRows(points: RoundPoint[]): DmaRow[] {
  const g = groupPoints(points);
  const rows: DmaRow[] = [];
  for (const [key, ps] of g) {
    const s = scenarioOf(ps[0]!);
    const med = (f: (p: RoundPoint) => number): number => median(ps.map(f));
    const iops = ps.map(iopsOf);
    const cp = { ...s, model: directCounterpart(s.model) };
    const direct = g.get(scenarioKey(cp));
    const inproc = g.get(scenarioKey({ ...s, model: 'inproc' }));
    const dev = med((p) => p.raw.cpuDeviceUs);
    const bounce = med((p) => p.raw.bounceBytes);
    const msg = med((p) => p.raw.messageBytes);
    const last = ps[ps.length - 1]!;
    rows.push({
      key,
      model: s.model,
      ring: s.ring,
      indirect: s.indirect,
      event_idx: s.eventIdx,
      queues: s.queues,
      size: s.size,
      depth: s.depth,
      op: s.op,
      batch: s.batch,
      rounds: ps.length,
      iops: median(iops),
      iops_min: Math.min(...iops),
      iops_max: Math.max(...iops),
      mbps: (median(iops) * s.size) / 1e6,
      p50_us: med((p) => p.raw.p50Us),
      p99_us: med((p) => p.raw.p99Us),
      mean_us: med((p) => p.raw.meanUs),
      ratio_vs_direct: direct !== undefined ? roundRatio(ps, direct, iopsOf) : null,
      ratio_vs_inproc: inproc !== undefined ? roundRatio(ps, inproc, iopsOf) : null,
      cpu_us_per_req_vmm: med((p) => p.raw.cpuVmmUs),
      cpu_us_per_req_device: nn(dev),
      bounce_bytes_per_req: bounce,
      message_bytes_per_req: msg,
      messages_per_req: med((p) => p.raw.messages),
      bytes_copied_per_req: bounce + msg,
      kicks_per_req: med((p) => p.raw.kicksPerReq),
      interrupts_per_req: med((p) => p.raw.interruptsPerReq),
      peak_rss_vmm_bytes: nn(med((p) => p.raw.peakRssVmm)),
      peak_rss_device_bytes: nn(med((p) => p.raw.peakRssDevice)),
      peak_rss_per_point: ps.every((p) => p.raw.peakRssReset),
      bounce_pool_high_water_bytes: last.negotiated.dma === 'swiotlb' ? Math.max(...ps.map((p) => p.raw.poolHighWaterBytes)) : null,
      requests_per_round: med((p) => p.raw.requests),
      negotiated: last.negotiated,
      per_round: ps.map((p) => ({ round: p.round, iops: iopsOf(p), p50_us: p.raw.p50Us, p99_us: p.raw.p99Us })),
    });
  }
  return rows;
}

const BASE: Record<string, string | number | boolean> = { ...BASE_DRIVER, depth: BASE_POINT.depth, op: BASE_POINT.op, batch: BASE_POINT.batch };
const COMPARED: readonly Dimension[] = ['ring', 'indirect', 'eventIdx', 'batch', 'queues', 'depth', 'op', 'model'];

/**
 * Every pair of measured scenarios differing in exactly one compared dimension where the "from"
 * side holds the base value (model: the direct counterpart, or `inproc` for `direct`).
 */
export function buildComparisons(points: RoundPoint[]): DmaComparison[] {
  const g = groupPoints(points);
  const entries = [...g.entries()].map(([k, ps]) => ({ k, s: scenarioOf(ps[0]!), ps }));
  const out: DmaComparison[] = [];
  for (const to of entries) {
    for (const from of entries) {
      if (from === to) continue;
      const d = differingDims(from.s, to.s);
      if (d.length !== 1 || !COMPARED.includes(d[0]!)) continue;
      const dim = d[0]!;
      if (dim === 'model') {
        const want = to.s.model === 'direct' ? 'inproc' : directCounterpart(to.s.model);
        if (from.s.model !== want || to.s.model === want) continue;
      } else if (from.s[dim] !== BASE[dim]) continue;
      const held: Record<string, string | number | boolean> = {};
      for (const [k, v] of Object.entries(to.s)) if (k !== dim) held[k] = v;
      out.push({
        dimension: dim,
        from: from.s[dim],
        to: to.s[dim],
        held,
        from_key: from.k,
        to_key: to.k,
        iops_ratio: roundRatio(to.ps, from.ps, iopsOf) ?? Number.NaN,
        p50_ratio: roundRatio(to.ps, from.ps, (p) => p.raw.p50Us) ?? Number.NaN,
        cpu_ratio: roundRatio(to.ps, from.ps, (p) => p.raw.cpuVmmUs + (Number.isFinite(p.raw.cpuDeviceUs) ? p.raw.cpuDeviceUs : 0)) ?? Number.NaN,
      });
    }
  }
  const order = (c: DmaComparison): number => COMPARED.indexOf(c.dimension);
  return out.sort((a, b) => order(a) - order(b) || String(a.held['model']).localeCompare(String(b.held['model'])) || Number(a.held['size'] ?? 0) - Number(b.held['size'] ?? 0));
}

/** Copy rows from the copy rounds. */
export function buildCopyRows(rounds: CopyResult[], sizes: readonly number[]): CopyRow[] {
  const rows: CopyRow[] = [];
  for (const size of sizes) {
    const pool: number[] = [];
    const bare: number[] = [];
    const c: number[] = [];
    const ratio: number[] = [];
    const bratio: number[] = [];
    for (const r of rounds) {
      const p = median(r.pool[size] ?? []);
      const b = median(r.copyBatch[size] ?? []);
      const x = median(r.c[size] ?? []);
      if (!(p > 0 && x > 0)) continue;
      pool.push(p);
      bare.push(b);
      c.push(x);
      ratio.push(p / x);
      bratio.push(b / x);
    }
    if (ratio.length === 0) continue;
    rows.push({
      size,
      pool_gbps: median(pool),
      copybatch_gbps: median(bare),
      c_memcpy_gbps: median(c),
      pool_vs_c: median(ratio),
      pool_vs_c_min: Math.min(...ratio),
      pool_vs_c_max: Math.max(...ratio),
      copybatch_vs_c: median(bratio),
    });
  }
  return rows;
}
