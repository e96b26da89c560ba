/**
 * Address spaces: what a device (or a simulated driver) may touch.
 *
 * An {@link AddressSpace} is a sorted set of non-overlapping {@link MemoryRegion}s. Direct DMA gives
 * a device a space with all guest RAM; SWIOTLB gives it a space with only the bounce window;
 * vhost-user `--restrict` gives it the allowed ranges plus the rings. Every queue and device access
 * resolves through the device's space — nothing reaches a backing buffer any other way.
 *
 * Hot path: {@link AddressSpace.resolve} allocates nothing. It returns the region index (or a
 * negative {@link Resolve} code) and leaves the buffer offset in {@link AddressSpace.off}.
 */
import { VirtioError, type VirtioErrorCode } from '../errors.js';
import { MAX_SAFE_ADDR, MemoryRegion, type RegionSpec } from './region.js';

/** Negative results of {@link AddressSpace.resolve}. */
export const enum Resolve {
  /** addr + len overflows 2^53 (or 2^64 from a descriptor's high word). */
  OVERFLOW = -1,
  /** Not (entirely) inside one region of the space. */
  OUT_OF_SPACE = -2,
  /** Write access to a read-only region. */
  READ_ONLY = -3,
}

/** Error code for a negative resolve result. */
export function resolveErrorCode(r: number): VirtioErrorCode {
  return r === Resolve.OVERFLOW ? 'ADDRESS_OVERFLOW' : r === Resolve.READ_ONLY ? 'ADDRESS_READ_ONLY' : 'ADDRESS_OUT_OF_SPACE';
}

/** A set of regions a device may access. */
export class AddressSpace {
  /** Regions sorted by base address; never overlapping. */
  readonly regions: MemoryRegion[];
  /** Human name ("guest-ram", "swiotlb-window"). */
  readonly name: string;
  /** Buffer offset of the address resolved by the last successful {@link resolve}. */
  off = 0;
  private last = 0;

  constructor(regions: Array<MemoryRegion | RegionSpec>, name = 'address-space') {
    this.name = name;
    this.regions = regions.map((r) => (r instanceof MemoryRegion ? r : new MemoryRegion(r)));
    this.sortAndCheck();
  }

  private sortAndCheck(): void {
    this.regions.sort((a, b) => a.base - b.base);
    for (let i = 1; i < this.regions.length; i++) {
      const p = this.regions[i - 1]!;
      const r = this.regions[i]!;
      if (r.base < p.base + p.size) {
        throw new VirtioError('REGION_OVERLAP', `${this.name}: region ${r.name} [0x${r.base.toString(16)}, +0x${r.size.toString(16)}) overlaps ${p.name} [0x${p.base.toString(16)}, +0x${p.size.toString(16)})`);
      }
    }
    this.last = 0;
  }

  /**
   * Resolve [addr, addr+len) for a read (`write=false`) or write access.
   * @returns the region index (>= 0) with the buffer offset in {@link off}, or a negative {@link Resolve}.
   * A zero-length access resolves when `addr` lies inside (or at the end of) a region.
   */
  resolve(addr: number, len: number, write: boolean): number {
    if (!(addr >= 0) || !(len >= 0) || addr + len > MAX_SAFE_ADDR) return Resolve.OVERFLOW;
    const regions = this.regions;
    const n = regions.length;
    let i = this.last;
    let r: MemoryRegion | undefined = regions[i];
    if (r === undefined || addr < r.base || addr + len > r.base + r.size) {
      r = undefined;
      for (i = 0; i < n; i++) {
        const c = regions[i]!;
        if (addr >= c.base && addr + len <= c.base + c.size) {
          r = c;
          break;
        }
      }
      if (r === undefined) return Resolve.OUT_OF_SPACE;
      this.last = i;
    }
    if (write && r.readOnly) return Resolve.READ_ONLY;
    this.off = r.offset + (addr - r.base);
    return i;
  }

  /**
   * Resolve an address given as two 32-bit halves (as read from a descriptor), exactly:
   * any address at or above 2^53 cannot be in a region, so it is reported as OVERFLOW or OUT_OF_SPACE
   * without losing the high bits.
   */
  resolveHiLo(lo: number, hi: number, len: number, write: boolean): number {
    if (hi >= 0x200000) return hi >= 0xffffffff && lo + len > 0xffffffff ? Resolve.OVERFLOW : Resolve.OUT_OF_SPACE;
    return this.resolve(hi * 4294967296 + lo, len, write);
  }

  /** True when [addr, addr+len) is inside the space with the given access. */
  check(addr: number, len: number, write: boolean): boolean {
    return this.resolve(addr, len, write) >= 0;
  }

  /** Region at index `i` (as returned by {@link resolve}). */
  region(i: number): MemoryRegion {
    const r = this.regions[i];
    if (r === undefined) throw new VirtioError('INVALID_ARGUMENT', `${this.name}: no region ${i}`);
    return r;
  }

  /** Copy `len` bytes at bus address `addr` into `dst[dstOff..]`. Throws VirtioError when outside the space. */
  read(addr: number, dst: Uint8Array, dstOff = 0, len = dst.length - dstOff): void {
    const i = this.resolveOrThrow(addr, len, false);
    const r = this.regions[i]!;
    dst.set(r.u8.subarray(this.off, this.off + len), dstOff);
  }

  /** Copy `len` bytes from `src[srcOff..]` to bus address `addr`. Throws VirtioError when outside the space. */
  write(addr: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    const i = this.resolveOrThrow(addr, len, true);
    const r = this.regions[i]!;
    r.u8.set(src.subarray(srcOff, srcOff + len), this.off);
  }

  /** Little-endian integer reads/writes at a bus address (throwing, for setup paths and tests). */
  readU8(addr: number): number {
    const i = this.resolveOrThrow(addr, 1, false);
    return this.regions[i]!.u8[this.off]!;
  }
  readU16(addr: number): number {
    const i = this.resolveOrThrow(addr, 2, false);
    return this.regions[i]!.dv.getUint16(this.off, true);
  }
  readU32(addr: number): number {
    const i = this.resolveOrThrow(addr, 4, false);
    return this.regions[i]!.dv.getUint32(this.off, true);
  }
  /** 64-bit read as a Number; throws if the value is 2^53 or more. */
  readU64(addr: number): number {
    const i = this.resolveOrThrow(addr, 8, false);
    const dv = this.regions[i]!.dv;
    const lo = dv.getUint32(this.off, true);
    const hi = dv.getUint32(this.off + 4, true);
    if (hi >= 0x200000) throw new VirtioError('ADDRESS_OVERFLOW', `${this.name}: 64-bit value at 0x${addr.toString(16)} does not fit in 53 bits`);
    return hi * 4294967296 + lo;
  }
  writeU8(addr: number, v: number): void {
    const i = this.resolveOrThrow(addr, 1, true);
    this.regions[i]!.u8[this.off] = v;
  }
  writeU16(addr: number, v: number): void {
    const i = this.resolveOrThrow(addr, 2, true);
    this.regions[i]!.dv.setUint16(this.off, v, true);
  }
  writeU32(addr: number, v: number): void {
    const i = this.resolveOrThrow(addr, 4, true);
    this.regions[i]!.dv.setUint32(this.off, v >>> 0, true);
  }
  writeU64(addr: number, v: number): void {
    const i = this.resolveOrThrow(addr, 8, true);
    const dv = this.regions[i]!.dv;
    dv.setUint32(this.off, v % 4294967296, true);
    dv.setUint32(this.off + 4, Math.floor(v / 4294967296), true);
  }

  /** Resolve or throw a VirtioError naming the address, length and space. */
  resolveOrThrow(addr: number, len: number, write: boolean): number {
    const i = this.resolve(addr, len, write);
    if (i < 0) {
      throw new VirtioError(resolveErrorCode(i), `${this.name}: ${write ? 'write' : 'read'} of ${len} bytes at 0x${addr.toString(16)} is outside the address space (regions: ${this.describe()})`);
    }
    return i;
  }

  /** Move region `index` to a new base (e.g. a BAR was reprogrammed). Throws on overlap. */
  moveRegion(index: number, newBase: number): void {
    const r = this.region(index);
    if (!Number.isSafeInteger(newBase) || newBase < 0 || newBase + r.size > MAX_SAFE_ADDR) {
      throw new VirtioError('REGION_INVALID', `${this.name}: cannot move ${r.name} to 0x${newBase.toString(16)}`);
    }
    const old = r.base;
    r.base = newBase;
    try {
      this.sortAndCheck();
    } catch (e) {
      r.base = old;
      this.sortAndCheck();
      throw e;
    }
  }

  /**
   * A new space containing only the parts of this one inside the given [start, end) ranges
   * (vhost-user `--restrict`, a DMA window). Sub-regions share the same backing buffers.
   */
  restrict(ranges: ReadonlyArray<{ start: number; end: number }>, name = `${this.name}-restricted`): AddressSpace {
    const out: RegionSpec[] = [];
    for (const { start, end } of ranges) {
      if (!(end > start)) throw new VirtioError('INVALID_ARGUMENT', `restrict: range [0x${start.toString(16)}, 0x${end.toString(16)}) is empty or reversed`);
      for (const r of this.regions) {
        const s = Math.max(start, r.base);
        const e = Math.min(end, r.base + r.size);
        if (e > s) {
          const spec: RegionSpec = { base: s, size: e - s, buffer: r.buffer, offset: r.offset + (s - r.base), readOnly: r.readOnly, name: `${r.name}[0x${s.toString(16)}]`, fdOffset: r.fdOffset };
          if (r.fd !== undefined) spec.fd = r.fd;
          out.push(spec);
        }
      }
    }
    return new AddressSpace(out, name);
  }

  /** Total bytes covered. */
  get totalSize(): number {
    let s = 0;
    for (const r of this.regions) s += r.size;
    return s;
  }

  /** "name [base, +size) ..." for messages. */
  describe(): string {
    return this.regions.map((r) => `${r.name}[0x${r.base.toString(16)}, +0x${r.size.toString(16)})${r.readOnly ? ' ro' : ''}`).join(', ') || '(empty)';
  }
}
