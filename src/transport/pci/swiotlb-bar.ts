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
 *   rfc-swiotlb.pci.driver.2) — anything else fails to resolve and goes to the choke point.
 */
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import type { StatusWriteResult } from '../../features/status.js';
import type { AddressSpace } from '../../memory/space.js';
import type { SwiotlbWindow } from '../../swiotlb/window.js';
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

/** The window's BAR range, its moves, and the DMA-space switch. */
export class SwiotlbBar implements BarHandler {
  readonly window: SwiotlbWindow;
  /** BAR, offset and length named by the capability. */
  readonly region: CapRegion;
  private readonly core: VirtioDeviceCore;
  private readonly dv: DataView;
  private readonly base: number;
  /** Set when, at DRIVER_OK, the core used another SWIOTLB space than this window's (a wiring mistake). */
  spaceMismatch = false;
  /** DMA space to restore on reset after the switch. */
  private savedSpace: AddressSpace | undefined;

  constructor(core: VirtioDeviceCore, window: SwiotlbWindow, region: CapRegion) {
    this.core = core;
    this.window = window;
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

  /** After a device_status write: switch the DMA space at FEATURES_OK, restore it on reset. */
  afterStatusWrite(res: StatusWriteResult): void {
    if (res.kind === 'reset') {
      const s = this.savedSpace;
      if (s !== undefined) {
        this.savedSpace = undefined;
        this.core.setAddressSpace(s);
      }
      return;
    }
    if (res.kind === 'driver-ok' && this.core.swiotlbNegotiated && this.core.space !== this.window.asAddressSpace()) {
      // The core was built with a different swiotlb.space: BAR moves would not reach its queues.
      this.spaceMismatch = true;
      log('%s: the core DMA space is not window.asAddressSpace(); build the core with swiotlb.space = window.asAddressSpace() (or hasRegion: true)', this.core.model.name);
      return;
    }
    if (res.kind === 'features-ok' && res.accepted && this.core.swiotlbNegotiated) {
      const ws = this.window.asAddressSpace();
      if (this.core.space !== ws && this.savedSpace === undefined) {
        this.savedSpace = this.core.space;
        this.core.setAddressSpace(ws); // rfc-swiotlb.feature.driver.1: only the window from now on
        log('%s: VIRTIO_F_SWIOTLB negotiated; DMA space is the window %s', this.core.model.name, this.window.name);
      }
    }
  }
}
