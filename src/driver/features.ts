/**
 * Which features the simulated driver accepts.
 *
 * Default policy — accept only what the device offered (basic.feature-bits.driver.1) and only bits
 * this driver implements (basic.feature-bits.driver.3; unknown offered bits are simply left alone,
 * basic.feature-bits.driver.5):
 *  - VIRTIO_F_VERSION_1 always (reserved.reserved-feature-bits.driver.1);
 *  - VIRTIO_F_SWIOTLB when offered and usable, unless `acceptSwiotlb: false`
 *    (rfc-swiotlb.feature.driver.1 SHOULD);
 *  - RING_PACKED (reserved.reserved-feature-bits.driver.5 SHOULD), INDIRECT_DESC, EVENT_IDX,
 *    NOTIFICATION_DATA, NOTIF_CONFIG_DATA (…driver.12 SHOULD), ACCESS_PLATFORM (…driver.3 SHOULD:
 *    the driver passes bus addresses, which equal physical ones here) and ORDER_PLATFORM
 *    (…driver.6 SHOULD: Atomics give sequentially consistent ordering), each unless switched off;
 *  - IN_ORDER only when asked;
 *  - device-specific bits listed in `device`.
 * A `select` function may replace the result (tests use it to accept what they like).
 */
import {
  DEFAULT_SWIOTLB_BIT,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_NOTIF_CONFIG_DATA,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from '../features/bits.js';
import { FeatureSet } from '../features/set.js';

/** Feature options of the driver. */
export interface DriverFeatureOptions {
  /** Device-specific bits the driver wants (accepted when offered). */
  device?: Iterable<number>;
  /** Accept VIRTIO_F_SWIOTLB when offered (default true). */
  acceptSwiotlb?: boolean;
  /** Bit number of VIRTIO_F_SWIOTLB (default 27, the RFC's). */
  swiotlbBit?: number;
  /** Accept VIRTIO_F_RING_PACKED when offered (default true). */
  packed?: boolean;
  /** Accept VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Accept VIRTIO_F_INDIRECT_DESC (default true). */
  indirect?: boolean;
  /** Accept VIRTIO_F_IN_ORDER (default false). */
  inOrder?: boolean;
  /** Accept VIRTIO_F_NOTIFICATION_DATA (default true). */
  notificationData?: boolean;
  /** Accept VIRTIO_F_NOTIF_CONFIG_DATA (default true). */
  notifConfigData?: boolean;
  /** Accept VIRTIO_F_ACCESS_PLATFORM (default true). */
  accessPlatform?: boolean;
  /** Accept VIRTIO_F_ORDER_PLATFORM (default true). */
  orderPlatform?: boolean;
  /** Replace the computed set: `(offered, proposed) => accepted` (used verbatim). */
  select?: (offered: FeatureSet, proposed: FeatureSet) => FeatureSet;
}

/**
 * Compute the accepted set.
 * @param swiotlbUsable the driver found the window capability and can map it
 */
export function chooseDriverFeatures(offered: FeatureSet, o: DriverFeatureOptions = {}, swiotlbUsable = true): FeatureSet {
  const want = new FeatureSet();
  want.set(VIRTIO_F_VERSION_1); // reserved.reserved-feature-bits.driver.1
  if (o.packed ?? true) want.set(VIRTIO_F_RING_PACKED); // reserved.reserved-feature-bits.driver.5
  if (o.eventIdx ?? true) want.set(VIRTIO_F_EVENT_IDX);
  if (o.indirect ?? true) want.set(VIRTIO_F_INDIRECT_DESC);
  if (o.inOrder ?? false) want.set(VIRTIO_F_IN_ORDER);
  if (o.notificationData ?? true) want.set(VIRTIO_F_NOTIFICATION_DATA);
  if (o.notifConfigData ?? true) want.set(VIRTIO_F_NOTIF_CONFIG_DATA); // reserved.reserved-feature-bits.driver.12
  if (o.accessPlatform ?? true) want.set(VIRTIO_F_ACCESS_PLATFORM); // reserved.reserved-feature-bits.driver.3
  if (o.orderPlatform ?? true) want.set(VIRTIO_F_ORDER_PLATFORM); // reserved.reserved-feature-bits.driver.6
  if ((o.acceptSwiotlb ?? true) && swiotlbUsable) want.set(o.swiotlbBit ?? DEFAULT_SWIOTLB_BIT); // rfc-swiotlb.feature.driver.1
  for (const b of o.device ?? []) want.set(b);
  const proposed = want.intersect(offered); // basic.feature-bits.driver.1/.3
  return o.select !== undefined ? o.select(offered, proposed.clone()) : proposed;
}
