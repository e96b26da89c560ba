/**
 * A guest-RAM allocator for the simulated driver: first-fit over a free list of extents, per
 * region of the {@link AddressSpace} (an allocation never spans two regions, so every allocation
 * resolves as one range). Used for rings and buffers in direct-DMA mode and for the guest-side
 * copies of buffers that SWIOTLB mode bounces.
 *
 * Not a hot-path allocator: the allocation-free queue API takes caller-owned buffers.
 */
import { VirtioError, requireArg } from '../errors.js';
import type { AddressSpace } from '../memory/space.js';

/** A range of the space to manage. */
export interface RamRange {
  start: number;
  end: number;
}

interface Extent {
  start: number;
  end: number;
  /** Region index in the space (extents of different regions never merge). */
  region: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** First-fit allocator over guest RAM. */
export class GuestRamAllocator {
  readonly space: AddressSpace;
  private free: Extent[] = [];
  private readonly live = new Map<number, { start: number; end: number; region: number }>();
  private bytesLive = 0;

  /**
   * @param space guest RAM
   * @param ranges parts of it to manage (default: every region whole); each must lie inside the space
   */
  constructor(space: AddressSpace, ranges?: readonly RamRange[]) {
    this.space = space;
    const rs = ranges ?? space.regions.map((r) => ({ start: r.base, end: r.base + r.size }));
    for (const { start, end } of rs) {
      requireArg(Number.isSafeInteger(start) && Number.isSafeInteger(end) && end > start, `GuestRamAllocator: range [${hex(start)}, ${hex(end)}) is empty or invalid`);
      // Cut the range at region boundaries.
      space.regions.forEach((r, i) => {
        const s = Math.max(start, r.base);
        const e = Math.min(end, r.base + r.size);
        if (e > s && !r.readOnly) this.free.push({ start: s, end: e, region: i });
      });
    }
    requireArg(this.free.length > 0, `GuestRamAllocator: the ranges cover no writable RAM of ${space.name} (${space.describe()})`);
    this.free.sort((a, b) => a.start - b.start);
  }

  /**
   * Allocate `size` bytes aligned to `align` (a power of two, default 64).
   * @throws VirtioError INVALID_ARGUMENT when no free extent fits (says how much is free)
   */
  alloc(size: number, align = 64): number {
    requireArg(Number.isSafeInteger(size) && size > 0, `GuestRamAllocator.alloc: size ${size} must be a positive integer`);
    requireArg(Number.isSafeInteger(align) && align > 0 && Number.isInteger(Math.log2(align)), `GuestRamAllocator.alloc: align ${align} must be a power of two`);
    const free = this.free;
    for (let i = 0; i < free.length; i++) {
      const x = free[i]!;
      const a = Math.ceil(x.start / align) * align;
      if (a + size > x.end) continue;
      // Split: [x.start, a) stays free, [a, a+size) is taken, [a+size, x.end) stays free.
      const tail: Extent = { start: a + size, end: x.end, region: x.region };
      const parts: Extent[] = [];
      if (a > x.start) parts.push({ start: x.start, end: a, region: x.region });
      if (tail.end > tail.start) parts.push(tail);
      free.splice(i, 1, ...parts);
      this.live.set(a, { start: a, end: a + size, region: x.region });
      this.bytesLive += size;
      return a;
    }
    throw new VirtioError('INVALID_ARGUMENT', `GuestRamAllocator: no free block of ${size} bytes (align ${align}) in ${this.space.name}: ${this.freeBytes} bytes free in ${free.length} extents, ${this.bytesLive} in use; give the driver more guest RAM`);
  }

  /** Allocate and zero. */
  allocZeroed(size: number, align = 64): number {
    const a = this.alloc(size, align);
    const i = this.space.resolveOrThrow(a, size, true);
    const r = this.space.regions[i]!;
    r.u8.fill(0, this.space.off, this.space.off + size);
    return a;
  }

  /** Free an allocation by its address. @throws VirtioError INVALID_ARGUMENT for an unknown address */
  release(addr: number): void {
    const b = this.live.get(addr);
    if (b === undefined) throw new VirtioError('INVALID_ARGUMENT', `GuestRamAllocator.release: ${hex(addr)} is not a live allocation`);
    this.live.delete(addr);
    this.bytesLive -= b.end - b.start;
    const free = this.free;
    // Insert sorted, then merge with neighbours of the same region.
    let i = 0;
    while (i < free.length && free[i]!.start < b.start) i++;
    free.splice(i, 0, { start: b.start, end: b.end, region: b.region });
    if (i + 1 < free.length) {
      const n = free[i + 1]!;
      if (n.start === b.end && n.region === b.region) {
        free[i]!.end = n.end;
        free.splice(i + 1, 1);
      }
    }
    if (i > 0) {
      const p = free[i - 1]!;
      if (p.end === free[i]!.start && p.region === b.region) {
        p.end = free[i]!.end;
        free.splice(i, 1);
      }
    }
  }

  /** Size of the live allocation at `addr`, or −1. */
  sizeOf(addr: number): number {
    const b = this.live.get(addr);
    return b === undefined ? -1 : b.end - b.start;
  }

  /** Bytes free. */
  get freeBytes(): number {
    let n = 0;
    for (const x of this.free) n += x.end - x.start;
    return n;
  }

  /** Bytes allocated. */
  get usedBytes(): number {
    return this.bytesLive;
  }

  /** Live allocations. */
  get liveCount(): number {
    return this.live.size;
  }
}
