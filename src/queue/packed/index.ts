/** Packed virtqueue: device side, driver side and layout helpers. */
export { PackedDeviceQueue, createPackedDeviceQueue } from './device.js';
export { PackedDriverQueue } from './driver.js';
export {
  layoutPackedRings,
  resolvePackedRings,
  isPackedSetupError,
  RING_EVENT_FLAGS_ENABLE,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_DESC,
  PACKED_DESC_ALIGN,
  PACKED_EVENT_ALIGN,
  type PackedRingLayout,
  type PackedRingViews,
  type PackedSetupError,
} from './layout.js';
