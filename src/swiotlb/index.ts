/** SWIOTLB: the device's bounce window and the driver's bounce pool. */
export * from './constants.js';
export { allocateWindowBacking, type WindowBacking, type WindowBackingKind } from './backing.js';
export { type BatchCopier, type Copier, jsCopy, nativeCopiers, type NativeCopyApi, OP_STRIDE, runBatch } from './copy.js';
export { checkWindowSize, SwiotlbWindow, type SwiotlbAllocateOptions, type SwiotlbWindowOptions, type WindowMoveListener } from './window.js';
export { BouncePool, type BouncePoolOptions, type BouncePoolStats, DIR_BIDIRECTIONAL, DIR_FROM_DEVICE, DIR_TO_DEVICE, type DmaDirection, type MapOptions } from './pool.js';
