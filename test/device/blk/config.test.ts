import { describe, expect, it } from 'vitest';
import { BlkDevice } from '../../../src/device/blk/blk-device.js';
import { BLK_CFG } from '../../../src/device/blk/config.js';
import {
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_CONFIG_WCE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_LIFETIME,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_F_ZONED,
} from '../../../src/device/blk/constants.js';
import { RamBackend } from '../../../src/device/blk/ram-backend.js';
import { checkOffer } from '../../../src/features/negotiate.js';
import { isVirtioError } from '../../../src/errors.js';
import { startDevice } from './harness.js';

const MiB = 1 << 20;

function cfg8(d: BlkDevice, off: number): number {
  return d.config.read(off, 1);
}
function cfg16(d: BlkDevice, off: number): number {
  return d.config.read(off, 2);
}
function cfg32(d: BlkDevice, off: number): number {
  return d.config.read(off, 4);
}

describe('virtio-blk config space', () => {
  it('[blk.dev-init.device.3] lays out the 96-byte struct: capacity in 512-byte sectors, limits, topology, num_queues; padding 0', () => {
    const d = new BlkDevice(new RamBackend(3 * MiB + 700), {
      queues: 4,
      queueSize: 128,
      blkSize: 4096,
      physicalBlockSize: 16384,
      optIoSize: 32,
      sizeMax: 65536,
      maxDiscardSectors: 1000,
      maxDiscardSeg: 3,
      maxWriteZeroesSectors: 2000,
      maxWriteZeroesSeg: 5,
    });
    expect(d.config.size).toBe(96);
    expect(cfg32(d, 0)).toBe(Math.floor((3 * MiB + 700) / 512)); // capacity low word (remainder invisible)
    expect(cfg32(d, 4)).toBe(0);
    expect(cfg32(d, BLK_CFG.sizeMax)).toBe(65536);
    expect(cfg32(d, BLK_CFG.segMax)).toBe(126); // queueSize - 2
    expect(cfg32(d, BLK_CFG.blkSize)).toBe(4096);
    expect(cfg8(d, BLK_CFG.physicalBlockExp)).toBe(2); // 16384 / 4096 = 2^2
    expect(cfg8(d, BLK_CFG.alignmentOffset)).toBe(0);
    expect(cfg16(d, BLK_CFG.minIoSize)).toBe(1);
    expect(cfg32(d, BLK_CFG.optIoSize)).toBe(32);
    expect(cfg16(d, BLK_CFG.numQueues)).toBe(4);
    expect(cfg32(d, BLK_CFG.maxDiscardSectors)).toBe(1000);
    expect(cfg32(d, BLK_CFG.maxDiscardSeg)).toBe(3);
    expect(cfg32(d, BLK_CFG.discardSectorAlignment)).toBe(8); // 4096 / 512
    expect(cfg32(d, BLK_CFG.maxWriteZeroesSectors)).toBe(2000);
    expect(cfg32(d, BLK_CFG.maxWriteZeroesSeg)).toBe(5);
    expect(cfg8(d, BLK_CFG.unused0)).toBe(0);
    for (let i = 0; i < 3; i++) expect(cfg8(d, BLK_CFG.unused1 + i)).toBe(0);
    for (let o = BLK_CFG.maxSecureEraseSectors; o < 96; o += 4) expect(cfg32(d, o)).toBe(0); // secure erase + zoned
  });

  it('seg_max defaults to queueSize - 2, capped at 1022; an explicit segMax is presented as given', () => {
    expect(new BlkDevice(new RamBackend(MiB), { queueSize: 4096 }).config.read(BLK_CFG.segMax, 4)).toBe(1022);
    expect(new BlkDevice(new RamBackend(MiB), { queueSize: 2 }).config.read(BLK_CFG.segMax, 4)).toBe(1);
    const d = new BlkDevice(new RamBackend(MiB), { segMax: 2000 });
    expect(d.config.read(BLK_CFG.segMax, 4)).toBe(2000);
    expect(d.maxChainSegments(0)).toBeGreaterThanOrEqual(2002); // header + data + status
  });

  it('capacity above 2^32 sectors uses the high word', () => {
    const big = { name: 'big', size: 2 ** 33 * 512 + 1024, readOnly: true, persistent: false, synchronous: true, readv: () => undefined, writev: () => undefined, flush: () => undefined, discard: () => undefined, writeZeroes: () => undefined, close: async () => undefined };
    const d = new BlkDevice(big);
    expect(cfg32(d, 0)).toBe(2);
    expect(cfg32(d, 4)).toBe(2);
    expect(d.config.capacitySectors).toBe(2 ** 33 + 2);
  });

  it('[blk.dev-init.device.1] always offers FLUSH; [blk.dev-init.device.4] never ZONED; LIFETIME not offered by default', () => {
    const f = new BlkDevice(new RamBackend(MiB)).offeredFeatures();
    for (const b of [VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]) expect(f.has(b)).toBe(true);
    for (const b of [VIRTIO_BLK_F_ZONED, VIRTIO_BLK_F_LIFETIME, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_SIZE_MAX]) expect(f.has(b)).toBe(false);
    const wce = new BlkDevice(new RamBackend(MiB), { configWce: true }).offeredFeatures();
    expect(wce.has(VIRTIO_BLK_F_CONFIG_WCE) && wce.has(VIRTIO_BLK_F_FLUSH)).toBe(true);
    expect(checkOffer(wce.clone().set(32), { deviceType: 2 })).toEqual([]); // + VERSION_1, which the core adds
  });

  it('read-only disk offers RO and neither DISCARD nor WRITE_ZEROES; MQ only with more than one queue', () => {
    const ro = new BlkDevice(new RamBackend(MiB), { readOnly: true });
    const f = ro.offeredFeatures();
    expect(f.has(VIRTIO_BLK_F_RO)).toBe(true);
    expect(f.has(VIRTIO_BLK_F_DISCARD) || f.has(VIRTIO_BLK_F_WRITE_ZEROES)).toBe(false);
    expect(cfg32(ro, BLK_CFG.maxDiscardSectors)).toBe(0);
    const ro2 = new BlkDevice(new RamBackend(MiB, { readOnly: true }));
    expect(ro2.readOnly).toBe(true);
    expect(new BlkDevice(new RamBackend(MiB), { queues: 2 }).offeredFeatures().has(VIRTIO_BLK_F_MQ)).toBe(true);
    expect(cfg16(new BlkDevice(new RamBackend(MiB)), BLK_CFG.numQueues)).toBe(0);
  });

  it('[blk.dev-op.device.9] write_zeroes_may_unmap is 0: write zeroes never deallocates here', () => {
    expect(cfg8(new BlkDevice(new RamBackend(MiB)), BLK_CFG.writeZeroesMayUnmap)).toBe(0);
  });

  it('[blk.dev-op.driver.12] writeback is driver-writable only with CONFIG_WCE; other fields ignore writes', () => {
    const plain = new BlkDevice(new RamBackend(MiB));
    plain.config.write(BLK_CFG.writeback, 1, 1);
    plain.config.write(BLK_CFG.segMax, 4, 7);
    expect(cfg8(plain, BLK_CFG.writeback)).toBe(0);
    expect(cfg32(plain, BLK_CFG.segMax)).toBe(254);
    const wce = new BlkDevice(new RamBackend(MiB), { configWce: true });
    expect(cfg8(wce, BLK_CFG.writeback)).toBe(1);
    wce.config.write(BLK_CFG.writeback, 1, 0);
    expect(cfg8(wce, BLK_CFG.writeback)).toBe(0);
    wce.config.write(BLK_CFG.writeback - 0, 1, 1);
    expect(cfg8(wce, BLK_CFG.writeback)).toBe(1);
    // A 4-byte write covering offset 32 (writeback is byte 0 of the word).
    wce.config.write(32, 4, 0xabcd00);
    expect(cfg8(wce, BLK_CFG.writeback)).toBe(0);
    expect(cfg8(wce, BLK_CFG.unused0)).toBe(0);
    expect(cfg16(wce, BLK_CFG.numQueues)).toBe(0);
  });

  it('[blk.dev-init.device.2] CONFIG_WCE negotiated without FLUSH starts writeback at 0; with FLUSH at the configured mode', () => {
    const a = new BlkDevice(new RamBackend(MiB), { configWce: true });
    const ra = startDevice(a, { decline: [VIRTIO_BLK_F_FLUSH] });
    expect(ra.core.readConfig(BLK_CFG.writeback, 1)).toBe(0);
    const b = new BlkDevice(new RamBackend(MiB), { configWce: true });
    const rb = startDevice(b);
    expect(rb.core.readConfig(BLK_CFG.writeback, 1)).toBe(1);
    const c = new BlkDevice(new RamBackend(MiB), { configWce: true, writeback: false });
    expect(startDevice(c).core.readConfig(BLK_CFG.writeback, 1)).toBe(0);
    // Device reset restores the initial mode after a driver change.
    rb.core.writeConfig(BLK_CFG.writeback, 1, 0);
    expect(rb.core.readConfig(BLK_CFG.writeback, 1)).toBe(0);
    rb.core.writeStatus(0);
    expect(rb.core.readConfig(BLK_CFG.writeback, 1)).toBe(1);
  });

  it('rejects bad options with messages that say what to fix', () => {
    const bad: Array<[object, RegExp]> = [
      [{ serial: 'x'.repeat(21) }, /serial/],
      [{ serial: 'é' }, /ASCII/],
      [{ queueSize: 100 }, /power of 2/],
      [{ queues: 0 }, /queues/],
      [{ blkSize: 1000 }, /blkSize/],
      [{ physicalBlockSize: 256 }, /physicalBlockSize/],
      [{ segMax: 0 }, /segMax/],
      [{ maxDiscardSeg: 0 }, /maxDiscardSeg/],
    ];
    for (const [opts, re] of bad) {
      let err: unknown;
      try {
        new BlkDevice(new RamBackend(MiB), opts);
      } catch (e) {
        err = e;
      }
      expect(isVirtioError(err, 'INVALID_ARGUMENT')).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
    expect(() => new BlkDevice(new RamBackend(100))).toThrow(/smaller than one 512-byte sector/);
  });
});
