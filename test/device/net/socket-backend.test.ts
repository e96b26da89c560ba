/**
 * SocketNetBackend framing: 4-byte big-endian length prefix per frame over a UNIX stream socket
 * (QEMU `-netdev stream` framing), split records, bad prefixes, bounded staging, connect retry.
 */
import { createConnection, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SocketNetBackend } from '../../../src/device/net/socket-backend.js';
import { netHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 } from '../../../src/device/net/header.js';
import { isVirtioError } from '../../../src/errors.js';
import { ETH_P_IP, eth, ip, mac, udpChecksumOk, udpPartial } from './frames.js';

const dir = mkdtempSync(join(tmpdir(), 'vk-netsock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = (): string => join(dir, `s${n++}.sock`);

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const o of open.splice(0)) o.close();
});

/** Wait until `pred` holds (event-driven code under test; bounded by the test timeout, no timing assertion). */
async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (seed * 31 + i * 7) & 0xff;
  f[0] = 0x02; // unicast destination
  return f;
}

async function pair(opts: { stagingBytes?: number; maxFrameLen?: number } = {}): Promise<{ a: SocketNetBackend; b: SocketNetBackend; gotB: Uint8Array[] }> {
  const p = sockPath();
  const a = await SocketNetBackend.listen(p, opts);
  open.push(a);
  const b = await SocketNetBackend.connect(p, opts);
  open.push(b);
  await a.whenConnected();
  const gotB: Uint8Array[] = [];
  b.onFrame((buf, off, len) => gotB.push(Uint8Array.from(buf.subarray(off, off + len))));
  return { a, b, gotB };
}

function rawClient(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path, () => resolve(s));
    s.once('error', reject);
  });
}

describe('SocketNetBackend', () => {
  it('carries frames both ways with their lengths (batched writes)', async () => {
    const { a, b, gotB } = await pair();
    const gotA: Uint8Array[] = [];
    a.onFrame((buf, off, len) => gotA.push(Uint8Array.from(buf.subarray(off, off + len))));
    const sent = [60, 1514, 14, 200, 9000].map((l, i) => frame(l, i));
    for (const f of sent) a.send(f, 0, f.length, null);
    b.send(sent[1]!, 0, sent[1]!.length, null);
    await until(() => gotB.length === sent.length && gotA.length === 1);
    expect(gotB.map((f) => Buffer.from(f).toString('hex'))).toEqual(sent.map((f) => Buffer.from(f).toString('hex')));
    expect(Buffer.compare(gotA[0]!, sent[1]!)).toBe(0);
    expect(a.stats.txFrames).toBe(sent.length);
    expect(b.stats.rxFrames).toBe(sent.length);
    expect(a.stats.txWrites).toBeLessThan(sent.length); // one tick's frames go out in one write
  });

  it('reassembles records split at every byte boundary', async () => {
    const p = sockPath();
    const a = await SocketNetBackend.listen(p);
    open.push(a);
    const got: Uint8Array[] = [];
    a.onFrame((buf, off, len) => got.push(Uint8Array.from(buf.subarray(off, off + len))));
    const s = await rawClient(p);
    open.push({ close: () => s.destroy() });
    const frames = [frame(64, 1), frame(100, 2), frame(15, 3)];
    const wire = Buffer.concat(frames.flatMap((f) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(f.length);
      return [h, Buffer.from(f)];
    }));
    for (let i = 0; i < wire.length; i++) {
      s.write(wire.subarray(i, i + 1));
      if (i % 16 === 0) await new Promise((r) => setImmediate(r)); // make the kernel deliver small chunks
    }
    await until(() => got.length === frames.length);
    for (let i = 0; i < frames.length; i++) expect(Buffer.from(got[i]!).toString("hex")).toBe(Buffer.from(frames[i]!).toString("hex"));
  });

  it('a length prefix above maxFrameLen closes that connection, is counted, and the next peer works', async () => {
    const p = sockPath();
    const a = await SocketNetBackend.listen(p, { maxFrameLen: 2048, stagingBytes: 8192 });
    open.push(a);
    const got: Uint8Array[] = [];
    a.onFrame((buf, off, len) => got.push(Uint8Array.from(buf.subarray(off, off + len))));
    const s = await rawClient(p);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => undefined);
    const bad = Buffer.alloc(8);
    bad.writeUInt32BE(0xffff_fff0);
    s.write(bad);
    await closed;
    expect(a.stats.rxBadLength).toBe(1);
    expect(a.connected).toBe(false);
    expect(got).toHaveLength(0);
    // Runts are skipped without closing.
    const s2 = await rawClient(p);
    open.push({ close: () => s2.destroy() });
    await a.whenConnected();
    const f = frame(60, 9);
    const rec = Buffer.alloc(4 + 4 + 3 + f.length);
    rec.writeUInt32BE(3, 0); // runt
    rec.writeUInt32BE(f.length, 7);
    Buffer.from(f).copy(rec, 11);
    s2.write(rec);
    await until(() => got.length === 1);
    expect(Buffer.compare(got[0]!, f)).toBe(0);
    expect(a.stats.rxRunts).toBe(1);
    expect(a.stats.connections).toBe(2);
  });

  it('refuses a second peer while one is connected', async () => {
    const { a } = await pair();
    const s = await rawClient(a.path);
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('close', () => r()));
    expect(a.stats.refused).toBe(1);
    expect(a.connected).toBe(true);
  });

  it('bounded staging: frames beyond it are dropped and counted, never queued without bound', async () => {
    const { a, gotB } = await pair({ maxFrameLen: 1514, stagingBytes: 3 * 1518 });
    const f = frame(1514, 4);
    for (let i = 0; i < 5; i++) a.send(f, 0, f.length, null); // all in one tick: the staging buffer holds 3
    expect(a.stats.txDropped).toBe(2);
    await until(() => gotB.length === 3);
    const big = frame(1515, 5);
    a.send(big, 0, big.length, null);
    expect(a.stats.txDropped).toBe(3);
  });

  it('without a peer, frames are dropped and counted', async () => {
    const a = await SocketNetBackend.listen(sockPath());
    open.push(a);
    const f = frame(60, 1);
    a.send(f, 0, f.length, null);
    expect(a.stats.txNoPeer).toBe(1);
  });

  it('completes a partial checksum on the wire copy; drops GSO frames', async () => {
    const { a, gotB } = await pair();
    const f = udpPartial(mac('02:00:00:00:00:02'), mac('02:00:00:00:00:01'), ip('10.0.0.1'), ip('10.0.0.2'), 1000, 2000, frame(33, 7));
    expect(udpChecksumOk(f)).toBe(false);
    a.send(f, 0, f.length, netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 }));
    a.send(f, 0, f.length, netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1000, csumStart: 34, csumOffset: 16 }));
    const plain = eth(mac('02:00:00:00:00:02'), mac('02:00:00:00:00:01'), ETH_P_IP, frame(46, 8));
    a.send(plain, 0, plain.length, null);
    await until(() => gotB.length === 2);
    expect(udpChecksumOk(gotB[0]!)).toBe(true);
    expect(udpChecksumOk(f)).toBe(false); // the sender's buffer was not touched
    expect(Buffer.compare(gotB[1]!, plain)).toBe(0);
    expect(a.stats.txGsoDropped).toBe(1);
    expect(a.stats.txCsumCompleted).toBe(1);
  });

  it('connect retries until the listener exists, and gives up after its bound', async () => {
    const p = sockPath();
    const pending = SocketNetBackend.connect(p, { retryMs: 10, connectTimeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 60));
    const a = await SocketNetBackend.listen(p);
    open.push(a);
    const b = await pending;
    open.push(b);
    expect(b.connected).toBe(true);
    expect(b.stats.connectFailures).toBeGreaterThan(0);

    const err = await SocketNetBackend.connect(sockPath(), { retryMs: 10, connectTimeoutMs: 50 }).catch((e: unknown) => e);
    expect(isVirtioError(err) && err.code === 'TIMEOUT').toBe(true);
  });

  it('connect mode reconnects after the listener side drops the connection', async () => {
    const p = sockPath();
    let a = await SocketNetBackend.listen(p);
    const b = await SocketNetBackend.connect(p, { retryMs: 10 });
    open.push(b);
    await a.whenConnected();
    a.close();
    await until(() => b.stats.disconnects === 1);
    a = await SocketNetBackend.listen(p);
    open.push(a);
    await a.whenConnected();
    await b.whenConnected();
    const got: Uint8Array[] = [];
    a.onFrame((buf, off, len) => got.push(Uint8Array.from(buf.subarray(off, off + len))));
    const f = frame(80, 3);
    b.send(f, 0, f.length, null);
    await until(() => got.length === 1);
    expect(b.stats.connections).toBe(2);
  });
});
