import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlkDevice } from '../../../src/device/blk/blk-device.js';
import { openBlkDevice } from '../../../src/device/blk/open.js';
import { BLK_CFG } from '../../../src/device/blk/config.js';
import { VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../../src/device/blk/constants.js';
import { FileBackend } from '../../../src/device/blk/file-backend.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_RESET } from '../../../src/features/bits.js';
import { BlkDriver, startDevice } from './harness.js';
import { HeldBackend, settle } from './held-backend.js';

const DISK = 1 << 20;

let dir = '';
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'virtiokit-blk-async-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function fill(len: number, v: number): Uint8Array {
  return new Uint8Array(len).fill(v);
}

function held(opts: ConstructorParameters<typeof BlkDevice>[1] = {}, rigOpts: Parameters<typeof startDevice>[1] = {}) {
  const be = new HeldBackend(DISK);
  const dev = new BlkDevice(be, opts);
  const r = startDevice(dev, rigOpts);
  return { be, dev, r, drv: new BlkDriver(r, dev) };
}

describe('virtio-blk asynchronous completion', () => {
  it('[blk.dev-op.device.11] FLUSH waits for in-flight writes, then fdatasync, and only then writes its status', async () => {
    const { be, r, drv } = held();
    const w = drv.post(0, { type: VIRTIO_BLK_T_OUT, sector: 4, out: fill(512, 7) });
    const f = drv.post(0, { type: VIRTIO_BLK_T_FLUSH });
    drv.kick(0);
    await settle();
    expect(be.log).toEqual(['start write']); // flush not started while the write is pending
    expect(r.ram[f.statusAddr]).toBe(0xee);
    be.release('write');
    await settle();
    expect(be.log).toEqual(['start write', 'done write', 'start flush']);
    expect(drv.collect(0).map((d) => [d.token, d.status])).toEqual([[w.token, VIRTIO_BLK_S_OK]]);
    expect(r.ram[f.statusAddr]).toBe(0xee); // fdatasync still running: no status yet
    be.release('flush');
    await settle();
    expect(drv.collect(0).map((d) => [d.token, d.status])).toEqual([[f.token, VIRTIO_BLK_S_OK]]);
  });

  it('[blk.dev-op.device.11] FLUSH on one queue covers a write still in flight on another queue', async () => {
    const { be, drv } = held({ queues: 2 });
    drv.post(0, { type: VIRTIO_BLK_T_OUT, sector: 0, out: fill(512, 1) });
    drv.kick(0);
    const f = drv.post(1, { type: VIRTIO_BLK_T_FLUSH });
    drv.kick(1);
    await settle();
    expect(be.log).toEqual(['start write']);
    be.release('write');
    await settle();
    be.release('flush');
    await settle();
    expect(drv.collect(1).map((d) => d.token)).toEqual([f.token]);
  });

  it('a failed fdatasync answers the FLUSH with IOERR', async () => {
    const { be, drv } = held();
    const f = drv.post(0, { type: VIRTIO_BLK_T_FLUSH });
    drv.kick(0);
    await settle();
    be.pending[0]!.fail();
    await settle();
    expect(drv.collect(0).map((d) => [d.token, d.status])).toEqual([[f.token, VIRTIO_BLK_S_IOERR]]);
  });

  it('[blk.dev-op.device.11] writethrough case 1: FLUSH offered but not negotiated → every write is fdatasync\'d before it completes', async () => {
    const { be, r, drv } = held({}, { decline: [VIRTIO_BLK_F_FLUSH] });
    const w = drv.post(0, { type: VIRTIO_BLK_T_OUT, sector: 0, out: fill(512, 1) });
    drv.kick(0);
    await settle();
    be.release('write');
    await settle();
    expect(be.log).toEqual(['start write', 'done write', 'start flush']);
    expect(r.ram[w.statusAddr]).toBe(0xee);
    be.release('flush');
    await settle();
    expect(drv.collect(0).map((d) => [d.token, d.status])).toEqual([[w.token, VIRTIO_BLK_S_OK]]);
  });

  it('[blk.dev-op.device.11] writethrough case 2: CONFIG_WCE with writeback 0 syncs each write; writeback 1 does not', async () => {
    const { be, r, drv, dev } = held({ configWce: true });
    expect(r.features.has(VIRTIO_BLK_F_CONFIG_WCE)).toBe(true);
    be.passThrough.add('write').add('flush');
    await drv.write(0, 0, fill(512, 1));
    expect(be.log.filter((e) => e === 'start flush')).toHaveLength(0);
    r.core.writeConfig(BLK_CFG.writeback, 1, 0);
    await drv.write(0, 0, fill(512, 2));
    expect(be.log.filter((e) => e === 'start flush')).toHaveLength(1);
    expect(dev.stats.syncs).toBe(1);
  });

  it('durableFlush: false acknowledges FLUSH without fdatasync', async () => {
    const { be, drv } = held({ durableFlush: false });
    be.passThrough.add('write');
    await drv.write(0, 0, fill(512, 1));
    expect((await drv.flush(0)).status).toBe(VIRTIO_BLK_S_OK);
    expect(be.log).not.toContain('start flush');
  });

  it('[blk.dev-op.device.11] file backend: data is in the file and fdatasync ran when the FLUSH completes', async () => {
    const path = join(dir, `f${n++}.img`);
    const dev = await openBlkDevice({ backend: 'file', path, create: true, size: DISK });
    const be = dev.backend as FileBackend;
    const spy = vi.spyOn(be, 'flush');
    const r = startDevice(dev);
    const drv = new BlkDriver(r, dev);
    const w = await drv.write(0, 8, fill(4096, 0x5a));
    expect(w.status).toBe(VIRTIO_BLK_S_OK);
    expect(be.stats.datasyncs).toBe(0); // FLUSH negotiated: writeback semantics
    const f = await drv.flush(0);
    expect(f.status).toBe(VIRTIO_BLK_S_OK);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(be.stats.datasyncs).toBe(1);
    expect(readFileSync(path).subarray(8 * 512, 8 * 512 + 4096).every((b) => b === 0x5a)).toBe(true);
    await dev.close();
  });

  it('[blk.dev-op.device.11] file backend writethrough (FLUSH declined): fdatasync per write', async () => {
    const path = join(dir, `f${n++}.img`);
    const dev = await openBlkDevice({ backend: 'file', path, create: true, size: DISK });
    const r = startDevice(dev, { decline: [VIRTIO_BLK_F_FLUSH] });
    const drv = new BlkDriver(r, dev);
    await drv.write(0, 0, fill(512, 1));
    await drv.write(0, 1, fill(512, 2));
    expect((dev.backend as FileBackend).stats.datasyncs).toBe(2);
    await dev.close();
  });

  it('VIRTIO_BLK_F_MQ: a read held pending on queue 0 does not block requests on queue 1', async () => {
    const { be, dev, r, drv } = held({ queues: 2 });
    expect(r.features.has(VIRTIO_BLK_F_MQ)).toBe(true);
    be.inner.disk.fill(0x11, 0, 512);
    const slow = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    drv.kick(0);
    await settle();
    expect(be.pending).toHaveLength(1);
    be.passThrough.add('read').add('write');
    // (whenIdle() would wait for queue 0 too: settle the event loop instead.)
    const fast = drv.post(1, { type: VIRTIO_BLK_T_OUT, sector: 100, out: fill(512, 0x22) });
    drv.kick(1);
    await settle();
    const fastRead = drv.post(1, { type: VIRTIO_BLK_T_IN, sector: 100, inLen: 512 });
    drv.kick(1);
    await settle();
    const q1 = drv.collect(1);
    expect(q1.map((d) => [d.token, d.status])).toEqual([
      [fast.token, VIRTIO_BLK_S_OK],
      [fastRead.token, VIRTIO_BLK_S_OK],
    ]);
    expect(q1[1]!.data.every((b) => b === 0x22)).toBe(true);
    expect(drv.collect(0)).toEqual([]); // queue 0 still waiting
    expect(dev.inFlight).toBe(1);
    expect(r.hooks.queueIrqs[1]).toBeGreaterThan(0);
    be.release('read');
    await dev.whenIdle();
    const q0 = drv.collect(0);
    expect(q0.map((d) => d.token)).toEqual([slow.token]);
    expect(q0[0]!.data.every((b) => b === 0x11)).toBe(true);
  });

  it('later requests on the same queue complete before an earlier slow one (no head-of-line blocking)', async () => {
    const { be, drv } = held();
    const a = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    const b = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 1, inLen: 512 });
    drv.kick(0);
    await settle();
    be.pending[1]!.release();
    await settle();
    expect(drv.collect(0).map((d) => d.token)).toEqual([b.token]);
    be.release();
    await settle();
    expect(drv.collect(0).map((d) => d.token)).toEqual([a.token]);
  });

  it('[reserved.reserved-feature-bits.device.5] with IN_ORDER, completions reach the used ring in pop order', async () => {
    const { be, drv } = held({}, { extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER] });
    const a = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    const b = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 1, inLen: 512 });
    const c = drv.post(0, { type: 99 }); // UNSUPP: completes synchronously, must still wait for a and b
    drv.kick(0);
    await settle();
    expect(drv.collect(0)).toEqual([]);
    be.pending[1]!.release(); // b first
    await settle();
    expect(drv.collect(0)).toEqual([]);
    be.release(); // a
    await settle();
    expect(drv.collect(0).map((d) => d.token)).toEqual([a.token, b.token, c.token]);
    expect(drv.rig.driverSink.errors).toEqual([]);
  });

  it('[basic.dev-reset.device.2] reset during an in-flight read: the completion writes neither data, status nor used ring', async () => {
    const { be, dev, r, drv } = held();
    be.inner.disk.fill(0x77, 0, 4096);
    const p = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 4096 });
    drv.kick(0);
    await settle();
    const before = r.ram.slice();
    r.core.writeStatus(0); // device reset
    const afterReset = r.ram.slice();
    be.release('read');
    await dev.whenIdle();
    await settle();
    expect(Buffer.from(r.ram).equals(Buffer.from(afterReset))).toBe(true);
    expect(r.ram.subarray(p.inAddr, p.inAddr + 4097).every((b) => b === 0xee)).toBe(true);
    expect(dev.stats.staleCompletions).toBe(1);
    expect(before.length).toBe(afterReset.length);
  });

  it('[basic.dev-reset.device.2] reset during a real file read: guest memory is not touched afterwards (bounce buffer)', async () => {
    const path = join(dir, `f${n++}.img`);
    const dev = await openBlkDevice({ backend: 'file', path, create: true, size: DISK });
    const r = startDevice(dev);
    const drv = new BlkDriver(r, dev);
    await drv.write(0, 0, fill(64 * 1024, 0x33));
    const p = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 64 * 1024 });
    drv.kick(0); // the read is now in the thread pool; it cannot finish before we return to the event loop
    r.core.writeStatus(0);
    const snap = r.ram.slice();
    await dev.whenIdle();
    await settle();
    expect(Buffer.from(r.ram).equals(Buffer.from(snap))).toBe(true);
    expect(r.ram[p.inAddr]).toBe(0xee);
    expect(dev.stats.staleCompletions).toBe(1);
    await dev.close();
  });

  it('[basic.vq-reset.device.1] a queue reset (VIRTIO_F_RING_RESET) drops completions of requests popped before it', async () => {
    const { be, dev, r, drv } = held({}, { extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_RESET] });
    const p = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    drv.kick(0);
    await settle();
    r.core.writeQueueSelect(0);
    expect(r.core.writeQueueReset(1)).toBe(true);
    const snap = r.ram.slice();
    be.release('read');
    await dev.whenIdle();
    expect(Buffer.from(r.ram).equals(Buffer.from(snap))).toBe(true);
    expect(r.ram[p.statusAddr]).toBe(0xee);
    expect(dev.stats.staleCompletions).toBe(1);
  });

  it('zeroCopyReads reads straight into guest buffers', async () => {
    const path = join(dir, `f${n++}.img`);
    const dev = await openBlkDevice({ backend: 'file', path, create: true, size: DISK, zeroCopyReads: true });
    const r = startDevice(dev);
    const drv = new BlkDriver(r, dev);
    await drv.write(0, 3, fill(2048, 0x44));
    const d = await drv.read(0, 3, 2048, { dataSegs: 3 });
    expect(d.data.every((b) => b === 0x44)).toBe(true);
    await dev.close();
  });

  it('a write in flight at reset still reaches the disk, and a FLUSH after re-initialization waits for it', async () => {
    const { be, dev, r } = held();
    const drv = new BlkDriver(r, dev);
    drv.post(0, { type: VIRTIO_BLK_T_OUT, sector: 2, out: fill(512, 9) });
    drv.kick(0);
    await settle();
    r.reinit();
    const drv2 = new BlkDriver(r, dev);
    const f = drv2.post(0, { type: VIRTIO_BLK_T_FLUSH });
    drv2.kick(0);
    await settle();
    expect(be.log).toEqual(['start write']);
    be.release('write');
    await settle();
    be.release('flush');
    await settle();
    expect(drv2.collect(0).map((d) => [d.token, d.status])).toEqual([[f.token, VIRTIO_BLK_S_OK]]);
    expect(be.inner.disk.subarray(1024, 1536).every((b) => b === 9)).toBe(true);
    expect(dev.stats.staleCompletions).toBe(1);
  });

  it('close() waits for in-flight I/O before closing the backend, then ignores notifies', async () => {
    const { be, dev, drv } = held();
    drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    drv.kick(0);
    await settle();
    let closed = false;
    const c = dev.close().then(() => {
      closed = true;
    });
    await settle();
    expect(closed).toBe(false);
    expect(be.closed).toBe(false);
    be.release('read');
    await c;
    expect(be.closed).toBe(true);
    drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    drv.kick(0);
    expect(dev.inFlight).toBe(0);
    expect(be.pending).toHaveLength(0);
  });

  it('a backend read error answers IOERR and the device keeps serving', async () => {
    const { be, r, drv } = held();
    const a = drv.post(0, { type: VIRTIO_BLK_T_IN, sector: 0, inLen: 512 });
    drv.kick(0);
    await settle();
    be.pending[0]!.fail();
    await settle();
    const d = drv.collect(0);
    expect(d.map((x) => [x.token, x.status, x.len])).toEqual([[a.token, VIRTIO_BLK_S_IOERR, 1]]);
    expect(r.core.choke.count).toBe(0);
    be.passThrough.add('read');
    expect((await drv.read(0, 0, 512)).status).toBe(VIRTIO_BLK_S_OK);
  });

  it('file backend: reads past a file shrunk behind the device return zeroes', async () => {
    const path = join(dir, `f${n++}.img`);
    const be = await FileBackend.open(path, { create: true, size: 8192 });
    const { truncate } = await import('node:fs/promises');
    await truncate(path, 1024);
    const dev = new BlkDevice(be);
    const r = startDevice(dev);
    const d = await new BlkDriver(r, dev).read(0, 0, 4096);
    expect(d.status).toBe(VIRTIO_BLK_S_OK);
    expect(d.data.every((b) => b === 0)).toBe(true);
    await dev.close();
  });
});
