/**
 * The queue benchmark (`virtiokit bench queue`): device-side throughput of the library's split and
 * packed queues against the project's C reference, for 1- and 3-descriptor chains, in one thread
 * and with two agents. Rounds run each cell in a fresh Node process (JS and C back to back), and
 * the report gives median [min–max] over rounds with JS/C ratios taken within each round.
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { VirtioError, type VirtioErrorCode } from '../errors.js';
import { logger } from '../log.js';
import { buildCBench, C_FLAGS } from './c-build.js';
import { nodeArgsFor, siblingModule } from './launch.js';
import { type CellRound, type CellRoundReply, type CellRoundRequest, runCellRound } from './queue-cell.js';
import { type Agents, BENCH_BATCH, BENCH_QUEUE_SIZE, type ChainDescs, type QueueCell, type RingKind } from './queue-layout.js';
import { checkMeasureOptions, type MeasureOptions } from './measure.js';
import { buildRow, type QueueBenchReport, type RoundValue, sidesNs } from './queue-report.js';
import { best } from './stats.js';
import type { QueueApi } from './queue-agents.js';

const log = logger('bench');

/** Options of {@link runQueueBench}. */
export interface QueueBenchOptions {
  /** Cells to measure, in report order. */
  cells: QueueCell[];
  /** Rounds (each: every cell once). */
  rounds: number;
  measure: MeasureOptions;
  /** Run each round of each cell in a fresh Node process (default true). */
  freshProcess?: boolean;
  /** Cache directory for the compiled C reference. */
  cacheDir?: string;
  /** C compiler command (default `$CC` or `cc`). */
  cc?: string;
  /** Queue API style for the JS side (default `batch`: batch members when the queues have them). */
  api?: QueueApi;
  /** Progress lines (for stderr). */
  progress?: (line: string) => void;
}

/** Default run: 5 rounds × 8 cells, about 50 s on an idle 2-core machine. */
export const DEFAULT_MEASURE: MeasureOptions = { ms: 120, warmupMs: 150, reps: 3, timeoutMs: 5000 };
export const DEFAULT_ROUNDS = 5;
/** `--quick`: 2 rounds of short repetitions, about 10 s. */
export const QUICK_MEASURE: MeasureOptions = { ms: 40, warmupMs: 60, reps: 2, timeoutMs: 5000 };
export const QUICK_ROUNDS = 2;

/** All cells for the chosen ring(s), chain length(s) and agent count(s), in report order. */
export function expandCells(rings: readonly RingKind[], descs: readonly ChainDescs[], agents: readonly Agents[]): QueueCell[] {
  const out: QueueCell[] = [];
  for (const ring of rings) for (const d of descs) for (const a of agents) out.push({ ring, descs: d, agents: a });
  return out;
}

/** Run one round of one cell in a fresh Node process. */
function runCellInProcess(req: CellRoundRequest): Promise<CellRound> {
  const url = siblingModule('queue-cell-main', import.meta.url);
  const m = req.measure;
  const limitMs = 2 * (m.warmupMs + m.reps * m.ms) + 2 * m.timeoutMs + 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgsFor(url, [JSON.stringify(req)]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new VirtioError('INTERNAL', `cannot start a benchmark process: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      let reply: CellRoundReply | undefined;
      try {
        reply = JSON.parse(line) as CellRoundReply;
      } catch {
        reply = undefined;
      }
      if (reply === undefined) {
        const why = signal === 'SIGKILL' ? `killed after ${limitMs} ms` : `exit code ${code}${signal ? `, signal ${signal}` : ''}`;
        reject(new VirtioError('INTERNAL', `benchmark process failed (${why}): ${(err.trim().split('\n').pop() ?? '') || 'no output'}`));
      } else if (reply.ok) {
        resolve(reply.result);
      } else {
        reject(new VirtioError(reply.code as VirtioErrorCode, reply.message));
      }
    });
  });
}

/** Run the benchmark and build the report. Throws VirtioError on a failure of either side. */
export async function runQueueBench(o: QueueBenchOptions): Promise<QueueBenchReport> {
  checkMeasureOptions(o.measure);
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 100)) throw new VirtioError('INVALID_ARGUMENT', `rounds must be an integer in 1..100 (got ${o.rounds})`);
  if (o.cells.length === 0) throw new VirtioError('INVALID_ARGUMENT', 'no benchmark cells selected');
  const progress = o.progress ?? ((): void => undefined);
  const t0 = Date.now();
  const buildOpts: { cacheDir?: string; cc?: string } = {};
  if (o.cacheDir !== undefined) buildOpts.cacheDir = o.cacheDir;
  if (o.cc !== undefined) buildOpts.cc = o.cc;
  const bin = await buildCBench(buildOpts);
  if (bin.built) progress(`compiled the C reference: ${bin.path}`);
  const fresh = o.freshProcess ?? true;
  const perCell: RoundValue[][] = o.cells.map(() => []);
  const loads: number[][] = [];
  for (let r = 0; r < o.rounds; r++) {
    loads.push(loadavg().map((x) => Math.round(x * 100) / 100));
    for (let i = 0; i < o.cells.length; i++) {
      const cell = o.cells[i]!;
      const req: CellRoundRequest = { cell, measure: o.measure, cBinary: bin.path, cFirst: (r + i) % 2 === 1, api: o.api ?? 'visit' };
      progress(`round ${r + 1}/${o.rounds}: ${cell.ring}, ${cell.descs} desc, ${cell.agents} agent${cell.agents > 1 ? 's' : ''}`);
      const res = fresh ? await runCellInProcess(req) : await runCellRound(cell, o.measure, bin.path, req.cFirst, req.api);
      const js = best(res.js.mchainsPerS);
      const c = best(res.c.mchainsPerS);
      log('round %d %o: js %d c %d', r, cell, js, c);
      const plain = res.plain !== undefined ? best(res.plain.mchainsPerS) : null;
      const rv: RoundValue = {
        round: r + 1,
        mchains_per_s: js,
        c_mchains_per_s: c,
        ratio_vs_c: js / c,
        js_reps: res.js.mchainsPerS,
        c_reps: res.c.mchainsPerS,
        api: res.js.api ?? 'chain',
        plain_mchains_per_s: plain,
        plain_ratio_vs_c: plain === null ? null : plain / c,
      };
      if (res.js.sides !== undefined && res.c.sides !== undefined) rv.sides = { js: sidesNs(res.js.sides), c: sidesNs(res.c.sides) };
      perCell[i]!.push(rv);
    }
  }
  const cpuList = cpus();
  return {
    rows: o.cells.map((cell, i) => buildRow(cell, perCell[i]!)),
    meta: {
      tool: 'virtiokit bench queue',
      date: new Date().toISOString(),
      node: process.version,
      v8: process.versions.v8,
      platform: process.platform,
      arch: process.arch,
      cpu_model: cpuList[0]?.model.trim() ?? 'unknown',
      cpus: cpuList.length,
      loadavg_per_round: loads,
      rounds: o.rounds,
      measure: o.measure,
      queue_size: BENCH_QUEUE_SIZE,
      batch: BENCH_BATCH,
      c_compiler: bin.compilerVersion,
      c_flags: [...C_FLAGS],
      method: fresh
        ? 'each round runs every cell in a fresh node process: JS (library queues) and C reference back to back, warm-up then timed repetitions; a round value is the best repetition; JS/C is taken per round; rows give median [min-max] over rounds'
        : 'in-process rounds (no fresh processes): JS and C back to back per cell; best repetition per round; JS/C per round; median [min-max] over rounds',
      duration_s: (Date.now() - t0) / 1000,
    },
  };
}
