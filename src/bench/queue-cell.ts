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
import { runPlainSplit } from './queue-plain.js';
import { runPlainTwoAgents } from './queue-plain-two.js';

/** Run the JS side of a cell in this process. */
export async function runJsCell(cell: QueueCell, m: MeasureOptions, api: QueueApi = 'visit'): Promise<Measurement> {
  return cell.agents === 1 ? runSingleThread(cell.ring, cell.descs, m, api) : runTwoAgents(cell.ring, cell.descs, m, api);
}

/** JS and C results of one round of one cell. */
export interface CellRound {
  js: Measurement;
  c: Measurement;
  /** The plain-JS yardstick (queue-plain.ts; two agents: queue-plain-two.ts), measured for split cells only. */
  plain?: Measurement;
}

/** Cells that also get the plain-JS yardstick: split rings (it has no packed ring), one or two agents. */
export function hasPlain(cell: QueueCell): boolean {
  return cell.ring === 'split';
}

/**
 * Run JS and C for one cell. `cFirst` alternates the order between rounds so neither side always
 * runs right after process start-up.
 */
export async function runCellRound(cell: QueueCell, m: MeasureOptions, cBinary: string, cFirst: boolean, api: QueueApi = 'visit'): Promise<CellRound> {
  let js: Measurement;
  let c: Measurement;
  if (cFirst) {
    c = await runCBench(cBinary, cell, m);
    js = await runJsCell(cell, m, api);
  } else {
    js = await runJsCell(cell, m, api);
    c = await runCBench(cBinary, cell, m);
  }
  if (!hasPlain(cell)) return { js, c };
  // The yardstick takes no busy-time figures (sides): it is read against the untimed rates.
  const pm: MeasureOptions = { ms: m.ms, warmupMs: m.warmupMs, reps: m.reps, timeoutMs: m.timeoutMs };
  return { js, c, plain: cell.agents === 1 ? runPlainSplit(cell.descs, pm) : await runPlainTwoAgents(cell.descs, pm) };
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
