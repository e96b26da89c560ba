/**
 * `serve blk --vfio-user --queue-workers`: each request queue on its own worker thread of the
 * device process. Random I/O on two queues at once verified against a shadow copy (direct DMA and
 * SWIOTLB), a guest error on a worker's queue reaching the main thread's choke point (NEEDS_RESET),
 * and a device reset while the workers are busy (nothing touches guest memory afterwards; the
 * device works again after re-initialization).
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import type { VirtioPciDriver } from '../../src/driver/driver.js';
import { STATUS_NEEDS_RESET } from '../../src/features/status.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';
import { attach, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const DISK = 2 * 1024 * 1024;
const SECTORS = DISK / 512;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector, true);
  return h;
}

async function blkWrite(d: VirtioPciDriver, q: number, sector: number, data: Uint8Array): Promise<number> {
  const r = await d.queue(q).submit([header(T_OUT, sector), data], [1]);
  return r.data[0]![0]!;
}
async function blkRead(d: VirtioPciDriver, q: number, sector: number, len: number): Promise<{ status: number; data: Uint8Array }> {
  const r = await d.queue(q).submit([header(T_IN, sector)], [len, 1]);
  return { status: r.data[1]![0]!, data: r.data[0]! };
}

interface Op {
  q: number;
  write: boolean;
  sector: number;
  sectors: number;
  fill: number;
}

const opArb = fc.record({ q: fc.integer({ min: 0, max: 1 }), write: fc.boolean(), sector: fc.integer({ min: 0, max: SECTORS - 128 }), sectors: fc.integer({ min: 1, max: 128 }), fill: fc.integer({ min: 0, max: 255 }) });

/** Split ops into batches whose ranges do not overlap (so their order within a batch does not matter). */
function batches(ops: Op[], max: number): Op[][] {
  const out: Op[][] = [];
  let cur: Op[] = [];
  for (const op of ops) {
    const clash = cur.some((o) => op.sector < o.sector + o.sectors && o.sector < op.sector + op.sectors);
    if (clash || cur.length >= max) {
      out.push(cur);
      cur = [];
    }
    cur.push(op);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

function pattern(op: Op): Uint8Array {
  const len = op.sectors * 512;
  const data = new Uint8Array(len);
  for (let i = 0; i < len; i++) data[i] = (op.fill + i * 31 + op.sector * 7 + (i >> 9)) & 0xff;
  return data;
}

/** Run `ops` in concurrent batches on both queues; every read is checked against `shadow`. */
async function randomIo(d: VirtioPciDriver, shadow: Uint8Array, ops: Op[]): Promise<void> {
  for (const b of batches(ops, 16)) {
    await Promise.all(
      b.map(async (op) => {
        const len = op.sectors * 512;
        const at = op.sector * 512;
        if (op.write) {
          const data = pattern(op);
          shadow.set(data, at);
          expect(await blkWrite(d, op.q, op.sector, data)).toBe(0);
        } else {
          const want = shadow.slice(at, at + len);
          const r = await blkRead(d, op.q, op.sector, len);
          expect(r.status).toBe(0);
          expect(Buffer.compare(Buffer.from(r.data), Buffer.from(want))).toBe(0);
        }
      }),
    );
  }
  // The whole disk, alternating queues.
  const chunk = 128 * 1024;
  const all = await Promise.all(Array.from({ length: DISK / chunk }, (_, k) => blkRead(d, k % 2, (k * chunk) / 512, chunk)));
  all.forEach((r, k) => {
    expect(r.status).toBe(0);
    expect(Buffer.compare(Buffer.from(r.data), Buffer.from(shadow.subarray(k * chunk, (k + 1) * chunk)))).toBe(0);
  });
}

/** Wait (bounded) until the device process printed `text`. */
async function stderrHas(proc: DeviceProcess, text: string | RegExp): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    const s = proc.stderr();
    if (typeof text === 'string' ? s.includes(text) : text.test(s)) return true;
    await sleep(25);
  }
  return false;
}

async function spawn(name: string, extra: string[]): Promise<DeviceProcess> {
  return spawnDeviceProcess(join(tmp.dir, `${name}.sock`), ['blk', '--queues', '2', '--queue-size', '64', '--queue-workers', ...extra]);
}

describe.runIf(native.available)('vfio-user blk with --queue-workers', () => {
  for (const dma of ['direct', 'swiotlb'] as const) {
    it(`[blk.dev-op.device.11] random I/O on 2 queues served by 2 workers matches a shadow copy (${dma} DMA, RAM disk)`, async () => {
      const extra = dma === 'swiotlb' ? ['--swiotlb', 'required', '--swiotlb-size', '4194304'] : [];
      const proc = await spawn(`data-${dma}`, ['--disk-size', String(DISK), ...extra]);
      try {
        const a = await attach(proc, dma, 8 * 1024 * 1024, { queues: 2, interrupts: 'msix' });
        try {
          expect(a.driver.swiotlb).toBe(dma === 'swiotlb');
          expect(await stderrHas(proc, 'queue 0 on worker thread')).toBe(true);
          expect(await stderrHas(proc, 'queue 1 on worker thread')).toBe(true);
          const shadow = new Uint8Array(DISK);
          const ops = fc.sample(opArb, { numRuns: 160, seed: dma === 'direct' ? 11 : 23 });
          await randomIo(a.driver, shadow, ops);
          // FLUSH on each queue (RAM disk: nothing pending, answered OK).
          for (const q of [0, 1]) expect((await a.driver.queue(q).submit([header(T_FLUSH, 0)], [1])).data[0]![0]).toBe(0);
          expect(a.driver.stats.msi).toBeGreaterThan(0);
          await a.detach();
        } finally {
          a.ram.close();
        }
        // Both workers served requests (counters printed when the client goes).
        expect(await stderrHas(proc, 'queue workers:')).toBe(true);
        const line = proc.stderr().split('\n').find((l) => l.includes('queue workers:'))!;
        const served = [...line.matchAll(/queue (\d): (\d+) requests/g)].map((m) => Number(m[2]));
        expect(served.length).toBe(2);
        for (const n of served) expect(n).toBeGreaterThan(50);
        expect(line).toMatch(/queue 0: \d+ requests.* [1-9]\d* \+ \d+ \(via main\) interrupts/);
      } finally {
        await proc.stop();
      }
    });
  }

  it('[basic.dev-status-field.device.2] [basic.dev-status-field.device.3] a guest error on a worker\'s queue reaches the choke point: NEEDS_RESET, config interrupt; the other queue keeps working', async () => {
    const proc = await spawn('guest-error', ['--disk-size', String(DISK)]);
    try {
      const a = await attach(proc, 'direct', 8 * 1024 * 1024, { queues: 2, interrupts: 'msix' });
      try {
        expect(await stderrHas(proc, 'queue 1 on worker thread')).toBe(true);
        expect(await blkWrite(a.driver, 1, 8, new Uint8Array(512).fill(7))).toBe(0);
        expect(a.driver.status & STATUS_NEEDS_RESET).toBe(0);
        // An 8-byte header: the device cannot answer it at all → choke point (head returned, length 0).
        const r = await a.driver.queue(1).submit([new Uint8Array(8)], [1]);
        expect(r.len).toBe(0);
        let st = a.driver.status;
        for (let i = 0; i < 200 && (st & STATUS_NEEDS_RESET) === 0; i++) {
          await sleep(10);
          st = a.driver.status;
        }
        expect(st & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
        for (let i = 0; i < 200 && a.driver.stats.configChanges === 0; i++) await sleep(10);
        expect(a.driver.stats.configChanges).toBeGreaterThan(0);
        expect(await stderrHas(proc, /guest-error: virtio-blk queue 1 head \d+: .*\[blk\./)).toBe(true);
        // Only queue 1 was parked: queue 0's worker still serves.
        const rd = await blkRead(a.driver, 0, 8, 512);
        expect(rd.status).toBe(0);
        expect(rd.data.every((x) => x === 7)).toBe(true);
        // Reset and re-initialize: both queues work again.
        a.driver.resetDevice();
        a.driver.init();
        expect(a.driver.status & STATUS_NEEDS_RESET).toBe(0);
        expect(await blkWrite(a.driver, 1, 16, new Uint8Array(1024).fill(9))).toBe(0);
        const back = await blkRead(a.driver, 0, 16, 1024);
        expect(back.data.every((x) => x === 9)).toBe(true);
        await a.detach();
      } finally {
        a.ram.close();
      }
    } finally {
      await proc.stop();
    }
  });

  it('[basic.dev-reset.device.2] a device reset while both workers are busy stops them before it completes; guest memory stays untouched; the device works after re-init (file disk)', async () => {
    const proc = await spawn('reset', ['--disk', join(tmp.dir, 'reset.img'), '--disk-size', String(DISK), '--no-durable-flush']);
    try {
      const a = await attach(proc, 'direct', 16 * 1024 * 1024, { queues: 2, interrupts: 'msix' });
      try {
        expect(await stderrHas(proc, 'queue 1 on worker thread')).toBe(true);
        for (let round = 0; round < 3; round++) {
          // Closed loops of 64 KiB reads and writes on both queues; reset once the workers are
          // busy (some completions seen, the rings full), without waiting for the rest.
          let done = 0;
          let resetDone = false;
          const loops: Array<Promise<void>> = [];
          for (const q of [0, 1]) {
            for (let k = 0; k < 16; k++) {
              loops.push(
                (async () => {
                  for (let i = 0; !resetDone; i++) {
                    const sector = ((k * 2 + q) * 128 + i * 64) % (SECTORS - 128);
                    try {
                      if ((k + i) % 2 === 0) await blkRead(a.driver, q, sector, 65536);
                      else await blkWrite(a.driver, q, sector, new Uint8Array(65536).fill(k + i));
                    } catch {
                      return; // killed by the reset
                    }
                    if (++done === 40 + round * 16) {
                      resetDone = true;
                      a.driver.resetDevice();
                    }
                  }
                })(),
              );
            }
          }
          await Promise.all(loops);
          expect(resetDone).toBe(true);
          // The reset completed: from now on nothing may change guest memory.
          const before = Buffer.from(a.ram.regions[0]!.windows[0]!.u8).toString('base64');
          await sleep(150);
          expect(Buffer.from(a.ram.regions[0]!.windows[0]!.u8).toString('base64') === before).toBe(true);
          a.driver.init();
        }
        const shadow = new Uint8Array(DISK);
        // Start from a known disk: write it whole, then random I/O on both queues.
        const chunk = 128 * 1024;
        await Promise.all(Array.from({ length: DISK / chunk }, (_, k) => blkWrite(a.driver, k % 2, (k * chunk) / 512, shadow.subarray(k * chunk, (k + 1) * chunk))));
        await randomIo(a.driver, shadow, fc.sample(opArb, { numRuns: 60, seed: 5 }));
        await a.detach();
      } finally {
        a.ram.close();
      }
      expect(await stderrHas(proc, 'queue workers:')).toBe(true);
      expect(proc.stderr()).not.toMatch(/did not acknowledge/);
    } finally {
      await proc.stop();
    }
  });
});
