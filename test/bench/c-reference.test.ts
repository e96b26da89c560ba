import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCBench, type CBenchBinary } from '../../src/bench/c-build.js';
import { cBenchArgs, parseCBenchOutput, runCBench } from '../../src/bench/c-run.js';
import { expandCells } from '../../src/bench/queue-bench.js';
import { TINY_MEASURE } from '../../src/bench/measure.js';
import { isVirtioError } from '../../src/errors.js';

let cacheDir: string;
let bin: CBenchBinary;

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), 'virtiokit-cbench-'));
  bin = await buildCBench({ cacheDir });
});
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function exec(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('C reference program (bench/c/queue_bench.c)', () => {
  it('builds with cc -O2 into the cache dir and is reused on the second call', async () => {
    expect(bin.built).toBe(true);
    expect(bin.path.startsWith(cacheDir)).toBe(true);
    expect(bin.compilerVersion.length).toBeGreaterThan(0);
    const again = await buildCBench({ cacheDir });
    expect(again.built).toBe(false);
    expect(again.path).toBe(bin.path);
  });

  it.each(expandCells(['split', 'packed'], [1, 3], [1, 2]))('runs %o and prints parseable JSON with positive rates', async (cell) => {
    const m = await runCBench(bin.path, cell, TINY_MEASURE);
    expect(m.mchainsPerS).toHaveLength(TINY_MEASURE.reps);
    for (const v of m.mchainsPerS) expect(v).toBeGreaterThan(0);
    expect(m.chains).toBeGreaterThan(0);
  });

  it('reads the blk header in 3-descriptor mode (checksum of sectors is non-zero)', async () => {
    const r = await exec(bin.path, cBenchArgs({ ring: 'split', descs: 3, agents: 1 }, TINY_MEASURE));
    expect(r.code).toBe(0);
    const o = parseCBenchOutput(r.stdout, { ring: 'split', descs: 3, agents: 1 }, TINY_MEASURE.reps);
    expect(o.checksum).toBeGreaterThan(0);
  });

  it.each(['split', 'packed'] as const)('--sides 1 (two agents, %s): busy ns per chain of each side, over the timed repetitions', async (ring) => {
    const cell = { ring, descs: 3 as const, agents: 2 as const };
    const m = await runCBench(bin.path, cell, { ...TINY_MEASURE, sides: true });
    expect(m.sides).toBeDefined();
    for (const v of [m.sides!.postNs, m.sides!.reclaimNs, m.sides!.deviceNs]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    // Without the flag the program prints no such figures.
    const plain = await runCBench(bin.path, cell, TINY_MEASURE);
    expect(plain.sides).toBeUndefined();
    expect(cBenchArgs({ ring, descs: 3, agents: 1 }, { ...TINY_MEASURE, sides: true })).not.toContain('--sides');
  });

  it('rejects bad arguments with exit code 2', async () => {
    for (const args of [['--ring', 'split', '--descs', '3', '--agents', '1', '--sides', '1'], ['--ring', 'split', '--descs', '3', '--agents', '2', '--sides', 'yes'], ['--ring', 'ring'], ['--ring', 'split', '--descs', '2', '--agents', '1'], ['--bogus', '1'], ['--ring']]) {
      const r = await exec(bin.path, args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/usage/);
    }
  });

  it('parseCBenchOutput refuses output that does not match the request', () => {
    const good = '{"ok":true,"ring":"split","descs":1,"agents":1,"chains":10,"checksum":0,"mchains_per_s":[1.5]}';
    expect(parseCBenchOutput(good, { ring: 'split', descs: 1, agents: 1 }, 1).mchains_per_s).toEqual([1.5]);
    expect(() => parseCBenchOutput(good, { ring: 'packed', descs: 1, agents: 1 }, 1)).toThrow(/does not match/);
    expect(() => parseCBenchOutput(good, { ring: 'split', descs: 1, agents: 1 }, 2)).toThrow(/does not match/);
    expect(() => parseCBenchOutput('not json', { ring: 'split', descs: 1, agents: 1 }, 1)).toThrow(/not JSON/);
    expect(() => parseCBenchOutput('{"ok":false,"error":"descriptor chain loops"}', { ring: 'split', descs: 1, agents: 1 }, 1)).toThrow(/descriptor chain loops/);
    expect(() => parseCBenchOutput(good.replace('1.5', '0'), { ring: 'split', descs: 1, agents: 1 }, 1)).toThrow(/does not match/);
    // --sides asked for: the figures must be there and positive.
    const two = '{"ok":true,"ring":"split","descs":3,"agents":2,"chains":10,"checksum":0,"mchains_per_s":[1.5]';
    const cell = { ring: 'split', descs: 3, agents: 2 } as const;
    expect(parseCBenchOutput(`${two},"sides":{"post_ns":20,"reclaim_ns":21.5,"device_ns":30}}`, cell, 1, true).sides).toEqual({ post_ns: 20, reclaim_ns: 21.5, device_ns: 30 });
    expect(() => parseCBenchOutput(`${two}}`, cell, 1, true)).toThrow(/lacks the busy-time figures/);
    expect(() => parseCBenchOutput(`${two},"sides":{"post_ns":20,"reclaim_ns":0,"device_ns":30}}`, cell, 1, true)).toThrow(/lacks the busy-time figures/);
  });

  it('reports a missing C compiler clearly (NATIVE_UNAVAILABLE)', async () => {
    const err = await buildCBench({ cacheDir, cc: '/nonexistent/virtiokit-no-cc' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVirtioError(err, 'NATIVE_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(/no C compiler.*install gcc or clang/);
  });
});
