import { describe, expect, it } from 'vitest';
import { DEFAULT_MEASURE, expandCells, runQueueBench } from '../../src/bench/queue-bench.js';
import { buildRow, formatTable, targetRatio, type QueueBenchReport, type RoundValue } from '../../src/bench/queue-report.js';
import { TINY_MEASURE } from '../../src/bench/measure.js';
import { median, summarize } from '../../src/bench/stats.js';

function rv(round: number, js: number, c: number, plain: number | null = null): RoundValue {
  return { round, mchains_per_s: js, c_mchains_per_s: c, ratio_vs_c: js / c, js_reps: [js], c_reps: [c], api: 'chain', plain_mchains_per_s: plain, plain_ratio_vs_c: plain === null ? null : plain / c };
}

describe('queue benchmark report', () => {
  it('the plain-JS yardstick ratio is the median of per-round ratios, null where not measured, and shown in the table', () => {
    const row = buildRow({ ring: 'split', descs: 1, agents: 1 }, [rv(1, 10, 100, 30), rv(2, 10, 50, 20), rv(3, 10, 40, 4)]);
    expect(row.plain_ratio_vs_c).toBe(0.3); // 0.3, 0.4, 0.1
    const none = buildRow({ ring: 'packed', descs: 1, agents: 1 }, [rv(1, 10, 100)]);
    expect(none.plain_ratio_vs_c).toBeNull();
  });

  it('median and summary', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(summarize([5, 1, 9])).toEqual({ median: 5, min: 1, max: 9 });
  });

  it('ratio is the median of per-round ratios, not the ratio of medians', () => {
    const rounds = [rv(1, 10, 100), rv(2, 20, 40), rv(3, 30, 20)];
    const row = buildRow({ ring: 'split', descs: 1, agents: 1 }, rounds);
    expect(row.mchains_per_s).toBe(20);
    expect(row.c_mchains_per_s).toBe(40);
    expect(row.ratio_vs_c).toBe(0.5); // per-round ratios 0.1, 0.5, 1.5
    expect(row.ratio_vs_c_range).toEqual([0.1, 1.5]);
    expect(row.mchains_per_s_range).toEqual([10, 30]);
    const rounds2 = [rv(1, 10, 10), rv(2, 20, 100), rv(3, 30, 50)];
    const row2 = buildRow({ ring: 'split', descs: 1, agents: 1 }, rounds2);
    expect(row2.ratio_vs_c).toBe(0.6); // ratios 1, 0.2, 0.6; ratio of medians would be 20/50 = 0.4
  });

  it('targets: 0.4 split / 0.35 packed single-thread, 0.8 for two agents with 3 descriptors', () => {
    expect(targetRatio({ ring: 'split', descs: 1, agents: 1 })).toBe(0.4);
    expect(targetRatio({ ring: 'split', descs: 3, agents: 1 })).toBe(0.4);
    expect(targetRatio({ ring: 'packed', descs: 3, agents: 1 })).toBe(0.35);
    expect(targetRatio({ ring: 'packed', descs: 3, agents: 2 })).toBe(0.8);
    expect(targetRatio({ ring: 'split', descs: 3, agents: 2 })).toBe(0.8);
    expect(targetRatio({ ring: 'split', descs: 1, agents: 2 })).toBeNull();
    const below = buildRow({ ring: 'packed', descs: 1, agents: 1 }, [rv(1, 3, 10)]);
    expect(below.meets_target).toBe(false);
    const none = buildRow({ ring: 'packed', descs: 1, agents: 2 }, [rv(1, 3, 10)]);
    expect(none.meets_target).toBeNull();
  });

  it('formats a table with one line per row', () => {
    const report: QueueBenchReport = {
      rows: [buildRow({ ring: 'split', descs: 1, agents: 1 }, [rv(1, 10, 100, 40), rv(2, 12, 90, 36)])],
      meta: {
        tool: 't', date: 'd', node: 'v20', v8: 'x', platform: 'linux', arch: 'x64', cpu_model: 'cpu', cpus: 2,
        loadavg_per_round: [[0.1, 0.1, 0.1], [1.5, 1, 1]], rounds: 2, measure: DEFAULT_MEASURE, queue_size: 256, batch: 64,
        c_compiler: 'cc', c_flags: ['-O2'], method: 'm', duration_s: 1,
      },
    };
    const t = formatTable(report);
    expect(t).toMatch(/^ring\s+descs\s+agents/);
    expect(t).toMatch(/split\s+1\s+1\s+chain\s+11\.0 \[10\.0–12\.0\]/);
    expect(t).toMatch(/MISSED\s+0\.40/); // plain JS/C column: per-round 0.4, 0.4
    expect(t).toMatch(/plain JS\/C: the C algorithm hand-written in plain JS/);
    expect(t).toMatch(/busy/);
  });

  it('--sides: per-side busy ns are medians over the rounds that have them, shown in their own table', () => {
    const sides = (p: number, r: number, d: number) => ({ post_ns: p, reclaim_ns: r, device_ns: d });
    const rounds = [rv(1, 10, 20), rv(2, 12, 18), rv(3, 11, 19)];
    rounds[0]!.sides = { js: sides(30, 10, 50), c: sides(15, 20, 25) };
    rounds[1]!.sides = { js: sides(40, 12, 40), c: sides(17, 22, 27) };
    rounds[2]!.sides = { js: sides(20, 11, 60), c: sides(16, 21, 26) };
    const row = buildRow({ ring: 'split', descs: 3, agents: 2 }, rounds);
    expect(row.sides).toEqual({ js: sides(30, 11, 50), c: sides(16, 21, 26) });
    expect(buildRow({ ring: 'split', descs: 3, agents: 2 }, [rv(1, 10, 20)]).sides).toBeNull();
    const meta = {
      tool: 't', date: 'd', node: 'v20', v8: 'x', platform: 'linux', arch: 'x64', cpu_model: 'cpu', cpus: 2,
      loadavg_per_round: [[0.1, 0.1, 0.1]], rounds: 3, measure: DEFAULT_MEASURE, queue_size: 256, batch: 64,
      c_compiler: 'cc', c_flags: ['-O2'], method: 'm', duration_s: 1,
    };
    const t = formatTable({ rows: [row], meta });
    // JS: 30 + 11 + 50 = 91 busy vs 1000 / 11 = 90.9 elapsed; C: 63 vs 1000 / 19 = 52.6
    expect(t).toMatch(/busy ns per chain of each side/);
    expect(t).toMatch(/split\s+3\s+30\.0\s+11\.0\s+50\.0\s+91\.0\s+90\.9\s+16\.0\s+21\.0\s+26\.0\s+63\.0\s+52\.6/);
    expect(formatTable({ rows: [buildRow({ ring: 'split', descs: 3, agents: 2 }, [rv(1, 10, 20)])], meta })).not.toMatch(/busy ns per chain/);
  });

  it('runs a tiny two-agent benchmark with --sides in fresh processes: JS and C busy times per side', async () => {
    const report = await runQueueBench({ cells: expandCells(['split'], [3], [2]), rounds: 1, measure: { ...TINY_MEASURE, sides: true } });
    const s = report.rows[0]!.sides;
    expect(s).not.toBeNull();
    for (const side of [s!.js, s!.c]) for (const v of [side.post_ns, side.reclaim_ns, side.device_ns]) expect(v).toBeGreaterThan(0);
    expect(report.rows[0]!.rounds[0]!.sides).toBeDefined();
    // split with two agents also gets the plain-JS yardstick (its own device worker)
    expect(report.rows[0]!.plain_ratio_vs_c).toBeGreaterThan(0);
  }, 120_000);

  it('runs a tiny benchmark in fresh processes and returns a well-formed report', async () => {
    const cells = expandCells(['split', 'packed'], [3], [1]);
    const report = await runQueueBench({ cells, rounds: 1, measure: TINY_MEASURE });
    expect(report.rows).toHaveLength(2);
    for (const r of report.rows) {
      expect(r.mchains_per_s).toBeGreaterThan(0);
      expect(r.c_mchains_per_s).toBeGreaterThan(0);
      expect(r.ratio_vs_c).toBeGreaterThan(0);
      expect(r.rounds).toHaveLength(1);
      // the plain-JS yardstick runs in the same round for split cells only (one and two agents)
      if (r.ring === 'split') expect(r.plain_ratio_vs_c).toBeGreaterThan(0);
      else expect(r.plain_ratio_vs_c).toBeNull();
    }
    expect(report.meta.node).toBe(process.version);
    expect(report.meta.loadavg_per_round).toHaveLength(1);
    expect(report.meta.rounds).toBe(1);
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  }, 120_000);
});
