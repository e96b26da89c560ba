/** Runs the compiled C reference program for one cell and parses its JSON output. */
import { execFile } from 'node:child_process';
import { VirtioError } from '../errors.js';
import type { QueueCell } from './queue-layout.js';
import { checkMeasureOptions, type MeasureOptions, type Measurement, type SideTimes } from './measure.js';

/** What the C program prints on success. */
export interface CBenchOutput {
  ok: true;
  ring: 'split' | 'packed';
  descs: number;
  agents: number;
  chains: number;
  checksum: number;
  mchains_per_s: number[];
  /** With `--sides 1` (two agents): busy ns per chain of each side. */
  sides?: { post_ns: number; reclaim_ns: number; device_ns: number };
}

/** True when `x` is a positive finite number. */
function positive(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0;
}

/**
 * Parse and validate the C program's stdout. `sides`: the busy-time figures were asked for and
 * must be there. Throws VirtioError('PROTOCOL') when malformed.
 */
export function parseCBenchOutput(stdout: string, cell: QueueCell, reps: number, sides = false): CBenchOutput {
  let v: unknown;
  try {
    v = JSON.parse(stdout.trim());
  } catch {
    throw new VirtioError('PROTOCOL', `C reference printed something that is not JSON: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  const o = v as Partial<CBenchOutput> & { ok?: unknown; error?: unknown };
  if (typeof o !== 'object' || o === null) throw new VirtioError('PROTOCOL', 'C reference output is not an object');
  if (o.ok !== true) throw new VirtioError('INTERNAL', `C reference failed: ${typeof o.error === 'string' ? o.error : 'no reason given'}`);
  const r = o.mchains_per_s;
  if (o.ring !== cell.ring || o.descs !== cell.descs || o.agents !== cell.agents || !Array.isArray(r) || r.length !== reps || !r.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0) || typeof o.chains !== 'number' || !(o.chains > 0)) {
    throw new VirtioError('PROTOCOL', `C reference output does not match the request (${cell.ring}, ${cell.descs} descs, ${cell.agents} agents, ${reps} reps): ${stdout.trim().slice(0, 300)}`);
  }
  if (sides) {
    const s = o.sides as Partial<NonNullable<CBenchOutput['sides']>> | undefined;
    if (typeof s !== 'object' || s === null || !positive(s.post_ns) || !positive(s.reclaim_ns) || !positive(s.device_ns)) {
      throw new VirtioError('PROTOCOL', `C reference output lacks the busy-time figures asked for with --sides 1: ${stdout.trim().slice(0, 300)}`);
    }
  }
  return o as CBenchOutput;
}

/** Arguments for the C program. */
export function cBenchArgs(cell: QueueCell, m: MeasureOptions): string[] {
  const a = ['--ring', cell.ring, '--descs', String(cell.descs), '--agents', String(cell.agents), '--ms', String(m.ms), '--warmup-ms', String(m.warmupMs), '--reps', String(m.reps), '--timeout-ms', String(m.timeoutMs)];
  if (wantsSides(cell, m)) a.push('--sides', '1');
  return a;
}

/** Busy times are measured for two-agent cells when asked for. */
export function wantsSides(cell: QueueCell, m: MeasureOptions): boolean {
  return m.sides === true && cell.agents === 2;
}

/** Run the C reference for one cell. */
export function runCBench(binary: string, cell: QueueCell, m: MeasureOptions): Promise<Measurement> {
  checkMeasureOptions(m);
  const limit = m.warmupMs + m.reps * (m.ms + m.timeoutMs) + 10_000;
  return new Promise((resolve, reject) => {
    execFile(binary, cBenchArgs(cell, m), { timeout: limit, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as { code?: unknown }).code;
        if (code === 'ENOENT') {
          reject(new VirtioError('NATIVE_UNAVAILABLE', `C reference ${binary} is missing`, { cause: err }));
          return;
        }
        let why = stderr.trim();
        try {
          const o = JSON.parse(stdout) as { error?: unknown };
          if (typeof o.error === 'string') why = o.error;
        } catch {
          // not JSON: keep stderr
        }
        const kind = code === 3 || err.killed ? 'TIMEOUT' : 'INTERNAL';
        reject(new VirtioError(kind, `C reference (${cell.ring}, ${cell.descs} descs, ${cell.agents} agents) failed${typeof code === 'number' ? ` with exit code ${code}` : ''}: ${why || err.message}`, { cause: err }));
        return;
      }
      try {
        const o = parseCBenchOutput(stdout, cell, m.reps, wantsSides(cell, m));
        const res: Measurement = { mchainsPerS: o.mchains_per_s, chains: o.chains };
        if (o.sides !== undefined) {
          const st: SideTimes = { postNs: o.sides.post_ns, reclaimNs: o.sides.reclaim_ns, deviceNs: o.sides.device_ns };
          res.sides = st;
        }
        resolve(res);
      } catch (e) {
        reject(e);
      }
    });
  });
}
