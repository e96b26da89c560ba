/**
 * Every register access of the simulated virtio-mmio driver, in one place: 32-bit wide, 32-bit
 * aligned accesses to the control registers (mmio.regs.driver.2), 8/16/32-bit accesses to the
 * configuration space per field width (mmio.regs.driver.3), never a read of a write-only register
 * or a write to a read-only one (mmio.regs.driver.1).
 */
import { MMIO, VIRTIO_MMIO_CONFIG } from '../../transport/mmio/registers.js';
import type { QueueNotifier, VirtqueueDriver } from '../virtqueue.js';
import type { MmioDeviceAccess } from './access.js';

/**
 * Register offsets (transport-mmio.tex table 4.2.2): the transport's {@link MMIO} table (one
 * source of truth, `src/transport/mmio/registers.ts`), with the 64-bit pairs also named by their
 * low half as the driver writes them with {@link VirtioMmioRegs.w64} / reads them with `r64`, and
 * the configuration space offset.
 */
export const MR = {
  ...MMIO,
  QUEUE_DESC: MMIO.QUEUE_DESC_LOW,
  QUEUE_DRIVER: MMIO.QUEUE_DRIVER_LOW,
  QUEUE_DEVICE: MMIO.QUEUE_DEVICE_LOW,
  SHM_LEN: MMIO.SHM_LEN_LOW,
  SHM_BASE: MMIO.SHM_BASE_LOW,
  CONFIG: VIRTIO_MMIO_CONFIG,
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

/**
 * Queue notifications for {@link VirtqueueDriver} on MMIO: a 32-bit write of the queue index, or
 * with VIRTIO_F_NOTIFICATION_DATA of the le32 notification data, to QueueNotify (the notify
 * address `VirtqueueDriver` passes is not used: every queue shares the one register).
 */
export class MmioQueueNotifier implements QueueNotifier {
  private readonly mmio: MmioDeviceAccess;

  constructor(mmio: MmioDeviceAccess) {
    this.mmio = mmio;
  }

  /** Queue index (16 bits) as a 32-bit QueueNotify write (mmio.regs.driver.2: no 16-bit accesses). */
  notify16(_addr: number, v: number): void {
    this.mmio.write(MR.QUEUE_NOTIFY, 4, v & 0xffff);
  }

  /** Notification data (vqn | next_off << 16 | next_wrap << 31). */
  notify32(_addr: number, v: number): void {
    this.mmio.write(MR.QUEUE_NOTIFY, 4, v >>> 0);
  }
}
