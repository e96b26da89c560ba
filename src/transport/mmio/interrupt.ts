/**
 * InterruptStatus / InterruptACK of a virtio-mmio device and the level-triggered interrupt line.
 *
 * - An event sets its bit (bit 0 used buffer, bit 1 configuration change) from the moment it
 *   happens until the driver writes that bit to InterruptACK (mmio.regs.device.3); no other bit is
 *   ever set (mmio.regs.device.4). Acknowledging bits that are not set, or undefined bits, changes
 *   nothing else.
 * - The line is high exactly while InterruptStatus is non-zero (level-triggered, as the DT binding
 *   and Linux's `vm_interrupt` with IRQF_SHARED assume). Listeners hear level *changes* only: an
 *   event while the line is already high raises nothing new — the driver sees it when it reads
 *   InterruptStatus (Linux reads, acknowledges, then services every queue).
 * - Reset clears every bit (mmio.regs.device.5) and drops the line.
 */
import { logger } from '../../log.js';
import { VIRTIO_MMIO_INT_MASK } from './registers.js';

const log = logger('mmio:irq');

/** Interrupt counters. */
export interface MmioInterruptStats {
  /** Events raised (bit set requests, including ones already pending). */
  raised: number;
  /** Low → high transitions of the line. */
  asserts: number;
  /** InterruptACK writes. */
  acks: number;
}

/** The interrupt status register and line of one device. */
export class MmioInterruptState {
  readonly stats: MmioInterruptStats = { raised: 0, asserts: 0, acks: 0 };
  private bits = 0;
  private readonly listeners: Array<(level: boolean) => void> = [];

  /** InterruptStatus as the driver reads it. */
  get status(): number {
    return this.bits;
  }

  /** Current line level. */
  get level(): boolean {
    return this.bits !== 0;
  }

  /** An event happened: set `bit` (mmio.regs.device.3). */
  raise(bit: number): void {
    this.stats.raised++;
    const before = this.bits;
    this.bits = (before | bit) & VIRTIO_MMIO_INT_MASK; // mmio.regs.device.4: only defined bits
    if (before === 0 && this.bits !== 0) {
      this.stats.asserts++;
      this.emit(true);
    }
  }

  /** InterruptACK write: clear the bits in `mask` (undefined bits are ignored). */
  ack(mask: number): void {
    this.stats.acks++;
    const before = this.bits;
    this.bits = before & ~mask & VIRTIO_MMIO_INT_MASK;
    if (before !== 0 && this.bits === 0) this.emit(false);
  }

  /** Device reset: clear everything (mmio.regs.device.5). */
  clear(): void {
    const before = this.bits;
    this.bits = 0;
    if (before !== 0) this.emit(false);
  }

  /** Subscribe to line level changes. Returns an unsubscribe function. */
  onLevel(fn: (level: boolean) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private emit(level: boolean): void {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i++) {
      try {
        ls[i]!(level);
      } catch (e) {
        log('IRQ listener threw: %O', e);
      }
    }
  }
}
