/**
 * vhost-user wire format: the 12-byte header and the payload layouts (native byte order, which is
 * little-endian on every host virtiokit runs on), with complete validation.
 *
 * Decoders take the payload bytes of one message and either return a plain object or throw a
 * {@link VirtioError} with code PROTOCOL naming the request, the field and the expected value —
 * the back-end turns that into a failure reply (or closes the connection), never a crash.
 * 64-bit fields are read as two u32 halves; addresses must stay below 2^53 (user-space and
 * guest-physical addresses on x86-64 and arm64 do).
 */
import { VirtioError } from '../errors.js';
import {
  type Mask64,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_KNOWN_FLAGS,
  VHOST_USER_MAX_CONFIG_SIZE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_MAX_REGIONS,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  reqName,
} from './protocol.js';

const TWO32 = 4294967296;

/** A decoded header. */
export interface VhostHeader {
  request: number;
  flags: number;
  size: number;
}

/** One received message: header, payload bytes (a copy) and the fds that came with it. */
export interface VhostMessage extends VhostHeader {
  payload: Uint8Array;
  /** File descriptors received with the message (owned by whoever handles it: close them). */
  fds: number[];
}

/** Payload: vring state (index, num). */
export interface VringState {
  index: number;
  num: number;
}

/** Payload: vring addresses (user addresses unless an IOMMU was negotiated). */
export interface VringAddr {
  index: number;
  flags: number;
  desc: number;
  used: number;
  avail: number;
  log: number;
}

/** One memory region of SET_MEM_TABLE. */
export interface MemRegionDesc {
  /** Guest-physical address. */
  gpa: number;
  size: number;
  /** Front-end user-space address of the first byte. */
  uaddr: number;
  /** Offset of the first byte inside the region's fd. */
  mmapOffset: number;
}

/** Payload: device config space access. */
export interface ConfigPayload {
  offset: number;
  size: number;
  flags: number;
  data: Uint8Array;
}

function protocolError(req: number, msg: string): VirtioError {
  return new VirtioError('PROTOCOL', `vhost-user ${reqName(req)}: ${msg}`);
}

function dv(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, p.byteLength);
}

/** Read a u64 at `off` as a Number; throws when it is 2^53 or more. */
function u53(req: number, d: DataView, off: number, field: string): number {
  const lo = d.getUint32(off, true);
  const hi = d.getUint32(off + 4, true);
  if (hi >= 0x200000) throw protocolError(req, `${field} 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} does not fit in 53 bits`);
  return hi * TWO32 + lo;
}

function putU64(d: DataView, off: number, v: number): void {
  d.setUint32(off, v % TWO32, true);
  d.setUint32(off + 4, Math.floor(v / TWO32), true);
}

function needSize(req: number, p: Uint8Array, n: number, what: string): void {
  if (p.byteLength !== n) throw protocolError(req, `payload of ${p.byteLength} bytes, expected ${n} (${what})`);
}

// ------------------------------------------------------------------------------------------------
// Header

/**
 * Decode and validate a header at `buf[off..off+12)`.
 * @param fromBackend true when reading replies / back-end requests (REPLY flag allowed), false
 *   when a back-end reads front-end requests (REPLY flag refused)
 * @throws VirtioError PROTOCOL for a bad version, unknown flag bits or an oversize payload
 */
export function decodeHeader(buf: Uint8Array, off: number, fromBackend: boolean, maxPayload = VHOST_USER_MAX_PAYLOAD): VhostHeader {
  const d = new DataView(buf.buffer, buf.byteOffset + off, VHOST_USER_HDR_SIZE);
  const request = d.getUint32(0, true);
  const flags = d.getUint32(4, true);
  const size = d.getUint32(8, true);
  if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) throw protocolError(request, `header version ${flags & VHOST_USER_VERSION_MASK}, expected ${VHOST_USER_VERSION}`);
  if ((flags & ~VHOST_USER_KNOWN_FLAGS) !== 0) throw protocolError(request, `unknown header flag bits 0x${(flags & ~VHOST_USER_KNOWN_FLAGS).toString(16)}`);
  if (!fromBackend && (flags & 0x4) !== 0) throw protocolError(request, 'a front-end request carries the REPLY flag');
  if (size > maxPayload) throw protocolError(request, `payload size ${size} exceeds the limit of ${maxPayload} bytes`);
  return { request, flags, size };
}

/** A whole message (header + payload) as bytes. */
export function encodeMessage(request: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(VHOST_USER_HDR_SIZE + payload.byteLength);
  const d = dv(out);
  d.setUint32(0, request >>> 0, true);
  d.setUint32(4, flags >>> 0, true);
  d.setUint32(8, payload.byteLength, true);
  out.set(payload, VHOST_USER_HDR_SIZE);
  return out;
}

// ------------------------------------------------------------------------------------------------
// u64

/** u64 payload as a 64-bit mask. */
export function decodeU64Mask(req: number, p: Uint8Array): Mask64 {
  needSize(req, p, 8, 'u64');
  const d = dv(p);
  return { lo: d.getUint32(0, true), hi: d.getUint32(4, true) };
}

/** u64 payload as a Number (< 2^53). */
export function decodeU64(req: number, p: Uint8Array): number {
  needSize(req, p, 8, 'u64');
  return u53(req, dv(p), 0, 'value');
}

export function encodeU64Mask(m: Mask64): Uint8Array {
  const out = new Uint8Array(8);
  const d = dv(out);
  d.setUint32(0, m.lo >>> 0, true);
  d.setUint32(4, m.hi >>> 0, true);
  return out;
}

export function encodeU64(v: number): Uint8Array {
  const out = new Uint8Array(8);
  putU64(dv(out), 0, v);
  return out;
}

// ------------------------------------------------------------------------------------------------
// vring state / address

export function decodeVringState(req: number, p: Uint8Array): VringState {
  needSize(req, p, 8, 'vring state: index u32, num u32');
  const d = dv(p);
  return { index: d.getUint32(0, true), num: d.getUint32(4, true) };
}

export function encodeVringState(s: VringState): Uint8Array {
  const out = new Uint8Array(8);
  const d = dv(out);
  d.setUint32(0, s.index >>> 0, true);
  d.setUint32(4, s.num >>> 0, true);
  return out;
}

/** Vring address: index u32, flags u32, desc u64, used u64, avail u64, log u64 (40 bytes). */
export function decodeVringAddr(req: number, p: Uint8Array): VringAddr {
  needSize(req, p, 40, 'vring address: index, flags, desc, used, avail, log');
  const d = dv(p);
  const lo = d.getUint32(32, true);
  const hi = d.getUint32(36, true);
  return {
    index: d.getUint32(0, true),
    flags: d.getUint32(4, true),
    desc: u53(req, d, 8, 'descriptor address'),
    used: u53(req, d, 16, 'used address'),
    avail: u53(req, d, 24, 'available address'),
    // The log address is only meaningful with VHOST_VRING_F_LOG; keep it exact-or-max.
    log: hi >= 0x200000 ? Number.MAX_SAFE_INTEGER : hi * TWO32 + lo,
  };
}

export function encodeVringAddr(a: VringAddr): Uint8Array {
  const out = new Uint8Array(40);
  const d = dv(out);
  d.setUint32(0, a.index >>> 0, true);
  d.setUint32(4, a.flags >>> 0, true);
  putU64(d, 8, a.desc);
  putU64(d, 16, a.used);
  putU64(d, 24, a.avail);
  putU64(d, 32, a.log);
  return out;
}

/** Ring index and "no fd" flag of a SET_VRING_KICK/CALL/ERR payload. */
export function decodeVringFile(req: number, p: Uint8Array): { index: number; noFd: boolean } {
  const m = decodeU64Mask(req, p);
  if (m.hi !== 0 || (m.lo & ~0x1ff) !== 0) throw protocolError(req, `u64 0x${m.hi.toString(16)}${m.lo.toString(16).padStart(8, '0')} has bits beyond the ring index (0-7) and the invalid-fd flag (8)`);
  return { index: m.lo & 0xff, noFd: (m.lo & 0x100) !== 0 };
}

// ------------------------------------------------------------------------------------------------
// memory table

const REGION_BYTES = 32;

/**
 * Memory table: nregions u32, padding u32, then nregions × (gpa, size, uaddr, mmap_offset) u64.
 * The payload may be exactly as long as the regions it announces, or the full 8-region struct.
 * Checks: 1 ≤ nregions ≤ 8, sizes > 0, no address overflow, no two regions overlapping in
 * guest-physical or in user address space.
 */
export function decodeMemTable(req: number, p: Uint8Array): MemRegionDesc[] {
  if (p.byteLength < 8) throw protocolError(req, `payload of ${p.byteLength} bytes is shorter than the 8-byte region count`);
  const d = dv(p);
  const n = d.getUint32(0, true);
  if (n < 1 || n > VHOST_USER_MAX_REGIONS) throw protocolError(req, `${n} regions; 1 to ${VHOST_USER_MAX_REGIONS} are allowed`);
  const exact = 8 + n * REGION_BYTES;
  const full = 8 + VHOST_USER_MAX_REGIONS * REGION_BYTES;
  if (p.byteLength !== exact && p.byteLength !== full) throw protocolError(req, `payload of ${p.byteLength} bytes for ${n} regions (expected ${exact} or ${full})`);
  const out: MemRegionDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * REGION_BYTES;
    const r: MemRegionDesc = {
      gpa: u53(req, d, o, `region ${i} guest address`),
      size: u53(req, d, o + 8, `region ${i} size`),
      uaddr: u53(req, d, o + 16, `region ${i} user address`),
      mmapOffset: u53(req, d, o + 24, `region ${i} mmap offset`),
    };
    checkRegion(req, r, i);
    out.push(r);
  }
  checkNoOverlap(req, out, 'gpa', 'guest-physical');
  checkNoOverlap(req, out, 'uaddr', 'user');
  return out;
}

function checkRegion(req: number, r: MemRegionDesc, i: number): void {
  const lim = Number.MAX_SAFE_INTEGER;
  if (r.size === 0) throw protocolError(req, `region ${i} has size 0`);
  if (r.gpa + r.size > lim || r.uaddr + r.size > lim || r.mmapOffset + r.size > lim) throw protocolError(req, `region ${i} (gpa 0x${r.gpa.toString(16)}, size 0x${r.size.toString(16)}) overflows the address range`);
}

function checkNoOverlap(req: number, rs: MemRegionDesc[], key: 'gpa' | 'uaddr', what: string): void {
  const s = rs.map((r, i) => ({ a: r[key], e: r[key] + r.size, i })).sort((x, y) => x.a - y.a);
  for (let k = 1; k < s.length; k++) {
    if (s[k]!.a < s[k - 1]!.e) throw protocolError(req, `regions ${s[k - 1]!.i} and ${s[k]!.i} overlap in ${what} address space`);
  }
}

/** Encode a memory table (exact length). */
export function encodeMemTable(regions: readonly MemRegionDesc[]): Uint8Array {
  const out = new Uint8Array(8 + regions.length * REGION_BYTES);
  const d = dv(out);
  d.setUint32(0, regions.length, true);
  regions.forEach((r, i) => {
    const o = 8 + i * REGION_BYTES;
    putU64(d, o, r.gpa);
    putU64(d, o + 8, r.size);
    putU64(d, o + 16, r.uaddr);
    putU64(d, o + 24, r.mmapOffset);
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// config space

/** Config: offset u32, size u32, flags u32, then `size` bytes (size ≤ 256, offset + size ≤ 256). */
export function decodeConfig(req: number, p: Uint8Array): ConfigPayload {
  if (p.byteLength < 12) throw protocolError(req, `payload of ${p.byteLength} bytes is shorter than the 12-byte config header`);
  const d = dv(p);
  const offset = d.getUint32(0, true);
  const size = d.getUint32(4, true);
  const flags = d.getUint32(8, true);
  if (size > VHOST_USER_MAX_CONFIG_SIZE || offset > VHOST_USER_MAX_CONFIG_SIZE || offset + size > VHOST_USER_MAX_CONFIG_SIZE) {
    throw protocolError(req, `config access of ${size} bytes at offset ${offset} goes beyond ${VHOST_USER_MAX_CONFIG_SIZE} bytes`);
  }
  if (p.byteLength !== 12 + size) throw protocolError(req, `payload of ${p.byteLength} bytes for a ${size}-byte config access (expected ${12 + size})`);
  if (flags > 1) throw protocolError(req, `config flags ${flags} (0 = front-end, 1 = migration)`);
  return { offset, size, flags, data: p.slice(12, 12 + size) };
}

export function encodeConfig(offset: number, flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.byteLength);
  const d = dv(out);
  d.setUint32(0, offset >>> 0, true);
  d.setUint32(4, data.byteLength, true);
  d.setUint32(8, flags >>> 0, true);
  out.set(data, 12);
  return out;
}
