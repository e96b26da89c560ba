/**
 * Memory BARs (32- and 64-bit) in a type-0 header.
 *
 * Sizing protocol (PCI Local Bus 3.0 §6.2.5.1): the driver writes all-ones to a BAR and reads back
 * the size mask with the type flags in the low 4 bits. This falls out of the write mask: the
 * address bits below the BAR size are read-only zero, so an all-ones write reads back
 * `~(size-1) | flags`. A 64-bit BAR takes two registers; the high dword's mask covers the address
 * bits at and above 2^32 that are not below the size.
 *
 * Every driver write that changes a BAR's decoded address emits a {@link BarChange} (for example
 * to move the SWIOTLB window, whose bus address is BAR base + offset). Addresses are Numbers; a
 * 64-bit BAR programmed at or above 2^53 (as happens transiently while sizing) is reported with
 * `valid: false` and must not be used to place anything.
 */
import { requireArg } from '../../errors.js';
import { MAX_SAFE_ADDR } from '../../memory/region.js';
import { PCI_BASE_ADDRESS_0, PCI_ROM_ADDRESS, type PciConfigSpace } from './config-space.js';

/** Number of BAR registers in a type-0 header. */
export const PCI_NUM_BARS = 6;

/** Low flag bits of a memory BAR. */
export const PCI_BAR_MEM_TYPE_64 = 0x4;
export const PCI_BAR_MEM_PREFETCH = 0x8;

/** What a device declares for one BAR. */
export interface BarSpec {
  /** BAR index 0–5 (a 64-bit BAR also uses index + 1, so it must be ≤ 4). */
  index: number;
  /** Size in bytes: a power of two, at least 16 (at least 4096 recommended); ≤ 2^31 for 32-bit BARs. */
  size: number;
  /** 64-bit BAR (memory type 10b). Default false. */
  is64?: boolean;
  /** Prefetchable (reads have no side effects). Default false. */
  prefetchable?: boolean;
}

/** A BAR as the guest currently sees it. */
export interface BarInfo {
  readonly index: number;
  readonly size: number;
  readonly is64: boolean;
  readonly prefetchable: boolean;
  /** Bus address the driver programmed (0 after reset). */
  readonly address: number;
  /** False when the programmed address + size is beyond 2^53 (e.g. during sizing). */
  readonly valid: boolean;
}

/** Emitted when a driver write changes a BAR's decoded address. */
export interface BarChange {
  readonly index: number;
  readonly address: number;
  readonly oldAddress: number;
  readonly valid: boolean;
}

interface BarState {
  spec: Required<BarSpec>;
  lo: number;
  hi: number;
}

const TWO32 = 4294967296;

/** The BAR set of one function: owns config registers 0x10–0x27 and the (absent) expansion ROM. */
export class PciBars {
  private readonly space: PciConfigSpace;
  private readonly bars: Array<BarState | undefined> = new Array<BarState | undefined>(PCI_NUM_BARS).fill(undefined);
  private readonly listeners: Array<(c: BarChange) => void> = [];

  constructor(space: PciConfigSpace, specs: readonly BarSpec[]) {
    this.space = space;
    for (const s of specs) this.declare(s);
    // No expansion ROM: the ROM BAR is read-only zero, so sizing it reads 0 (not implemented).
    space.setWmask(PCI_ROM_ADDRESS, 4, 0);
    space.watch(PCI_BASE_ADDRESS_0, PCI_NUM_BARS * 4, () => this.sync());
  }

  private declare(s: BarSpec): void {
    const spec: Required<BarSpec> = { index: s.index, size: s.size, is64: s.is64 ?? false, prefetchable: s.prefetchable ?? false };
    requireArg(Number.isInteger(spec.index) && spec.index >= 0 && spec.index < PCI_NUM_BARS, `BAR index must be 0..5 (got ${spec.index})`);
    requireArg(!spec.is64 || spec.index <= 4, `64-bit BAR ${spec.index} needs the next register too; use index 0..4`);
    requireArg(Number.isSafeInteger(spec.size) && spec.size >= 16 && Number.isInteger(Math.log2(spec.size)), `BAR ${spec.index} size must be a power of two ≥ 16 (got ${spec.size})`);
    requireArg(spec.is64 || spec.size <= 0x80000000, `32-bit BAR ${spec.index} size must be ≤ 2 GiB (got ${spec.size}); make it 64-bit`);
    requireArg(spec.size < MAX_SAFE_ADDR, `BAR ${spec.index} size is too large`);
    const regs = spec.is64 ? [spec.index, spec.index + 1] : [spec.index];
    for (const r of regs) requireArg(this.bars[r] === undefined && !this.usedAsHigh(r), `BAR register ${r} is already used`);
    const st: BarState = { spec, lo: 0, hi: 0 };
    this.bars[spec.index] = st;
    const off = PCI_BASE_ADDRESS_0 + spec.index * 4;
    const flags = (spec.is64 ? PCI_BAR_MEM_TYPE_64 : 0) | (spec.prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
    const loMask = spec.size >= TWO32 ? 0 : (~(spec.size - 1) & 0xfffffff0) >>> 0;
    this.space.set(off, 4, flags);
    this.space.setWmask(off, 4, loMask);
    if (spec.is64) {
      const hiMask = spec.size > TWO32 ? (~(spec.size / TWO32 - 1) >>> 0) : 0xffffffff;
      this.space.set(off + 4, 4, 0);
      this.space.setWmask(off + 4, 4, hiMask);
    }
  }

  private usedAsHigh(r: number): boolean {
    const prev = r > 0 ? this.bars[r - 1] : undefined;
    return prev !== undefined && prev.spec.is64;
  }

  /** Re-decode all BAR registers after a write and emit changes. */
  private sync(): void {
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const st = this.bars[i];
      if (st === undefined) continue;
      const off = PCI_BASE_ADDRESS_0 + i * 4;
      const lo = (this.space.get(off, 4) & 0xfffffff0) >>> 0;
      const hi = st.spec.is64 ? this.space.get(off + 4, 4) : 0;
      if (lo === st.lo && hi === st.hi) continue;
      const oldAddress = st.hi * TWO32 + st.lo;
      st.lo = lo;
      st.hi = hi;
      const c: BarChange = { index: i, address: hi * TWO32 + lo, oldAddress, valid: this.validState(st) };
      for (const l of this.listeners) l(c);
    }
  }

  private validState(st: BarState): boolean {
    return st.hi < 0x200000 && st.hi * TWO32 + st.lo + st.spec.size <= MAX_SAFE_ADDR;
  }

  /** Subscribe to address changes; returns an unsubscribe function. */
  onChange(fn: (c: BarChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** True when BAR `index` is implemented. */
  has(index: number): boolean {
    return this.bars[index] !== undefined;
  }

  /** Size of BAR `index`, or 0 when it is not implemented (or is the high half of a 64-bit BAR). */
  size(index: number): number {
    return this.bars[index]?.spec.size ?? 0;
  }

  /**
   * Bus address BAR `index` is programmed at (0 after reset), or -1 when it is not implemented.
   * Allocation-free (for the per-access decode path; {@link info} builds an object).
   */
  address(index: number): number {
    const st = this.bars[index];
    return st === undefined ? -1 : st.hi * TWO32 + st.lo;
  }

  /** Current view of BAR `index`, or undefined when it is not implemented. */
  info(index: number): BarInfo | undefined {
    const st = this.bars[index];
    if (st === undefined) return undefined;
    return { index, size: st.spec.size, is64: st.spec.is64, prefetchable: st.spec.prefetchable, address: st.hi * TWO32 + st.lo, valid: this.validState(st) };
  }

  /** All implemented BARs, in index order. */
  list(): BarInfo[] {
    const out: BarInfo[] = [];
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const b = this.info(i);
      if (b !== undefined) out.push(b);
    }
    return out;
  }

  /**
   * Which implemented BAR decodes bus address `addr` for `len` bytes; -1 when none.
   * Only BARs with a valid address are considered; the caller checks the memory-enable bit.
   */
  decode(addr: number, len: number): number {
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const st = this.bars[i];
      if (st === undefined || !this.validState(st)) continue;
      const base = st.hi * TWO32 + st.lo;
      if (addr >= base && addr + len <= base + st.spec.size) return i;
    }
    return -1;
  }
}
