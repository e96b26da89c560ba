/**
 * The client validates every DMA request of the device: inside a range it DMA_MAP'ed and inside
 * guest RAM, within max_data_xfer_size, and never a write into a read-only mapping.
 */
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { startWorker } from '../../src/bench/launch.js';
import { createGuestRam } from '../../src/memory/ram.js';
import { native } from '../../src/native/index.js';
import { VfioUserClient } from '../../src/vfio-user/client.js';
import { Errno } from '../../src/vfio-user/protocol.js';
import { RAM_BASE, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

type Res = { ok: boolean; data?: number[]; errno?: number };

function ask(w: Worker, m: { op: string; addr?: number; len?: number; data?: number[] }): Promise<Res> {
  return new Promise((resolve) => {
    w.once('message', (r: Res) => resolve(r));
    w.postMessage(m);
  });
}

describe.runIf(native.available)('vfio-user client DMA validation', () => {
  it('DMA_READ/WRITE inside the mapping work; outside → EFAULT, oversize → E2BIG, read-only → EPERM', async () => {
    const path = join(tmp.dir, 'c.sock');
    const w = startWorker(new URL('./fixtures/server-worker.ts', import.meta.url), { workerData: { path } });
    await new Promise<void>((r) => w.once('message', () => r()));
    const ram = createGuestRam([{ base: RAM_BASE, size: 1 << 20, name: 'guest-ram' }], { backing: 'memfd' });
    try {
      for (const readOnly of [false, true]) {
        const c = await VfioUserClient.connect({ socketPath: path, guestRam: ram, dma: 'message', maxDataXferSize: 4096, readOnlyDma: readOnly });
        try {
          ram.space.write(RAM_BASE + 0x100, new Uint8Array([9, 8, 7, 6]));
          const r = await ask(w, { op: 'read', addr: RAM_BASE + 0x100, len: 4 });
          expect(r).toMatchObject({ ok: true, data: [9, 8, 7, 6] });
          expect(await ask(w, { op: 'read', addr: RAM_BASE + (1 << 20) - 2, len: 4 })).toMatchObject({ ok: false, errno: Errno.EFAULT });
          expect(await ask(w, { op: 'read', addr: 0x10, len: 4 })).toMatchObject({ ok: false, errno: Errno.EFAULT });
          expect(await ask(w, { op: 'read', addr: RAM_BASE, len: 8192 })).toMatchObject({ ok: false, errno: Errno.E2BIG });
          const at = RAM_BASE + (readOnly ? 0x300 : 0x200);
          const wr = await ask(w, { op: 'write', addr: at, data: [1, 2, 3] });
          if (readOnly) {
            expect(wr).toMatchObject({ ok: false, errno: Errno.EPERM });
            expect(ram.space.readU8(at)).toBe(0);
          } else {
            expect(wr.ok).toBe(true);
            expect([ram.space.readU8(at), ram.space.readU8(at + 2)]).toEqual([1, 3]);
          }
          expect(c.snapshot().dmaRefused).toBe(readOnly ? 4 : 3);
        } finally {
          await c.close();
        }
        await new Promise((r) => setTimeout(r, 20)); // let the server see the disconnect
      }
    } finally {
      w.postMessage({ op: 'stop' });
      await new Promise((r) => setTimeout(r, 20));
      await w.terminate();
      ram.close();
    }
  });
});
