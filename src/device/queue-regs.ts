/**
 * Per-virtqueue registers as the driver programs them (PCI common cfg `queue_*`, MMIO `Queue*`),
 * plus the device queue built from them at DRIVER_OK.
 *
 * Addresses are kept as two 32-bit halves (the device must accept independent access to each
 * half, transport-pci.tex access rules) and turned into Numbers only when the queue is created:
 * an address at or above 2^53 stays at or above 2^53 after rounding, so it can never resolve
 * inside an address space.
 */
import type { DeviceQueue } from '../queue/types.js';

/** MSI-X "no vector" (transport-pci.tex: VIRTIO_MSI_NO_VECTOR). */
export const NO_VECTOR = 0xffff;

/** Which ring area a 64-bit queue address register names. */
export type QueueArea = 'desc' | 'driver' | 'device';

/** Registers and runtime state of one virtqueue. */
export class QueueRegs {
  readonly index: number;
  /** The device's maximum for this queue (0 = unavailable). */
  readonly maxSize: number;
  readonly notifyOff: number;
  size: number;
  msixVector = NO_VECTOR;
  enabled = false;
  descLo = 0;
  descHi = 0;
  driverLo = 0;
  driverHi = 0;
  deviceLo = 0;
  deviceHi = 0;
  /** The live device queue (after DRIVER_OK, or after re-enable with RING_RESET). */
  queue: DeviceQueue | null = null;
  /** Parked by the choke point (a device-level error named this queue, or all queues). */
  parked = false;

  constructor(index: number, maxSize: number, notifyOff: number) {
    this.index = index;
    this.maxSize = maxSize;
    this.notifyOff = notifyOff;
    this.size = maxSize;
  }

  /** Back to reset values (`pci.common-cfg.device.8`: queue_enable reads 0; size = maximum; no vector). */
  reset(): void {
    this.size = this.maxSize;
    this.msixVector = NO_VECTOR;
    this.enabled = false;
    this.descLo = this.descHi = 0;
    this.driverLo = this.driverHi = 0;
    this.deviceLo = this.deviceHi = 0;
    this.queue = null;
    this.parked = false;
  }

  /** Read one 32-bit half of an area address. */
  readAddr(area: QueueArea, high: boolean): number {
    switch (area) {
      case 'desc':
        return high ? this.descHi : this.descLo;
      case 'driver':
        return high ? this.driverHi : this.driverLo;
      case 'device':
        return high ? this.deviceHi : this.deviceLo;
    }
  }

  /** Write one 32-bit half of an area address. */
  writeAddr(area: QueueArea, high: boolean, v: number): void {
    v = v >>> 0;
    switch (area) {
      case 'desc':
        if (high) this.descHi = v;
        else this.descLo = v;
        break;
      case 'driver':
        if (high) this.driverHi = v;
        else this.driverLo = v;
        break;
      case 'device':
        if (high) this.deviceHi = v;
        else this.deviceLo = v;
        break;
    }
  }

  /** An area address as a Number (exact below 2^53). */
  addr(area: QueueArea): number {
    return this.readAddr(area, true) * 4294967296 + this.readAddr(area, false);
  }
}
