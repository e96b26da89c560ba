/**
 * Per-queue specialisation (src/queue/specialize.ts): each queue's fast loops are its own compiled
 * copy; several queues in one process stay independent; where code generation from strings is
 * disallowed the same loops run unspecialised.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { specialize, specializationActive, specializationSelfTest } from '../../src/queue/specialize.js';
import { BenchDevice, BenchDriver } from '../../src/bench/queue-agents.js';
import { makeDeviceQueue, makeDriverQueue } from '../../src/bench/queue-impl.js';
import { BENCH_BATCH, BENCH_MEM_SIZE, type ChainDescs, type RingKind } from '../../src/bench/queue-layout.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const K = 7;
class Holder {
  constructor(readonly base: number) {}
  static make_adder(h: Holder): (x: number) => number {
    const b = h.base;
    return (x: number): number => x + b + K;
  }
}

describe('specialize()', () => {
  it('compiles a fresh copy per call: distinct functions, each with its own captures and the constants written in', () => {
    expect(specializationActive()).toBe(true);
    const a = specialize(Holder.make_adder, { K }, new Holder(100));
    const b = specialize(Holder.make_adder, { K }, new Holder(200));
    expect(a).not.toBe(b);
    expect(a(1)).toBe(108);
    expect(b(1)).toBe(208);
    // The copy is compiled from the factory's text: a constant left out is not in scope there.
    const c = specialize(Holder.make_adder, {}, new Holder(0));
    expect(() => c(1)).toThrow(ReferenceError);
  });

  it('passes its self-test here (names in compiled text match what callers pass)', () => {
    expect(specializationSelfTest()).toBe(true);
    expect(specializationActive()).toBe(true);
  });

  it('accepts plain functions and arrow factories', () => {
    function plain(n: number): () => number {
      return () => n * 2;
    }
    expect(specialize(plain, {}, 21)()).toBe(42);
    expect(specialize((n: number) => () => n + 1, {}, 1)()).toBe(2);
  });

  it('refuses constants that are not identifiers with finite numbers', () => {
    expect(() => specialize(Holder.make_adder, { 'K; evil()': 1 }, new Holder(0))).toThrow(TypeError);
    expect(() => specialize(Holder.make_adder, { K: Number.NaN }, new Holder(0))).toThrow(TypeError);
    expect(() => specialize(Holder.make_adder, { K: '1' as unknown as number }, new Holder(0))).toThrow(TypeError);
  });
});

/** Two driver/device pairs on separate memories, used alternately: every chain of each completes. */
function interleave(ring: RingKind, descs: ChainDescs, batches: number): void {
  const pairs = [0, 1].map(() => {
    const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
    const d = makeDriverQueue(ring, guest);
    const v = makeDeviceQueue(ring, guest);
    return { d, v, driver: new BenchDriver(d.drv, guest, descs, 'visit'), device: new BenchDevice(v.dq, v.space, descs, 'visit') };
  });
  for (let i = 0; i < batches; i++) {
    for (const p of pairs) {
      expect(p.driver.post(BENCH_BATCH)).toBe(BENCH_BATCH);
      expect(p.device.batch()).toBe(BENCH_BATCH);
      expect(p.driver.reclaim()).toBe(BENCH_BATCH);
    }
  }
  for (const p of pairs) {
    expect(p.driver.badStatus).toBe(0);
    expect(p.v.sink.errors).toEqual([]);
    expect(p.d.sink.errors).toEqual([]);
  }
  // Each queue runs its own copy of the loops.
  const fn = (q: unknown, name: string): unknown => (q as Record<string, unknown>)[name];
  expect(fn(pairs[0]!.v.dq, 'visitFastFn')).toBeTypeOf('function');
  expect(fn(pairs[0]!.v.dq, 'visitFastFn')).not.toBe(fn(pairs[1]!.v.dq, 'visitFastFn'));
  expect(fn(pairs[0]!.d.drv, 'addEachFastFn')).not.toBe(fn(pairs[1]!.d.drv, 'addEachFastFn'));
  expect(fn(pairs[0]!.d.drv, 'collectEachFastFn')).not.toBe(fn(pairs[1]!.d.drv, 'collectEachFastFn'));
}

describe('specialised queues side by side', () => {
  for (const ring of ['split', 'packed'] as const) {
    for (const descs of [1, 3] as const) {
      it(`${ring}, ${descs} descriptor(s): two queues used alternately stay independent`, () => interleave(ring, descs, 40));
    }
  }

  it('without code generation from strings the same loops run unspecialised (said once on virtiokit:queue)', () => {
    for (const ring of ['split', 'packed']) {
      const r = spawnSync(process.execPath, ['--disallow-code-generation-from-strings', '--import', 'tsx', 'src/bench/queue-fixed-main.ts', ring, '3', '20', 'visit'], {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, DEBUG: 'virtiokit:queue' },
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain(`${20 * BENCH_BATCH} chains (visit API)`);
      expect(r.stderr.match(/code generation from strings is disallowed/g)).toHaveLength(1);
    }
  });

  it('bundled and minified (module constants renamed), the self-test falls back and the queues still work', async () => {
    // esbuild comes with tsx/vitest (dev dependencies); it stands in for a user's bundler here.
    const esbuild = await import('esbuild');
    const dir = mkdtempSync(join(tmpdir(), 'vk-minify-'));
    try {
      const out = join(dir, 'q.mjs');
      esbuild.buildSync({
        entryPoints: [join(ROOT, 'src/bench/queue-fixed-main.ts')],
        bundle: true,
        minify: true,
        platform: 'node',
        format: 'esm',
        outfile: out,
        banner: { js: 'import { createRequire } from "module"; const require = createRequire(import.meta.url);' },
        logLevel: 'error',
      });
      for (const ring of ['split', 'packed']) {
        const r = spawnSync(process.execPath, [out, ring, '3', '20', 'visit'], { encoding: 'utf8', env: { ...process.env, DEBUG: 'virtiokit:queue' }, timeout: 60_000 });
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toContain(`${20 * BENCH_BATCH} chains (visit API)`);
        expect(r.stderr).toMatch(/does not use the names it was written with/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
