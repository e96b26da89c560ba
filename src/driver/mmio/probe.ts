/**
 * Probing a virtio-mmio device the way Linux `virtio_mmio_probe` does it.
 *
 * 1. MagicValue must be 0x74726976 — otherwise this is not a virtio-mmio device: the driver ignores
 *    it and reports why (mmio.regs.driver.4, mmio.dev-init.driver.1).
 * 2. Version must be 2. Version 1 is the legacy interface, which this driver does not implement:
 *    a clear "legacy not supported" error (mmio.regs.driver.5). Any other version likewise.
 * 3. DeviceID 0 is a placeholder transport with nothing behind it: the probe stops without
 *    touching any other register and without an error (mmio.regs.driver.6,
 *    mmio.dev-init.driver.2) — {@link probeVirtioMmio} returns null.
 */
import { VirtioError } from '../../errors.js';
import { logger } from '../../log.js';
import { VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_VERSION } from '../../transport/mmio/registers.js';
import type { MmioDeviceAccess } from './access.js';
import { MR } from './regs.js';

const log = logger('driver:mmio');

/** MagicValue ("virt", little-endian). */
export const MMIO_MAGIC = VIRTIO_MMIO_MAGIC;
/** The modern interface version. */
export const MMIO_VERSION = VIRTIO_MMIO_VERSION;

/** What the probe found. */
export interface VirtioMmioProbe {
  readonly version: number;
  /** Virtio device id (never 0: placeholders are not probed further). */
  readonly deviceId: number;
  readonly vendorId: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Probe one register window.
 * @returns the ids, or null for a placeholder (DeviceID 0), which a driver ignores silently
 * @throws VirtioError PROTOCOL for a bad magic value or a version other than 2 (legacy included)
 */
export function probeVirtioMmio(access: MmioDeviceAccess): VirtioMmioProbe | null {
  // mmio.dev-init.driver.1: MagicValue and Version first.
  const magic = access.read(MR.MAGIC_VALUE, 4) >>> 0;
  if (magic !== MMIO_MAGIC) {
    // mmio.regs.driver.4: ignore the device (reporting is allowed).
    throw new VirtioError('PROTOCOL', `not a virtio-mmio device: MagicValue reads ${hex(magic)}, expected ${hex(MMIO_MAGIC)} ("virt"); check the register window base`, { clause: 'mmio.regs.driver.4' });
  }
  const version = access.read(MR.VERSION, 4) >>> 0;
  if (version === 1) {
    // mmio.regs.driver.5
    throw new VirtioError('PROTOCOL', 'virtio-mmio legacy interface (Version 1) is not supported: this driver implements Version 2 only; configure the device as modern (QEMU: -global virtio-mmio.force-legacy=false)', { clause: 'mmio.regs.driver.5' });
  }
  if (version !== MMIO_VERSION) {
    throw new VirtioError('PROTOCOL', `virtio-mmio Version ${version} is not supported (this driver implements Version 2)`, { clause: 'mmio.regs.driver.5' });
  }
  const deviceId = access.read(MR.DEVICE_ID, 4) >>> 0;
  if (deviceId === 0) {
    // mmio.regs.driver.6 / mmio.dev-init.driver.2: stop here, touch nothing else, report nothing.
    log('placeholder virtio-mmio transport (DeviceID 0) ignored');
    return null;
  }
  const vendorId = access.read(MR.VENDOR_ID, 4) >>> 0;
  return { version, deviceId, vendorId };
}
