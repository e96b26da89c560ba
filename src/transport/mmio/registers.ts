/**
 * The virtio-mmio (Version 2) register map (virtio 1.4 §4.2.2, `reference/spec-facts.md` §4), as
 * data: one row per register with its offset, direction and the clauses that govern it. The device
 * (`mmio-device.ts`) decodes accesses through {@link mmioRegisterAt}; the simulated driver
 * (`src/driver/mmio/`) uses the same offsets.
 *
 * Access rules (device view):
 *  - control registers (0x000–0x0ff) are 32 bits wide and only 32-bit aligned accesses name them
 *    (mmio.regs.driver.2); any other width or alignment reads 0 and a write is ignored;
 *  - a register is read-only (R), write-only (W) or both (RW) (mmio.regs.driver.1): a write to an
 *    R register and a read of a W register are ignored / read 0; offsets no row names likewise;
 *  - the device-specific configuration space starts at 0x100 (8/16/32-bit accesses per field
 *    width, 64-bit fields as two 32-bit accesses: mmio.regs.driver.3).
 */

/** MagicValue: little-endian "virt" (mmio.regs.device.1). */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** Version of the modern interface (mmio.regs.device.2); 1 is the legacy interface. */
export const VIRTIO_MMIO_VERSION = 2;
/** Version value of the legacy interface (not implemented here). */
export const VIRTIO_MMIO_VERSION_LEGACY = 1;
/** Size of the register window the device-tree binding describes (transport-mmio.tex example). */
export const VIRTIO_MMIO_DEFAULT_SIZE = 0x200;
/** Offset of the device-specific configuration space. */
export const VIRTIO_MMIO_CONFIG = 0x100;
/** InterruptStatus / InterruptACK bit 0: a used buffer notification. */
export const VIRTIO_MMIO_INT_VRING = 1;
/** InterruptStatus / InterruptACK bit 1: a configuration change notification. */
export const VIRTIO_MMIO_INT_CONFIG = 2;
/** The bits InterruptStatus defines (others read 0: mmio.regs.device.4). */
export const VIRTIO_MMIO_INT_MASK = VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG;

/** Register offsets (virtio_mmio.h names in comments where they differ). */
export const MMIO = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  /** QueueSizeMax (formerly QueueNumMax). */
  QUEUE_SIZE_MAX: 0x034,
  /** QueueSize (formerly QueueNum). */
  QUEUE_SIZE: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  QUEUE_RESET: 0x0c0,
  CONFIG_GENERATION: 0x0fc,
} as const;

/** Register direction as the table in transport-mmio.tex gives it. */
export type MmioDir = 'R' | 'W' | 'RW';

/** One control register. */
export interface MmioRegister {
  readonly name: string;
  readonly offset: number;
  readonly dir: MmioDir;
  /** Normative clauses about this register (device and driver side). */
  readonly clauses: readonly string[];
}

const R = (name: string, offset: number, dir: MmioDir, ...clauses: string[]): MmioRegister => ({ name, offset, dir, clauses });

/** Every control register, by offset. */
export const MMIO_REGISTERS: readonly MmioRegister[] = [
  R('MagicValue', MMIO.MAGIC_VALUE, 'R', 'mmio.regs.device.1', 'mmio.regs.driver.4'),
  R('Version', MMIO.VERSION, 'R', 'mmio.regs.device.2', 'mmio.regs.driver.5'),
  R('DeviceID', MMIO.DEVICE_ID, 'R', 'mmio.regs.driver.6'),
  R('VendorID', MMIO.VENDOR_ID, 'R'),
  R('DeviceFeatures', MMIO.DEVICE_FEATURES, 'R', 'mmio.regs.driver.7'),
  R('DeviceFeaturesSel', MMIO.DEVICE_FEATURES_SEL, 'W', 'mmio.regs.driver.7'),
  R('DriverFeatures', MMIO.DRIVER_FEATURES, 'W', 'mmio.regs.driver.8'),
  R('DriverFeaturesSel', MMIO.DRIVER_FEATURES_SEL, 'W', 'mmio.regs.driver.8'),
  R('QueueSel', MMIO.QUEUE_SEL, 'W'),
  R('QueueSizeMax', MMIO.QUEUE_SIZE_MAX, 'R', 'mmio.regs.driver.9'),
  R('QueueSize', MMIO.QUEUE_SIZE, 'W', 'mmio.regs.driver.9', 'mmio.regs.driver.10'),
  R('QueueReady', MMIO.QUEUE_READY, 'RW', 'mmio.regs.device.5', 'mmio.regs.device.7', 'mmio.regs.driver.11', 'mmio.regs.driver.15'),
  R('QueueNotify', MMIO.QUEUE_NOTIFY, 'W'),
  R('InterruptStatus', MMIO.INTERRUPT_STATUS, 'R', 'mmio.regs.device.3', 'mmio.regs.device.4', 'mmio.regs.driver.12', 'mmio.notif-dev.driver.1'),
  R('InterruptACK', MMIO.INTERRUPT_ACK, 'W', 'mmio.regs.driver.13', 'mmio.notif-dev.driver.3'),
  R('Status', MMIO.STATUS, 'RW', 'basic.dev-reset.device.1'),
  R('QueueDescLow', MMIO.QUEUE_DESC_LOW, 'W', 'mmio.regs.driver.10'),
  R('QueueDescHigh', MMIO.QUEUE_DESC_HIGH, 'W', 'mmio.regs.driver.10'),
  R('QueueDriverLow', MMIO.QUEUE_DRIVER_LOW, 'W', 'mmio.regs.driver.10'),
  R('QueueDriverHigh', MMIO.QUEUE_DRIVER_HIGH, 'W', 'mmio.regs.driver.10'),
  R('QueueDeviceLow', MMIO.QUEUE_DEVICE_LOW, 'W', 'mmio.regs.driver.10'),
  R('QueueDeviceHigh', MMIO.QUEUE_DEVICE_HIGH, 'W', 'mmio.regs.driver.10'),
  R('SHMSel', MMIO.SHM_SEL, 'W', 'mmio.dev-init.driver.3'),
  R('SHMLenLow', MMIO.SHM_LEN_LOW, 'R', 'mmio.dev-init.driver.3'),
  R('SHMLenHigh', MMIO.SHM_LEN_HIGH, 'R', 'mmio.dev-init.driver.3'),
  R('SHMBaseLow', MMIO.SHM_BASE_LOW, 'R', 'mmio.dev-init.driver.3'),
  R('SHMBaseHigh', MMIO.SHM_BASE_HIGH, 'R', 'mmio.dev-init.driver.3'),
  R('QueueReset', MMIO.QUEUE_RESET, 'RW', 'mmio.regs.device.8', 'mmio.regs.device.9', 'mmio.regs.device.10', 'mmio.regs.device.11', 'mmio.regs.device.12', 'mmio.regs.driver.14'),
  R('ConfigGeneration', MMIO.CONFIG_GENERATION, 'R', 'mmio.regs.device.6'),
];

/** Register index per 32-bit slot of the control area (−1 = no register there). */
const SLOT: Int8Array = (() => {
  const t = new Int8Array(VIRTIO_MMIO_CONFIG >>> 2).fill(-1);
  MMIO_REGISTERS.forEach((r, i) => (t[r.offset >>> 2] = i));
  return t;
})();

/**
 * The control register an access of `size` bytes at `off` names, or undefined: only 32-bit wide,
 * 32-bit aligned accesses inside 0x000–0x0ff at a defined offset (mmio.regs.driver.1/.2).
 */
export function mmioRegisterAt(off: number, size: number): MmioRegister | undefined {
  if (size !== 4 || (off & 3) !== 0 || !(off >= 0 && off < VIRTIO_MMIO_CONFIG)) return undefined;
  const i = SLOT[off >>> 2]!;
  return i < 0 ? undefined : MMIO_REGISTERS[i];
}

/** The register at `off` regardless of access width (for messages), or undefined. */
export function mmioRegisterName(off: number): string | undefined {
  if (!(off >= 0 && off < VIRTIO_MMIO_CONFIG)) return undefined;
  const i = SLOT[off >>> 2]!;
  return i < 0 ? undefined : MMIO_REGISTERS[i]!.name;
}
