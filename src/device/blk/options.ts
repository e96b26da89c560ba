/** Options and counters of the virtio-blk device (see `blk-device.ts`). */
import type { BlkBackend } from './backend.js';
import type { FileBackendOptions } from './file-backend.js';

/** Device options of `BlkDevice` (everything but the backend). */
export interface BlkDeviceOptions {
  /** Request queues (default 1). More than 1 offers VIRTIO_BLK_F_MQ with num_queues = queues. */
  queues?: number;
  /** Largest queue size the driver may choose (power of 2, 2..32768; default 256). */
  queueSize?: number;
  /** Device ID string for GET_ID: ASCII, at most 20 bytes, NUL-padded (default empty). */
  serial?: string;
  /** Logical block size in bytes (power of 2, 512..65536; default 512); offered as VIRTIO_BLK_F_BLK_SIZE. */
  blkSize?: number;
  /** Physical block size in bytes (power of 2 ≥ blkSize; default blkSize); topology.physical_block_exp. */
  physicalBlockSize?: number;
  /** topology.min_io_size in logical blocks (default 1). */
  minIoSize?: number;
  /** topology.opt_io_size in logical blocks (default 0 = not reported). */
  optIoSize?: number;
  /** Most data segments per request (seg_max; default queueSize - 2, at most 1022). */
  segMax?: number;
  /** Largest data segment in bytes (size_max; VIRTIO_BLK_F_SIZE_MAX is offered only when set). */
  sizeMax?: number;
  /** Offer VIRTIO_BLK_F_DISCARD (default true; never on a read-only disk). */
  discard?: boolean;
  /** Offer VIRTIO_BLK_F_WRITE_ZEROES (default true; never on a read-only disk). */
  writeZeroes?: boolean;
  /** max_discard_sectors (default 65536 = 32 MiB). */
  maxDiscardSectors?: number;
  /** max_discard_seg (default 8). */
  maxDiscardSeg?: number;
  /** max_write_zeroes_sectors (default 65536). */
  maxWriteZeroesSectors?: number;
  /** max_write_zeroes_seg (default 8). */
  maxWriteZeroesSeg?: number;
  /**
   * fdatasync for FLUSH and for writes that must be stable at completion (default true). False
   * acknowledges FLUSH once prior writes completed, without fdatasync: a host crash can then lose
   * acknowledged writes.
   */
  durableFlush?: boolean;
  /** Offer VIRTIO_BLK_F_CONFIG_WCE (driver-switchable cache mode; default false). */
  configWce?: boolean;
  /** Initial cache mode with CONFIG_WCE: true writeback (default), false writethrough. */
  writeback?: boolean;
  /** Present the disk read-only (VIRTIO_BLK_F_RO) even when the backend could write. */
  readOnly?: boolean;
  /** Asynchronous backends read straight into guest buffers (see the module doc; default false). */
  zeroCopyReads?: boolean;
}

/** Backend selection for `openBlkDevice` (`open.ts`). */
export type BlkBackendSpec =
  | ({ backend: 'file'; path: string } & FileBackendOptions)
  | { backend: 'ram'; size: number }
  | { backend: 'custom'; instance: BlkBackend };

/** Options of `openBlkDevice` (`open.ts`). */
export type OpenBlkOptions = BlkBackendSpec & BlkDeviceOptions;

/** Counters of a {@link BlkDevice} (plain numbers). */
export interface BlkStats {
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  getIds: number;
  discards: number;
  writeZeroes: number;
  /** Requests answered VIRTIO_BLK_S_IOERR. */
  ioErrors: number;
  /** Requests answered VIRTIO_BLK_S_UNSUPP. */
  unsupported: number;
  /** Malformed chains reported to the choke point. */
  malformed: number;
  bytesRead: number;
  bytesWritten: number;
  /** fdatasync-backed flushes (FLUSH requests and writethrough writes). */
  syncs: number;
  /** Completions dropped because the device or queue was reset meanwhile. */
  staleCompletions: number;
}

/** Fresh zeroed counters. */
export function newBlkStats(): BlkStats {
  return { requests: 0, reads: 0, writes: 0, flushes: 0, getIds: 0, discards: 0, writeZeroes: 0, ioErrors: 0, unsupported: 0, malformed: 0, bytesRead: 0, bytesWritten: 0, syncs: 0, staleCompletions: 0 };
}
