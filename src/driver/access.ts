/**
 * What the simulated guest driver needs from "the PCI bus": one PCI function's configuration space
 * and bus-address (MMIO) reads and writes, plus — optionally — direct access to BAR memory that is
 * plain RAM (the SWIOTLB window) and interrupt subscriptions.
 *
 * The in-process {@link VirtioPciDevice} (and the embedding handle from `src/embed/`) satisfies this
 * interface structurally; a vfio-user client will provide the same shape across a process boundary
 * (config/region accesses as messages, the window mapped from the region's fd, MSI-X and INTx via
 * eventfds).
 *
 * The interface is synchronous. Every register access of the driver goes through
 * `src/driver/pci-regs.ts`, so an asynchronous twin (for a message-based transport) needs only that
 * file rewritten with Promise-returning methods plus `await`s in the init sequence.
 */

/** A BAR range that is ordinary memory and may be accessed directly (same shape as the transport's BarMapping). */
export interface BarMemory {
  /** BAR index. */
  readonly bar: number;
  /** Offset of the range inside the BAR. */
  readonly barOffset: number;
  /** Bytes in the range. */
  readonly size: number;
  /** Backing buffer and the offset of the range's first byte in it. */
  readonly buffer: ArrayBufferLike;
  readonly bufferOffset: number;
  /** File descriptor backing the range (for mapping in another process), when shareable. */
  readonly fd?: number | undefined;
  readonly fdOffset?: number;
}

/** Access to one PCI function (synchronous). */
export interface PciFunctionAccess {
  /** Configuration-space read of 1, 2 or 4 bytes at `off`. */
  configRead(off: number, size: number): number;
  /** Configuration-space write of 1, 2 or 4 bytes at `off`. */
  configWrite(off: number, size: number, value: number): void;
  /** Read of 1, 2 or 4 bytes at bus address `addr` (decoded by the function's programmed BARs). */
  mmioRead(addr: number, size: number): number;
  /** Write of 1, 2 or 4 bytes at bus address `addr`. */
  mmioWrite(addr: number, size: number, value: number): void;
  /** The part of BAR `bar` that is plain memory the driver may map (the SWIOTLB window), if any. */
  barMapping?(bar: number): BarMemory | undefined;
  /** Subscribe to MSI-X messages (the interrupt controller's view). Returns an unsubscribe function. */
  onMsi?(fn: (address: number, data: number, vector: number) => void): () => void;
  /** Subscribe to INTx level changes. Returns an unsubscribe function. */
  onIntx?(fn: (level: boolean) => void): () => void;
}
