/**
 * Interrupts of a vfio-user device process: GET_IRQ_INFO answers and SET_IRQS state.
 *
 * - INTx (index 0): one eventfd. Level-triggered and automasked (reference §10): when the line
 *   rises the eventfd is written and the line masks itself; the client unmasks it
 *   (SET_IRQS ACTION_UNMASK) after the guest's handler ran, and a line still high is signalled
 *   again then.
 * - MSI-X (index 2): one eventfd per vector (NORESIZE: the whole set is re-sent as vectors are
 *   added; a message with count > 0 and no fds de-assigns). The client (the VMM) emulates the
 *   MSI-X table; the device only writes the vector's eventfd. ACTION_MASK / UNMASK per vector
 *   hold a signal pending until unmasked.
 * - MSI (1) exists with 0 vectors; ERR (3) and REQ (4) are refused (EINVAL), as QEMU expects.
 */
import { logger } from '../log.js';
import type { NativeApi } from '../native/types.js';
import { protoError, type SetIrqsMsg } from './codec.js';
import {
  Errno,
  IRQ_INFO_AUTOMASKED,
  IRQ_INFO_EVENTFD,
  IRQ_INFO_MASKABLE,
  IRQ_INFO_NORESIZE,
  IRQ_SET_ACTION_MASK,
  IRQ_SET_ACTION_MASK_ALL,
  IRQ_SET_ACTION_TRIGGER,
  IRQ_SET_ACTION_UNMASK,
  IRQ_SET_DATA_BOOL,
  IRQ_SET_DATA_EVENTFD,
  IRQ_SET_DATA_MASK,
  IRQ_SET_DATA_NONE,
  PCI_INTX_IRQ_INDEX,
  PCI_MSI_IRQ_INDEX,
  PCI_MSIX_IRQ_INDEX,
} from './protocol.js';

const log = logger('vfio-user:irq');

interface Line {
  fd: number | undefined;
  masked: boolean;
  pending: boolean;
}

/** Counters. */
export interface IrqStats {
  intxSignals: number;
  msixSignals: number;
  /** Signals with no eventfd assigned (lost, as on hardware without a handler). */
  dropped: number;
  /** Signals held while masked. */
  heldMasked: number;
}

/** IRQ state of one device. */
export class IrqState {
  readonly stats: IrqStats = { intxSignals: 0, msixSignals: 0, dropped: 0, heldMasked: 0 };
  private readonly intx: Line = { fd: undefined, masked: false, pending: false };
  private readonly msix: Line[];
  private intxLevel = false;
  private readonly nat: NativeApi;
  private readonly changeListeners: Array<() => void> = [];

  constructor(nat: NativeApi, msixVectors: number) {
    this.nat = nat;
    this.msix = Array.from({ length: msixVectors }, () => ({ fd: undefined, masked: false, pending: false }));
  }

  /** GET_IRQ_INFO answer, or undefined for an index that is refused (EINVAL). */
  info(index: number): { flags: number; count: number } | undefined {
    switch (index) {
      case PCI_INTX_IRQ_INDEX:
        return { flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED, count: 1 };
      case PCI_MSI_IRQ_INDEX:
        return { flags: IRQ_INFO_EVENTFD, count: 0 };
      case PCI_MSIX_IRQ_INDEX:
        return { flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_NORESIZE, count: this.msix.length };
      default:
        return undefined;
    }
  }

  private lines(index: number): Line[] {
    if (index === PCI_INTX_IRQ_INDEX) return [this.intx];
    if (index === PCI_MSIX_IRQ_INDEX) return this.msix;
    if (index === PCI_MSI_IRQ_INDEX) return [];
    throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: IRQ index ${index} is not supported`);
  }

  /**
   * DEVICE_SET_IRQS. Takes ownership of `fds` (closed on error or when replaced).
   * @throws PROTOCOL VirtioError with the errno for the reply
   */
  setIrqs(m: SetIrqsMsg, fds: number[]): void {
    try {
      const lines = this.lines(m.index);
      const data = m.flags & IRQ_SET_DATA_MASK;
      const action = m.flags & IRQ_SET_ACTION_MASK_ALL;
      if (data !== IRQ_SET_DATA_EVENTFD && fds.length > 0) throw protoError(Errno.EINVAL, 'DEVICE_SET_IRQS: fds sent without DATA_EVENTFD');
      if (action === IRQ_SET_ACTION_TRIGGER && data === IRQ_SET_DATA_NONE && m.count === 0) {
        // Disable every interrupt of the index.
        for (const l of lines) this.assign(l, undefined);
        this.changed();
        return;
      }
      if (m.start + m.count > lines.length || m.count === 0) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: start ${m.start} + count ${m.count} outside the ${lines.length} interrupts of index ${m.index}`);
      if (data === IRQ_SET_DATA_EVENTFD) {
        if (action !== IRQ_SET_ACTION_TRIGGER) throw protoError(Errno.ENOTSUP, 'DEVICE_SET_IRQS: eventfds are only accepted with ACTION_TRIGGER');
        if (fds.length !== 0 && fds.length !== m.count) throw protoError(Errno.EINVAL, `DEVICE_SET_IRQS: ${fds.length} fds for ${m.count} interrupts`);
        for (let i = 0; i < m.count; i++) this.assign(lines[m.start + i]!, fds.length === 0 ? undefined : fds[i]);
        fds.length = 0;
        this.changed();
        return;
      }
      for (let i = 0; i < m.count; i++) {
        if (data === IRQ_SET_DATA_BOOL && m.bools![i] === 0) continue;
        const v = m.start + i;
        const l = lines[v]!;
        if (action === IRQ_SET_ACTION_MASK) {
          l.masked = true;
        } else if (action === IRQ_SET_ACTION_UNMASK) {
          l.masked = false;
          if (m.index === PCI_INTX_IRQ_INDEX) {
            if (this.intxLevel || l.pending) {
              l.pending = false;
              this.fire(l, true);
            }
          } else if (l.pending) {
            l.pending = false;
            this.fire(l, false);
          }
        } else {
          this.fire(l, m.index === PCI_INTX_IRQ_INDEX);
        }
      }
      if (action === IRQ_SET_ACTION_MASK || action === IRQ_SET_ACTION_UNMASK) this.changed();
    } finally {
      for (const fd of fds) this.safeClose(fd);
    }
  }

  private assign(l: Line, fd: number | undefined): void {
    if (l.fd !== undefined && l.fd !== fd) this.safeClose(l.fd);
    l.fd = fd;
    l.pending = false;
  }

  private fire(l: Line, intx: boolean): void {
    if (l.fd === undefined) {
      this.stats.dropped++;
      return;
    }
    try {
      this.nat.eventfdWrite(l.fd, 1);
    } catch (e) {
      log('eventfd write failed: %s', (e as Error).message);
      return;
    }
    if (intx) {
      this.stats.intxSignals++;
      l.masked = true; // automasked until the client unmasks
    } else {
      this.stats.msixSignals++;
    }
  }

  /** Signal MSI-X vector `v` (its eventfd; held while masked). */
  signalMsix(v: number): void {
    const l = this.msix[v];
    if (l === undefined) {
      this.stats.dropped++;
      return;
    }
    if (l.masked) {
      l.pending = true;
      this.stats.heldMasked++;
      return;
    }
    this.fire(l, false);
  }

  /** The device's INTx level changed. */
  setIntxLevel(level: boolean): void {
    const was = this.intxLevel;
    this.intxLevel = level;
    if (!level || was) return;
    const l = this.intx;
    if (l.masked) {
      l.pending = true;
      this.stats.heldMasked++;
      return;
    }
    this.fire(l, true);
  }

  /** True when MSI-X vector `v` has an eventfd. */
  hasMsixFd(v: number): boolean {
    return this.msix[v]?.fd !== undefined;
  }

  /**
   * The eventfd of MSI-X vector `v` when a signal would go straight to it (assigned and not
   * masked), else undefined — what a queue worker may write itself (`queue-workers.ts`).
   */
  msixFd(v: number): number | undefined {
    const l = this.msix[v];
    return l !== undefined && !l.masked ? l.fd : undefined;
  }

  /** Be told after every change of eventfds or masks (SET_IRQS, {@link closeAll}). */
  onChange(fn: () => void): void {
    this.changeListeners.push(fn);
  }

  private changed(): void {
    for (const l of this.changeListeners) {
      try {
        l();
      } catch (e) {
        log('irq change listener threw: %O', e);
      }
    }
  }

  /** Close every eventfd (client gone). */
  closeAll(): void {
    this.assign(this.intx, undefined);
    this.intx.masked = false;
    for (const l of this.msix) {
      this.assign(l, undefined);
      l.masked = false;
    }
    this.changed();
  }

  private safeClose(fd: number): void {
    try {
      this.nat.close(fd);
    } catch {
      /* ignore */
    }
  }
}
