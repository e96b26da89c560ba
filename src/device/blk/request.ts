/**
 * Parsing and validating one virtio-blk request chain (`struct virtio_blk_req`, virtio 1.4 §5.2.6):
 *
 *   type le32 | reserved le32 | sector le64 | data[] | status u8
 *   \______ device-readable header ______/            \_ last device-writable byte _/
 *
 * Framing is free (`basic.split-vq.message-framing.device.1`: the device MUST NOT assume an
 * arrangement of descriptors): the header is gathered from however many readable descriptors
 * carry it, data may start or end inside a descriptor, and the status byte is the last byte of
 * the writable part wherever it lies. A chain without a full header or without a writable byte is
 * malformed (a guest error); everything else that is wrong with a request is answered with a
 * status (IOERR / UNSUPP) and the device keeps going.
 *
 * Nothing here allocates: a {@link BlkRequest} is pooled by the device and reused.
 */
import type { AddressSpace } from '../../memory/space.js';
import { DescChain } from '../../queue/types.js';
import { readFromChain } from '../../queue/chain-io.js';
import { IoVec } from './backend.js';
import {
  BLK_DWZ_SEGMENT_BYTES,
  BLK_REQ_HEADER_BYTES,
  SECTOR_SIZE,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './constants.js';

/**
 * The request layout clause: the header fields are device-readable, data follows, the status byte
 * is device-writable. VIRTIO 1.4 keeps the only normative sentence about the layout in the legacy
 * section (the struct in §5.2.6 itself is not a normative block).
 */
export const CLAUSE_REQUEST_LAYOUT = 'blk.legacy-dev-op.driver.5';

/** One request in flight: the popped chain plus what the device parsed from it. */
export class BlkRequest {
  /** The chain (segments stay valid until the request is released). */
  readonly chain: DescChain;
  /** Data segments handed to the backend (guest segments, or the bounce buffer). */
  readonly iov: IoVec;
  /** Space the chain's region indices refer to. */
  space: AddressSpace | null = null;
  /** Queue index and its generation when popped (stale completions are dropped). */
  q = 0;
  qgen = 0;
  /** IN_ORDER completion slot. */
  slot = 0;
  type = 0;
  sectorLo = 0;
  sectorHi = 0;
  /** Offset of the status byte within the writable part. */
  statusOff = 0;
  /** Data bytes moved (IN: bytes written into guest buffers). */
  dataBytes = 0;
  /** Bounce buffer for asynchronous reads (grown on demand, kept across reuse). */
  bounce: Uint8Array | null = null;
  /** This request reads through {@link bounce}. */
  bounced = false;

  constructor(capacity: number) {
    this.chain = new DescChain(capacity);
    this.iov = new IoVec(capacity);
  }

  /** The request's sector as a Number, or -1 when it is 2^53 or more (never in range). */
  get sector(): number {
    return this.sectorHi >= 0x200000 ? -1 : this.sectorHi * 4294967296 + this.sectorLo;
  }

  /** A bounce buffer of at least `n` bytes. */
  bounceBuffer(n: number): Uint8Array {
    let b = this.bounce;
    if (b === null || b.length < n) {
      let cap = 4096;
      while (cap < n) cap *= 2;
      b = new Uint8Array(cap);
      this.bounce = b;
    }
    return b;
  }
}

/** Why a chain is malformed (null when the request can be answered). */
export interface MalformedChain {
  readonly clause: string;
  readonly message: string;
}

const NO_HEADER: MalformedChain = {
  clause: CLAUSE_REQUEST_LAYOUT,
  message: `request chain has fewer than ${BLK_REQ_HEADER_BYTES} device-readable bytes: the type/reserved/sector header is missing`,
};
const NO_STATUS: MalformedChain = {
  clause: CLAUSE_REQUEST_LAYOUT,
  message: 'request chain has no device-writable byte for the status',
};

/**
 * Read the header of `req.chain` (gathered across descriptors) into `req`, and locate the status
 * byte. `scratch` is a reusable 16-byte view with its DataView.
 * @returns null when the request can be answered, else why the chain is malformed
 */
export function parseHeader(space: AddressSpace, req: BlkRequest, scratch: Uint8Array, dv: DataView): MalformedChain | null {
  const chain = req.chain;
  // basic.split-vq.message-framing.device.1: no framing assumed — gather the header from any descriptors.
  if (chain.readableBytes < BLK_REQ_HEADER_BYTES) return NO_HEADER;
  if (chain.writableBytes < 1) return NO_STATUS;
  readFromChain(space, chain, scratch, 0, BLK_REQ_HEADER_BYTES, 0);
  req.type = dv.getUint32(0, true);
  // reserved (legacy ioprio) at 4 is ignored.
  req.sectorLo = dv.getUint32(8, true);
  req.sectorHi = dv.getUint32(12, true);
  req.statusOff = chain.writableBytes - 1;
  req.space = space;
  return null;
}

/**
 * Fill `iov` with `len` bytes of the chain's readable part (`readable`) starting `skip` bytes in,
 * or of its writable part. Segments are whole-region views plus offsets: no copy, no allocation.
 * @returns bytes described (less than `len` only when the part is shorter)
 */
export function chainToIov(space: AddressSpace, chain: DescChain, iov: IoVec, readable: boolean, skip: number, len: number): number {
  iov.clear();
  const regions = space.regions;
  const cRegion = chain.region;
  const cOff = chain.offset;
  const cLen = chain.len;
  const start = readable ? 0 : chain.readable;
  const end = readable ? chain.readable : chain.count;
  let left = len;
  for (let i = start; i < end && left > 0; i++) {
    const sl = cLen[i]!;
    if (skip >= sl) {
      skip -= sl;
      continue;
    }
    const take = sl - skip < left ? sl - skip : left;
    iov.push(regions[cRegion[i]!]!.u8, cOff[i]! + skip, take);
    left -= take;
    skip = 0;
  }
  return len - left;
}

/**
 * Range check for a request touching `bytes` bytes from `sector` (`blk.dev-op.driver.2`: no
 * request may read or write beyond capacity). `sector` < 0 means "2^53 or more".
 */
export function inCapacity(sector: number, bytes: number, capacitySectors: number): boolean {
  return sector >= 0 && sector <= capacitySectors && bytes / SECTOR_SIZE <= capacitySectors - sector;
}

/** Result of {@link checkDwzSegments}: a status, the clause behind a non-OK one, and the work. */
export interface DwzCheck {
  status: number;
  clause: string | undefined;
  message: string;
  /** Number of valid segments (read them again with {@link readDwzSegment}). */
  segments: number;
}

/** Limits for discard / write-zeroes requests (from the config space). */
export interface DwzLimits {
  maxSectors: number;
  maxSeg: number;
  capacitySectors: number;
}

/** One parsed `struct virtio_blk_discard_write_zeroes` (reused). */
export interface DwzSegment {
  sector: number;
  numSectors: number;
  flags: number;
}

/**
 * Read segment `i` of a discard / write-zeroes request (data starts after the header).
 * `sector` is -1 when it is 2^53 or more.
 */
export function readDwzSegment(space: AddressSpace, chain: DescChain, i: number, scratch: Uint8Array, dv: DataView, out: DwzSegment): void {
  readFromChain(space, chain, scratch, 0, BLK_DWZ_SEGMENT_BYTES, BLK_REQ_HEADER_BYTES + i * BLK_DWZ_SEGMENT_BYTES);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  out.sector = hi >= 0x200000 ? -1 : hi * 4294967296 + lo;
  out.numSectors = dv.getUint32(8, true);
  out.flags = dv.getUint32(12, true);
}

/**
 * Validate a DISCARD or WRITE_ZEROES request without doing anything (a bad request changes
 * nothing). Checks, each with its clause:
 *  - data is a whole number of 16-byte segments (`blk.dev-op.driver.7`) → IOERR;
 *  - at most max_discard_seg / max_write_zeroes_seg segments (`blk.dev-op.driver.9` / `.11`) → IOERR;
 *  - reserved flag bits set (`blk.dev-op.device.4`) → UNSUPP; unmap on a discard (`blk.dev-op.device.5`,
 *    and `blk.dev-op.driver.14`) → UNSUPP. The UNSUPP checks run over every segment before any
 *    IOERR range check, so a MUST-UNSUPP request never gets IOERR for another reason;
 *  - num_sectors within max_discard_sectors / max_write_zeroes_sectors, and the range within
 *    capacity (`blk.dev-op.driver.2`) → IOERR.
 */
export function checkDwzSegments(space: AddressSpace, req: BlkRequest, limits: DwzLimits, scratch: Uint8Array, dv: DataView, seg: DwzSegment, out: DwzCheck): DwzCheck {
  const chain = req.chain;
  const isDiscard = req.type === VIRTIO_BLK_T_DISCARD;
  const what = isDiscard ? 'discard' : 'write-zeroes';
  const data = chain.readableBytes - BLK_REQ_HEADER_BYTES;
  out.status = VIRTIO_BLK_S_IOERR;
  out.segments = 0;
  if (data % BLK_DWZ_SEGMENT_BYTES !== 0) {
    // blk.dev-op.driver.7: data is a multiple of the segment struct size.
    out.clause = 'blk.dev-op.driver.7';
    out.message = `${what}: ${data} data bytes is not a multiple of ${BLK_DWZ_SEGMENT_BYTES}`;
    return out;
  }
  const n = data / BLK_DWZ_SEGMENT_BYTES;
  if (n > limits.maxSeg) {
    // blk.dev-op.driver.9 (discard) / blk.dev-op.driver.11 (write zeroes): at most max_*_seg segments.
    out.clause = isDiscard ? 'blk.dev-op.driver.9' : 'blk.dev-op.driver.11';
    out.message = `${what}: ${n} segments, more than the ${limits.maxSeg} the device allows`;
    return out;
  }
  for (let i = 0; i < n; i++) {
    readDwzSegment(space, chain, i, scratch, dv, seg);
    if ((seg.flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0) {
      // blk.dev-op.device.4: UNSUPP when an unknown flag is set.
      out.status = VIRTIO_BLK_S_UNSUPP;
      out.clause = 'blk.dev-op.device.4';
      out.message = `${what}: segment ${i} sets reserved flag bits 0x${(seg.flags >>> 0).toString(16)}`;
      return out;
    }
    if (isDiscard && (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) !== 0) {
      // blk.dev-op.device.5 (driver side: blk.dev-op.driver.14): UNSUPP for a discard with unmap.
      out.status = VIRTIO_BLK_S_UNSUPP;
      out.clause = 'blk.dev-op.device.5';
      out.message = `discard: segment ${i} sets the unmap flag`;
      return out;
    }
  }
  for (let i = 0; i < n; i++) {
    readDwzSegment(space, chain, i, scratch, dv, seg);
    if (seg.numSectors > limits.maxSectors) {
      // max_discard_sectors / max_write_zeroes_sectors (config field descriptions, §5.2.4; no
      // normative statement covers a driver exceeding them) → IOERR, nothing done.
      out.clause = undefined;
      out.message = `${what}: segment ${i} covers ${seg.numSectors} sectors, more than the ${limits.maxSectors} the device allows`;
      return out;
    }
    if (!inCapacity(seg.sector, seg.numSectors * SECTOR_SIZE, limits.capacitySectors)) {
      // blk.dev-op.driver.2: nothing beyond capacity.
      out.clause = 'blk.dev-op.driver.2';
      out.message = `${what}: segment ${i} (sector ${seg.sector < 0 ? '>= 2^53' : seg.sector}, ${seg.numSectors} sectors) reaches beyond the capacity of ${limits.capacitySectors} sectors`;
      return out;
    }
  }
  out.status = VIRTIO_BLK_S_OK;
  out.clause = undefined;
  out.message = '';
  out.segments = n;
  return out;
}
