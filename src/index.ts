/**
 * virtiokit — emulate virtio devices on Node.js and measure what it costs to keep a device
 * emulator out of guest memory (SWIOTLB bounce region vs direct DMA vs message DMA).
 *
 * The most used classes and functions are exported at the top level; every layer is also
 * available as a namespace (`pci`, `mmio`, `blk`, `net`, `rng`, `console`, `vfioUser`,
 * `vhostUser`, `swiotlb`, `driver`, `features`, `queue`) for the rest of its API.
 *
 * @packageDocumentation
 */

// errors and logging
export { VirtioError, isVirtioError, type VirtioErrorCode } from './errors.js';

// memory
export { AddressSpace, Resolve, resolveErrorCode } from './memory/space.js';
export { MemoryRegion, MAX_SAFE_ADDR, type RegionSpec } from './memory/region.js';
export { createGuestRam, mapRegionFromFd } from './memory/ram.js';

// native addon (or its fallback)
export { native, loadNative } from './native/index.js';
export type { NativeApi, PollHandle, RecvResult } from './native/types.js';

// features and status
export { FeatureSet } from './features/set.js';
export { negotiate, type NegotiationResult } from './features/negotiate.js';
export { StatusMachine, describeStatus } from './features/status.js';
export { describeFeatures, featureBit, featureName, DEFAULT_SWIOTLB_BIT } from './features/bits.js';

// queues
export {
  DescChain,
  SgList,
  ChainBatch,
  SgBatch,
  CHAIN_STRIDE,
  SG_CHAIN_STRIDE,
  MAX_QUEUE_SIZE,
  type DeviceQueue,
  type DriverQueue,
  type ChainVisitor,
  type ChainFiller,
  type UsedVisitor,
  type DeviceQueueFactory,
  type QueueConfig,
  type DriverQueueOptions,
} from './queue/types.js';
export { createSplitDeviceQueue, SplitDeviceQueue, SplitDriverQueue, layoutSplitRings } from './queue/split/index.js';
export { createPackedDeviceQueue, PackedDeviceQueue, PackedDriverQueue, layoutPackedRings } from './queue/packed/index.js';
export { readFromChain, writeToChain } from './queue/chain-io.js';

// device core, choke point, models
export { ChokePoint, RecordingSink, type GuestError, type GuestErrorSink } from './device/choke.js';
export { VirtioDeviceCore } from './device/core.js';
export type { VirtioDeviceModel, DeviceContext, DeviceConfigSpace, TransportHooks, SwiotlbPolicy, DeviceCoreOptions } from './device/types.js';
export { BlkDevice, openBlkDevice, RamBackend, FileBackend } from './device/blk/index.js';
export { VirtioNetDevice, NetSwitch, PcapWriter } from './device/net/index.js';
export { RngDevice } from './device/rng/index.js';
export { ConsoleDevice } from './device/console/index.js';

// transports
export { createVirtioPciDevice, VirtioPciDevice } from './transport/pci/index.js';
export { createVirtioMmioDevice, dtsSnippet } from './transport/mmio/index.js';

// SWIOTLB
export { SwiotlbWindow, BouncePool } from './swiotlb/index.js';

// simulated guest driver and the in-process VMM API
export { VirtioPciDriver, VirtqueueDriver, probeVirtioPci, type PciFunctionAccess } from './driver/index.js';
export { VirtioMmioDriver, probeVirtioMmio } from './driver/mmio/index.js';
export { createPciDevice, type CreatePciDeviceOptions, type PciDeviceHandle } from './embed/index.js';

// process boundaries
export { VfioUserServer, VfioUserClient } from './vfio-user/index.js';
export { VhostUserBackend, VhostUserSession } from './vhost-user/backend.js';
export { VhostUserServer } from './vhost-user/server.js';
export { VhostUserFrontend } from './vhost-user/frontend.js';

// namespaces for the rest of each layer
export * as queue from './queue/types.js';
export * as features from './features/bits.js';
export * as pci from './transport/pci/index.js';
export * as mmio from './transport/mmio/index.js';
export * as blk from './device/blk/index.js';
export * as net from './device/net/index.js';
export * as rng from './device/rng/index.js';
export * as console from './device/console/index.js';
export * as swiotlb from './swiotlb/index.js';
export * as driver from './driver/index.js';
export * as vfioUser from './vfio-user/index.js';
