/**
 * Every register access of the simulated virtio-mmio driver, in one place: 32-bit wide, 32-bit
 * aligned accesses to the control registers (mmio.regs.driver.2), 8/16/32-bit accesses to the
 * configuration space per field width (mmio.regs.driver.3), never a read of a write-only register
 * or a write to a read-only one (mmio.regs.driver.1).
 */
import type { PciFunctionAccess } from '../access.js';
import { VirtioPciRegs } from '../pci-regs.js';
import type { MmioDeviceAccess } from './access.js';

/** Register offsets (transport-mmio.tex table 4.2.2); the device side has the same table in `src/transport/mmio/registers.ts`. */
export const MR = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_SIZE_MAX: 0x034,
  QUEUE_SIZE: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC: 0x080,
  QUEUE_DRIVER: 0x090,
  QUEUE_DEVICE: 0x0a0,
  SHM_SEL: 0x0ac,
  SHM_LEN: 0x0b0,
  SHM_BASE: 0x0b8,
  QUEUE_RESET: 0x0c0,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

const TWO32 = 4294967296;

/** Register accesses to one virtio-mmio device. */
export class VirtioMmioRegs {
  readonly access: MmioDeviceAccess;

  constructor(access: MmioDeviceAccess) {
    this.access = access;
  }

  /** 32-bit control register read. */
  r32(off: number): number {
    return this.access.read(off, 4) >>> 0;
  }
  /** 32-bit control register write. */
  w32(off: number, v: number): void {
    this.access.write(off, 4, v >>> 0);
  }
  /** A 64-bit register pair (Low at `off`, High at `off + 4`), low half first. */
  w64(off: number, v: number): void {
    this.w32(off, v >>> 0);
    this.w32(off + 4, Math.floor(v / TWO32) >>> 0);
  }
  /** A 64-bit read-only pair as a Number (exact below 2^53). */
  r64(off: number): number {
    return this.r32(off + 4) * TWO32 + this.r32(off);
  }

  get status(): number {
    return this.r32(MR.STATUS) & 0xff;
  }
  set status(v: number) {
    this.w32(MR.STATUS, v & 0xff);
  }

  /** Device feature word `i`: DeviceFeaturesSel first (mmio.regs.driver.7). */
  deviceFeatureWord(i: number): number {
    this.w32(MR.DEVICE_FEATURES_SEL, i);
    return this.r32(MR.DEVICE_FEATURES);
  }

  /** Driver feature word `i`: DriverFeaturesSel first (mmio.regs.driver.8). */
  writeDriverFeatureWord(i: number, v: number): void {
    this.w32(MR.DRIVER_FEATURES_SEL, i);
    this.w32(MR.DRIVER_FEATURES, v);
  }

  selectQueue(q: number): void {
    this.w32(MR.QUEUE_SEL, q);
  }

  /** Device-specific configuration (mmio.regs.driver.3: access width = field width). */
  readConfig(off: number, width: 1 | 2 | 4): number {
    const v = this.access.read(MR.CONFIG + off, width);
    return width === 4 ? v >>> 0 : width === 2 ? v & 0xffff : v & 0xff;
  }
  writeConfig(off: number, width: 1 | 2 | 4, v: number): void {
    this.access.write(MR.CONFIG + off, width, v);
  }
}

/** A PCI access object that must never be used (the MMIO notifier below inherits no PCI behaviour). */
const NO_PCI: PciFunctionAccess = {
  configRead: () => 0,
  configWrite: () => undefined,
  mmioRead: () => 0,
  mmioWrite: () => undefined,
};

/**
 * Queue notifications for {@link VirtqueueDriver} on MMIO: a 32-bit write of the queue index, or
 * with VIRTIO_F_NOTIFICATION_DATA of the le32 notification data, to QueueNotify.
 *
 * `VirtqueueDriver` takes a `VirtioPciRegs` and calls only `notify16` / `notify32` on it; this
 * subclass overrides exactly those (the PCI register methods it inherits are never called and
 * would do nothing). If `VirtqueueDriver` is changed to take a narrow notifier interface, this
 * class becomes a plain object.
 */
export class MmioQueueNotifier extends VirtioPciRegs {
  private readonly mmio: MmioDeviceAccess;

  constructor(mmio: MmioDeviceAccess) {
    super(NO_PCI, { common: 0, isr: 0, device: undefined, deviceLength: 0, notify: MR.QUEUE_NOTIFY, msixTable: undefined });
    this.mmio = mmio;
  }

  /** Queue index (16 bits) as a 32-bit QueueNotify write (mmio.regs.driver.2: no 16-bit accesses). */
  override notify16(_addr: number, v: number): void {
    this.mmio.write(MR.QUEUE_NOTIFY, 4, v & 0xffff);
  }

  /** Notification data (vqn | next_off << 16 | next_wrap << 31). */
  override notify32(_addr: number, v: number): void {
    this.mmio.write(MR.QUEUE_NOTIFY, 4, v >>> 0);
  }
}
