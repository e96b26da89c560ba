/**
 * PCI configuration space: a type-0 header (256 bytes) plus the PCIe extended space (0x100–0xFFF),
 * with per-byte write masks and write-1-to-clear bits.
 *
 * The driver side ({@link PciConfigSpace.read} / {@link PciConfigSpace.write}) never throws: an
 * access of an unsupported size or outside the space reads as all-ones (what a PCI master abort
 * returns) and writes are dropped. A write changes only the bits in {@link PciConfigSpace.wmask}
 * and clears the bits in {@link PciConfigSpace.w1cmask} that are written as 1; everything else is
 * read-only to the driver. The host side (`set*`) writes unmasked.
 *
 * Registers with side effects are handled two ways:
 * - `watch(start, len, fn)`: the write lands in the array first, then `fn` runs (BARs, command
 *   register, MSI-X message control).
 * - `intercept(start, len, handler)`: the handler owns reads and writes of the range
 *   (`pci_cfg_data` of the cfg_type 5 window).
 *
 * Extended space: with no extended capabilities, 0x100–0xFFF reads 0 (a zero header at 0x100 ends
 * the extended capability list). Spec: pci.general.device.1 (meet the PCI/PCIe requirements).
 */
import { logger } from '../../log.js';
import { requireArg } from '../../errors.js';
import {
  PCI_CONFIG_HEADER_SIZE, PCI_CONFIG_SPACE_SIZE, PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_COMMAND, PCI_STATUS,
  PCI_REVISION_ID, PCI_CLASS_PROG, PCI_CLASS_DEVICE, PCI_CACHE_LINE_SIZE, PCI_HEADER_TYPE,
  PCI_SUBSYSTEM_VENDOR_ID, PCI_SUBSYSTEM_ID, PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_COMMAND_MEMORY,
  PCI_COMMAND_MASTER, PCI_COMMAND_PARITY, PCI_COMMAND_SERR, PCI_COMMAND_INTX_DISABLE, PCI_STATUS_W1C
} from './layout-constants.js';

/** Moved to `layout-constants.ts` (shared with the driver); re-exported here. */
export {
  PCI_CONFIG_HEADER_SIZE, PCI_CONFIG_SPACE_SIZE, PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_COMMAND, PCI_STATUS,
  PCI_REVISION_ID, PCI_CLASS_PROG, PCI_CLASS_DEVICE, PCI_CACHE_LINE_SIZE, PCI_LATENCY_TIMER, PCI_HEADER_TYPE,
  PCI_BASE_ADDRESS_0, PCI_SUBSYSTEM_VENDOR_ID, PCI_SUBSYSTEM_ID, PCI_ROM_ADDRESS, PCI_CAPABILITY_LIST,
  PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN, PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER,
  PCI_COMMAND_PARITY, PCI_COMMAND_SERR, PCI_COMMAND_INTX_DISABLE, PCI_STATUS_INTERRUPT, PCI_STATUS_CAP_LIST,
  PCI_STATUS_W1C
} from './layout-constants.js';

const log = logger('pci');

/** Owner of a config-space range: sees every driver read and write that falls inside it. */
export interface ConfigIntercept {
  /** Read `size` bytes at absolute config offset `off` (little-endian value). */
  read(off: number, size: number): number;
  /** Write `size` bytes at absolute config offset `off`. */
  write(off: number, size: number, value: number): void;
}

interface Range<T> {
  start: number;
  end: number;
  h: T;
}

/** Mask of `size` bytes (1, 2 or 4) as an unsigned 32-bit value. */
function ones(size: number): number {
  return size >= 4 ? 0xffffffff : (1 << (size * 8)) - 1;
}

/** A PCI function's configuration space. */
export class PciConfigSpace {
  /** Current register contents. */
  readonly data: Uint8Array;
  /** Bits the driver may change. */
  readonly wmask: Uint8Array;
  /** Bits the driver clears by writing 1. */
  readonly w1cmask: Uint8Array;
  /** Driver accesses refused (bad size or offset); for diagnostics. */
  badAccesses = 0;
  private readonly dv: DataView;
  private readonly intercepts: Array<Range<ConfigIntercept>> = [];
  private readonly watchers: Array<Range<(off: number, size: number) => void>> = [];

  /** @param size 256 (conventional PCI) or 4096 (PCIe, the default). */
  constructor(size: number = PCI_CONFIG_SPACE_SIZE) {
    requireArg(size === PCI_CONFIG_HEADER_SIZE || size === PCI_CONFIG_SPACE_SIZE, `config space size must be 256 or 4096 (got ${size})`);
    this.data = new Uint8Array(size);
    this.wmask = new Uint8Array(size);
    this.w1cmask = new Uint8Array(size);
    this.dv = new DataView(this.data.buffer);
  }

  /** Size in bytes (256 or 4096). */
  get size(): number {
    return this.data.length;
  }

  // ---------------------------------------------------------------- host side (unmasked)

  /** Store `size` bytes at `off` without masks (host setup). */
  set(off: number, size: 1 | 2 | 4, value: number): void {
    this.checkHost(off, size);
    if (size === 1) this.data[off] = value & 0xff;
    else if (size === 2) this.dv.setUint16(off, value & 0xffff, true);
    else this.dv.setUint32(off, value >>> 0, true);
  }

  /** Read `size` bytes at `off` without side effects (host side). */
  get(off: number, size: 1 | 2 | 4): number {
    this.checkHost(off, size);
    if (size === 1) return this.data[off]!;
    if (size === 2) return this.dv.getUint16(off, true);
    return this.dv.getUint32(off, true);
  }

  /** Set the driver-writable bits of `size` bytes at `off`. */
  setWmask(off: number, size: 1 | 2 | 4, mask: number): void {
    this.checkHost(off, size);
    for (let i = 0; i < size; i++) this.wmask[off + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Set the write-1-to-clear bits of `size` bytes at `off`. */
  setW1c(off: number, size: 1 | 2 | 4, mask: number): void {
    this.checkHost(off, size);
    for (let i = 0; i < size; i++) this.w1cmask[off + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Make `len` bytes at `off` fully driver-writable. */
  setWritable(off: number, len: number): void {
    this.checkHost(off, len);
    this.wmask.fill(0xff, off, off + len);
  }

  /** Give `[start, start+len)` to `handler`; it then owns every driver read and write there. */
  intercept(start: number, len: number, handler: ConfigIntercept): void {
    this.checkHost(start, len);
    this.intercepts.push({ start, end: start + len, h: handler });
  }

  /** Call `fn(off, size)` after every driver write that overlaps `[start, start+len)`. */
  watch(start: number, len: number, fn: (off: number, size: number) => void): void {
    this.checkHost(start, len);
    this.watchers.push({ start, end: start + len, h: fn });
  }

  private checkHost(off: number, len: number): void {
    // Hot path (get/set run per interrupt): the message is built only on failure — no allocation otherwise.
    if (!(Number.isInteger(off) && off >= 0 && Number.isInteger(len) && len > 0 && off + len <= this.data.length)) {
      requireArg(false, `config space range [0x${off.toString(16)}, +${len}) is outside the ${this.data.length}-byte space`);
    }
  }

  // ---------------------------------------------------------------- driver side (never throws)

  /** True when a driver access of `size` bytes at `off` can be served. */
  private valid(off: number, size: number): boolean {
    return (size === 1 || size === 2 || size === 4) && Number.isInteger(off) && off >= 0 && off + size <= this.data.length;
  }

  /**
   * Driver read. Unsupported sizes or offsets outside the space read all-ones (truncated to the
   * access size, at most 32 bits) and are counted in {@link badAccesses}.
   */
  read(off: number, size: number): number {
    if (!this.valid(off, size)) {
      this.badAccesses++;
      log('config read of %d bytes at 0x%s refused', size, Number(off).toString(16));
      return size >= 1 && size <= 4 ? ones(size) : 0xffffffff;
    }
    const ic = this.intercepts;
    if (ic.length !== 0) {
      for (let k = 0; k < ic.length; k++) {
        const r = ic[k]!;
        if (off >= r.start && off + size <= r.end) return r.h.read(off, size) >>> 0;
      }
      if (this.overlapsIntercept(off, size)) {
        let v = 0;
        for (let i = size - 1; i >= 0; i--) v = v * 256 + this.readByte(off + i);
        return v >>> 0;
      }
    }
    if (size === 1) return this.data[off]!;
    if (size === 2) return this.dv.getUint16(off, true);
    return this.dv.getUint32(off, true);
  }

  /** Driver write through the write masks; bad accesses are dropped and counted. */
  write(off: number, size: number, value: number): void {
    if (!this.valid(off, size)) {
      this.badAccesses++;
      log('config write of %d bytes at 0x%s dropped', size, Number(off).toString(16));
      return;
    }
    value = Number(value) >>> 0;
    const ic = this.intercepts;
    let done = false;
    for (let k = 0; k < ic.length; k++) {
      const r = ic[k]!;
      if (off >= r.start && off + size <= r.end) {
        r.h.write(off, size, value);
        done = true;
        break;
      }
    }
    if (!done) {
      for (let i = 0; i < size; i++) {
        const b = off + i;
        const v = (value >>> (8 * i)) & 0xff;
        const r = this.interceptAt(b);
        if (r !== undefined) r.h.write(b, 1, v);
        else this.writeByteMasked(b, v);
      }
    }
    const ws = this.watchers;
    for (let k = 0; k < ws.length; k++) {
      const w = ws[k]!;
      if (off < w.end && off + size > w.start) w.h(off, size);
    }
  }

  /** Apply the masks for one byte (used by intercept handlers that store what they receive). */
  writeByteMasked(b: number, v: number): void {
    const old = this.data[b]!;
    const wm = this.wmask[b]!;
    const c = this.w1cmask[b]! & v;
    this.data[b] = ((old & ~wm) | (v & wm)) & ~c & 0xff;
  }

  private readByte(b: number): number {
    const r = this.interceptAt(b);
    return r !== undefined ? r.h.read(b, 1) & 0xff : this.data[b]!;
  }

  private interceptAt(b: number): Range<ConfigIntercept> | undefined {
    const ic = this.intercepts;
    for (let k = 0; k < ic.length; k++) {
      const r = ic[k]!;
      if (b >= r.start && b < r.end) return r;
    }
    return undefined;
  }

  private overlapsIntercept(off: number, size: number): boolean {
    const ic = this.intercepts;
    for (let k = 0; k < ic.length; k++) {
      const r = ic[k]!;
      if (off < r.end && off + size > r.start) return true;
    }
    return false;
  }
}

/** Identity of a PCI function (type-0 header fields). */
export interface PciIds {
  vendorId: number;
  deviceId: number;
  revisionId: number;
  /** 24-bit class code: base class << 16 | subclass << 8 | prog-if. */
  classCode: number;
  subsystemVendorId: number;
  subsystemId: number;
  /** Interrupt pin: 0 = none, 1 = INTA# (default) ... 4 = INTD#. */
  interruptPin?: number;
}

/**
 * Fill a type-0 header: ids, class, header type 0, writable command bits, write-1-to-clear status
 * bits, cache line size and interrupt line writable. BARs, the capability list and the extended
 * space are set up by their own modules.
 */
export function initType0Header(space: PciConfigSpace, ids: PciIds): void {
  requireArg((ids.vendorId & 0xffff) === ids.vendorId && (ids.deviceId & 0xffff) === ids.deviceId, 'vendor and device ids are 16-bit values');
  requireArg((ids.classCode & 0xffffff) === ids.classCode, 'class code is a 24-bit value');
  space.set(PCI_VENDOR_ID, 2, ids.vendorId);
  space.set(PCI_DEVICE_ID, 2, ids.deviceId);
  space.set(PCI_REVISION_ID, 1, ids.revisionId);
  space.set(PCI_CLASS_PROG, 1, ids.classCode & 0xff);
  space.set(PCI_CLASS_DEVICE, 2, ids.classCode >>> 8);
  space.set(PCI_HEADER_TYPE, 1, 0);
  space.set(PCI_SUBSYSTEM_VENDOR_ID, 2, ids.subsystemVendorId);
  space.set(PCI_SUBSYSTEM_ID, 2, ids.subsystemId);
  space.set(PCI_INTERRUPT_PIN, 1, ids.interruptPin ?? 1);
  // No I/O BARs: the I/O Space bit is hardwired to 0.
  space.setWmask(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
  space.setW1c(PCI_STATUS, 2, PCI_STATUS_W1C);
  space.setWmask(PCI_CACHE_LINE_SIZE, 1, 0xff);
  space.setWmask(PCI_INTERRUPT_LINE, 1, 0xff);
}
