/**
 * virtio-blk in its own process over vfio-user, once per DMA model: a random read/write workload
 * checked against a shadow copy, FLUSH, a crash (SIGKILL) and a restart on the same disk file — no
 * acknowledged-and-flushed write may be lost. Also: which process maps guest RAM.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import type { VirtioPciDriver } from '../../src/driver/driver.js';
import { spawnDeviceProcess } from '../../src/vfio-user/launch.js';
import { attach, GUEST_RAM_MEMFD, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

const DISK = 2 * 1024 * 1024;
const CHUNK = 256 * 1024;
const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector % 2 ** 32, true);
  dv.setUint32(12, Math.floor(sector / 2 ** 32), true);
  return h;
}

async function blkWrite(d: VirtioPciDriver, sector: number, data: Uint8Array): Promise<number> {
  const r = await d.queue(0).submit([header(T_OUT, sector), data], [1]);
  return r.data[0]![0]!;
}
async function blkRead(d: VirtioPciDriver, sector: number, len: number): Promise<{ status: number; data: Uint8Array }> {
  const r = await d.queue(0).submit([header(T_IN, sector)], [len, 1]);
  return { status: r.data[1]![0]!, data: r.data[0]! };
}
async function blkFlush(d: VirtioPciDriver): Promise<number> {
  const r = await d.queue(0).submit([header(T_FLUSH, 0)], [1]);
  return r.data[0]![0]!;
}

function guestRamMapped(pid: number): boolean {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').includes(GUEST_RAM_MEMFD);
}

describe.runIf(native.available)('vfio-user blk device process', () => {
  for (const dma of ['direct', 'message', 'swiotlb'] as const) {
    it(`[blk.dev-op.device.11] random I/O verified against a shadow, flush, crash, restart: nothing flushed is lost (${dma} DMA)`, async () => {
      const disk = join(tmp.dir, `disk-${dma}.img`);
      const sock = join(tmp.dir, `blk-${dma}.sock`);
      const extra = dma === 'swiotlb' ? ['--swiotlb', 'required', '--swiotlb-size', '2097152'] : [];
      const proc = await spawnDeviceProcess(sock, ['blk', '--disk', disk, '--disk-size', String(DISK), '--queue-size', '64', ...extra]);
      const shadow = new Uint8Array(DISK);
      const seed = dma.length * 7919;
      const ops = fc.sample(fc.record({ write: fc.boolean(), sector: fc.integer({ min: 0, max: DISK / 512 - 64 }), sectors: fc.integer({ min: 1, max: 16 }), fill: fc.integer({ min: 0, max: 255 }) }), { numRuns: 40, seed });
      try {
        const a = await attach(proc, dma);
        try {
          expect(a.driver.swiotlb).toBe(dma === 'swiotlb');
          // Who maps guest RAM: only the direct model puts the guest-RAM memfd in the device process.
          expect(guestRamMapped(proc.pid)).toBe(dma === 'direct');
          expect(guestRamMapped(process.pid)).toBe(true);
          for (const op of ops) {
            const len = op.sectors * 512;
            if (op.write) {
              const data = new Uint8Array(len);
              for (let i = 0; i < len; i++) data[i] = (op.fill + i * 13 + op.sector) & 0xff;
              expect(await blkWrite(a.driver, op.sector, data)).toBe(0);
              shadow.set(data, op.sector * 512);
            } else {
              const r = await blkRead(a.driver, op.sector, len);
              expect(r.status).toBe(0);
              expect(Buffer.compare(Buffer.from(r.data), Buffer.from(shadow.subarray(op.sector * 512, op.sector * 512 + len)))).toBe(0);
            }
          }
          // Concurrent requests (several chains in flight per kick).
          const batch = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => blkRead(a.driver, k * 64, 4096)));
          batch.forEach((r, k) => expect(Buffer.compare(Buffer.from(r.data), Buffer.from(shadow.subarray(k * 64 * 512, k * 64 * 512 + 4096)))).toBe(0));
          // Out of range: IOERR (blk.dev-op.driver.2), not a crash.
          expect(await blkWrite(a.driver, DISK / 512, new Uint8Array(512))).toBe(1);
          expect(await blkFlush(a.driver)).toBe(0);
          const st = a.client.snapshot();
          if (dma === 'message') expect(st.dmaReads).toBeGreaterThan(ops.length);
          else expect(st.dmaReads + st.dmaWrites).toBe(0);
          await a.detach();
          a.ram.close();
        } catch (e) {
          await a.detach().catch(() => undefined);
          a.ram.close();
          throw e;
        }
      } finally {
        await proc.kill(); // a crash after the flush was acknowledged
      }
      const proc2 = await spawnDeviceProcess(sock, ['blk', '--disk', disk, '--queue-size', '64', ...extra]);
      try {
        const b = await attach(proc2, dma);
        try {
          for (let off = 0; off < DISK; off += CHUNK) {
            const r = await blkRead(b.driver, off / 512, CHUNK);
            expect(r.status).toBe(0);
            expect(Buffer.compare(Buffer.from(r.data), Buffer.from(shadow.subarray(off, off + CHUNK)))).toBe(0);
          }
        } finally {
          await b.close();
        }
      } finally {
        await proc2.stop();
      }
    });
  }
});
