/**
 * Every register access of the simulated guest driver, in one place.
 *
 * {@link PciConfigIo} wraps configuration-space accesses; {@link VirtioPciRegs} wraps the virtio
 * structures the probe found (common cfg, ISR, device cfg, notify) and the MSI-X table, addressed
 * by bus address through {@link PciFunctionAccess.mmioRead}/`mmioWrite`.
 *
 * Access widths follow pci.layout.driver.1: 8-bit fields with 8-bit accesses, 16-bit with 16-bit,
 * 32-bit fields and each half of a 64-bit field with 32-bit accesses (pci.layout.driver.2).
 *
 * Everything here is synchronous. An asynchronous twin (vfio-user) is this file with
 * Promise-returning methods; the init sequence in driver.ts then awaits each call.
 */
import { COMMON_CFG } from '../transport/pci/layout-constants.js';
import type { PciFunctionAccess } from './access.js';

/**
 * `struct virtio_pci_common_cfg` field offsets: the transport's {@link COMMON_CFG} (one source of
 * truth, `src/transport/pci/layout-constants.ts`), with the 64-bit ring address fields also named
 * by their low half, as the driver writes them with {@link VirtioPciRegs.ccW64}.
 */
export const CC = {
  ...COMMON_CFG,
  QUEUE_DESC: COMMON_CFG.QUEUE_DESC_LO,
  QUEUE_DRIVER: COMMON_CFG.QUEUE_DRIVER_LO,
  QUEUE_DEVICE: COMMON_CFG.QUEUE_DEVICE_LO,
} as const;

const TWO32 = 4294967296;

/** Configuration-space accesses of one function. */
export class PciConfigIo {
  constructor(private readonly access: PciFunctionAccess) {}
  r8(off: number): number {
    return this.access.configRead(off, 1) & 0xff;
  }
  r16(off: number): number {
    return this.access.configRead(off, 2) & 0xffff;
  }
  r32(off: number): number {
    return this.access.configRead(off, 4) >>> 0;
  }
  w8(off: number, v: number): void {
    this.access.configWrite(off, 1, v & 0xff);
  }
  w16(off: number, v: number): void {
    this.access.configWrite(off, 2, v & 0xffff);
  }
  w32(off: number, v: number): void {
    this.access.configWrite(off, 4, v >>> 0);
  }
}

/** Bus addresses of the virtio structures (BAR address + capability offset). */
export interface VirtioRegAddrs {
  common: number;
  isr: number;
  /** Device-specific config (undefined when the device has none). */
  device: number | undefined;
  /** Length of the device config structure. */
  deviceLength: number;
  /** Start of the notify structure. */
  notify: number;
  /** MSI-X table (undefined without MSI-X). */
  msixTable: number | undefined;
}

/** Register accesses to the virtio structures and the MSI-X table. */
export class VirtioPciRegs {
  private readonly access: PciFunctionAccess;
  private a: VirtioRegAddrs;

  constructor(access: PciFunctionAccess, addrs: VirtioRegAddrs) {
    this.access = access;
    this.a = { ...addrs };
  }

  /** New bus addresses after BAR reprogramming. */
  rebase(addrs: VirtioRegAddrs): void {
    this.a = { ...addrs };
  }

  get addrs(): Readonly<VirtioRegAddrs> {
    return this.a;
  }

  // --- common cfg (pci.layout.driver.1: access width = field width)
  cc8(off: number): number {
    return this.access.mmioRead(this.a.common + off, 1) & 0xff;
  }
  cc16(off: number): number {
    return this.access.mmioRead(this.a.common + off, 2) & 0xffff;
  }
  cc32(off: number): number {
    return this.access.mmioRead(this.a.common + off, 4) >>> 0;
  }
  ccW8(off: number, v: number): void {
    this.access.mmioWrite(this.a.common + off, 1, v & 0xff);
  }
  ccW16(off: number, v: number): void {
    this.access.mmioWrite(this.a.common + off, 2, v & 0xffff);
  }
  ccW32(off: number, v: number): void {
    this.access.mmioWrite(this.a.common + off, 4, v >>> 0);
  }
  /** 64-bit field as two 32-bit writes, low half first (pci.layout.driver.2). */
  ccW64(off: number, v: number): void {
    this.ccW32(off, v >>> 0);
    this.ccW32(off + 4, Math.floor(v / TWO32) >>> 0);
  }
  /** 64-bit field read as two 32-bit halves. */
  cc64(off: number): number {
    return this.cc32(off + 4) * TWO32 + this.cc32(off);
  }

  get status(): number {
    return this.cc8(CC.DEVICE_STATUS);
  }
  set status(v: number) {
    this.ccW8(CC.DEVICE_STATUS, v);
  }

  /** Device feature word `i` (select window i). */
  deviceFeatureWord(i: number): number {
    this.ccW32(CC.DEVICE_FEATURE_SELECT, i);
    return this.cc32(CC.DEVICE_FEATURE);
  }

  /** Write driver feature word `i`. */
  writeDriverFeatureWord(i: number, v: number): void {
    this.ccW32(CC.DRIVER_FEATURE_SELECT, i);
    this.ccW32(CC.DRIVER_FEATURE, v);
  }

  /** Select queue `q` (subsequent queue_* accesses refer to it). */
  selectQueue(q: number): void {
    this.ccW16(CC.QUEUE_SELECT, q);
  }

  // --- ISR: one byte; the read clears it (pci.isr.device.5)
  readIsr(): number {
    return this.access.mmioRead(this.a.isr, 1) & 0xff;
  }

  // --- device-specific config
  readDeviceConfig(off: number, width: 1 | 2 | 4): number {
    const d = this.a.device;
    if (d === undefined) return 0;
    const v = this.access.mmioRead(d + off, width);
    return width === 4 ? v >>> 0 : width === 2 ? v & 0xffff : v & 0xff;
  }
  writeDeviceConfig(off: number, width: 1 | 2 | 4, v: number): void {
    const d = this.a.device;
    if (d !== undefined) this.access.mmioWrite(d + off, width, v);
  }

  // --- notifications: 16-bit (vq index / config data) or 32-bit (notification data)
  notify16(addr: number, v: number): void {
    this.access.mmioWrite(addr, 2, v);
  }
  notify32(addr: number, v: number): void {
    this.access.mmioWrite(addr, 4, v);
  }

  // --- MSI-X table entries (16 bytes: address lo, address hi, data, vector control)
  writeMsixEntry(vector: number, address: number, data: number, masked: boolean): void {
    const t = this.a.msixTable;
    if (t === undefined) return;
    const e = t + vector * 16;
    this.access.mmioWrite(e, 4, address >>> 0);
    this.access.mmioWrite(e + 4, 4, Math.floor(address / TWO32) >>> 0);
    this.access.mmioWrite(e + 8, 4, data >>> 0);
    this.access.mmioWrite(e + 12, 4, masked ? 1 : 0);
  }
  readMsixEntry(vector: number): { address: number; data: number; control: number } {
    const t = this.a.msixTable;
    if (t === undefined) return { address: 0, data: 0, control: 1 };
    const e = t + vector * 16;
    return {
      address: (this.access.mmioRead(e + 4, 4) >>> 0) * TWO32 + (this.access.mmioRead(e, 4) >>> 0),
      data: this.access.mmioRead(e + 8, 4) >>> 0,
      control: this.access.mmioRead(e + 12, 4) >>> 0,
    };
  }
}
