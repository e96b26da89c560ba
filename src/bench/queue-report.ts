/**
 * The queue benchmark's report: JSON rows (one per cell) plus metadata, and a readable table.
 *
 * Method: each round is a fresh process per cell; inside it the JS and the C side each run a
 * warm-up and N timed repetitions, and the round's value of each side is its best repetition.
 * The ratio JS/C is taken within each round; a row reports the median over rounds and [min–max].
 */
import type { MeasureOptions, SideTimes } from './measure.js';
import type { Agents, ChainDescs, QueueCell, RingKind } from './queue-layout.js';
import { summarize } from './stats.js';

/** Busy time per chain of each side with two agents (`--sides`), ns. */
export interface SidesNs {
  post_ns: number;
  reclaim_ns: number;
  device_ns: number;
}

/** JSON form of a {@link SideTimes}. */
export function sidesNs(s: SideTimes): SidesNs {
  return { post_ns: round4(s.postNs), reclaim_ns: round4(s.reclaimNs), device_ns: round4(s.deviceNs) };
}

/** One round of one cell, as reported. */
export interface RoundValue {
  round: number;
  mchains_per_s: number;
  c_mchains_per_s: number;
  ratio_vs_c: number;
  /** Queue API style the JS side used in this round. */
  api: 'chain' | 'batch' | 'visit';
  /** All timed repetitions of this round. */
  js_reps: number[];
  c_reps: number[];
  /** Plain-JS yardstick (hand-written, no library) of this round, or null where not measured. */
  plain_mchains_per_s: number | null;
  /** plain_mchains_per_s / c_mchains_per_s of this round, or null. */
  plain_ratio_vs_c: number | null;
  /** Two agents with `--sides`: busy ns per chain of each side, JS and C, in this round. */
  sides?: { js: SidesNs; c: SidesNs };
}

/** One row of the report. */
export interface QueueBenchRow {
  ring: RingKind;
  descs: ChainDescs;
  agents: Agents;
  /** Queue API style of the JS side: `batch` (popBatch/addBatch/getUsedBatch) or `chain` (pop/add/getUsed). */
  api: 'chain' | 'batch' | 'visit';
  /** JS (library queues), million chains per second: median over rounds. */
  mchains_per_s: number;
  /** C reference, median over rounds. */
  c_mchains_per_s: number;
  /** Median over rounds of the per-round ratio JS / C. */
  ratio_vs_c: number;
  mchains_per_s_range: [number, number];
  c_mchains_per_s_range: [number, number];
  ratio_vs_c_range: [number, number];
  /**
   * Median over rounds of the plain-JS yardstick's ratio to C (the C algorithm hand-written in
   * plain JS, src/bench/queue-plain.ts): what JS itself reaches here. Null where not measured
   * (it exists for split cells, one and two agents).
   */
  plain_ratio_vs_c: number | null;
  /** The project's target for ratio_vs_c, or null when none is set for this cell. */
  target_ratio: number | null;
  /** ratio_vs_c ≥ target_ratio (null without a target). */
  meets_target: boolean | null;
  /**
   * Two agents with `--sides`: median over rounds of each side's busy ns per chain (driver post,
   * driver reclaim, device batch), JS and C; null otherwise.
   */
  sides: { js: SidesNs; c: SidesNs } | null;
  rounds: RoundValue[];
}

/** Metadata of a run. */
export interface QueueBenchMeta {
  tool: string;
  date: string;
  node: string;
  v8: string;
  platform: string;
  arch: string;
  cpu_model: string;
  cpus: number;
  /** os.loadavg() (1, 5, 15 min) sampled at the start of each round. */
  loadavg_per_round: number[][];
  rounds: number;
  measure: MeasureOptions;
  queue_size: number;
  batch: number;
  c_compiler: string;
  c_flags: string[];
  method: string;
  duration_s: number;
}

/** The whole JSON document. */
export interface QueueBenchReport {
  rows: QueueBenchRow[];
  meta: QueueBenchMeta;
}

/**
 * Targets for ratio_vs_c: single thread ≥ 0.4 (split) / ≥ 0.35 (packed); two agents ≥ 0.8 for
 * 3-descriptor chains; none for two agents with 1-descriptor chains.
 */
export function targetRatio(c: QueueCell): number | null {
  if (c.agents === 1) return c.ring === 'split' ? 0.4 : 0.35;
  return c.descs === 3 ? 0.8 : null;
}

/** Build a row from the per-round values of one cell. */
export function buildRow(cell: QueueCell, rounds: RoundValue[]): QueueBenchRow {
  const js = summarize(rounds.map((r) => r.mchains_per_s));
  const c = summarize(rounds.map((r) => r.c_mchains_per_s));
  const ratio = summarize(rounds.map((r) => r.ratio_vs_c));
  const plainRatios = rounds.map((r) => r.plain_ratio_vs_c).filter((x): x is number => x !== null);
  const target = targetRatio(cell);
  const timed = rounds.map((r) => r.sides).filter((x): x is { js: SidesNs; c: SidesNs } => x !== undefined);
  const med = (f: (x: { js: SidesNs; c: SidesNs }) => number): number => round4(summarize(timed.map(f)).median);
  const sides =
    timed.length === 0
      ? null
      : {
          js: { post_ns: med((x) => x.js.post_ns), reclaim_ns: med((x) => x.js.reclaim_ns), device_ns: med((x) => x.js.device_ns) },
          c: { post_ns: med((x) => x.c.post_ns), reclaim_ns: med((x) => x.c.reclaim_ns), device_ns: med((x) => x.c.device_ns) },
        };
  return {
    ring: cell.ring,
    descs: cell.descs,
    agents: cell.agents,
    api: rounds[0]?.api ?? 'chain',
    mchains_per_s: round4(js.median),
    c_mchains_per_s: round4(c.median),
    ratio_vs_c: round4(ratio.median),
    mchains_per_s_range: [round4(js.min), round4(js.max)],
    c_mchains_per_s_range: [round4(c.min), round4(c.max)],
    ratio_vs_c_range: [round4(ratio.min), round4(ratio.max)],
    plain_ratio_vs_c: plainRatios.length > 0 ? round4(summarize(plainRatios).median) : null,
    target_ratio: target,
    meets_target: target === null ? null : ratio.median >= target,
    sides,
    rounds,
  };
}

function round4(x: number): number {
  return Math.round(x * 10000) / 10000;
}

function fmt(x: number, digits: number): string {
  return x.toFixed(digits);
}

/** Digits so that small rates (a loaded machine, two agents) do not print as 0.0. */
function rateDigits(x: number): number {
  return x >= 10 ? 1 : x >= 1 ? 2 : 3;
}

function cellText(med: number, range: [number, number], digits?: number): string {
  const d = digits ?? rateDigits(med);
  return `${fmt(med, d)} [${fmt(range[0], d)}–${fmt(range[1], d)}]`;
}

/** The `--sides` table: busy ns per chain of each side next to the elapsed ns per chain. */
function formatSides(rows: QueueBenchRow[]): string {
  const head = ['ring', 'descs', 'JS post', 'reclaim', 'device', 'sum', 'elapsed', 'C post', 'reclaim', 'device', 'sum', 'elapsed'];
  const lines: string[][] = [head];
  const sum = (s: SidesNs): number => s.post_ns + s.reclaim_ns + s.device_ns;
  for (const r of rows) {
    const s = r.sides!;
    lines.push([
      r.ring,
      String(r.descs),
      fmt(s.js.post_ns, 1),
      fmt(s.js.reclaim_ns, 1),
      fmt(s.js.device_ns, 1),
      fmt(sum(s.js), 1),
      fmt(1e3 / r.mchains_per_s, 1),
      fmt(s.c.post_ns, 1),
      fmt(s.c.reclaim_ns, 1),
      fmt(s.c.device_ns, 1),
      fmt(sum(s.c), 1),
      fmt(1e3 / r.c_mchains_per_s, 1),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const out = lines.map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  out.unshift('two agents, busy ns per chain of each side (median over rounds; --sides): driver post and reclaim calls, device batches; elapsed = 1000 / median M chains/s. A sum above elapsed means the sides overlapped; below it, both waited.');
  return out.join('\n');
}

/** A readable table of the rows (plus a line of metadata). */
export function formatTable(report: QueueBenchReport): string {
  const head = ['ring', 'descs', 'agents', 'api', 'JS Mchains/s', 'C Mchains/s', 'JS/C', 'target', 'plain JS/C'];
  const lines: string[][] = [head];
  for (const r of report.rows) {
    lines.push([
      r.ring,
      String(r.descs),
      String(r.agents),
      r.api,
      cellText(r.mchains_per_s, r.mchains_per_s_range),
      cellText(r.c_mchains_per_s, r.c_mchains_per_s_range),
      cellText(r.ratio_vs_c, r.ratio_vs_c_range, 2),
      r.target_ratio === null ? '-' : `≥ ${fmt(r.target_ratio, 2)} ${r.meets_target ? 'met' : 'MISSED'}`,
      r.plain_ratio_vs_c === null ? '-' : fmt(r.plain_ratio_vs_c, 2),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const out = lines.map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const m = report.meta;
  const loads = m.loadavg_per_round.map((l) => fmt(l[0] ?? 0, 2)).join(' ');
  out.push('');
  out.push(`median [min–max] over ${m.rounds} round(s); each round = fresh process, best of ${m.measure.reps} × ${m.measure.ms} ms after ${m.measure.warmupMs} ms warm-up; JS/C taken within each round`);
  out.push(`node ${m.node}, ${m.cpu_model} × ${m.cpus}, ${m.c_compiler} ${m.c_flags.join(' ')}; loadavg(1 min) per round: ${loads}; ${fmt(m.duration_s, 1)} s`);
  if (report.rows.some((r) => r.plain_ratio_vs_c !== null)) {
    out.push('plain JS/C: the C algorithm hand-written in plain JS (typed arrays, state in locals, no library; src/bench/queue-plain.ts, two agents: queue-plain-two.ts), same rounds: what JS itself reaches here');
  }
  const timed = report.rows.filter((r) => r.sides !== null);
  if (timed.length > 0) out.push('', formatSides(timed));
  if (m.loadavg_per_round.some((l) => (l[0] ?? 0) >= 1)) out.push('note: the machine was busy (loadavg ≥ 1) during some rounds; two-agent numbers need both cores free');
  return out.join('\n');
}
