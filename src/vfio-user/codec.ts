/**
 * vfio-user message encoding and decoding with full validation.
 *
 * Decoders take the payload (bytes after the 16-byte header) and either return a plain object or
 * throw a {@link VirtioError} with code PROTOCOL and the errno the error reply should carry
 * (`e.errno`). 64-bit fields are read as two 32-bit halves; a value at or above 2^53 cannot be an
 * address or size we can represent, so it is refused (EINVAL / EOVERFLOW) rather than rounded.
 * Encoders return a whole message (header included) in a fresh Uint8Array.
 */
import { VirtioError } from '../errors.js';
import {
  CAP_LIMITS,
  DEFAULT_CAPS,
  Errno,
  FLAG_ERROR,
  FLAG_TYPE_REPLY,
  HEADER_SIZE,
  IRQ_SET_DATA_BOOL,
  IRQ_SET_DATA_EVENTFD,
  IRQ_SET_DATA_MASK,
  IRQ_SET_DATA_NONE,
  IRQ_SET_ACTION_MASK_ALL,
  IRQ_SET_ACTION_MASK,
  IRQ_SET_ACTION_TRIGGER,
  IRQ_SET_ACTION_UNMASK,
  REGION_INFO_CAP_SPARSE_MMAP,
  SIZES,
  type VfioUserCaps,
} from './protocol.js';

const TWO32 = 4294967296;

/** A decoded message header. */
export interface Header {
  id: number;
  command: number;
  /** Whole message size, header included. */
  size: number;
  flags: number;
  error: number;
}

/** A protocol error that becomes an error reply with `errno`. */
export function protoError(errno: number, message: string): VirtioError {
  return new VirtioError('PROTOCOL', message, { errno });
}

/** Read the header at `off` (no validation). */
export function readHeader(u8: Uint8Array, off = 0): Header {
  const dv = new DataView(u8.buffer, u8.byteOffset + off, HEADER_SIZE);
  return { id: dv.getUint16(0, true), command: dv.getUint16(2, true), size: dv.getUint32(4, true), flags: dv.getUint32(8, true), error: dv.getUint32(12, true) };
}

/** Build a message: header + `payloadLen` bytes, filled by `fill(dv, u8)` (offsets relative to the payload start = 16). */
export function buildMessage(id: number, command: number, flags: number, payloadLen: number, fill?: (dv: DataView, u8: Uint8Array) => void, error = 0): Uint8Array {
  const size = HEADER_SIZE + payloadLen;
  const u8 = new Uint8Array(size);
  const dv = new DataView(u8.buffer);
  dv.setUint16(0, id & 0xffff, true);
  dv.setUint16(2, command & 0xffff, true);
  dv.setUint32(4, size, true);
  dv.setUint32(8, flags >>> 0, true);
  dv.setUint32(12, error >>> 0, true);
  if (fill !== undefined) fill(new DataView(u8.buffer, HEADER_SIZE), u8.subarray(HEADER_SIZE));
  return u8;
}

/** An error reply (header only) to request `id`/`command`. */
export function errorReply(id: number, command: number, errno: number): Uint8Array {
  return buildMessage(id, command, FLAG_TYPE_REPLY | FLAG_ERROR, 0, undefined, errno);
}

/** Write a Number (< 2^53) as u64. */
export function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v % TWO32, true);
  dv.setUint32(off + 4, Math.floor(v / TWO32), true);
}

/** Read a u64; -1 when it is 2^53 or more. */
export function getU64(dv: DataView, off: number): number {
  const lo = dv.getUint32(off, true);
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x200000) return -1;
  return hi * TWO32 + lo;
}

function payloadView(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, p.byteLength);
}

function need(p: Uint8Array, n: number, what: string): DataView {
  if (p.byteLength < n) throw protoError(Errno.EINVAL, `${what}: payload of ${p.byteLength} bytes, need at least ${n}`);
  return payloadView(p);
}

/** argsz must cover the fixed struct and fit in the payload. */
function checkArgsz(argsz: number, min: number, payload: number, what: string): void {
  if (argsz < min) throw protoError(Errno.EINVAL, `${what}: argsz ${argsz} is smaller than the ${min}-byte struct`);
  if (argsz > payload) throw protoError(Errno.EINVAL, `${what}: argsz ${argsz} exceeds the ${payload}-byte payload`);
}

// ================================================================================================
// VERSION

/** A decoded VERSION payload. */
export interface VersionMsg {
  major: number;
  minor: number;
  /** The peer's capabilities with defaults filled in. */
  caps: VfioUserCaps;
  /** The JSON text as sent. */
  json: string;
}

/** Encode a VERSION payload (request or reply). `caps` become `{"capabilities": {...}}`. */
export function encodeVersion(id: number, reply: boolean, major: number, minor: number, caps: Partial<VfioUserCaps>): Uint8Array {
  const c: Record<string, number> = {};
  if (caps.maxMsgFds !== undefined) c['max_msg_fds'] = caps.maxMsgFds;
  if (caps.maxDataXferSize !== undefined) c['max_data_xfer_size'] = caps.maxDataXferSize;
  if (caps.pgsizes !== undefined) c['pgsizes'] = caps.pgsizes;
  if (caps.maxDmaMaps !== undefined) c['max_dma_maps'] = caps.maxDmaMaps;
  const json = new TextEncoder().encode(JSON.stringify({ capabilities: c }));
  return buildMessage(id, 1, reply ? FLAG_TYPE_REPLY : 0, 4 + json.length + 1, (dv, u8) => {
    dv.setUint16(0, major, true);
    dv.setUint16(2, minor, true);
    u8.set(json, 4); // the final byte stays NUL
  });
}

function capInt(o: Record<string, unknown>, key: string, min: number, max: number, dflt: number): number {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw protoError(Errno.EINVAL, `VERSION: capability ${key} must be an integer ${min}..${max} (got ${JSON.stringify(v)})`);
  return v;
}

/** Decode a VERSION payload (NUL-terminated JSON after major/minor). */
export function decodeVersion(p: Uint8Array): VersionMsg {
  const dv = need(p, SIZES.VERSION_MIN, 'VERSION');
  const major = dv.getUint16(0, true);
  const minor = dv.getUint16(2, true);
  const body = p.subarray(4);
  const nul = body.indexOf(0);
  if (nul < 0) throw protoError(Errno.EINVAL, 'VERSION: the JSON capabilities string is not NUL-terminated');
  const json = new TextDecoder('utf-8', { fatal: false }).decode(body.subarray(0, nul));
  let caps: VfioUserCaps = { ...DEFAULT_CAPS };
  if (json.length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      throw protoError(Errno.EINVAL, 'VERSION: capabilities are not valid JSON');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw protoError(Errno.EINVAL, 'VERSION: capabilities JSON must be an object');
    const c = (parsed as Record<string, unknown>)['capabilities'];
    if (c !== undefined) {
      if (c === null || typeof c !== 'object' || Array.isArray(c)) throw protoError(Errno.EINVAL, 'VERSION: "capabilities" must be an object');
      const o = c as Record<string, unknown>;
      caps = {
        maxMsgFds: capInt(o, 'max_msg_fds', 0, 1024, DEFAULT_CAPS.maxMsgFds),
        maxDataXferSize: capInt(o, 'max_data_xfer_size', 1, 2 ** 32, DEFAULT_CAPS.maxDataXferSize),
        pgsizes: capInt(o, 'pgsizes', 1, Number.MAX_SAFE_INTEGER, DEFAULT_CAPS.pgsizes),
        maxDmaMaps: capInt(o, 'max_dma_maps', 0, 2 ** 32, DEFAULT_CAPS.maxDmaMaps),
      };
      if (caps.pgsizes % 4096 !== 0) throw protoError(Errno.EINVAL, `VERSION: pgsizes ${caps.pgsizes} must include only page sizes ≥ 4096`);
    }
  }
  return { major, minor, caps, json };
}

/** Clamp a peer's capabilities to what we accept. */
export function clampCaps(c: VfioUserCaps): VfioUserCaps {
  return {
    maxMsgFds: Math.min(c.maxMsgFds, CAP_LIMITS.maxMsgFds),
    maxDataXferSize: Math.min(c.maxDataXferSize, CAP_LIMITS.maxDataXferSize),
    pgsizes: c.pgsizes,
    maxDmaMaps: Math.min(c.maxDmaMaps, CAP_LIMITS.maxDmaMaps),
  };
}

// ================================================================================================
// DMA_MAP / DMA_UNMAP

/** DMA_MAP payload. */
export interface DmaMapMsg {
  argsz: number;
  flags: number;
  /** Offset into the fd (when one is passed). */
  offset: number;
  /** IOVA (guest-physical address). */
  addr: number;
  size: number;
}

export function encodeDmaMap(id: number, m: Omit<DmaMapMsg, 'argsz'>): Uint8Array {
  return buildMessage(id, 2, 0, SIZES.DMA_MAP, (dv) => {
    dv.setUint32(0, SIZES.DMA_MAP, true);
    dv.setUint32(4, m.flags, true);
    setU64(dv, 8, m.offset);
    setU64(dv, 16, m.addr);
    setU64(dv, 24, m.size);
  });
}

export function decodeDmaMap(p: Uint8Array): DmaMapMsg {
  const dv = need(p, SIZES.DMA_MAP, 'DMA_MAP');
  const argsz = dv.getUint32(0, true);
  checkArgsz(argsz, SIZES.DMA_MAP, p.byteLength, 'DMA_MAP');
  const flags = dv.getUint32(4, true);
  const offset = getU64(dv, 8);
  const addr = getU64(dv, 16);
  const size = getU64(dv, 24);
  if (offset < 0 || addr < 0 || size < 0) throw protoError(Errno.EINVAL, 'DMA_MAP: offset, address or size is 2^53 or more');
  if (size === 0) throw protoError(Errno.EINVAL, 'DMA_MAP: size 0');
  if (addr + size > 2 ** 53) throw protoError(Errno.EOVERFLOW, `DMA_MAP: [0x${addr.toString(16)}, +0x${size.toString(16)}) ends beyond 2^53`);
  if ((flags & ~3) !== 0) throw protoError(Errno.EINVAL, `DMA_MAP: unknown flags 0x${flags.toString(16)} (READ 1, WRITE 2)`);
  return { argsz, flags, offset, addr, size };
}

/** DMA_UNMAP payload. */
export interface DmaUnmapMsg {
  argsz: number;
  flags: number;
  addr: number;
  size: number;
}

export function encodeDmaUnmap(id: number, m: Omit<DmaUnmapMsg, 'argsz'>, reply = false): Uint8Array {
  return buildMessage(id, 3, reply ? FLAG_TYPE_REPLY : 0, SIZES.DMA_UNMAP, (dv) => {
    dv.setUint32(0, SIZES.DMA_UNMAP, true);
    dv.setUint32(4, m.flags, true);
    setU64(dv, 8, m.addr);
    setU64(dv, 16, m.size);
  });
}

export function decodeDmaUnmap(p: Uint8Array): DmaUnmapMsg {
  const dv = need(p, SIZES.DMA_UNMAP, 'DMA_UNMAP');
  const argsz = dv.getUint32(0, true);
  checkArgsz(argsz, SIZES.DMA_UNMAP, p.byteLength, 'DMA_UNMAP');
  const flags = dv.getUint32(4, true);
  const addr = getU64(dv, 8);
  const size = getU64(dv, 16);
  if (addr < 0 || size < 0) throw protoError(Errno.EINVAL, 'DMA_UNMAP: address or size is 2^53 or more');
  if ((flags & ~3) !== 0) throw protoError(Errno.EINVAL, `DMA_UNMAP: unknown flags 0x${flags.toString(16)}`);
  if ((flags & 1) !== 0) throw protoError(Errno.ENOTSUP, 'DMA_UNMAP: dirty page tracking is not supported (migration is not offered)');
  return { argsz, flags, addr, size };
}

// ================================================================================================
// DEVICE_GET_INFO / GET_REGION_INFO / GET_IRQ_INFO

/** argsz of a request whose struct is `min` bytes (GET_INFO, GET_REGION_INFO, GET_IRQ_INFO). */
export function decodeArgsz(p: Uint8Array, min: number, what: string): DataView {
  const dv = need(p, min, what);
  const argsz = dv.getUint32(0, true);
  if (argsz < min) throw protoError(Errno.EINVAL, `${what}: argsz ${argsz} is smaller than the ${min}-byte struct`);
  return dv;
}

export interface DeviceInfoMsg {
  argsz: number;
  flags: number;
  numRegions: number;
  numIrqs: number;
}

export function encodeDeviceInfoRequest(id: number): Uint8Array {
  return buildMessage(id, 4, 0, SIZES.DEVICE_INFO, (dv) => dv.setUint32(0, SIZES.DEVICE_INFO, true));
}

export function encodeDeviceInfoReply(id: number, m: Omit<DeviceInfoMsg, 'argsz'>): Uint8Array {
  return buildMessage(id, 4, FLAG_TYPE_REPLY, SIZES.DEVICE_INFO, (dv) => {
    dv.setUint32(0, SIZES.DEVICE_INFO, true);
    dv.setUint32(4, m.flags, true);
    dv.setUint32(8, m.numRegions, true);
    dv.setUint32(12, m.numIrqs, true);
  });
}

export function decodeDeviceInfo(p: Uint8Array): DeviceInfoMsg {
  const dv = decodeArgsz(p, SIZES.DEVICE_INFO, 'DEVICE_GET_INFO');
  return { argsz: dv.getUint32(0, true), flags: dv.getUint32(4, true), numRegions: dv.getUint32(8, true), numIrqs: dv.getUint32(12, true) };
}

/** A sparse mmap area of a region. */
export interface SparseArea {
  offset: number;
  size: number;
}

export interface RegionInfoMsg {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: number;
  /** Offset into the region's fd (mmap-able regions). */
  offset: number;
  /** Sparse mmap areas, when the reply carries that capability. */
  sparse?: SparseArea[];
}

export function encodeRegionInfoRequest(id: number, index: number, argsz: number = SIZES.REGION_INFO): Uint8Array {
  return buildMessage(id, 5, 0, Math.max(argsz, SIZES.REGION_INFO), (dv) => {
    dv.setUint32(0, argsz, true);
    dv.setUint32(8, index, true);
  });
}

/**
 * A region info reply. With `sparse` areas the capability follows the struct, but only when the
 * request's argsz leaves room for it; otherwise argsz reports the size needed (VFIO semantics) and
 * no capability is sent.
 */
export function encodeRegionInfoReply(id: number, m: Omit<RegionInfoMsg, 'argsz' | 'capOffset'>, requestArgsz: number): Uint8Array {
  const capBytes = m.sparse !== undefined && m.sparse.length > 0 ? 16 + 16 * m.sparse.length : 0;
  const full = SIZES.REGION_INFO + capBytes;
  const withCap = capBytes > 0 && requestArgsz >= full;
  const len = withCap ? full : SIZES.REGION_INFO;
  return buildMessage(id, 5, FLAG_TYPE_REPLY, len, (dv) => {
    dv.setUint32(0, capBytes > 0 ? full : SIZES.REGION_INFO, true);
    dv.setUint32(4, m.flags | (capBytes > 0 ? 8 : 0), true);
    dv.setUint32(8, m.index, true);
    dv.setUint32(12, withCap ? SIZES.REGION_INFO : 0, true);
    setU64(dv, 16, m.size);
    setU64(dv, 24, m.offset);
    if (withCap) {
      const c = SIZES.REGION_INFO;
      dv.setUint16(c, REGION_INFO_CAP_SPARSE_MMAP, true);
      dv.setUint16(c + 2, 1, true);
      dv.setUint32(c + 4, 0, true); // next
      dv.setUint32(c + 8, m.sparse!.length, true);
      m.sparse!.forEach((a, i) => {
        setU64(dv, c + 16 + 16 * i, a.offset);
        setU64(dv, c + 24 + 16 * i, a.size);
      });
    }
  });
}

export function decodeRegionInfoRequest(p: Uint8Array): { argsz: number; index: number } {
  const dv = decodeArgsz(p, SIZES.REGION_INFO, 'DEVICE_GET_REGION_INFO');
  return { argsz: dv.getUint32(0, true), index: dv.getUint32(8, true) };
}

export function decodeRegionInfoReply(p: Uint8Array): RegionInfoMsg {
  const dv = need(p, SIZES.REGION_INFO, 'DEVICE_GET_REGION_INFO reply');
  const m: RegionInfoMsg = {
    argsz: dv.getUint32(0, true),
    flags: dv.getUint32(4, true),
    index: dv.getUint32(8, true),
    capOffset: dv.getUint32(12, true),
    size: getU64(dv, 16),
    offset: getU64(dv, 24),
  };
  if (m.size < 0 || m.offset < 0) throw protoError(Errno.EINVAL, 'region info: size or offset is 2^53 or more');
  if (m.capOffset !== 0) {
    const c = m.capOffset;
    if (c < SIZES.REGION_INFO || c + 16 > p.byteLength) throw protoError(Errno.EINVAL, `region info: cap_offset ${c} outside the ${p.byteLength}-byte reply`);
    if (dv.getUint16(c, true) === REGION_INFO_CAP_SPARSE_MMAP) {
      const n = dv.getUint32(c + 8, true);
      if (c + 16 + 16 * n > p.byteLength) throw protoError(Errno.EINVAL, `region info: ${n} sparse areas do not fit the reply`);
      m.sparse = [];
      for (let i = 0; i < n; i++) m.sparse.push({ offset: getU64(dv, c + 16 + 16 * i), size: getU64(dv, c + 24 + 16 * i) });
    }
  }
  return m;
}

export interface IrqInfoMsg {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}

export function encodeIrqInfo(id: number, reply: boolean, m: Omit<IrqInfoMsg, 'argsz'>): Uint8Array {
  return buildMessage(id, 7, reply ? FLAG_TYPE_REPLY : 0, SIZES.IRQ_INFO, (dv) => {
    dv.setUint32(0, SIZES.IRQ_INFO, true);
    dv.setUint32(4, m.flags, true);
    dv.setUint32(8, m.index, true);
    dv.setUint32(12, m.count, true);
  });
}

export function decodeIrqInfo(p: Uint8Array): IrqInfoMsg {
  const dv = decodeArgsz(p, SIZES.IRQ_INFO, 'DEVICE_GET_IRQ_INFO');
  return { argsz: dv.getUint32(0, true), flags: dv.getUint32(4, true), index: dv.getUint32(8, true), count: dv.getUint32(12, true) };
}

// ================================================================================================
// DEVICE_SET_IRQS

export interface SetIrqsMsg {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
  /** DATA_BOOL: one byte per interrupt. */
  bools?: Uint8Array;
}

export function encodeSetIrqs(id: number, m: Omit<SetIrqsMsg, 'argsz'>): Uint8Array {
  const extra = m.bools?.length ?? 0;
  return buildMessage(id, 8, 0, SIZES.SET_IRQS + extra, (dv, u8) => {
    dv.setUint32(0, SIZES.SET_IRQS + extra, true);
    dv.setUint32(4, m.flags, true);
    dv.setUint32(8, m.index, true);
    dv.setUint32(12, m.start, true);
    dv.setUint32(16, m.count, true);
    if (m.bools !== undefined) u8.set(m.bools, SIZES.SET_IRQS);
  });
}

/** Decode and check the flag combination (exactly one data type and one action). */
export function decodeSetIrqs(p: Uint8Array): SetIrqsMsg {
  const dv = need(p, SIZES.SET_IRQS, 'DEVICE_SET_IRQS');
  const argsz = dv.getUint32(0, true);
  checkArgsz(argsz, SIZES.SET_IRQS, p.byteLength, 'DEVICE_SET_IRQS');
  const flags = dv.getUint32(4, true);
  const data = flags & IRQ_SET_DATA_MASK;
  const action = flags & IRQ_SET_ACTION_MASK_ALL;
  if ((flags & ~(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK_ALL)) !== 0) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: unknown flags 0x${flags.toString(16)}`);
  if (data !== IRQ_SET_DATA_NONE && data !== IRQ_SET_DATA_BOOL && data !== IRQ_SET_DATA_EVENTFD) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: flags 0x${flags.toString(16)} need exactly one data type`);
  if (action !== IRQ_SET_ACTION_MASK && action !== IRQ_SET_ACTION_UNMASK && action !== IRQ_SET_ACTION_TRIGGER) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: flags 0x${flags.toString(16)} need exactly one action`);
  const m: SetIrqsMsg = { argsz, flags, index: dv.getUint32(8, true), start: dv.getUint32(12, true), count: dv.getUint32(16, true) };
  if (data === IRQ_SET_DATA_BOOL) {
    if (argsz < SIZES.SET_IRQS + m.count) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: DATA_BOOL for ${m.count} interrupts needs ${m.count} bytes of data`);
    m.bools = p.slice(SIZES.SET_IRQS, SIZES.SET_IRQS + m.count);
  }
  return m;
}

// ================================================================================================
// REGION_READ / REGION_WRITE

export interface RegionAccessMsg {
  offset: number;
  region: number;
  count: number;
  /** Write request / read reply data (a view into the message). */
  data: Uint8Array;
}

/** REGION_READ request, or REGION_WRITE request (with data). */
export function encodeRegionAccess(id: number, command: 9 | 10, offset: number, region: number, count: number, data?: Uint8Array, flags = 0): Uint8Array {
  const dlen = data?.length ?? 0;
  return buildMessage(id, command, flags, SIZES.REGION_ACCESS + dlen, (dv, u8) => {
    setU64(dv, 0, offset);
    dv.setUint32(8, region, true);
    dv.setUint32(12, count, true);
    if (data !== undefined) u8.set(data, SIZES.REGION_ACCESS);
  });
}

/** REGION_READ reply (with data) or REGION_WRITE reply (without). */
export function encodeRegionAccessReply(id: number, command: 9 | 10, offset: number, region: number, count: number, data?: Uint8Array): Uint8Array {
  return encodeRegionAccess(id, command, offset, region, count, data, FLAG_TYPE_REPLY);
}

/**
 * Decode a REGION_READ/WRITE payload. `withData` = the payload must carry `count` data bytes
 * (write request, read reply); `maxCount` bounds count.
 */
export function decodeRegionAccess(p: Uint8Array, withData: boolean, maxCount: number, what: string): RegionAccessMsg {
  const dv = need(p, SIZES.REGION_ACCESS, what);
  const offset = getU64(dv, 0);
  const region = dv.getUint32(8, true);
  const count = dv.getUint32(12, true);
  if (offset < 0) throw protoError(Errno.EINVAL, `${what}: offset is 2^53 or more`);
  if (count > maxCount) throw protoError(Errno.E2BIG, `${what}: count ${count} exceeds max_data_xfer_size ${maxCount}`);
  const dataLen = p.byteLength - SIZES.REGION_ACCESS;
  if (withData ? dataLen !== count : dataLen !== 0) throw protoError(Errno.EINVAL, `${what}: ${dataLen} data bytes for count ${count}`);
  return { offset, region, count, data: p.subarray(SIZES.REGION_ACCESS) };
}

// ================================================================================================
// DMA_READ / DMA_WRITE (spec layout: u64 address, u64 count, data @16)

export interface DmaAccessMsg {
  addr: number;
  count: number;
  data: Uint8Array;
}

export function encodeDmaAccess(id: number, command: 11 | 12, addr: number, count: number, data?: Uint8Array, flags = 0): Uint8Array {
  const dlen = data?.length ?? 0;
  return buildMessage(id, command, flags, SIZES.DMA_ACCESS + dlen, (dv, u8) => {
    setU64(dv, 0, addr);
    setU64(dv, 8, count);
    if (data !== undefined) u8.set(data, SIZES.DMA_ACCESS);
  });
}

export function decodeDmaAccess(p: Uint8Array, withData: boolean, maxCount: number, what: string): DmaAccessMsg {
  const dv = need(p, SIZES.DMA_ACCESS, what);
  const addr = getU64(dv, 0);
  const count = getU64(dv, 8);
  if (addr < 0 || count < 0) throw protoError(Errno.EINVAL, `${what}: address or count is 2^53 or more`);
  if (count > maxCount) throw protoError(Errno.E2BIG, `${what}: count ${count} exceeds max_data_xfer_size ${maxCount}`);
  const dataLen = p.byteLength - SIZES.DMA_ACCESS;
  if (withData ? dataLen !== count : dataLen !== 0) throw protoError(Errno.EINVAL, `${what}: ${dataLen} data bytes for count ${count}`);
  return { addr, count, data: p.subarray(SIZES.DMA_ACCESS) };
}

/** SET_IRQS flag names for logs. */
export function describeIrqFlags(flags: number): string {
  const d = flags & IRQ_SET_DATA_MASK;
  const a = flags & IRQ_SET_ACTION_MASK_ALL;
  return `${d === IRQ_SET_DATA_NONE ? 'NONE' : d === IRQ_SET_DATA_BOOL ? 'BOOL' : d === IRQ_SET_DATA_EVENTFD ? 'EVENTFD' : '?'}|${a === IRQ_SET_ACTION_MASK ? 'MASK' : a === IRQ_SET_ACTION_UNMASK ? 'UNMASK' : a === IRQ_SET_ACTION_TRIGGER ? 'TRIGGER' : '?'}`;
}
