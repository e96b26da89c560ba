/**
 * Bounce-copy bandwidth: what the driver's {@link BouncePool} achieves when bouncing buffers the
 * way the SWIOTLB request path does (src/driver/virtqueue.ts): {@link POOL_BATCH} one-segment
 * to-device lists mapped with `queueMapSg` (slot search + a queued copy record each), one `flush`
 * (one native `copyBatch` call for all copies — as `kick` does), then `queueUnmapSg` each and one
 * `flush` (release — as the interrupt handler does); and the bare native `copyBatch` call on the
 * same buffers, one buffer per call. Same rotation as the C reference (bench/c/memcpy_bench.c):
 * buffer i of guest RAM → the window, over `nbuf` buffers (8 MiB working set, 1..32 buffers),
 * stride = size rounded up to 4 KiB.
 */
import { performance } from 'node:perf_hooks';
import { VirtioError } from '../../errors.js';
import { createGuestRam } from '../../memory/ram.js';
import { native } from '../../native/index.js';
import { SgList } from '../../queue/types.js';
import { nativeCopiers, OP_STRIDE } from '../../swiotlb/copy.js';
import { BouncePool } from '../../swiotlb/pool.js';
import { SwiotlbWindow } from '../../swiotlb/window.js';
import type { CopyRates } from './memcpy.js';
import { RAM_BASE } from './models.js';

const WORKING_SET = 8 << 20;
const MAX_NBUF = 32;
const WINDOW_BASE = 0x1_0000_0000;
/** Buffers bounced per flush in the pool loop: the benchmark's base queue depth (requests per kick). */
export const POOL_BATCH = 32;

/** Buffers in the rotation for `size` (same rule as the C program). */
export function nbufFor(size: number): number {
  return Math.max(1, Math.min(MAX_NBUF, Math.floor(WORKING_SET / size)));
}

/** GB/s of the pool path and of the bare copy, per size. */
export interface BounceCopyRates {
  pool: CopyRates;
  copyBatch: CopyRates;
  copier: 'native' | 'js';
}

function pow2AtLeast(n: number): number {
  let p = 4096;
  while (p < n) p *= 2;
  return p;
}

/** Measure `reps` repetitions of `ms` per size (a quarter of `ms` warm-up first). */
export async function runBounceCopyBench(sizes: readonly number[], ms: number, reps: number, only?: 'pool'): Promise<BounceCopyRates> {
  if (!native.available) throw new VirtioError('NATIVE_UNAVAILABLE', `the bounce-copy measurement uses the native copyBatch; the addon is not loaded (${native.unavailableReason ?? 'unknown'})`);
  const cop = nativeCopiers(native);
  let ramBytes = 0;
  let winBytes = 256 * 1024;
  for (const s of sizes) {
    const stride = Math.ceil(s / 4096) * 4096;
    ramBytes = Math.max(ramBytes, stride * nbufFor(s));
    winBytes = Math.max(winBytes, pow2AtLeast(2 * stride * Math.max(nbufFor(s), POOL_BATCH)));
  }
  const ram = createGuestRam([{ base: RAM_BASE, size: ramBytes, name: 'copy-ram' }], { backing: 'memfd' });
  const win = await SwiotlbWindow.allocate(winBytes, { backing: 'auto', name: 'copy-window', base: WINDOW_BASE });
  const pool: CopyRates = {};
  const bare: CopyRates = {};
  try {
    const region = ram.space.regions[0]!;
    region.u8.fill(0x5a, region.offset, region.offset + ramBytes);
    const bp = new BouncePool({ window: win, ram: ram.space, copy: cop.copy, copyBatch: cop.copyBatch });
    const sgs: SgList[] = [];
    const outs: SgList[] = [];
    for (let j = 0; j < POOL_BATCH; j++) {
      sgs.push(new SgList(1));
      outs.push(new SgList(1));
    }
    const wr = win.asAddressSpace().regions[0]!;
    const bufs: ArrayBufferLike[] = [wr.buffer, region.buffer];
    const ops = new Float64Array(OP_STRIDE);
    for (const size of sizes) {
      const stride = Math.ceil(size / 4096) * 4096;
      const nbuf = nbufFor(size);
      // JIT warm-up by count as well as by time: on a loaded machine a few ms of wall time are a few
      // hundred iterations, still in the interpreter, and the rate measured would be its, not the code's.
      const warmCopies = Math.max(POOL_BATCH, Math.min(20000, Math.floor((128 << 20) / size)));
      const poolLoop = (durMs: number, minCopies = 0): number => {
        let b = 0;
        let copies = 0;
        const t0 = performance.now();
        let t1 = t0;
        const stop = t0 + durMs;
        while (t1 < stop || copies < minCopies) {
          for (let j = 0; j < POOL_BATCH; j++) {
            bp.queueMapSg(sgs[j]!.clear().out(RAM_BASE + b * stride, size), outs[j]!);
            if (++b === nbuf) b = 0;
          }
          bp.flush();
          for (let j = 0; j < POOL_BATCH; j++) bp.queueUnmapSg(outs[j]!);
          bp.flush();
          copies += POOL_BATCH;
          t1 = performance.now();
        }
        return (copies * size) / ((t1 - t0) * 1e6);
      };
      const bareLoop = (durMs: number, minCopies = 0): number => {
        let b = 0;
        let copies = 0;
        const t0 = performance.now();
        let t1 = t0;
        const stop = t0 + durMs;
        ops[0] = 0;
        ops[2] = 1;
        ops[4] = size;
        while (t1 < stop || copies < minCopies) {
          for (let j = 0; j < 64; j++) {
            ops[1] = wr.offset + b * stride;
            ops[3] = region.offset + b * stride;
            cop.copyBatch(bufs, ops, 1);
            if (++b === nbuf) b = 0;
          }
          copies += 64;
          t1 = performance.now();
        }
        return (copies * size) / ((t1 - t0) * 1e6);
      };
      poolLoop(ms / 4, warmCopies);
      pool[size] = [];
      for (let r = 0; r < reps; r++) pool[size].push(poolLoop(ms));
      bare[size] = [];
      if (only !== 'pool') {
        bareLoop(ms / 4, warmCopies);
        for (let r = 0; r < reps; r++) bare[size].push(bareLoop(ms));
      }
      if (bp.stats().liveMappings !== 0) throw new VirtioError('INTERNAL', 'bounce-copy measurement leaked mappings');
    }
  } finally {
    win.close();
    ram.close();
  }
  return { pool, copyBatch: bare, copier: 'native' };
}
