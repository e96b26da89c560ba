/**
 * `struct virtio_pci_common_cfg` (virtio 1.4 §4.1.4.3, 64 bytes) decoded onto the device core.
 *
 * One table ({@link COMMON_CFG_FIELDS}) gives every field's offset, width and whether the driver may
 * write it; one guard ({@link CommonCfg.field}) matches an access against it. An access must name
 * one field exactly: a 8-bit access for 8-bit fields, 16-bit for 16-bit fields, 32-bit for 32-bit
 * fields and for either half of a 64-bit field (pci.layout.driver.1; each half independently,
 * pci.layout.device.1). Anything else — a 32-bit read of a 16-bit field, an access straddling two
 * fields, a byte inside `queue_desc` — the spec leaves undefined for the device; here it reads 0,
 * a write is ignored, and both are counted and traced. Nothing throws into the caller.
 *
 * Writes to read-only fields (device_feature, num_queues, config_generation, queue_notify_off,
 * queue_notif_config_data, admin_*: pci.common-cfg.driver.1) are ignored and traced.
 *
 * MSI-X vector fields: a vector beyond the MSI-X table (or any vector when the function has no
 * MSI-X capability) is a mapping failure, stored and read back as NO_VECTOR (pci.msix.device.9).
 */
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import { NO_VECTOR, type QueueArea } from '../../device/queue-regs.js';
import type { StatusWriteResult } from '../../features/status.js';
import type { BarHandler } from './bar-router.js';
import { COMMON_CFG_SIZE, COMMON_CFG } from './layout-constants.js';

/** Moved to `layout-constants.ts` (shared with the driver); re-exported here. */
export { COMMON_CFG_SIZE, COMMON_CFG } from './layout-constants.js';

const log = logger('pci:common');

/** One field of the structure. */
export interface CommonCfgField {
  readonly name: string;
  readonly offset: number;
  /** Access width in bytes (64-bit fields appear as two 4-byte halves). */
  readonly width: 1 | 2 | 4;
  /** The driver may write it. */
  readonly writable: boolean;
}

const F = (name: string, offset: number, width: 1 | 2 | 4, writable: boolean): CommonCfgField => ({ name, offset, width, writable });

/** Every field, by offset (transport-pci.tex struct virtio_pci_common_cfg; driver access per field). */
export const COMMON_CFG_FIELDS: readonly CommonCfgField[] = [
  F('device_feature_select', 0, 4, true),
  F('device_feature', 4, 4, false),
  F('driver_feature_select', 8, 4, true),
  F('driver_feature', 12, 4, true),
  F('config_msix_vector', 16, 2, true),
  F('num_queues', 18, 2, false),
  F('device_status', 20, 1, true),
  F('config_generation', 21, 1, false),
  F('queue_select', 22, 2, true),
  F('queue_size', 24, 2, true),
  F('queue_msix_vector', 26, 2, true),
  F('queue_enable', 28, 2, true),
  F('queue_notify_off', 30, 2, false),
  F('queue_desc_lo', 32, 4, true),
  F('queue_desc_hi', 36, 4, true),
  F('queue_driver_lo', 40, 4, true),
  F('queue_driver_hi', 44, 4, true),
  F('queue_device_lo', 48, 4, true),
  F('queue_device_hi', 52, 4, true),
  F('queue_notif_config_data', 56, 2, false),
  F('queue_reset', 58, 2, true),
  F('admin_queue_index', 60, 2, false),
  F('admin_queue_num', 62, 2, false),
];

/** Field index by offset (-1 where no field starts). */
const FIELD_AT: Int8Array = (() => {
  const t = new Int8Array(COMMON_CFG_SIZE).fill(-1);
  COMMON_CFG_FIELDS.forEach((f, i) => (t[f.offset] = i));
  return t;
})();

/** What the common cfg needs from the rest of the transport. */
export interface CommonCfgHost {
  /** Number of MSI-X table entries (0 = no MSI-X capability). */
  msixVectors(): number;
  /** Called after every device_status write with the core's result. */
  afterStatusWrite(res: StatusWriteResult): void;
  /** Count and trace a refused access. */
  refused(detail: string, clause: string | undefined, value?: number): void;
}

/** The common configuration structure of one device. */
export class CommonCfg implements BarHandler {
  private readonly core: VirtioDeviceCore;
  private readonly host: CommonCfgHost;

  constructor(core: VirtioDeviceCore, host: CommonCfgHost) {
    this.core = core;
    this.host = host;
  }

  /** The field an access of `size` bytes at `off` names exactly, or undefined (the one guard). */
  field(off: number, size: number): CommonCfgField | undefined {
    if (!(off >= 0 && off < COMMON_CFG_SIZE)) return undefined;
    const i = FIELD_AT[off]!;
    if (i < 0) return undefined;
    const f = COMMON_CFG_FIELDS[i]!;
    return f.width === size ? f : undefined; // pci.layout.driver.1
  }

  read(off: number, size: number): number {
    const f = this.field(off, size);
    if (f === undefined) {
      if (off < COMMON_CFG_SIZE) this.host.refused(`common cfg read of ${size} bytes at offset ${off} does not match a field`, 'pci.layout.driver.1');
      return 0;
    }
    const c = this.core;
    switch (f.offset) {
      case COMMON_CFG.DEVICE_FEATURE_SELECT:
        return c.deviceFeatureSelect;
      case COMMON_CFG.DEVICE_FEATURE:
        return c.readDeviceFeature(); // pci.common-cfg.device.3 (any select; 0 beyond the offer)
      case COMMON_CFG.DRIVER_FEATURE_SELECT:
        return c.driverFeatureSelect;
      case COMMON_CFG.DRIVER_FEATURE:
        return c.readDriverFeature(); // pci.common-cfg.device.4
      case COMMON_CFG.CONFIG_MSIX_VECTOR:
        return c.readConfigMsixVector(); // pci.msix.device.6
      case COMMON_CFG.NUM_QUEUES:
        return c.numQueues;
      case COMMON_CFG.DEVICE_STATUS:
        return c.status; // pci.common-cfg.device.7: 0 once reset is done
      case COMMON_CFG.CONFIG_GENERATION:
        return c.configGeneration & 0xff; // pci.common-cfg.device.6
      case COMMON_CFG.QUEUE_SELECT:
        return c.queueSelect & 0xffff;
      case COMMON_CFG.QUEUE_SIZE:
        return c.readQueueSize(); // pci.common-cfg.device.14: 0 when unavailable
      case COMMON_CFG.QUEUE_MSIX_VECTOR:
        return c.readQueueMsixVector();
      case COMMON_CFG.QUEUE_ENABLE:
        return c.readQueueEnable(); // pci.common-cfg.device.8
      case COMMON_CFG.QUEUE_NOTIFY_OFF:
        return c.readQueueNotifyOff();
      case COMMON_CFG.QUEUE_DESC_LO:
      case COMMON_CFG.QUEUE_DESC_HI:
      case COMMON_CFG.QUEUE_DRIVER_LO:
      case COMMON_CFG.QUEUE_DRIVER_HI:
      case COMMON_CFG.QUEUE_DEVICE_LO:
      case COMMON_CFG.QUEUE_DEVICE_HI:
        return c.readQueueAddr(areaOf(f.offset), (f.offset & 4) !== 0); // pci.layout.device.1
      case COMMON_CFG.QUEUE_NOTIF_CONFIG_DATA:
        return c.readQueueNotifConfigData();
      case COMMON_CFG.QUEUE_RESET:
        return c.readQueueReset(); // pci.common-cfg.device.9/.10/.13
      case COMMON_CFG.ADMIN_QUEUE_INDEX:
        return c.numQueues; // pci.common-cfg.device.16: ≥ num_queues (no admin queues)
      case COMMON_CFG.ADMIN_QUEUE_NUM:
        return 0;
      default:
        return 0;
    }
  }

  write(off: number, size: number, value: number): void {
    const f = this.field(off, size);
    if (f === undefined) {
      if (off < COMMON_CFG_SIZE) this.host.refused(`common cfg write of ${size} bytes at offset ${off} does not match a field`, 'pci.layout.driver.1', value);
      return;
    }
    if (!f.writable) {
      this.host.refused(`write to read-only ${f.name}`, 'pci.common-cfg.driver.1', value);
      return;
    }
    const c = this.core;
    switch (f.offset) {
      case COMMON_CFG.DEVICE_FEATURE_SELECT:
        c.writeDeviceFeatureSelect(value);
        return;
      case COMMON_CFG.DRIVER_FEATURE_SELECT:
        c.writeDriverFeatureSelect(value);
        return;
      case COMMON_CFG.DRIVER_FEATURE:
        c.writeDriverFeature(value);
        return;
      case COMMON_CFG.CONFIG_MSIX_VECTOR:
        c.writeConfigMsixVector(this.mapVector(value, 'config_msix_vector'));
        return;
      case COMMON_CFG.DEVICE_STATUS:
        this.host.afterStatusWrite(c.writeStatus(value & 0xff));
        return;
      case COMMON_CFG.QUEUE_SELECT:
        c.writeQueueSelect(value & 0xffff);
        return;
      case COMMON_CFG.QUEUE_SIZE:
        c.writeQueueSize(value & 0xffff);
        return;
      case COMMON_CFG.QUEUE_MSIX_VECTOR:
        c.writeQueueMsixVector(this.mapVector(value, 'queue_msix_vector'));
        return;
      case COMMON_CFG.QUEUE_ENABLE:
        c.writeQueueEnable(value & 0xffff);
        return;
      case COMMON_CFG.QUEUE_DESC_LO:
      case COMMON_CFG.QUEUE_DESC_HI:
      case COMMON_CFG.QUEUE_DRIVER_LO:
      case COMMON_CFG.QUEUE_DRIVER_HI:
      case COMMON_CFG.QUEUE_DEVICE_LO:
      case COMMON_CFG.QUEUE_DEVICE_HI:
        c.writeQueueAddr(areaOf(f.offset), (f.offset & 4) !== 0, value); // pci.layout.device.1
        return;
      case COMMON_CFG.QUEUE_RESET:
        c.writeQueueReset(value & 0xffff); // pci.common-cfg.device.11
        return;
      default:
        return;
    }
  }

  /**
   * A vector the driver maps: kept when it is NO_VECTOR or inside the MSI-X table, else the
   * mapping fails and NO_VECTOR is stored (pci.msix.device.8/.9).
   */
  private mapVector(value: number, what: string): number {
    const v = value & 0xffff;
    if (v === NO_VECTOR || v < this.host.msixVectors()) return v;
    log('%s %d is beyond the MSI-X table (%d vectors): mapping failed, reads NO_VECTOR', what, v, this.host.msixVectors());
    this.host.refused(`${what} ${v} is beyond the MSI-X table (${this.host.msixVectors()} vectors); reads back NO_VECTOR`, 'pci.msix.driver.4', v);
    return NO_VECTOR;
  }
}

function areaOf(off: number): QueueArea {
  return off < COMMON_CFG.QUEUE_DRIVER_LO ? 'desc' : off < COMMON_CFG.QUEUE_DEVICE_LO ? 'driver' : 'device';
}
