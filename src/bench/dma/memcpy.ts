/**
 * The C memcpy reference of the DMA benchmark (bench/c/memcpy_bench.c): built with `$CC` (else
 * `cc`) `-O2` into the benchmark cache on first use (keyed by source, compiler and flags), run per
 * round next to the bounce-pool copy measurement.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { VirtioError } from '../../errors.js';
import { logger } from '../../log.js';
import { compilerVersion, defaultCacheDir, PACKAGE_ROOT } from '../c-build.js';

const log = logger('bench');

/** Source of the reference. */
export const MEMCPY_SOURCE = join(PACKAGE_ROOT, 'bench', 'c', 'memcpy_bench.c');
/** Flags (perf-limits.md §2 measured libc memcpy at -O2). */
export const MEMCPY_FLAGS: readonly string[] = ['-O2'];

/** A built reference. */
export interface MemcpyBinary {
  path: string;
  compiler: string;
  compilerVersion: string;
  built: boolean;
}

function exec(cmd: string, args: readonly string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * Compile bench/c/memcpy_bench.c unless cached.
 * @throws VirtioError NATIVE_UNAVAILABLE when there is no C compiler (the message says how to get one),
 *   NATIVE_ERROR when compiling fails, INTERNAL when the source is missing
 */
export async function buildMemcpyBench(opts: { cacheDir?: string; cc?: string } = {}): Promise<MemcpyBinary> {
  const cc = opts.cc ?? (process.env['CC'] !== undefined && process.env['CC'] !== '' ? process.env['CC'] : 'cc');
  let source: Buffer;
  try {
    source = await readFile(MEMCPY_SOURCE);
  } catch (e) {
    throw new VirtioError('INTERNAL', `the C memcpy reference ${MEMCPY_SOURCE} is missing (is the package complete?)`, { cause: e });
  }
  let version: string;
  try {
    version = await compilerVersion(cc);
  } catch (e) {
    throw new VirtioError('NATIVE_UNAVAILABLE', `no usable C compiler '${cc}': the DMA benchmark compiles its memcpy reference (${MEMCPY_SOURCE}) with cc -O2 to compare bounce copies against; install gcc or clang (Debian/Ubuntu: apt-get install gcc) or set CC`, { cause: e });
  }
  const hash = createHash('sha256').update(source).update('\0').update(cc).update('\0').update(version).update('\0').update(MEMCPY_FLAGS.join(' ')).digest('hex').slice(0, 16);
  const dir = opts.cacheDir ?? defaultCacheDir();
  const path = join(dir, `memcpy_bench-${hash}`);
  if (existsSync(path)) return { path, compiler: cc, compilerVersion: version, built: false };
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  log('compiling %s with %s %s', MEMCPY_SOURCE, cc, MEMCPY_FLAGS.join(' '));
  try {
    await exec(cc, [...MEMCPY_FLAGS, '-o', tmp, MEMCPY_SOURCE], 120_000);
  } catch (e) {
    await rm(tmp, { force: true });
    const stderr = String((e as { stderr?: unknown }).stderr ?? '').trim();
    throw new VirtioError('NATIVE_ERROR', `compiling ${MEMCPY_SOURCE} with ${cc} failed: ${stderr || (e as Error).message}`, { cause: e });
  }
  await rename(tmp, path);
  return { path, compiler: cc, compilerVersion: version, built: true };
}

/** GB/s per repetition, by size. */
export type CopyRates = Record<number, number[]>;

/** Parse the program's JSON output. @throws VirtioError PROTOCOL when malformed */
export function parseMemcpyOutput(stdout: string, sizes: readonly number[], reps: number): CopyRates {
  let v: unknown;
  try {
    v = JSON.parse(stdout.trim());
  } catch {
    throw new VirtioError('PROTOCOL', `memcpy reference printed something that is not JSON: ${JSON.stringify(stdout.slice(0, 200))}`);
  }
  const o = v as { ok?: unknown; error?: unknown; results?: unknown };
  if (o?.ok !== true) throw new VirtioError('INTERNAL', `memcpy reference failed: ${typeof o?.error === 'string' ? o.error : 'no reason given'}`);
  const out: CopyRates = {};
  const res = Array.isArray(o.results) ? (o.results as Array<{ size?: unknown; gbps?: unknown }>) : [];
  for (const s of sizes) {
    const r = res.find((x) => x.size === s);
    const g = r?.gbps;
    if (!Array.isArray(g) || g.length !== reps || !g.every((x) => typeof x === 'number' && x > 0 && Number.isFinite(x))) {
      throw new VirtioError('PROTOCOL', `memcpy reference output lacks ${reps} positive rates for size ${s}: ${stdout.trim().slice(0, 300)}`);
    }
    out[s] = g as number[];
  }
  return out;
}

/** Run the reference for `sizes`. */
export async function runMemcpyBench(binary: string, sizes: readonly number[], ms: number, reps: number): Promise<CopyRates> {
  try {
    const r = await exec(binary, ['--sizes', sizes.join(','), '--ms', String(ms), '--reps', String(reps)], 60_000 + sizes.length * reps * ms * 2);
    return parseMemcpyOutput(r.stdout, sizes, reps);
  } catch (e) {
    if (e instanceof VirtioError) throw e;
    const out = String((e as { stdout?: unknown }).stdout ?? '');
    if (out.includes('"ok":false')) return parseMemcpyOutput(out, sizes, reps);
    throw new VirtioError('INTERNAL', `running the memcpy reference ${binary} failed: ${(e as Error).message}`, { cause: e });
  }
}
