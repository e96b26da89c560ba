/**
 * Builds the C reference program of the queue benchmark (bench/c/queue_bench.c) with the system
 * C compiler (`$CC`, else `cc`) at `-O2`, into a cache directory, once per source/compiler/flags.
 *
 * Cache directory: `$VIRTIOKIT_CACHE_DIR`, else `node_modules/.cache/virtiokit` of the package
 * when `node_modules` exists there, else `<os.tmpdir()>/virtiokit-cache`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';

const log = logger('bench');

/** Compiler flags (perf-limits.md compares against gcc -O2). */
export const C_FLAGS: readonly string[] = ['-O2', '-pthread'];

/** Package root: src/bench/ and dist/bench/ are both two levels below it. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Path of the C reference source. */
export const C_SOURCE = join(PACKAGE_ROOT, 'bench', 'c', 'queue_bench.c');

/** A built C reference program. */
export interface CBenchBinary {
  /** Executable path. */
  path: string;
  /** Compiler command used. */
  compiler: string;
  /** First line of `compiler --version`. */
  compilerVersion: string;
  /** True when this call compiled it (false: found in the cache). */
  built: boolean;
}

/** Where compiled programs are cached (see the module comment). */
export function defaultCacheDir(): string {
  const env = process.env['VIRTIOKIT_CACHE_DIR'];
  if (env !== undefined && env !== '') return env;
  const nm = join(PACKAGE_ROOT, 'node_modules');
  if (existsSync(nm)) return join(nm, '.cache', 'virtiokit');
  return join(tmpdir(), 'virtiokit-cache');
}

interface ExecResult {
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

function noCompiler(cc: string): VirtioError {
  return new VirtioError(
    'NATIVE_UNAVAILABLE',
    `no C compiler: '${cc}' was not found. The queue benchmark compiles its C reference (${C_SOURCE}) at run time; install gcc or clang (Debian/Ubuntu: apt-get install gcc) or point CC at a compiler`,
  );
}

/** `cc --version` first line; throws NATIVE_UNAVAILABLE when the compiler is missing. */
export async function compilerVersion(cc: string): Promise<string> {
  try {
    const r = await run(cc, ['--version'], 30_000);
    return r.stdout.split('\n')[0]?.trim() ?? cc;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw noCompiler(cc);
    throw new VirtioError('NATIVE_UNAVAILABLE', `C compiler '${cc}' does not run: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Compile the C reference unless a build of the same source, compiler and flags is cached.
 * @throws VirtioError NATIVE_UNAVAILABLE (no compiler), NATIVE_ERROR (compile failed), INTERNAL (source missing)
 */
export async function buildCBench(opts: { cacheDir?: string; cc?: string } = {}): Promise<CBenchBinary> {
  const cc = opts.cc ?? (process.env['CC'] !== undefined && process.env['CC'] !== '' ? process.env['CC'] : 'cc');
  let source: Buffer;
  try {
    source = await readFile(C_SOURCE);
  } catch (e) {
    throw new VirtioError('INTERNAL', `the C reference source ${C_SOURCE} is missing (is the package complete?)`, { cause: e });
  }
  const version = await compilerVersion(cc);
  const hash = createHash('sha256').update(source).update('\0').update(cc).update('\0').update(version).update('\0').update(C_FLAGS.join(' ')).digest('hex').slice(0, 16);
  const dir = opts.cacheDir ?? defaultCacheDir();
  const path = join(dir, `queue_bench-${hash}`);
  if (existsSync(path)) return { path, compiler: cc, compilerVersion: version, built: false };
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  log('compiling %s with %s %s', C_SOURCE, cc, C_FLAGS.join(' '));
  try {
    await run(cc, [...C_FLAGS, '-o', tmp, C_SOURCE], 120_000);
  } catch (e) {
    await rm(tmp, { force: true });
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw noCompiler(cc);
    const stderr = String((e as { stderr?: unknown }).stderr ?? '').trim();
    throw new VirtioError('NATIVE_ERROR', `compiling ${C_SOURCE} with ${cc} failed: ${stderr || (e as Error).message}`, { cause: e });
  }
  await rename(tmp, path);
  return { path, compiler: cc, compilerVersion: version, built: true };
}
