/**
 * What the simulated guest driver needs from "the platform" to drive one virtio-mmio device:
 * 32-bit register reads and writes at offsets inside the device's register window, the interrupt
 * line, and what the device tree says about the device (window, IRQ, restricted DMA pool).
 *
 * The in-process {@link VirtioMmioDevice} (`src/transport/mmio/`) satisfies
 * {@link MmioDeviceAccess} structurally, and its `platformInfo()` returns a
 * {@link MmioPlatformDescription}. A VMM memory bus that decodes absolute addresses needs only a
 * two-line adapter (`read(off, size) = bus.read(base + off, size)`).
 */

/** Access to one virtio-mmio register window (synchronous). */
export interface MmioDeviceAccess {
  /** Read `size` (1, 2 or 4) bytes at offset `off` of the window. */
  read(off: number, size: number): number;
  /** Write `size` bytes at offset `off` of the window. */
  write(off: number, size: number, value: number): void;
  /** Subscribe to interrupt line level changes. Returns an unsubscribe function. */
  onIrq?(fn: (level: boolean) => void): () => void;
}

/** The device-tree view of the device (`reg`, `interrupts`, `memory-region`). */
export interface MmioPlatformDescription {
  /** Register window base address (informational: accesses go through offsets). */
  readonly base?: number;
  readonly size?: number;
  readonly irq?: number;
  /**
   * The `restricted-dma-pool` the node's `memory-region` references: a range of guest RAM the
   * device may reach (and, with VIRTIO_F_SWIOTLB negotiated, the only one).
   */
  readonly pool?: { readonly base: number; readonly size: number } | undefined;
}
