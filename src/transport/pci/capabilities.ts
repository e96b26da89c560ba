/**
 * The PCI capability list and the virtio vendor capabilities (virtio 1.4 §4.1.4).
 *
 * {@link CapabilityList} lays capabilities out from 0x40 on 4-byte boundaries, links them through
 * `cap_next` starting at the capabilities pointer (0x34), and sets the status register's
 * capability-list bit. Each `add*` method checks the rules the spec puts on that structure
 * (alignment, length, BAR range) and throws INVALID_ARGUMENT on a bad layout — these are host
 * configuration errors, found when the device is built, not at guest run time.
 *
 * Capabilities are read-only to the driver (pci.caps.driver.7) except the fields of the
 * VIRTIO_PCI_CAP_PCI_CFG window and the MSI-X message control bits, which their modules open up.
 */
import { requireArg } from '../../errors.js';
import type { PciConfigSpace } from './config-space.js';
import {
  PCI_STATUS, PCI_CAPABILITY_LIST, PCI_STATUS_CAP_LIST, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_PCI_CFG,
  VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, VIRTIO_PCI_CAP_VENDOR_CFG, VIRTIO_PCI_CAP_SWIOTLB_DEFAULT,
  VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CAP64_LEN, VIRTIO_PCI_CFG_CAP_LEN, CAP_NEXT, CAP_LEN,
  CAP_CFG_TYPE, CAP_BAR, CAP_ID, CAP_OFFSET, CAP_LENGTH, CAP_EXTRA, CAP_LENGTH_HI
} from './layout-constants.js';

/** Moved to `layout-constants.ts` (shared with the driver); re-exported here. */
export {
  PCI_CAP_ID_VNDR, PCI_CAP_ID_MSIX, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_PCI_CFG,
  VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, VIRTIO_PCI_CAP_VENDOR_CFG, VIRTIO_PCI_CAP_SWIOTLB_DEFAULT,
  VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CAP64_LEN, VIRTIO_PCI_NOTIFY_CAP_LEN,
  VIRTIO_PCI_CFG_CAP_LEN, CAP_VNDR, CAP_NEXT, CAP_LEN, CAP_CFG_TYPE, CAP_BAR, CAP_ID, CAP_OFFSET, CAP_LENGTH,
  CAP_EXTRA, CAP_LENGTH_HI
} from './layout-constants.js';

/** A BAR region named by a capability. */
export interface CapRegion {
  /** BAR index 0–5. */
  bar: number;
  /** Offset inside the BAR. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/** One capability in the list. */
export interface CapRecord {
  /** Config-space offset of the capability. */
  readonly offset: number;
  /** PCI capability id (0x09 vendor, 0x11 MSI-X). */
  readonly capId: number;
  /** virtio cfg_type, for vendor capabilities. */
  readonly cfgType: number | undefined;
  /** Bytes the capability occupies. */
  readonly length: number;
  /** BAR region it names (virtio structures other than PCI_CFG and vendor data). */
  readonly region: CapRegion | undefined;
}

/** Options of the notification capability. */
export interface NotifyCapOptions {
  /** `notify_off_multiplier`. */
  multiplier: number;
  /** Highest `queue_notify_off` the device will ever present (to check cap.length). */
  maxNotifyOff: number;
  /** The device offers VIRTIO_F_NOTIFICATION_DATA (stricter alignment rules). */
  notificationData: boolean;
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

/** Builder and registry of a function's capability list. */
export class CapabilityList {
  /** Capabilities in list order. */
  readonly records: CapRecord[] = [];
  private readonly space: PciConfigSpace;
  private readonly barSize: (bar: number) => number;
  private next: number;
  private readonly end: number;
  private readonly shmIds = new Set<number>();

  /**
   * @param barSize size of an implemented BAR, 0 when absent (regions are checked against it)
   * @param start first offset to use (default 0x40, right after the header)
   * @param end end of the capability area (default 0x100)
   */
  constructor(space: PciConfigSpace, barSize: (bar: number) => number, start = 0x40, end = 0x100) {
    requireArg(start >= 0x40 && start % 4 === 0 && end <= 0x100 && end > start, 'capability area must lie in [0x40, 0x100) and start 4-byte aligned');
    this.space = space;
    this.barSize = barSize;
    this.next = start;
    this.end = end;
  }

  /**
   * Allocate `len` bytes (rounded up to 4) for a capability with id `capId` and link it.
   * @returns the capability's config-space offset
   */
  addRaw(capId: number, len: number, cfgType?: number, region?: CapRegion): number {
    requireArg(len >= 2 && len <= 0xc0, `capability length ${len} is out of range`);
    const size = (len + 3) & ~3;
    const off = this.next;
    requireArg(off + size <= this.end, `capability list is full: ${size} more bytes do not fit below 0x${this.end.toString(16)} (at 0x${off.toString(16)})`);
    this.space.set(off, 1, capId);
    this.space.set(off + CAP_NEXT, 1, 0);
    const prev = this.records[this.records.length - 1];
    if (prev === undefined) {
      this.space.set(PCI_CAPABILITY_LIST, 1, off);
      this.space.set(PCI_STATUS, 2, this.space.get(PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
    } else {
      this.space.set(prev.offset + CAP_NEXT, 1, off);
    }
    this.records.push({ offset: off, capId, cfgType, length: size, region });
    this.next = off + size;
    return off;
  }

  /** Check that `r` lies inside an implemented BAR (throws INVALID_ARGUMENT). */
  checkRegion(what: string, r: CapRegion): void {
    requireArg(Number.isInteger(r.bar) && r.bar >= 0 && r.bar <= 5, `${what}: BAR ${r.bar} is not 0..5`);
    const bs = this.barSize(r.bar);
    requireArg(bs > 0, `${what}: BAR ${r.bar} is not implemented`);
    requireArg(Number.isSafeInteger(r.offset) && r.offset >= 0 && Number.isSafeInteger(r.length) && r.length >= 0 && r.offset + r.length <= bs, `${what}: [0x${r.offset.toString(16)}, +0x${r.length.toString(16)}) does not fit in BAR ${r.bar} (0x${bs.toString(16)} bytes)`);
    requireArg(r.offset <= 0xffffffff && r.length <= 0xffffffff, `${what}: offset and length must fit 32 bits (use a 64-bit capability)`);
  }

  /**
   * A `struct virtio_pci_cap` (16 bytes + `extra`) of type `cfgType` naming `r`.
   * cap_len covers the extra data (pci.caps.device.1).
   */
  addVirtio(cfgType: number, r: CapRegion, extra = 0, id = 0): number {
    this.checkRegion(`cfg_type ${cfgType} capability`, r);
    const len = VIRTIO_PCI_CAP_LEN + extra;
    const off = this.addRaw(PCI_CAP_ID_VNDR, len, cfgType, { ...r });
    this.space.set(off + CAP_LEN, 1, len); // pci.caps.device.1
    this.space.set(off + CAP_CFG_TYPE, 1, cfgType);
    this.space.set(off + CAP_BAR, 1, r.bar);
    this.space.set(off + CAP_ID, 1, id);
    this.space.set(off + CAP_OFFSET, 4, r.offset);
    this.space.set(off + CAP_LENGTH, 4, r.length);
    return off;
  }

  /** VIRTIO_PCI_CAP_COMMON_CFG: offset 4-byte aligned, room for the 64-byte structure. */
  addCommonCfg(r: CapRegion): number {
    requireArg(r.offset % 4 === 0, 'common cfg offset must be 4-byte aligned'); // pci.common-cfg.device.1
    requireArg(r.length >= 64, 'common cfg length must cover the 64-byte virtio_pci_common_cfg');
    return this.addVirtio(VIRTIO_PCI_CAP_COMMON_CFG, r);
  }

  /** VIRTIO_PCI_CAP_NOTIFY_CFG with `notify_off_multiplier` (20 bytes). */
  addNotifyCfg(r: CapRegion, o: NotifyCapOptions): number {
    const m = o.multiplier;
    const width = o.notificationData ? 4 : 2;
    if (o.notificationData) {
      requireArg(r.offset % 4 === 0, 'notify offset must be 4-byte aligned with VIRTIO_F_NOTIFICATION_DATA'); // pci.notify.device.7
      requireArg(m === 0 || (isPow2(m) && m % 4 === 0), `notify_off_multiplier ${m} must be 0 or a power of 2 that is a multiple of 4`); // pci.notify.device.6
    } else {
      requireArg(r.offset % 2 === 0, 'notify offset must be 2-byte aligned'); // pci.notify.device.2
      // "an even power of 2": read here as a power of 2 that is even (≥ 2).
      requireArg(m === 0 || (isPow2(m) && m % 2 === 0), `notify_off_multiplier ${m} must be 0 or an even power of 2`); // pci.notify.device.3
    }
    // pci.notify.device.4/.5 (2 bytes) and .8/.9 (4 bytes): room for every queue's notify address.
    requireArg(r.length >= width && r.length >= o.maxNotifyOff * m + width, `notify length 0x${r.length.toString(16)} is too small for queue_notify_off ${o.maxNotifyOff} × ${m} + ${width}`);
    const off = this.addVirtio(VIRTIO_PCI_CAP_NOTIFY_CFG, r, 4);
    this.space.set(off + CAP_EXTRA, 4, m);
    return off;
  }

  /** VIRTIO_PCI_CAP_ISR_CFG: at least one byte, no alignment rule. */
  addIsrCfg(r: CapRegion): number {
    requireArg(r.length >= 1, 'ISR region needs at least one byte');
    return this.addVirtio(VIRTIO_PCI_CAP_ISR_CFG, r);
  }

  /** VIRTIO_PCI_CAP_DEVICE_CFG: offset 4-byte aligned. */
  addDeviceCfg(r: CapRegion): number {
    requireArg(r.offset % 4 === 0, 'device cfg offset must be 4-byte aligned'); // pci.dev-cfg.device.1
    return this.addVirtio(VIRTIO_PCI_CAP_DEVICE_CFG, r);
  }

  /**
   * VIRTIO_PCI_CAP_PCI_CFG (20 bytes): bar, offset, length and pci_cfg_data start at 0 and are
   * driver-writable (the only virtio capability the driver may write; pci.caps.driver.7).
   */
  addPciCfg(): number {
    const off = this.addRaw(PCI_CAP_ID_VNDR, VIRTIO_PCI_CFG_CAP_LEN, VIRTIO_PCI_CAP_PCI_CFG);
    this.space.set(off + CAP_LEN, 1, VIRTIO_PCI_CFG_CAP_LEN);
    this.space.set(off + CAP_CFG_TYPE, 1, VIRTIO_PCI_CAP_PCI_CFG);
    this.space.setWritable(off + CAP_BAR, 1);
    this.space.setWritable(off + CAP_OFFSET, 4);
    this.space.setWritable(off + CAP_LENGTH, 4);
    this.space.setWritable(off + CAP_EXTRA, 4);
    return off;
  }

  /**
   * VIRTIO_PCI_CAP_VENDOR_CFG (type 9): header, `vendor_id` u16 at 4, then `data`. Padded to a
   * multiple of 4 (pci.vendor-data.device.2); vendor_id ≠ 0x1AF4 (pci.vendor-data.device.1).
   * Reads have no side effects (pci.vendor-data.device.3): the bytes are plain read-only config.
   */
  addVendorData(vendorId: number, data: Uint8Array = new Uint8Array(0)): number {
    requireArg((vendorId & 0xffff) === vendorId, 'vendor_id is 16 bits');
    requireArg(vendorId !== VIRTIO_PCI_VENDOR_ID, 'vendor data capability: vendor_id must not be 0x1AF4'); // pci.vendor-data.device.1
    const len = (6 + data.length + 3) & ~3; // pci.vendor-data.device.2
    const off = this.addRaw(PCI_CAP_ID_VNDR, len, VIRTIO_PCI_CAP_VENDOR_CFG);
    this.space.set(off + CAP_LEN, 1, len);
    this.space.set(off + CAP_CFG_TYPE, 1, VIRTIO_PCI_CAP_VENDOR_CFG);
    this.space.set(off + 4, 2, vendorId);
    for (let i = 0; i < data.length; i++) this.space.set(off + 6 + i, 1, data[i]!);
    return off;
  }

  /**
   * VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: `struct virtio_pci_cap64` (24 bytes), id = shmid unique per
   * device (pci.shm-cap.device.2), region inside the BAR (pci.shm-cap.device.1).
   */
  addSharedMemory(shmid: number, bar: number, offset: number, length: number): number {
    requireArg(Number.isInteger(shmid) && shmid >= 0 && shmid <= 0xff, 'shmid is 8 bits');
    requireArg(!this.shmIds.has(shmid), `shared memory id ${shmid} is already used`); // pci.shm-cap.device.2
    requireArg(Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(length) && length >= 0, 'shared memory offset/length must be non-negative integers');
    const bs = this.barSize(bar);
    requireArg(bar >= 0 && bar <= 5 && bs > 0 && offset + length <= bs, `shared memory region [0x${offset.toString(16)}, +0x${length.toString(16)}) must lie in implemented BAR ${bar}`); // pci.shm-cap.device.1
    const len = VIRTIO_PCI_CAP64_LEN;
    const off = this.addRaw(PCI_CAP_ID_VNDR, len, VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, { bar, offset, length });
    this.shmIds.add(shmid);
    this.space.set(off + CAP_LEN, 1, len);
    this.space.set(off + CAP_CFG_TYPE, 1, VIRTIO_PCI_CAP_SHARED_MEMORY_CFG);
    this.space.set(off + CAP_BAR, 1, bar);
    this.space.set(off + CAP_ID, 1, shmid);
    this.space.set(off + CAP_OFFSET, 4, offset % 4294967296);
    this.space.set(off + CAP_LENGTH, 4, length % 4294967296);
    this.space.set(off + CAP_EXTRA, 4, Math.floor(offset / 4294967296));
    this.space.set(off + CAP_LENGTH_HI, 4, Math.floor(length / 4294967296));
    return off;
  }

  /**
   * SWIOTLB bounce buffer (RFC "transport-pci: Add SWIOTLB bounce buffer capability"): a plain
   * `virtio_pci_cap` naming the BAR, offset and length of the window. cfg_type defaults to 10.
   */
  addSwiotlb(r: CapRegion, cfgType: number = VIRTIO_PCI_CAP_SWIOTLB_DEFAULT): number {
    requireArg(Number.isInteger(cfgType) && cfgType > 0 && cfgType <= 0xff, 'SWIOTLB cfg_type is a non-zero byte');
    requireArg(r.length > 0, 'SWIOTLB window must not be empty');
    return this.addVirtio(cfgType, r);
  }

  /** The first capability with this virtio cfg_type (list order = preference; pci.caps.device.3). */
  find(cfgType: number): CapRecord | undefined {
    return this.records.find((c) => c.capId === PCI_CAP_ID_VNDR && c.cfgType === cfgType);
  }
}
