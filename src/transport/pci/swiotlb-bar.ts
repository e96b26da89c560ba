/**
 * The SWIOTLB bounce window in a BAR (2025 RFC "transport-pci: Add SWIOTLB bounce buffer
 * capability", `reference/swiotlb.md` §4.3).
 *
 * - The window is on-device memory: a range of one of the function's BARs, named by a plain
 *   `virtio_pci_cap` (cfg_type 10 by default). BAR accesses read and write the window's buffer;
 *   {@link SwiotlbBar.mapping} tells a VMM it may map the same memory directly (buffer, or fd +
 *   offset).
 * - Its bus address is BAR base + capability offset: every BAR reprogramming moves it
 *   (`window.moveTo`), which moves the region inside `window.asAddressSpace()` too.
 * - When the driver negotiates VIRTIO_F_SWIOTLB, the device's DMA space becomes the window at
 *   FEATURES_OK (`core.setAddressSpace`); the previous space comes back on reset. From then on every
 *   ring and buffer address must be inside the window (rfc-swiotlb.feature.driver.1,
 *   rfc-swiotlb.pci.driver.2) — anything else fails to resolve and goes to the choke point. That
 *   switch is shared with MMIO (`../swiotlb-switch.ts`).
 */
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import type { SwiotlbWindow } from '../../swiotlb/window.js';
import { SwiotlbSpaceSwitch } from '../swiotlb-switch.js';
import type { BarChange } from './bar.js';
import type { BarHandler } from './bar-router.js';
import type { CapRegion } from './capabilities.js';

const log = logger('pci:swiotlb');

/** A BAR range that is plain memory and may be mapped directly. */
export interface BarMapping {
  /** BAR index. */
  readonly bar: number;
  /** Offset of the mapped range inside the BAR. */
  readonly barOffset: number;
  /** Bytes backed (the rest of the BAR reads 0). */
  readonly size: number;
  /** Backing buffer and the offset of the range's first byte in it. */
  readonly buffer: ArrayBufferLike;
  readonly bufferOffset: number;
  /** File descriptor that backs the buffer (map `size` bytes at `fdOffset`), when shareable. */
  readonly fd: number | undefined;
  readonly fdOffset: number;
}

/**
 * The window's BAR range and its moves; the DMA-space switch (`afterStatusWrite`, `spaceMismatch`)
 * is the transport-neutral {@link SwiotlbSpaceSwitch}.
 */
export class SwiotlbBar extends SwiotlbSpaceSwitch implements BarHandler {
  /** BAR, offset and length named by the capability. */
  readonly region: CapRegion;
  private readonly dv: DataView;
  private readonly base: number;

  constructor(core: VirtioDeviceCore, window: SwiotlbWindow, region: CapRegion) {
    super(core, window, 'pci:swiotlb');
    this.region = { ...region };
    this.dv = window.region.dv;
    this.base = window.bufferOffset;
  }

  /** BAR read inside the window (little-endian; beyond the window reads 0). */
  read(off: number, size: number): number {
    if (!(off >= 0 && off + size <= this.window.size)) return 0;
    const p = this.base + off;
    return size === 4 ? this.dv.getUint32(p, true) : size === 2 ? this.dv.getUint16(p, true) : this.dv.getUint8(p);
  }

  /** BAR write inside the window (beyond the window ignored). */
  write(off: number, size: number, value: number): void {
    if (!(off >= 0 && off + size <= this.window.size)) return;
    const p = this.base + off;
    if (size === 4) this.dv.setUint32(p, value >>> 0, true);
    else if (size === 2) this.dv.setUint16(p, value & 0xffff, true);
    else this.dv.setUint8(p, value & 0xff);
  }

  /** How to map the window directly. */
  mapping(): BarMapping {
    const w = this.window;
    return { bar: this.region.bar, barOffset: this.region.offset, size: w.size, buffer: w.buffer, bufferOffset: w.bufferOffset, fd: w.fd, fdOffset: w.fdOffset + w.bufferOffset };
  }

  /**
   * Follow a BAR address change. Invalid addresses (≥ 2^53, seen while sizing) leave the window
   * where it is. @returns false when the window could not move there
   */
  barChanged(c: BarChange): boolean {
    if (c.index !== this.region.bar || !c.valid) return true;
    try {
      this.window.moveTo(c.address + this.region.offset);
      return true;
    } catch (e) {
      log('window cannot follow BAR %d to 0x%s: %s', c.index, c.address.toString(16), (e as Error).message);
      return false;
    }
  }
}
