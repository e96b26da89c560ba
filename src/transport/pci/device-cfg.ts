/**
 * The device-specific configuration region (VIRTIO_PCI_CAP_DEVICE_CFG, virtio 1.4 §4.1.4.6).
 *
 * Accesses are forwarded to the model's config space through the core, which bounds-checks them
 * (out of range or odd widths read 0 and are traced) and owns `config_generation`: the model calls
 * `configChanged()`, the core bumps the generation (read at common cfg offset 21,
 * pci.common-cfg.device.6) and raises the configuration interrupt. The capability offset is
 * 4-byte aligned (pci.dev-cfg.device.1, checked by the capability builder).
 */
import type { VirtioDeviceCore } from '../../device/core.js';
import type { BarHandler } from './bar-router.js';

/** Device config window of one device. */
export class DeviceCfgRegion implements BarHandler {
  private readonly core: VirtioDeviceCore;

  constructor(core: VirtioDeviceCore) {
    this.core = core;
  }

  /** Size of the model's config space (0 = the device has none and presents no capability). */
  get size(): number {
    return this.core.model.config.size;
  }

  read(off: number, size: number): number {
    if (size !== 1 && size !== 2 && size !== 4) return 0;
    return this.core.readConfig(off, size);
  }

  write(off: number, size: number, value: number): void {
    if (size !== 1 && size !== 2 && size !== 4) return;
    this.core.writeConfig(off, size, value);
  }
}
