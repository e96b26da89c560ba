/**
 * The notification region (VIRTIO_PCI_CAP_NOTIFY_CFG, virtio 1.4 §4.1.4.4).
 *
 * Queue q's notify address is `cap.offset + queue_notify_off(q) × notify_off_multiplier`. The
 * driver writes there:
 * - without VIRTIO_F_NOTIFICATION_DATA, a 16-bit value: the vq index, or queue_notif_config_data
 *   with VIRTIO_F_NOTIF_CONFIG_DATA (pci.available-buffer-notif.driver.1/.3/.4);
 * - with it, a 32-bit value: vq index (or notif config data) in bits 0–15, next_off / next_wrap in
 *   bits 16–31 (pci.available-buffer-notif.driver.2).
 *
 * Decoding: when the address slot belongs to exactly one queue, the address names the queue (as
 * QEMU and ioeventfd-based VMMs do); otherwise (multiplier 0, or shared notify offsets) the value
 * does. A value that disagrees with the address is counted, the queue named by the address is still
 * notified. Writes that name no queue, or one byte wide, are ignored and counted (the core traces
 * unknown queue indices). Hot path: no allocation; the core's notify never throws.
 */
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import { VIRTIO_F_NOTIFICATION_DATA } from '../../features/bits.js';
import type { FeatureSet } from '../../features/set.js';
import type { BarHandler } from './bar-router.js';

const log = logger('pci:notify');

/** Counters of the notification region. */
export interface NotifyStats {
  /** Notifications passed to the core. */
  delivered: number;
  /** Writes at an offset that is no queue's notify address, or of an unusable width. */
  ignored: number;
  /** Value named another queue than the address did. */
  valueMismatch: number;
  /** Width other than the negotiated one (16-bit without, 32-bit with NOTIFICATION_DATA). */
  widthMismatch: number;
  /** Refused because bus mastering is off (the device may not DMA). */
  noBusMaster: number;
}

/** The notification region of one device. */
export class NotifyRegion implements BarHandler {
  readonly multiplier: number;
  readonly stats: NotifyStats = { delivered: 0, ignored: 0, valueMismatch: 0, widthMismatch: 0, noBusMaster: 0 };
  /** next_off / next_wrap of the last 32-bit notification (bits 16–31), -1 before any. */
  lastNotificationData = -1;
  private readonly core: VirtioDeviceCore;
  /** slot (notify_off) → queue index; -1 no queue, -2 several queues share the slot. */
  private readonly slotQueue: Int32Array;
  private readonly busMaster: () => boolean;
  private lastNegotiated: FeatureSet | null = null;
  private notificationData = false;

  /**
   * @param multiplier notify_off_multiplier (0 = one address for all queues)
   * @param busMaster whether the command register's Bus Master bit is set
   */
  constructor(core: VirtioDeviceCore, multiplier: number, busMaster: () => boolean) {
    this.core = core;
    this.multiplier = multiplier;
    this.busMaster = busMaster;
    let maxOff = 0;
    for (let q = 0; q < core.numQueues; q++) maxOff = Math.max(maxOff, core.queueRegs(q)?.notifyOff ?? 0);
    this.slotQueue = new Int32Array(maxOff + 1).fill(-1);
    for (let q = 0; q < core.numQueues; q++) {
      const s = core.queueRegs(q)?.notifyOff ?? 0;
      this.slotQueue[s] = this.slotQueue[s] === -1 ? q : -2;
    }
  }

  /** Highest queue_notify_off presented (for the capability length check). */
  get maxNotifyOff(): number {
    return this.slotQueue.length - 1;
  }

  /** Bytes the region needs: room for a 32-bit write at every queue's address. */
  get requiredLength(): number {
    return this.maxNotifyOff * this.multiplier + 4;
  }

  read(_off: number, _size: number): number {
    return 0; // the region is write-only; reads have no effect
  }

  write(off: number, size: number, value: number): void {
    const st = this.stats;
    if (size !== 2 && size !== 4) {
      st.ignored++;
      log('notify write of %d bytes at 0x%s ignored (16- or 32-bit only)', size, off.toString(16));
      return;
    }
    const neg = this.core.negotiated;
    if (neg !== this.lastNegotiated) {
      // Cached per negotiated set (it changes only at FEATURES_OK and reset).
      this.lastNegotiated = neg;
      this.notificationData = neg?.has(VIRTIO_F_NOTIFICATION_DATA) ?? false;
    }
    const data = this.notificationData;
    if ((size === 4) !== data) st.widthMismatch++; // pci.available-buffer-notif.driver.1/.2 (accepted anyway)
    const named = value & 0xffff; // vq index or queue_notif_config_data (= index here)
    let q = named;
    const m = this.multiplier;
    if (m !== 0) {
      if (off % m !== 0) {
        st.ignored++;
        return;
      }
      const slot = off / m;
      const sq = slot < this.slotQueue.length ? this.slotQueue[slot]! : -1;
      if (sq === -1) {
        st.ignored++;
        log('notify write at 0x%s: no queue has notify_off %d', off.toString(16), slot);
        return;
      }
      if (sq >= 0) {
        if (named !== sq) st.valueMismatch++;
        q = sq;
      } else if ((this.core.queueRegs(named)?.notifyOff ?? -1) !== slot) {
        st.ignored++;
        return;
      }
    } else if (off !== 0) {
      st.ignored++;
      return;
    }
    if (!this.busMaster()) {
      // The device must not DMA while bus mastering is off; processing the queue would.
      st.noBusMaster++;
      return;
    }
    if (size === 4 && data) this.lastNotificationData = value >>> 16;
    st.delivered++;
    this.core.notify(q); // unknown q: ignored and traced by the core
  }
}
