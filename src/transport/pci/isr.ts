/**
 * ISR status (VIRTIO_PCI_CAP_ISR_CFG) and the INTx line.
 *
 * Bit 0 = queue interrupt, bit 1 = device configuration interrupt. The device sets the bit before
 * signalling (pci.isr.device.2/.3); a driver read returns the byte and clears it
 * (pci.isr.device.5), which de-asserts INTx. Without MSI-X the status register's Interrupt Status
 * bit mirrors "ISR ≠ 0" (pci.isr.device.4) and INTx is asserted unless the command register's
 * Interrupt Disable bit is set. With MSI-X enabled INTx is never asserted; ISR bits are still
 * kept (as QEMU does) so a driver that reads ISR sees what happened.
 */
import { logger } from '../../log.js';
import type { PciConfigSpace } from './config-space.js';
import { PCI_COMMAND, PCI_STATUS, PCI_COMMAND_INTX_DISABLE, PCI_STATUS_INTERRUPT } from './layout-constants.js';

/** Moved to `layout-constants.ts` (shared with the driver); re-exported here. */
export { VIRTIO_PCI_ISR_QUEUE, VIRTIO_PCI_ISR_CONFIG } from './layout-constants.js';

const log = logger('pci:isr');

/** ISR byte + INTx level of one function. */
export class IsrState {
  private isr = 0;
  private level = false;
  private readonly space: PciConfigSpace;
  private readonly msixEnabled: () => boolean;
  private readonly listeners: Array<(level: boolean) => void> = [];

  /** @param msixEnabled whether MSI-X is currently enabled (then INTx stays de-asserted). */
  constructor(space: PciConfigSpace, msixEnabled: () => boolean) {
    this.space = space;
    this.msixEnabled = msixEnabled;
  }

  /** Current ISR byte, without side effects (host side). */
  get value(): number {
    return this.isr;
  }

  /** Current INTx level. */
  get intxLevel(): boolean {
    return this.level;
  }

  /** Call `fn(level)` on every INTx level change. */
  onIntx(fn: (level: boolean) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Set ISR bits (pci.isr.device.2/.3: before the notification goes out) and update INTx. */
  raise(bits: number): void {
    this.isr |= bits & 0xff;
    this.update();
  }

  /** Driver read of the ISR byte: returns it and clears it (pci.isr.device.5). */
  readAndClear(): number {
    const v = this.isr;
    this.isr = 0;
    this.update();
    return v;
  }

  /** Clear without a read (device reset). */
  clear(): void {
    this.isr = 0;
    this.update();
  }

  /**
   * Recompute the status Interrupt bit and the INTx level (after ISR, MSI-X enable or command
   * register changes). pci.isr.device.4.
   */
  update(): void {
    const pending = this.isr !== 0 && !this.msixEnabled();
    const status = this.space.get(PCI_STATUS, 2);
    this.space.set(PCI_STATUS, 2, pending ? status | PCI_STATUS_INTERRUPT : status & ~PCI_STATUS_INTERRUPT);
    const level = pending && (this.space.get(PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE) === 0;
    if (level !== this.level) {
      this.level = level;
      log('INTx %s', level ? 'asserted' : 'de-asserted');
      for (const l of this.listeners) {
        try {
          l(level);
        } catch (e) {
          log('INTx listener threw: %O', e);
        }
      }
    }
  }
}

/**
 * The ISR region as a BAR structure: a read of offset 0 (any width) returns the ISR byte and
 * clears it; other offsets read 0; writes are ignored.
 */
export function isrRegion(isr: IsrState): { read(off: number, size: number): number; write(off: number, size: number, value: number): void } {
  return {
    read: (off) => (off === 0 ? isr.readAndClear() : 0),
    write: () => undefined,
  };
}
