/**
 * `struct virtio_blk_config` (virtio 1.4 §5.2.4), 96 bytes, little-endian:
 *
 * | off | field                          | off | field                         |
 * |----:|--------------------------------|----:|-------------------------------|
 * |   0 | capacity (le64, 512-B sectors) |  36 | max_discard_sectors (le32)    |
 * |   8 | size_max (le32)                |  40 | max_discard_seg (le32)        |
 * |  12 | seg_max (le32)                 |  44 | discard_sector_alignment      |
 * |  16 | geometry (c le16, h u8, s u8)  |  48 | max_write_zeroes_sectors      |
 * |  20 | blk_size (le32)                |  52 | max_write_zeroes_seg          |
 * |  24 | topology: phys_block_exp u8,   |  56 | write_zeroes_may_unmap u8     |
 * |     |  alignment_offset u8, min_io   |  57 | unused1[3]                    |
 * |     |  le16 @26, opt_io le32 @28     |  60 | secure erase (3 × le32)       |
 * |  32 | writeback u8, 33 unused0 u8    |  72 | zoned characteristics (24 B)  |
 * |  34 | num_queues (le16)              |     |                               |
 *
 * Fields of features that are not offered read 0; padding reads 0 (`blk.dev-init.device.3`).
 * The only driver-writable field is `writeback` (with VIRTIO_BLK_F_CONFIG_WCE offered).
 */
import type { DeviceConfigSpace } from '../types.js';
import { BLK_CONFIG_BYTES } from './constants.js';

/** Values to present (0 for a field whose feature is not offered). */
export interface BlkConfigValues {
  capacitySectors: number;
  sizeMax: number;
  segMax: number;
  blkSize: number;
  physicalBlockExp: number;
  alignmentOffset: number;
  minIoSize: number;
  optIoSize: number;
  writeback: number;
  numQueues: number;
  maxDiscardSectors: number;
  maxDiscardSeg: number;
  discardSectorAlignment: number;
  maxWriteZeroesSectors: number;
  maxWriteZeroesSeg: number;
  writeZeroesMayUnmap: boolean;
}

/** Field offsets. */
export const BLK_CFG = {
  capacity: 0,
  sizeMax: 8,
  segMax: 12,
  geometry: 16,
  blkSize: 20,
  physicalBlockExp: 24,
  alignmentOffset: 25,
  minIoSize: 26,
  optIoSize: 28,
  writeback: 32,
  unused0: 33,
  numQueues: 34,
  maxDiscardSectors: 36,
  maxDiscardSeg: 40,
  discardSectorAlignment: 44,
  maxWriteZeroesSectors: 48,
  maxWriteZeroesSeg: 52,
  writeZeroesMayUnmap: 56,
  unused1: 57,
  maxSecureEraseSectors: 60,
  zoned: 72,
} as const;

/** The block device configuration space. */
export class BlkConfig implements DeviceConfigSpace {
  readonly size = BLK_CONFIG_BYTES;
  /** The raw 96 bytes (read-only for callers; use the setters). */
  readonly bytes = new Uint8Array(BLK_CONFIG_BYTES);
  private readonly dv = new DataView(this.bytes.buffer);
  private readonly wceWritable: boolean;
  private readonly initialWriteback: number;
  /** Called after the driver changed `writeback` (VIRTIO_BLK_F_CONFIG_WCE). */
  onWriteback: ((v: number) => void) | undefined;

  /**
   * @param v the values to present
   * @param wceWritable the driver may write `writeback` (VIRTIO_BLK_F_CONFIG_WCE offered)
   */
  constructor(v: BlkConfigValues, wceWritable: boolean) {
    const dv = this.dv;
    this.setCapacity(v.capacitySectors);
    dv.setUint32(BLK_CFG.sizeMax, v.sizeMax, true);
    dv.setUint32(BLK_CFG.segMax, v.segMax, true);
    dv.setUint32(BLK_CFG.blkSize, v.blkSize, true);
    dv.setUint8(BLK_CFG.physicalBlockExp, v.physicalBlockExp);
    dv.setUint8(BLK_CFG.alignmentOffset, v.alignmentOffset);
    dv.setUint16(BLK_CFG.minIoSize, v.minIoSize, true);
    dv.setUint32(BLK_CFG.optIoSize, v.optIoSize, true);
    dv.setUint8(BLK_CFG.writeback, v.writeback);
    dv.setUint16(BLK_CFG.numQueues, v.numQueues, true);
    dv.setUint32(BLK_CFG.maxDiscardSectors, v.maxDiscardSectors, true);
    dv.setUint32(BLK_CFG.maxDiscardSeg, v.maxDiscardSeg, true);
    dv.setUint32(BLK_CFG.discardSectorAlignment, v.discardSectorAlignment, true);
    dv.setUint32(BLK_CFG.maxWriteZeroesSectors, v.maxWriteZeroesSectors, true);
    dv.setUint32(BLK_CFG.maxWriteZeroesSeg, v.maxWriteZeroesSeg, true);
    dv.setUint8(BLK_CFG.writeZeroesMayUnmap, v.writeZeroesMayUnmap ? 1 : 0);
    // blk.dev-init.device.3: unused0 / unused1 stay 0 (the array starts zeroed and nothing writes them).
    this.wceWritable = wceWritable;
    this.initialWriteback = v.writeback;
    this.onWriteback = undefined;
  }

  /** Capacity in 512-byte sectors. */
  get capacitySectors(): number {
    return this.dv.getUint32(0, true) + this.dv.getUint32(4, true) * 4294967296;
  }

  /** Set the capacity (the device raises the config-change interrupt itself, `blk.dev-op.device.2`). */
  setCapacity(sectors: number): void {
    this.dv.setUint32(0, sectors >>> 0, true);
    this.dv.setUint32(4, Math.floor(sectors / 4294967296) >>> 0, true);
  }

  /** The cache mode: 1 writeback, 0 writethrough. */
  get writeback(): number {
    return this.bytes[BLK_CFG.writeback]!;
  }
  set writeback(v: number) {
    this.bytes[BLK_CFG.writeback] = v === 0 ? 0 : 1;
  }

  /** Back to the values given at construction (device reset). */
  reset(): void {
    this.bytes[BLK_CFG.writeback] = this.initialWriteback;
  }

  read(off: number, width: 1 | 2 | 4): number {
    const dv = this.dv;
    return width === 1 ? dv.getUint8(off) : width === 2 ? dv.getUint16(off, true) : dv.getUint32(off, true);
  }

  write(off: number, width: 1 | 2 | 4, value: number): void {
    const wb = BLK_CFG.writeback;
    // blk.dev-op.driver.12: with CONFIG_WCE the driver writes 0 (writethrough) or 1 (writeback).
    // Every other field is read-only: those writes are ignored.
    if (!this.wceWritable || off > wb || off + width <= wb) return;
    const byte = (value >>> ((wb - off) * 8)) & 0xff;
    this.writeback = byte;
    this.onWriteback?.(this.writeback);
  }
}
