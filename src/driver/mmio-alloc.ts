/**
 * A bus-address allocator for BARs, like firmware/OS resource assignment on a flat root bus:
 * two windows — 32-bit (default [0xE000_0000, 0xFEC0_0000)) and 64-bit (default
 * [0x8_0000_0000, 0x100_0000_0000)) — and naturally aligned bump allocation (a BAR of size S is
 * placed at a multiple of S, as the PCI sizing protocol requires).
 */
import { VirtioError, requireArg } from '../errors.js';

/** An address window [start, end). */
export interface MmioWindow {
  start: number;
  end: number;
}

/** Options of {@link MmioAllocator}. */
export interface MmioAllocatorOptions {
  /** Window for 32-bit BARs (default [0xE000_0000, 0xFEC0_0000)). */
  window32?: MmioWindow;
  /** Window for 64-bit BARs (default [0x8_0000_0000, 0x100_0000_0000)). */
  window64?: MmioWindow;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Bump allocator over the two windows. */
export class MmioAllocator {
  private readonly w32: MmioWindow;
  private readonly w64: MmioWindow;
  private next32: number;
  private next64: number;

  constructor(o: MmioAllocatorOptions = {}) {
    this.w32 = { ...(o.window32 ?? { start: 0xe000_0000, end: 0xfec0_0000 }) };
    this.w64 = { ...(o.window64 ?? { start: 0x8_0000_0000, end: 0x100_0000_0000 }) };
    requireArg(this.w32.start < this.w32.end && this.w32.end <= 2 ** 32, `MmioAllocator: 32-bit window [${hex(this.w32.start)}, ${hex(this.w32.end)}) must be non-empty and below 4 GiB`);
    requireArg(this.w64.start < this.w64.end && this.w64.end <= 2 ** 53, `MmioAllocator: 64-bit window [${hex(this.w64.start)}, ${hex(this.w64.end)}) must be non-empty and below 2^53`);
    this.next32 = this.w32.start;
    this.next64 = this.w64.start;
  }

  /**
   * Allocate `size` bytes (a power of two) for a BAR, naturally aligned.
   * @param is64 use the 64-bit window
   * @throws VirtioError INVALID_ARGUMENT when the window is exhausted
   */
  alloc(size: number, is64: boolean): number {
    requireArg(Number.isSafeInteger(size) && size > 0 && Number.isInteger(Math.log2(size)), `MmioAllocator: BAR size ${size} is not a power of two`);
    const w = is64 ? this.w64 : this.w32;
    const cur = is64 ? this.next64 : this.next32;
    const addr = Math.ceil(cur / size) * size;
    if (addr + size > w.end) {
      throw new VirtioError('INVALID_ARGUMENT', `MmioAllocator: no room for a ${hex(size)}-byte ${is64 ? '64' : '32'}-bit BAR in [${hex(w.start)}, ${hex(w.end)}) (next free ${hex(cur)}); give a larger window`);
    }
    if (is64) this.next64 = addr + size;
    else this.next32 = addr + size;
    return addr;
  }
}
