/**
 * The vfio-user server under malformed, oversized and out-of-order input: every bad message gets an
 * error reply with an errno, the server never crashes, and a valid VERSION still works afterwards.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { buildMessage, decodeRegionAccess, decodeVersion, encodeDmaAccess, encodeDmaMap, encodeDmaUnmap, encodeRegionAccess, encodeSetIrqs, encodeVersion, readHeader } from '../../src/vfio-user/codec.js';
import { VfioUserConnection, type IncomingMessage } from '../../src/vfio-user/connection.js';
import { createDeviceHost, type DeviceHost } from '../../src/vfio-user/device-host.js';
import { VfioUserServer } from '../../src/vfio-user/server.js';
import { Cmd, Errno, FLAG_ERROR, FLAG_TYPE_REPLY, IRQ_SET_ACTION_TRIGGER, IRQ_SET_DATA_EVENTFD, PCI_CONFIG_REGION_INDEX } from '../../src/vfio-user/protocol.js';
import { tempDir } from './helpers.js';

const tmp = tempDir();
let host: DeviceHost;
let server: VfioUserServer;
let n = 0;

/** A raw peer: framed messages via VfioUserConnection, plus raw bytes. */
class Peer {
  readonly fd: number;
  readonly conn: VfioUserConnection;
  readonly requests: IncomingMessage[] = [];
  closed = false;
  private waiters: Array<() => void> = [];
  constructor(path: string) {
    this.fd = native.connectUnix(path);
    this.conn = new VfioUserConnection(this.fd, {
      maxMessageSize: 4 << 20,
      maxFds: 16,
      name: 'test peer',
      onRequest: (m) => {
        this.requests.push({ ...m, payload: m.payload.slice() });
        for (const w of this.waiters.splice(0)) w();
      },
      onClose: () => {
        this.closed = true;
        for (const w of this.waiters.splice(0)) w();
      },
    });
  }
  /** Send and get the reply header + payload (error replies resolve too). */
  async ask(msg: Uint8Array, fds?: number[]): Promise<{ error: number; payload: Uint8Array; fds: number[] }> {
    try {
      const r = await this.conn.request((id) => {
        msg[0] = id & 0xff;
        msg[1] = id >> 8;
        return msg;
      }, fds);
      return { error: 0, payload: r.payload, fds: r.fds };
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      if (errno === undefined) throw e;
      return { error: errno, payload: new Uint8Array(0), fds: [] };
    }
  }
  raw(bytes: Uint8Array, fds?: number[]): void {
    expect(native.sendmsg(this.fd, bytes, fds)).toBe(bytes.length);
  }
  nextRequest(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
  close(): void {
    this.conn.close();
  }
}

async function version(p: Peer): Promise<void> {
  const r = await p.ask(encodeVersion(0, false, 0, 0, { maxMsgFds: 16, maxDataXferSize: 1 << 20 }));
  expect(r.error).toBe(0);
}

async function vendorId(p: Peer): Promise<number> {
  const r = await p.ask(encodeRegionAccess(0, Cmd.REGION_READ, 0, PCI_CONFIG_REGION_INDEX, 2));
  expect(r.error).toBe(0);
  const a = decodeRegionAccess(r.payload, true, 4096, 'reply');
  return a.data[0]! | (a.data[1]! << 8);
}

/** Collect raw replies (error replies included) until `count` arrived or the peer closed. */
function rawReplies(fd: number, count: number): Promise<Array<{ id: number; command: number; flags: number; error: number }>> {
  const out: Array<{ id: number; command: number; flags: number; error: number }> = [];
  const buf = new Uint8Array(1 << 16);
  let have = 0;
  return new Promise((resolve) => {
    const h = native.poll(fd, 1, () => {
      for (;;) {
        const r = native.recvmsg(fd, buf.subarray(have), 4);
        if (r === null) break;
        for (const f of r.fds) native.close(f);
        if (r.bytes === 0) {
          h.stop();
          resolve(out);
          return;
        }
        have += r.bytes;
        while (have >= 16) {
          const hd = readHeader(buf);
          if (have < hd.size) break;
          out.push({ id: hd.id, command: hd.command, flags: hd.flags, error: hd.error });
          buf.copyWithin(0, hd.size, have);
          have -= hd.size;
        }
        if (out.length >= count) {
          h.stop();
          resolve(out);
          return;
        }
      }
    });
  });
}

beforeAll(async () => {
  host = await createDeviceHost({ kind: 'rng', queueSize: 64 });
});
afterAll(async () => {
  server?.close();
  await host?.close();
  tmp.cleanup();
});

function newServer(opts: { maxMsgFds?: number; maxDataXferSize?: number } = {}): string {
  server?.close();
  const path = join(tmp.dir, `srv-${n++}.sock`);
  server = VfioUserServer.listen({ socketPath: path, device: host, ...opts });
  return path;
}

describe.runIf(native.available)('vfio-user server: protocol errors', () => {
  it('anything before VERSION → EINVAL; VERSION reply is a subset and not longer than the request; a second VERSION → EINVAL', async () => {
    const p = new Peer(newServer());
    try {
      expect((await p.ask(encodeRegionAccess(0, Cmd.REGION_READ, 0, PCI_CONFIG_REGION_INDEX, 2))).error).toBe(Errno.EINVAL);
      const req = encodeVersion(0, false, 0, 0, { maxMsgFds: 4 });
      const r = await p.ask(req);
      expect(r.error).toBe(0);
      expect(16 + r.payload.length).toBeLessThanOrEqual(req.length);
      const v = decodeVersion(r.payload);
      expect(v.major).toBe(0);
      expect(v.json).not.toContain('migration');
      expect(v.json).not.toContain('twin');
      expect((await p.ask(encodeVersion(0, false, 0, 0, {}))).error).toBe(Errno.EINVAL);
      expect(await vendorId(p)).toBe(0x1af4);
      // A tiny VERSION (empty JSON) still gets a reply that fits.
      const p2 = new Peer(newServer());
      const tiny = buildMessage(0, Cmd.VERSION, 0, 5);
      const r2 = await p2.ask(tiny);
      expect(r2.error).toBe(0);
      expect(16 + r2.payload.length).toBeLessThanOrEqual(tiny.length);
      p2.close();
    } finally {
      p.close();
    }
  });

  it('unknown command → ENOSYS, unsupported → ENOTSUP, bad struct size → EINVAL; the connection stays usable', async () => {
    const p = new Peer(newServer());
    try {
      await version(p);
      expect((await p.ask(buildMessage(0, 99, 0, 8))).error).toBe(Errno.ENOSYS);
      expect((await p.ask(buildMessage(0, Cmd.REGION_WRITE_MULTI, 0, 8))).error).toBe(Errno.ENOTSUP);
      expect((await p.ask(buildMessage(0, Cmd.DMA_MAP, 0, 8))).error).toBe(Errno.EINVAL); // short struct
      expect((await p.ask(encodeRegionAccess(0, Cmd.REGION_READ, 0x100, PCI_CONFIG_REGION_INDEX, 4))).error).toBe(Errno.EINVAL); // beyond 256-byte config
      expect((await p.ask(encodeRegionAccess(0, Cmd.REGION_READ, 0, 5, 4))).error).toBe(Errno.EINVAL); // absent BAR
      expect((await p.ask(encodeDmaAccess(0, Cmd.DMA_READ, 0, 4))).error).toBe(Errno.EINVAL); // client→server DMA
      expect(await vendorId(p)).toBe(0x1af4);
    } finally {
      p.close();
    }
  });

  it('DMA_MAP validation: overlap → EEXIST, unaligned → EINVAL, fd too small → EINVAL, unknown unmap → ENOENT', async () => {
    const p = new Peer(newServer());
    try {
      await version(p);
      expect((await p.ask(encodeDmaMap(0, { flags: 3, offset: 0, addr: 0x10000, size: 0x10000 }))).error).toBe(0);
      expect(host.table.model).toBe('message');
      expect((await p.ask(encodeDmaMap(0, { flags: 3, offset: 0, addr: 0x18000, size: 0x10000 }))).error).toBe(Errno.EEXIST);
      expect((await p.ask(encodeDmaMap(0, { flags: 3, offset: 0, addr: 0x30001, size: 0x1000 }))).error).toBe(Errno.EINVAL);
      const fd = native.memfdCreate('small', 4096);
      expect((await p.ask(encodeDmaMap(0, { flags: 3, offset: 0, addr: 0x40000, size: 0x10000 }), [fd])).error).toBe(Errno.EINVAL);
      native.close(fd);
      expect((await p.ask(encodeDmaUnmap(0, { flags: 0, addr: 0x10000, size: 0x1000 }))).error).toBe(Errno.ENOENT);
      expect((await p.ask(encodeDmaUnmap(0, { flags: 0, addr: 0x10000, size: 0x10000 }))).error).toBe(0);
      expect(host.table.list.length).toBe(0);
    } finally {
      p.close();
    }
  });

  it('too many fds, and fds on a message that takes none → EINVAL (fds closed)', async () => {
    const p = new Peer(newServer({ maxMsgFds: 2 }));
    try {
      await version(p);
      const efds = [0, 1, 2].map(() => native.eventfdCreate());
      const r = await p.ask(encodeSetIrqs(0, { flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: 2, start: 0, count: 3 }), efds);
      expect(r.error).toBe(Errno.EINVAL);
      const r2 = await p.ask(encodeRegionAccess(0, Cmd.REGION_READ, 0, PCI_CONFIG_REGION_INDEX, 2), [efds[0]!]);
      expect(r2.error).toBe(Errno.EINVAL);
      for (const f of efds) native.close(f);
      expect(await vendorId(p)).toBe(0x1af4);
    } finally {
      p.close();
    }
  });

  it('oversized message → E2BIG and its body is skipped; reply to an unknown id → error reply', async () => {
    const p = new Peer(newServer({ maxDataXferSize: 4096 }));
    try {
      await version(p);
      const big = encodeRegionAccess(0, Cmd.REGION_WRITE, 0, 0, 256 * 1024, new Uint8Array(256 * 1024));
      expect((await p.ask(big)).error).toBe(Errno.E2BIG);
      expect(await vendorId(p)).toBe(0x1af4);
    } finally {
      p.close();
    }
    // A "reply" nobody asked for, on a raw socket so the error reply is visible.
    const fd = native.connectUnix(server.socketPath);
    const got = rawReplies(fd, 2);
    native.sendmsg(fd, encodeVersion(1, false, 0, 0, {}));
    native.sendmsg(fd, buildMessage(0x4242, Cmd.DMA_READ, FLAG_TYPE_REPLY, 16));
    const rs = await got;
    expect(rs[1]).toMatchObject({ id: 0x4242, command: Cmd.DMA_READ, error: Errno.EINVAL });
    expect(rs[1]!.flags & FLAG_ERROR).toBe(FLAG_ERROR);
    native.close(fd);
  });

  it('short header (size < 16) → error reply and the connection is dropped; a new client gets a working VERSION', async () => {
    const path = newServer();
    const fd = native.connectUnix(path);
    const got = rawReplies(fd, 5);
    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setUint32(4, 8, true); // size 8
    native.sendmsg(fd, bad);
    const rs = await got; // resolves at close
    expect(rs[0]?.error).toBe(Errno.EINVAL);
    native.close(fd);
    const p = new Peer(path);
    try {
      await version(p);
      expect(await vendorId(p)).toBe(0x1af4);
    } finally {
      p.close();
    }
  });

  it('garbage, framed or not (property): the server survives and VERSION works afterwards', async () => {
    const path = newServer();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ command: fc.integer({ min: 0, max: 40 }), flags: fc.constantFrom(0, 1, 0x10, 0x7), body: fc.uint8Array({ maxLength: 64 }) }), { maxLength: 12 }), fc.uint8Array({ maxLength: 48 }), async (msgs, junk) => {
        const p = new Peer(path);
        try {
          await version(p);
          for (const m of msgs) {
            if (m.flags === 0) {
              const r = await p.ask(buildMessage(0, m.command, 0, m.body.length, (_dv, u8) => u8.set(m.body)));
              expect(r.error === 0 || r.error > 0).toBe(true);
            } else {
              p.raw(buildMessage(0x7000, m.command, m.flags, m.body.length, (_dv, u8) => u8.set(m.body)));
            }
          }
          expect(await vendorId(p)).toBe(0x1af4);
          if (junk.length > 0) p.raw(junk);
        } finally {
          p.close();
        }
        await new Promise((r) => setTimeout(r, 5));
      }),
      { numRuns: 25 },
    );
    host.pci.reset();
  });

  it('region accesses are answered while a DMA_READ is outstanding', async () => {
    const p = new Peer(newServer());
    try {
      await version(p);
      expect((await p.ask(encodeDmaMap(0, { flags: 3, offset: 0, addr: 0x100000, size: 0x10000 }))).error).toBe(0);
      const req = p.nextRequest();
      const dma = server.dmaRead(0x100000, 8);
      await req;
      const dr = p.requests[0]!;
      expect(dr.command).toBe(Cmd.DMA_READ);
      expect(dr.payload.length).toBe(16); // spec layout: u64 address, u64 count
      // The server waits for our answer, yet still answers region reads.
      expect(await vendorId(p)).toBe(0x1af4);
      p.conn.reply(encodeDmaAccess(dr.id, Cmd.DMA_READ, 0x100000, 8, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), FLAG_TYPE_REPLY));
      expect([...(await dma)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      // An error reply from the client rejects the DMA with its errno.
      const req2 = p.nextRequest();
      const dma2 = server.dmaWrite(0x100000, new Uint8Array(4));
      await req2;
      p.conn.replyError(p.requests[1]!.id, Cmd.DMA_WRITE, Errno.EFAULT);
      await expect(dma2).rejects.toMatchObject({ errno: Errno.EFAULT });
    } finally {
      p.close();
    }
  });
});
