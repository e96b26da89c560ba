/** virtio-console in a device process over vfio-user: port 0 ↔ a UNIX socket, both directions. */
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { startRig, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function readSome(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const on = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= n) {
        s.off('data', on);
        resolve(got);
      }
    };
    s.on('data', on);
  });
}

describe.runIf(native.available)('vfio-user console', () => {
  for (const dma of ['message'] as Array<'message' | 'swiotlb'>) {
    it(`[basic.split-vq.vq-used-ring.device.2] port 0 bytes flow both ways between the guest and a UNIX socket (${dma} DMA)`, async () => {
      const path = join(tmp.dir, `con-${dma}.sock`);
      const extra = dma === 'swiotlb' ? ['--swiotlb', 'required', '--swiotlb-size', '1048576'] : [];
      const rig = await startRig(tmp.dir, ['console', '--console-socket', path, '--queue-size', '64', ...extra], dma);
      const sock = connect(path);
      try {
        await new Promise<void>((r) => sock.once('connect', () => r()));
        const rxq = rig.driver.queue(0);
        const txq = rig.driver.queue(1);
        // Guest → host.
        const out = readSome(sock, 11);
        const t = await txq.submit([new TextEncoder().encode('hello host\n')], []);
        expect(t.len).toBe(0);
        expect((await out).toString()).toBe('hello host\n');
        // Host → guest: a receive buffer waits in the ring until input arrives.
        const rx = rxq.submit([], [64]);
        await new Promise((r) => setTimeout(r, 20));
        sock.write('hi guest');
        const r = await rx;
        expect(Buffer.from(r.data[0]!).toString()).toBe('hi guest');
      } finally {
        sock.destroy();
        await rig.close();
      }
    });
  }
});
