/**
 * The driver's DMA layer: where rings and indirect tables are allocated and how buffer addresses
 * are turned into addresses the device may use.
 *
 * - {@link DirectDma}: the device reaches guest RAM; coherent memory comes from the guest-RAM
 *   allocator and buffer addresses pass through unchanged.
 * - {@link SwiotlbDma}: VIRTIO_F_SWIOTLB was negotiated; coherent memory (rings, indirect tables)
 *   comes from the window ({@link BouncePool.allocCoherent}) and every buffer is bounced through
 *   the window ({@link BouncePool.mapSg}/`unmapSg`), so the device is given no address outside
 *   the window (rfc-swiotlb.feature.driver.1, rfc-swiotlb.pci.driver.2). The queued forms
 *   (`queueMapSg` / `queueUnmapSg` + `flush`) let the virtqueue bounce all requests of one kick, and
 *   all completions of one interrupt, with one batched copy.
 */
import type { AddressSpace } from '../memory/space.js';
import type { SgList } from '../queue/types.js';
import type { BouncePool } from '../swiotlb/pool.js';
import type { SwiotlbWindow } from '../swiotlb/window.js';
import type { GuestRamAllocator } from './ram-alloc.js';

/** The DMA layer of one driver instance. */
export interface DriverDma {
  readonly mode: 'direct' | 'swiotlb';
  /** True when buffers must be mapped (bounced) before the device sees them. */
  readonly bounces: boolean;
  /** The driver's CPU view of memory holding rings and indirect tables. */
  readonly ringSpace: AddressSpace;
  /** Zeroed memory shared with the device (bus address). */
  allocCoherent(bytes: number, align: number): number;
  freeCoherent(addr: number): void;
  /** Fill `out` with device-usable addresses for the guest-RAM list `sg`. */
  mapSg(sg: SgList, out: SgList): void;
  /** Undo {@link mapSg} (copies device-written data back to guest RAM when bouncing). */
  unmapSg(mapped: SgList): void;
  /**
   * As {@link mapSg}, but a bouncing layer may defer the copy into the window until {@link flush}:
   * `out` is valid at once, the window contents after the flush. Call {@link flush} before the
   * device may see the buffers (before publishing the ring).
   */
  queueMapSg(sg: SgList, out: SgList): void;
  /**
   * As {@link unmapSg}, but a bouncing layer may defer the copy-back (and the release of the bounce
   * slots) until {@link flush}; guest RAM holds the device's data only after the flush.
   */
  queueUnmapSg(mapped: SgList): void;
  /** Run the copies deferred by {@link queueMapSg} / {@link queueUnmapSg} (one batched copy). */
  flush(): void;
  /** True when [addr, addr+len) is an address the device may be given. */
  deviceMayUse(addr: number, len: number): boolean;
  /** Forget everything (after a device reset). */
  reset(): void;
}

/** Direct DMA: guest RAM is the device's address space. */
export class DirectDma implements DriverDma {
  readonly mode = 'direct' as const;
  readonly bounces = false;
  readonly ringSpace: AddressSpace;
  private readonly ram: GuestRamAllocator;
  private readonly live = new Set<number>();

  constructor(ram: GuestRamAllocator) {
    this.ram = ram;
    this.ringSpace = ram.space;
  }
  allocCoherent(bytes: number, align: number): number {
    const a = this.ram.allocZeroed(bytes, Math.max(align, 16));
    this.live.add(a);
    return a;
  }
  freeCoherent(addr: number): void {
    this.live.delete(addr);
    this.ram.release(addr);
  }
  mapSg(sg: SgList, out: SgList): void {
    const n = sg.count;
    for (let i = 0; i < n; i++) {
      out.addr[i] = sg.addr[i]!;
      out.len[i] = sg.len[i]!;
    }
    out.count = n;
    out.readable = sg.readable;
  }
  unmapSg(_mapped: SgList): void {}
  queueMapSg(sg: SgList, out: SgList): void {
    this.mapSg(sg, out);
  }
  queueUnmapSg(_mapped: SgList): void {}
  flush(): void {}
  deviceMayUse(addr: number, len: number): boolean {
    return this.ram.space.check(addr, len, false);
  }
  reset(): void {
    for (const a of this.live) this.ram.release(a);
    this.live.clear();
  }
}

/** SWIOTLB: everything the device sees lives in the window. */
export class SwiotlbDma implements DriverDma {
  readonly mode = 'swiotlb' as const;
  readonly bounces = true;
  readonly ringSpace: AddressSpace;
  readonly pool: BouncePool;
  readonly window: SwiotlbWindow;

  /** @param pool a bounce pool over the driver's mapping of the window (its `ram` = guest RAM) */
  constructor(pool: BouncePool) {
    this.pool = pool;
    this.window = pool.window;
    this.ringSpace = pool.window.asAddressSpace();
  }
  allocCoherent(bytes: number, align: number): number {
    return this.pool.allocCoherent(bytes, Math.max(align, 16)); // rfc-swiotlb.pci.driver.2: rings inside the window
  }
  freeCoherent(addr: number): void {
    this.pool.freeCoherent(addr);
  }
  mapSg(sg: SgList, out: SgList): void {
    this.pool.mapSg(sg, out); // rfc-swiotlb.feature.driver.1: bounce addresses only
  }
  unmapSg(mapped: SgList): void {
    this.pool.unmapSg(mapped);
  }
  queueMapSg(sg: SgList, out: SgList): void {
    this.pool.queueMapSg(sg, out); // rfc-swiotlb.feature.driver.1: bounce addresses only
  }
  queueUnmapSg(mapped: SgList): void {
    this.pool.queueUnmapSg(mapped);
  }
  flush(): void {
    this.pool.flush();
  }
  deviceMayUse(addr: number, len: number): boolean {
    return this.window.contains(addr, len);
  }
  reset(): void {
    this.pool.reset();
  }
}
