/** Split virtqueue: device side, driver side and layout helpers. */
export { createSplitDeviceQueue, SplitDeviceQueue } from './device.js';
export { SplitDriverQueue } from './driver.js';
export {
  layoutSplitRings,
  resolveSplitRings,
  splitAvailBytes,
  splitDescBytes,
  splitUsedBytes,
  SPLIT_AVAIL_ALIGN,
  SPLIT_DESC_ALIGN,
  SPLIT_USED_ALIGN,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY,
  type SplitRingLayout,
  type SplitRingViews,
} from './layout.js';
