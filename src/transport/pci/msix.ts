/**
 * MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and the pending bit array.
 *
 * - Message control (cap + 2): table size − 1 in bits 10:0 (read-only), function mask bit 14,
 *   MSI-X enable bit 15 (both driver-writable).
 * - Table entries (16 bytes each): message address low/high, message data, vector control (bit 0 =
 *   mask; every entry starts masked). Only bit 0 of vector control is writable.
 * - PBA: one bit per vector, read-only; a vector signalled while masked (per-vector or function
 *   mask) sets its bit, and the message goes out when it is unmasked.
 *
 * Messages leave through the `deliver(address, data, vector)` callback. When MSI-X is disabled,
 * {@link Msix.notify} returns false and the transport falls back to INTx + ISR.
 * Spec: pci.msix.device.1/.2 (table size reported in the capability).
 */
import { requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import type { CapabilityList } from './capabilities.js';
import type { PciConfigSpace } from './config-space.js';
import {
  PCI_CAP_ID_MSIX, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_MAX_VECTORS
} from './layout-constants.js';

/** Moved to `layout-constants.ts` (shared with the driver); re-exported here. */
export { PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_MAX_VECTORS } from './layout-constants.js';

const log = logger('pci:msix');

/** Where the table and PBA live, and how many vectors there are. */
export interface MsixOptions {
  /** Number of vectors, 1–2048 (pci.msix.device.1 recommends 2..0x800). */
  vectors: number;
  tableBar: number;
  /** Offset of the table in its BAR; 8-byte aligned. */
  tableOffset: number;
  pbaBar: number;
  /** Offset of the PBA in its BAR; 8-byte aligned. */
  pbaOffset: number;
}

/** Receives MSI-X messages: a memory write of `data` (32 bits) to `address`. */
export type MsiSink = (address: number, data: number, vector: number) => void;

/** Bytes the PBA takes for `vectors` vectors (whole qwords). */
export function pbaBytes(vectors: number): number {
  return Math.ceil(vectors / 64) * 8;
}

/** MSI-X state of one function. */
export class Msix {
  readonly vectors: number;
  /** Config-space offset of the MSI-X capability. */
  readonly capOffset: number;
  readonly options: Readonly<MsixOptions>;
  /** Messages sent (for diagnostics and tests). */
  sent = 0;
  private readonly space: PciConfigSpace;
  private readonly table: Uint8Array;
  private readonly tdv: DataView;
  private readonly pba: Uint8Array;
  private readonly pdv: DataView;
  private deliver: MsiSink;
  /**
   * Message address of each entry, as a JS number kept in a generic (tagged) array. An x86 MSI
   * address (0xFEE0_0000) is above the small-integer range, so a freshly computed address is a
   * heap number allocated each time it crosses a call; reading it from here hands out the number
   * boxed once when the entry was written, so {@link send} allocates nothing.
   */
  private readonly msgAddress: number[];
  private readonly enableListeners: Array<(enabled: boolean) => void> = [];
  private lastEnabled = false;

  constructor(space: PciConfigSpace, caps: CapabilityList, o: MsixOptions, deliver: MsiSink) {
    requireArg(Number.isInteger(o.vectors) && o.vectors >= 1 && o.vectors <= PCI_MSIX_MAX_VECTORS, `MSI-X vectors must be 1..2048 (got ${o.vectors})`);
    requireArg(o.tableOffset % 8 === 0 && o.pbaOffset % 8 === 0, 'MSI-X table and PBA offsets must be 8-byte aligned');
    const tBytes = o.vectors * PCI_MSIX_ENTRY_SIZE;
    caps.checkRegion('MSI-X table', { bar: o.tableBar, offset: o.tableOffset, length: tBytes });
    caps.checkRegion('MSI-X PBA', { bar: o.pbaBar, offset: o.pbaOffset, length: pbaBytes(o.vectors) });
    if (o.tableBar === o.pbaBar) {
      requireArg(o.pbaOffset >= o.tableOffset + tBytes || o.pbaOffset + pbaBytes(o.vectors) <= o.tableOffset, 'MSI-X table and PBA overlap');
    }
    this.vectors = o.vectors;
    this.options = { ...o };
    this.space = space;
    this.deliver = deliver;
    this.table = new Uint8Array(tBytes);
    this.tdv = new DataView(this.table.buffer);
    this.pba = new Uint8Array(pbaBytes(o.vectors));
    this.pdv = new DataView(this.pba.buffer);
    // Filled with a non-number first: the array's elements kind is then generic (tagged values) for
    // good, never the unboxed-double kind whose reads box a new number (see msgAddress).
    this.msgAddress = new Array<number>(o.vectors).fill(undefined as unknown as number);
    this.msgAddress.fill(0);
    const off = caps.addRaw(PCI_CAP_ID_MSIX, 12);
    this.capOffset = off;
    space.set(off + 2, 2, o.vectors - 1); // pci.msix.device.2: Table Size (N − 1)
    space.setWmask(off + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    space.set(off + 4, 4, o.tableOffset | o.tableBar);
    space.set(off + 8, 4, o.pbaOffset | o.pbaBar);
    space.watch(off + 2, 2, () => this.controlWritten());
    this.reset();
  }

  /** Replace the message sink. */
  setSink(deliver: MsiSink): void {
    this.deliver = deliver;
  }

  /** Call `fn` whenever the enable bit changes. */
  onEnableChange(fn: (enabled: boolean) => void): void {
    this.enableListeners.push(fn);
  }

  private get control(): number {
    return this.space.get(this.capOffset + 2, 2);
  }

  /** MSI-X Enable bit. */
  get enabled(): boolean {
    return (this.control & PCI_MSIX_FLAGS_ENABLE) !== 0;
  }

  /** Function Mask bit. */
  get functionMasked(): boolean {
    return (this.control & PCI_MSIX_FLAGS_MASKALL) !== 0;
  }

  /** Per-vector mask bit. */
  isMasked(v: number): boolean {
    return (this.table[v * PCI_MSIX_ENTRY_SIZE + 12]! & 1) !== 0;
  }

  /** Pending bit of vector `v`. */
  isPending(v: number): boolean {
    return (this.pba[v >>> 3]! & (1 << (v & 7))) !== 0;
  }

  /** Message address and data of entry `v` (for tests and diagnostics). */
  entry(v: number): { address: number; data: number; masked: boolean } {
    const b = v * PCI_MSIX_ENTRY_SIZE;
    return { address: this.tdv.getUint32(b + 4, true) * 4294967296 + this.tdv.getUint32(b, true), data: this.tdv.getUint32(b + 8, true), masked: this.isMasked(v) };
  }

  /**
   * Signal vector `v`. Delivered at once when enabled and unmasked; while masked the pending bit
   * is set instead. Returns false when MSI-X is disabled (use INTx) or `v` is not in the table.
   */
  notify(v: number): boolean {
    if (!this.enabled) return false;
    if (!(v >= 0 && v < this.vectors)) return false;
    if (this.functionMasked || this.isMasked(v)) {
      this.pba[v >>> 3]! |= 1 << (v & 7);
      return true;
    }
    this.send(v);
    return true;
  }

  private send(v: number): void {
    const address = this.msgAddress[v]!; // = entry(v).address, boxed once (no allocation here)
    const data = this.tdv.getUint32(v * PCI_MSIX_ENTRY_SIZE + 8, true);
    this.sent++;
    try {
      this.deliver(address, data, v);
    } catch (e) {
      log('MSI-X sink threw for vector %d: %O', v, e);
    }
  }

  /** Deliver and clear every pending vector that is now unmasked. */
  private flushPending(): void {
    if (!this.enabled || this.functionMasked) return;
    const pba = this.pba;
    for (let i = 0; i < pba.length; i++) {
      if (pba[i] === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const v = i * 8 + bit;
        if ((pba[i]! & (1 << bit)) !== 0 && !this.isMasked(v)) {
          pba[i]! &= ~(1 << bit);
          this.send(v);
        }
      }
    }
  }

  private controlWritten(): void {
    const en = this.enabled;
    if (en !== this.lastEnabled) {
      this.lastEnabled = en;
      log('MSI-X %s', en ? 'enabled' : 'disabled');
      for (const l of this.enableListeners) l(en);
    }
    this.flushPending();
  }

  /** Table read at `off` (relative to the table start); out of range reads 0. */
  tableRead(off: number, size: number): number {
    if (!(off >= 0 && off + size <= this.table.length)) return 0;
    return readLE(this.table, this.tdv, off, size);
  }

  /** Table write at `off`; only message address/data and the mask bit are writable. */
  tableWrite(off: number, size: number, value: number): void {
    if (!(off >= 0 && off + size <= this.table.length) || size < 1 || size > 4) return;
    for (let i = 0; i < size; i++) {
      const b = off + i;
      const byte = (value >>> (8 * i)) & 0xff;
      const field = (b >>> 2) & 3;
      if (field === 3) {
        if ((b & 3) === 0) this.table[b] = byte & 1; // vector control: only the mask bit
      } else {
        this.table[b] = byte;
      }
    }
    // Message address fields touched: refresh the cached addresses of the entries written.
    for (let v = off >>> 4; v <= (off + size - 1) >>> 4; v++) this.cacheAddress(v);
    this.flushPending();
  }

  private cacheAddress(v: number): void {
    const b = v * PCI_MSIX_ENTRY_SIZE;
    const a = this.tdv.getUint32(b + 4, true) * 4294967296 + this.tdv.getUint32(b, true);
    if (this.msgAddress[v] !== a) this.msgAddress[v] = a;
  }

  /** PBA read at `off` (relative to the PBA start); out of range reads 0. */
  pbaRead(off: number, size: number): number {
    if (!(off >= 0 && off + size <= this.pba.length)) return 0;
    return readLE(this.pba, this.pdv, off, size);
  }

  /** PBA writes are ignored (read-only). */
  pbaWrite(_off: number, _size: number, _value: number): void {
    log('write to the read-only PBA ignored');
  }

  /** Function-level reset: MSI-X disabled, function unmasked, every vector masked, nothing pending. */
  reset(): void {
    this.table.fill(0);
    this.msgAddress.fill(0);
    for (let v = 0; v < this.vectors; v++) this.table[v * PCI_MSIX_ENTRY_SIZE + 12] = 1;
    this.pba.fill(0);
    this.space.set(this.capOffset + 2, 2, this.vectors - 1);
    if (this.lastEnabled) {
      this.lastEnabled = false;
      for (const l of this.enableListeners) l(false);
    }
  }
}

/** Little-endian read of 1, 2 or 4 bytes at any offset (other sizes read 0). */
export function readLE(u8: Uint8Array, dv: DataView, off: number, size: number): number {
  if (size === 4) return dv.getUint32(off, true);
  if (size === 2) return dv.getUint16(off, true);
  if (size === 1) return u8[off]!;
  return 0;
}
