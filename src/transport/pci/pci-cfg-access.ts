/**
 * The VIRTIO_PCI_CAP_PCI_CFG window (cfg_type 5): BAR access through configuration space.
 *
 * The driver writes cap.bar, cap.length (1, 2 or 4) and cap.offset (a multiple of cap.length),
 * then reads or writes `pci_cfg_data`:
 * - a write executes a BAR write of the first cap.length bytes of pci_cfg_data at cap.offset in
 *   cap.bar (pci.pci-cfg-access.device.2);
 * - a read executes a BAR read of cap.length bytes there and stores them in pci_cfg_data before
 *   returning it (pci.pci-cfg-access.device.3).
 * The window does not depend on the command register's memory-space bit (that is what it is for:
 * firmware that has not mapped the BARs). A window that breaks pci.pci-cfg-access.driver.1
 * (misaligned) or .driver.2 (not inside another virtio structure) performs no BAR access:
 * pci_cfg_data keeps its bytes and the refusal is counted.
 */
import { logger } from '../../log.js';
import { CAP_BAR, CAP_EXTRA, CAP_LENGTH, CAP_OFFSET } from './capabilities.js';
import type { PciConfigSpace } from './config-space.js';

const log = logger('pci:cfg-access');

/** What the window reaches: the function's BAR structures. */
export interface BarAccess {
  read(bar: number, off: number, size: number): number;
  write(bar: number, off: number, size: number, value: number): void;
  /** True when `[off, off+len)` of `bar` is inside a virtio structure other than PCI_CFG. */
  allowed(bar: number, off: number, len: number): boolean;
}

/** The cfg_type 5 window of one function. */
export class PciCfgAccess {
  /** Accesses refused because the window was invalid. */
  refused = 0;
  private readonly space: PciConfigSpace;
  private readonly cap: number;
  private readonly bars: BarAccess;

  /** @param capOffset config-space offset of the cfg_type 5 capability */
  constructor(space: PciConfigSpace, capOffset: number, bars: BarAccess) {
    this.space = space;
    this.cap = capOffset;
    this.bars = bars;
    const data = capOffset + CAP_EXTRA;
    space.intercept(data, 4, {
      read: (off, size) => this.readData(off - data, size),
      write: (off, size, value) => this.writeData(off - data, size, value),
    });
  }

  /** Current window: bar, offset, length, and whether an access would be executed. */
  window(): { bar: number; offset: number; length: number; valid: boolean } {
    const bar = this.space.get(this.cap + CAP_BAR, 1);
    const offset = this.space.get(this.cap + CAP_OFFSET, 4);
    const length = this.space.get(this.cap + CAP_LENGTH, 4);
    const valid =
      (length === 1 || length === 2 || length === 4) &&
      offset % length === 0 && // pci.pci-cfg-access.driver.1
      this.bars.allowed(bar, offset, length); // pci.pci-cfg-access.driver.2
    return { bar, offset, length, valid };
  }

  private readData(rel: number, size: number): number {
    const w = this.window();
    const base = this.cap + CAP_EXTRA;
    if (w.valid) {
      const v = this.bars.read(w.bar, w.offset, w.length); // pci.pci-cfg-access.device.3
      for (let i = 0; i < w.length; i++) this.space.set(base + i, 1, (v >>> (8 * i)) & 0xff);
    } else {
      this.refuse(w, 'read');
    }
    let r = 0;
    for (let i = size - 1; i >= 0; i--) r = r * 256 + this.space.get(base + rel + i, 1);
    return r >>> 0;
  }

  private writeData(rel: number, size: number, value: number): void {
    const base = this.cap + CAP_EXTRA;
    for (let i = 0; i < size; i++) this.space.writeByteMasked(base + rel + i, (value >>> (8 * i)) & 0xff);
    const w = this.window();
    if (!w.valid) {
      this.refuse(w, 'write');
      return;
    }
    let v = 0;
    for (let i = w.length - 1; i >= 0; i--) v = v * 256 + this.space.get(base + i, 1);
    this.bars.write(w.bar, w.offset, w.length, v >>> 0); // pci.pci-cfg-access.device.2
  }

  private refuse(w: { bar: number; offset: number; length: number }, what: string): void {
    this.refused++;
    log('pci_cfg_data %s refused: bar %d offset 0x%s length %d is not an aligned 1/2/4-byte access inside a virtio structure', what, w.bar, w.offset.toString(16), w.length);
  }
}
