import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlkDevice } from '../../../src/device/blk/blk-device.js';
import { openBlkDevice } from '../../../src/device/blk/open.js';
import {
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_GET_LIFETIME,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_SECURE_ERASE,
} from '../../../src/device/blk/constants.js';
import { FileBackend } from '../../../src/device/blk/file-backend.js';
import { RamBackend } from '../../../src/device/blk/ram-backend.js';
import { STATUS_NEEDS_RESET } from '../../../src/features/status.js';
import { BlkDriver, startDevice, type RigOptions } from './harness.js';

const DISK = 1 << 20; // 2048 sectors
const SECTORS = DISK / 512;

let dir = '';
let fileNo = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'virtiokit-blk-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Kind = 'ram' | 'file';

async function makeDevice(kind: Kind, opts: ConstructorParameters<typeof BlkDevice>[1] = {}): Promise<{ dev: BlkDevice; path: string }> {
  if (kind === 'ram') return { dev: new BlkDevice(new RamBackend(DISK), opts), path: '' };
  const path = join(dir, `disk${fileNo++}.img`);
  const dev = await openBlkDevice({ backend: 'file', path, create: true, size: DISK, ...opts });
  return { dev, path };
}

async function rig(kind: Kind, ring: 'split' | 'packed' = 'split', opts: ConstructorParameters<typeof BlkDevice>[1] = {}, rigOpts: RigOptions = {}) {
  const { dev, path } = await makeDevice(kind, opts);
  const r = startDevice(dev, { ring, ...rigOpts });
  return { dev, path, r, drv: new BlkDriver(r, dev) };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

for (const kind of ['ram', 'file'] as const) {
  for (const ring of ['split', 'packed'] as const) {
    describe(`virtio-blk I/O (${kind} backend, ${ring} ring)`, () => {
      it('[basic.split-vq.vq-used-ring.device.2] random writes and reads match a shadow disk; used len = data + status for IN, 1 for OUT', async () => {
        const { dev, path, r, drv } = await rig(kind, ring);
        const shadow = new Uint8Array(DISK);
        const op = fc.record({
          write: fc.boolean(),
          sector: fc.integer({ min: 0, max: SECTORS - 1 }),
          sectors: fc.integer({ min: 1, max: 24 }),
          segs: fc.integer({ min: 1, max: 5 }),
          seed: fc.integer({ min: 0, max: 1 << 30 }),
        });
        await fc.assert(
          fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
            for (const o of ops) {
              r.resetAlloc();
              const n = Math.min(o.sectors, SECTORS - o.sector);
              const bytes = n * 512;
              if (o.write) {
                const data = pattern(bytes, o.seed);
                const d = await drv.write(0, o.sector, data, { dataSegs: o.segs });
                expect(d.status).toBe(VIRTIO_BLK_S_OK);
                expect(d.len).toBe(1);
                shadow.set(data, o.sector * 512);
              } else {
                const d = await drv.read(0, o.sector, bytes, { dataSegs: o.segs });
                expect(d.status).toBe(VIRTIO_BLK_S_OK);
                expect(d.len).toBe(bytes + 1);
                expect(Buffer.from(d.data).equals(Buffer.from(shadow.subarray(o.sector * 512, o.sector * 512 + bytes)))).toBe(true);
              }
            }
          }),
          { numRuns: kind === 'file' ? 8 : 20 },
        );
        if (kind === 'ram') expect(Buffer.from((dev.backend as RamBackend).disk).equals(Buffer.from(shadow))).toBe(true);
        else {
          await drv.flush(0);
          expect(readFileSync(path).equals(Buffer.from(shadow))).toBe(true);
        }
        expect(r.core.choke.count).toBe(0);
        await dev.close();
      });

      it('[basic.split-vq.message-framing.device.1] header split over 3 descriptors, status sharing the data descriptor', async () => {
        const { dev, r, drv } = await rig(kind, ring);
        const data = pattern(1024, 7);
        const w = await drv.write(0, 10, data, { headerSplit: [3, 9, 4], dataSegs: 3 });
        expect(w.status).toBe(VIRTIO_BLK_S_OK);
        const rd = await drv.read(0, 10, 1024, { headerSplit: [1, 1, 14], statusWithData: true });
        expect(rd.status).toBe(VIRTIO_BLK_S_OK);
        expect(rd.len).toBe(1025);
        expect(rd.data).toEqual(data);
        expect(r.core.choke.count).toBe(0);
        await dev.close();
      });

      it('[blk.dev-op.driver.2] a request reaching beyond capacity gets IOERR and changes nothing', async () => {
        const { dev, r, drv } = await rig(kind, ring);
        const w = await drv.write(0, SECTORS - 1, pattern(1024, 1));
        expect(w.status).toBe(VIRTIO_BLK_S_IOERR);
        expect(w.len).toBe(1);
        expect((await drv.read(0, SECTORS, 512)).status).toBe(VIRTIO_BLK_S_IOERR);
        expect((await drv.read(0, 2 ** 40, 512)).status).toBe(VIRTIO_BLK_S_IOERR);
        // sector >= 2^53 (high word 0xffffffff)
        expect((await drv.run(0, { type: VIRTIO_BLK_T_IN, sector: 0xffffffff * 4294967296, inLen: 512 })).status).toBe(VIRTIO_BLK_S_IOERR);
        const last = await drv.read(0, SECTORS - 1, 512);
        expect(last.status).toBe(VIRTIO_BLK_S_OK);
        expect(last.data).toEqual(new Uint8Array(512)); // the refused write did not land
        expect(r.core.choke.count).toBe(0);
        await dev.close();
      });

      it('[blk.dev-op.driver.6] IN/OUT data not a multiple of 512 gets IOERR', async () => {
        const { dev, r, drv } = await rig(kind, ring);
        expect((await drv.write(0, 0, pattern(700, 2))).status).toBe(VIRTIO_BLK_S_IOERR);
        expect((await drv.read(0, 0, 513)).status).toBe(VIRTIO_BLK_S_IOERR);
        expect(r.core.choke.count).toBe(0);
        await dev.close();
      });

      it('[blk.dev-op.device.16] unknown types, zone requests, GET_LIFETIME and SECURE_ERASE (not offered) get UNSUPP', async () => {
        const { dev, r, drv } = await rig(kind, ring);
        for (const t of [2, 5, 7, VIRTIO_BLK_T_GET_LIFETIME, VIRTIO_BLK_T_SECURE_ERASE, 15, 16, 18, 24, 26, 0x80000000, 0xffffffff]) {
          const d = await drv.run(0, { type: t, inLen: 16 });
          expect(d.status, `type ${t}`).toBe(VIRTIO_BLK_S_UNSUPP);
          expect(d.len).toBe(1);
        }
        expect(dev.stats.unsupported).toBe(12);
        expect(r.core.choke.count).toBe(0);
        await dev.close();
      });

      it('[blk.dev-op.device.8] write zeroes and discard read back as zeroes; [blk.dev-op.device.7] write zeroes may carry unmap', async () => {
        const { dev, drv } = await rig(kind, ring);
        await drv.write(0, 100, pattern(64 * 512, 3));
        const wz = await drv.dwz(0, false, [
          [100, 4, 0],
          [110, 2, 1],
        ]);
        expect(wz.status).toBe(VIRTIO_BLK_S_OK);
        const dc = await drv.dwz(0, true, [[120, 8, 0]]);
        expect(dc.status).toBe(VIRTIO_BLK_S_OK);
        const rd = await drv.read(0, 100, 64 * 512);
        const expected = pattern(64 * 512, 3);
        expected.fill(0, 0, 4 * 512);
        expected.fill(0, 10 * 512, 12 * 512);
        expected.fill(0, 20 * 512, 28 * 512);
        expect(Buffer.from(rd.data).equals(Buffer.from(expected))).toBe(true);
        expect(dev.stats.discards).toBe(1);
        expect(dev.stats.writeZeroes).toBe(1);
        await dev.close();
      });
    });
  }
}

describe('virtio-blk request validation (ram backend)', () => {
  it('[blk.dev-op.device.5] discard with unmap → UNSUPP; [blk.dev-op.device.4] reserved flags → UNSUPP; nothing is changed', async () => {
    const { dev, drv } = await rig('ram');
    const disk = (dev.backend as RamBackend).disk;
    disk.fill(0x55);
    expect((await drv.dwz(0, true, [[0, 1, 1]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect((await drv.dwz(0, true, [[0, 1, 0], [8, 1, 4]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect((await drv.dwz(0, false, [[0, 1, 0x80000000]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    // UNSUPP wins over a range problem in another segment.
    expect((await drv.dwz(0, false, [[SECTORS, 1, 0], [0, 1, 2]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(disk.every((b) => b === 0x55)).toBe(true);
  });

  it('[blk.dev-op.driver.9] [blk.dev-op.driver.11] more segments than max_*_seg → IOERR; [blk.dev-op.driver.7] partial segment → IOERR; ranges beyond capacity → IOERR', async () => {
    const { dev, drv } = await rig('ram', 'split', { maxDiscardSeg: 2, maxWriteZeroesSeg: 1, maxWriteZeroesSectors: 16 });
    const disk = (dev.backend as RamBackend).disk;
    disk.fill(0x55);
    expect((await drv.dwz(0, true, [[0, 1, 0], [1, 1, 0], [2, 1, 0]])).status).toBe(VIRTIO_BLK_S_IOERR);
    expect((await drv.dwz(0, false, [[0, 1, 0], [1, 1, 0]])).status).toBe(VIRTIO_BLK_S_IOERR);
    expect((await drv.run(0, { type: 11, out: new Uint8Array(20) })).status).toBe(VIRTIO_BLK_S_IOERR);
    expect((await drv.dwz(0, true, [[0, 1, 0], [SECTORS - 1, 2, 0]])).status).toBe(VIRTIO_BLK_S_IOERR);
    expect((await drv.dwz(0, false, [[0, 17, 0]])).status).toBe(VIRTIO_BLK_S_IOERR);
    expect((await drv.dwz(0, false, [[0xffffffff * 4294967296, 1, 0]])).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(disk.every((b) => b === 0x55)).toBe(true); // a refused request does nothing, not even its valid segments
    expect((await drv.dwz(0, true, [[0, 1, 0], [SECTORS - 1, 1, 0]])).status).toBe(VIRTIO_BLK_S_OK);
    expect(disk.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(disk.subarray(DISK - 512).every((b) => b === 0)).toBe(true);
    expect(dev.stats.ioErrors).toBe(6);
  });

  it('DISCARD / WRITE_ZEROES without the feature negotiated → UNSUPP', async () => {
    const { drv } = await rig('ram', 'split', {}, { decline: [VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES] });
    expect((await drv.dwz(0, true, [[0, 1, 0]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect((await drv.dwz(0, false, [[0, 1, 0]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
  });

  it('GET_ID returns the NUL-padded serial (used len 21); a 20-character serial has no NUL', async () => {
    const a = await rig('ram', 'split', { serial: 'disk-7' });
    const d = await a.drv.getId(0);
    expect(d.status).toBe(VIRTIO_BLK_S_OK);
    expect(d.len).toBe(21);
    const want = new Uint8Array(20);
    want.set(Buffer.from('disk-7'));
    expect(d.data).toEqual(want);
    const b = await rig('ram', 'split', { serial: 'ABCDEFGHIJKLMNOPQRST' });
    expect(Buffer.from((await b.drv.getId(0)).data).toString('latin1')).toBe('ABCDEFGHIJKLMNOPQRST');
  });

  it('[blk.dev-op.driver.8] GET_ID with data other than 20 bytes → IOERR, nothing written', async () => {
    const { drv } = await rig('ram', 'split', { serial: 'x' });
    const d = await drv.getId(0, 16);
    expect(d.status).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.data.every((b) => b === 0xee)).toBe(true);
    expect((await drv.getId(0, 64)).status).toBe(VIRTIO_BLK_S_IOERR);
  });

  it('[blk.dev-op.device.3] a read-only disk answers OUT with IOERR and writes nothing; reads work; DISCARD/WRITE_ZEROES are UNSUPP (not offered)', async () => {
    const backend = new RamBackend(DISK);
    backend.disk.set(pattern(512, 9), 0);
    const dev = new BlkDevice(backend, { readOnly: true });
    const r = startDevice(dev);
    const drv = new BlkDriver(r, dev);
    const w = await drv.write(0, 0, new Uint8Array(512).fill(1));
    expect(w.status).toBe(VIRTIO_BLK_S_IOERR);
    expect(backend.disk.subarray(0, 512)).toEqual(pattern(512, 9));
    expect((await drv.read(0, 0, 512)).data).toEqual(pattern(512, 9));
    expect((await drv.dwz(0, false, [[0, 1, 0]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect((await drv.dwz(0, true, [[0, 1, 0]])).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect((await drv.flush(0)).status).toBe(VIRTIO_BLK_S_OK);
    expect(backend.disk.subarray(0, 512)).toEqual(pattern(512, 9));
  });

  it('[blk.dev-op.device.3] a file opened read-only is presented RO and refuses writes', async () => {
    const path = join(dir, 'ro.img');
    const w = await openBlkDevice({ backend: 'file', path, create: true, size: 4096 });
    await w.close();
    const dev = await openBlkDevice({ backend: 'file', path, readOnly: true });
    expect(dev.readOnly).toBe(true);
    const r = startDevice(dev);
    const drv = new BlkDriver(r, dev);
    expect((await drv.write(0, 0, new Uint8Array(512).fill(3))).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
    await dev.close();
  });

  it('[blk.legacy-dev-op.driver.5] no writable status byte: guest error with the clause, NEEDS_RESET, head returned with used len 0', async () => {
    const { dev, r, drv } = await rig('ram');
    const p = drv.post(0, { type: VIRTIO_BLK_T_OUT, sector: 0, out: pattern(512, 1), noStatus: true });
    drv.kick(0);
    await dev.whenIdle();
    const done = drv.collect(0);
    expect(done).toHaveLength(1);
    expect(done[0]!.token).toBe(p.token);
    expect(done[0]!.len).toBe(0);
    expect(r.core.choke.last?.clause).toBe('blk.legacy-dev-op.driver.5');
    expect(r.core.choke.last?.code).toBe('DEVICE_REQUEST_INVALID');
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    expect(r.core.isParked(0)).toBe(true);
    expect((dev.backend as RamBackend).disk.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(r.driverSink.errors).toHaveLength(0);
  });

  it('[blk.legacy-dev-op.driver.5] fewer than 16 readable header bytes: guest error, head returned with used len 0', async () => {
    const { dev, r, drv } = await rig('ram');
    // A 12-byte "header": the type and reserved words and half the sector.
    const p = drv.post(0, { type: VIRTIO_BLK_T_IN, inLen: 512, headerSplit: [12] });
    drv.kick(0);
    await dev.whenIdle();
    const done = drv.collect(0);
    expect(done.map((d) => [d.token, d.len])).toEqual([[p.token, 0]]);
    expect(done[0]!.status).toBe(0xee); // status byte untouched
    expect(r.core.choke.last?.clause).toBe('blk.legacy-dev-op.driver.5');
    expect(dev.stats.malformed).toBe(1);
  });

  it('[basic.dev-status-field.device.2] after a malformed chain (NEEDS_RESET), a device reset and re-initialization serve requests again', async () => {
    const dev = new BlkDevice(new RamBackend(DISK));
    const r = startDevice(dev);
    const d = new BlkDriver(r, dev);
    d.post(0, { type: VIRTIO_BLK_T_OUT, out: pattern(512, 5), noStatus: true });
    d.kick(0);
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    r.reinit();
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(0);
    const d2 = new BlkDriver(r, dev);
    expect((await d2.write(0, 1, pattern(512, 6))).status).toBe(VIRTIO_BLK_S_OK);
    expect((await d2.read(0, 1, 512)).data).toEqual(pattern(512, 6));
  });

  it('an IN without a separate status descriptor takes the last writable byte as status (511 data bytes → IOERR, not a guest error)', async () => {
    const { r, drv } = await rig('ram');
    const d = await drv.run(0, { type: VIRTIO_BLK_T_IN, inLen: 512, noStatus: true });
    expect(d.len).toBe(1);
    expect(d.data[511]).toBe(VIRTIO_BLK_S_IOERR);
    expect(r.core.choke.count).toBe(0);
  });
});

describe('virtio-blk file backend', () => {
  it('opening a missing image says to create it; size mismatch says what to do', async () => {
    await expect(openBlkDevice({ backend: 'file', path: join(dir, 'nope.img') })).rejects.toThrow(/does not exist: create it, or pass create: true/);
    await expect(openBlkDevice({ backend: 'file', path: join(dir, 'nope.img'), create: true })).rejects.toThrow(/needs a size/);
    await expect(openBlkDevice({ backend: 'file', path: dir })).rejects.toThrow(/is a directory/);
    const path = join(dir, 'sized.img');
    (await openBlkDevice({ backend: 'file', path, create: true, size: 8192 })).close();
    await expect(FileBackend.open(path, { size: 4096 })).rejects.toThrow(/has 8192 bytes but size 4096 was requested/);
    await expect(FileBackend.open(path, { size: 1000, create: true })).rejects.toThrow(/multiple of 512/);
  });

  it('data survives close and reopen', async () => {
    const path = join(dir, 'persist.img');
    const a = await openBlkDevice({ backend: 'file', path, create: true, size: 65536 });
    const ra = startDevice(a);
    await new BlkDriver(ra, a).write(0, 5, pattern(2048, 4));
    await a.close();
    const b = await openBlkDevice({ backend: 'file', path });
    const rb = startDevice(b);
    expect((await new BlkDriver(rb, b).read(0, 5, 2048)).data).toEqual(pattern(2048, 4));
    await b.close();
  });
});
