/**
 * A memory region: a contiguous range of bus (guest-physical) addresses backed by a contiguous
 * range of an ArrayBuffer. Views over the backing are built once, so hot paths index them
 * directly (no `subarray()` per access).
 */
import { VirtioError } from '../errors.js';

/** Addresses are plain Numbers; every region lies below 2^53 so arithmetic stays exact. */
export const MAX_SAFE_ADDR = 2 ** 53;

/** What a caller provides to describe a region. */
export interface RegionSpec {
  /** Bus / guest-physical address of the first byte. */
  base: number;
  /** Length in bytes (> 0). */
  size: number;
  /** Backing memory (V8 ArrayBuffer, SharedArrayBuffer, or a native mapping). */
  buffer: ArrayBufferLike;
  /** Byte offset of `base` inside `buffer` (default 0). */
  offset?: number;
  /** Writes refused when true (vfio-user read-only DMA ranges). */
  readOnly?: boolean;
  /** Human name for logs and errors ("ram0", "swiotlb"). */
  name?: string;
  /** File descriptor that backs `buffer`, when shareable with other processes. */
  fd?: number;
  /** Offset of `buffer`'s first byte inside `fd`. */
  fdOffset?: number;
}

/** An immutable-shape region with pre-built views. `base` may move (BAR reprogramming). */
export class MemoryRegion {
  /** Bus address of the first byte. Mutable only through {@link AddressSpace.moveRegion}. */
  base: number;
  readonly size: number;
  readonly buffer: ArrayBufferLike;
  /** Byte offset of `base` inside `buffer`. */
  readonly offset: number;
  readonly readOnly: boolean;
  readonly name: string;
  readonly fd: number | undefined;
  readonly fdOffset: number;
  /** Byte view over the whole backing buffer (index with `offset + (addr - base)`). */
  readonly u8: Uint8Array;
  /** DataView over the whole backing buffer (little-endian accessors). */
  readonly dv: DataView;

  constructor(spec: RegionSpec) {
    const offset = spec.offset ?? 0;
    const name = spec.name ?? 'region';
    if (!Number.isSafeInteger(spec.base) || spec.base < 0 || !Number.isSafeInteger(spec.size) || spec.size <= 0) {
      throw new VirtioError('REGION_INVALID', `region ${name}: base and size must be non-negative integers and size > 0 (got base=${spec.base}, size=${spec.size})`);
    }
    if (spec.base + spec.size > MAX_SAFE_ADDR) {
      throw new VirtioError('REGION_INVALID', `region ${name}: must end below 2^53 (base=0x${spec.base.toString(16)}, size=0x${spec.size.toString(16)})`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + spec.size > spec.buffer.byteLength) {
      throw new VirtioError('REGION_INVALID', `region ${name}: offset ${offset} + size ${spec.size} exceeds its buffer (${spec.buffer.byteLength} bytes)`);
    }
    this.base = spec.base;
    this.size = spec.size;
    this.buffer = spec.buffer;
    this.offset = offset;
    this.readOnly = spec.readOnly ?? false;
    this.name = name;
    this.fd = spec.fd;
    this.fdOffset = spec.fdOffset ?? 0;
    this.u8 = new Uint8Array(spec.buffer);
    this.dv = new DataView(spec.buffer);
  }

  /** Last bus address + 1. */
  get end(): number {
    return this.base + this.size;
  }

  /** True when [addr, addr+len) lies inside this region. */
  contains(addr: number, len: number): boolean {
    return addr >= this.base && len >= 0 && addr + len <= this.base + this.size;
  }
}
