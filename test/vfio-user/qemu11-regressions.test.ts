/**
 * Regressions found with a real QEMU 11.1.3 client (test/guests/vfio-user.test.ts), reproduced
 * here without QEMU:
 *
 * 1. fd attribution: QEMU sends a DMA_UNMAP without fds and right after it a DMA_MAP carrying the
 *    guest-RAM memfd. One recvmsg on the stream socket returns both messages' bytes with the fd
 *    (the kernel glues fd-less data before an fd-carrying send); the fd belongs to the message in
 *    which the returned bytes end, not to the first one.
 * 2. DMA_MAP churn under a running queue (SeaBIOS PAM flips after the firmware started its queue):
 *    an unmapped fd mapping stays readable through the old space until the device resets, and
 *    mirror (message-DMA) memory for an address is the same bytes across re-mappings.
 * 3. SeaBIOS writes ACKNOWLEDGE|DRIVER in one status write; it must be honoured.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { encodeDmaMap, encodeDmaUnmap, encodeVersion } from '../../src/vfio-user/codec.js';
import { VfioUserConnection } from '../../src/vfio-user/connection.js';
import { createDeviceHost, type DeviceHost } from '../../src/vfio-user/device-host.js';
import { DmaTable } from '../../src/vfio-user/dma.js';
import { VfioUserServer } from '../../src/vfio-user/server.js';
import { DMA_FLAG_READ, DMA_FLAG_WRITE } from '../../src/vfio-user/protocol.js';
import { StatusMachine, STATUS_ACKNOWLEDGE, STATUS_DRIVER } from '../../src/features/status.js';
import { tempDir } from './helpers.js';

const tmp = tempDir();
let host: DeviceHost;
let server: VfioUserServer;
const MiB = 1024 * 1024;

beforeAll(async () => {
  if (!native.available) return;
  host = await createDeviceHost({ kind: 'rng', queueSize: 64 });
});
afterAll(async () => {
  server?.close();
  await host?.close();
  tmp.cleanup();
});

describe.runIf(native.available)('vfio-user with QEMU 11 message patterns', () => {
  it('an fd-less DMA_UNMAP glued to a following DMA_MAP with an fd: the fd goes to the DMA_MAP', async () => {
    const path = join(tmp.dir, 'glue.sock');
    server = VfioUserServer.listen({ socketPath: path, device: host });
    const fd = native.connectUnix(path);
    const conn = new VfioUserConnection(fd, { maxMessageSize: 1 << 20, maxFds: 16, name: 'test peer', onRequest: () => undefined, onClose: () => undefined });
    const errnoOf = async (p: Promise<unknown>): Promise<number> => {
      try {
        await p;
        return 0;
      } catch (e) {
        return (e as { errno?: number }).errno ?? -1;
      }
    };
    const withId = (msg: Uint8Array) => (id: number): Uint8Array => {
      msg[0] = id & 0xff;
      msg[1] = id >> 8;
      return msg;
    };
    const mem1 = native.memfdCreate('glue-a', 2 * MiB);
    const mem2 = native.memfdCreate('glue-b', 2 * MiB);
    try {
      expect(await errnoOf(conn.request(withId(encodeVersion(0, false, 0, 0, { maxMsgFds: 16 }))))).toBe(0);
      const rw = DMA_FLAG_READ | DMA_FLAG_WRITE;
      expect(await errnoOf(conn.request(withId(encodeDmaMap(0, { flags: rw, offset: 0, addr: 0, size: 2 * MiB })), [native.dup(mem1)]))).toBe(0);
      // Both sent in the same tick: the server reads them with one recvmsg.
      const unmap = conn.request(withId(encodeDmaUnmap(0, { flags: 0, addr: 0, size: 2 * MiB })));
      const map = conn.request(withId(encodeDmaMap(0, { flags: rw, offset: 0, addr: 0, size: 2 * MiB })), [native.dup(mem2)]);
      expect(await errnoOf(unmap)).toBe(0);
      expect(await errnoOf(map)).toBe(0);
      expect(host.table.list.map((e) => [e.addr, e.size, e.kind])).toEqual([[0, 2 * MiB, 'mapped']]);
    } finally {
      conn.close();
      native.close(mem1);
      native.close(mem2);
      server.close();
    }
  });

  it('[basic.split-vq.vq-desc-table.device.1] an unmapped fd mapping stays valid for the old space until releaseRetired; mirrors share bytes across re-maps', () => {
    const t = new DmaTable({ native, name: 'churn' });
    const mem = native.memfdCreate('churn', 4 * MiB);
    try {
      const rw = DMA_FLAG_READ | DMA_FLAG_WRITE;
      t.map(0, 4 * MiB, rw, 0, native.dup(mem));
      const old = t.space();
      const oldRegion = old.regions[0]!;
      oldRegion.u8[oldRegion.offset + 0x1234] = 0x5a;
      // PAM-like flip: unmap everything, map pieces of the same file again.
      t.unmap(0, 4 * MiB, 0);
      t.map(0, 1 * MiB, rw, 0, native.dup(mem));
      t.map(1 * MiB, 3 * MiB, rw, 1 * MiB, native.dup(mem));
      expect(t.retiredCount).toBe(1);
      // The old region is still mapped and shows the same file pages as the new one.
      expect(oldRegion.u8[oldRegion.offset + 0x1234]).toBe(0x5a);
      const cur = t.space();
      const r0 = cur.regions[0]!;
      r0.u8[r0.offset + 0x1235] = 0xa5;
      expect(oldRegion.u8[oldRegion.offset + 0x1235]).toBe(0xa5);
      t.releaseRetired();
      expect(t.retiredCount).toBe(0);
      expect(native.isMapped(oldRegion.buffer as ArrayBuffer)).toBe(false);

      // Message-only mappings: the mirror for an address is the same memory after a re-map.
      const m = new DmaTable({ native, name: 'mirror' });
      m.map(0x10_0000, 2 * MiB, DMA_FLAG_READ | DMA_FLAG_WRITE, 0, undefined);
      const mr = m.space().regions[0]!;
      mr.u8[mr.offset + 0x10] = 7;
      m.unmap(0x10_0000, 2 * MiB, 0);
      m.map(0x10_0000, 1 * MiB, DMA_FLAG_READ | DMA_FLAG_WRITE, 0, undefined);
      const nr = m.space().regions[0]!;
      expect(nr.u8[nr.offset + 0x10]).toBe(7);
      nr.u8[nr.offset + 0x11] = 9;
      expect(mr.u8[mr.offset + 0x11]).toBe(9);
      m.clear();
    } finally {
      t.clear();
      native.close(mem);
    }
  });

  it('[init.dev-init.driver.1] ACKNOWLEDGE|DRIVER in one write from reset (SeaBIOS) is honoured', () => {
    const s = new StatusMachine({});
    const r = s.write(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    expect(r.accepted).toBe(true);
    expect(s.status).toBe(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  });
});
