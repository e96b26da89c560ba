/** virtio-mmio (Version 2) transport, device side. */
export {
  createVirtioMmioDevice,
  LateBoundHooks,
  MMIO_CORE_OPTIONS,
  VirtioMmioDevice,
  VIRTIO_MMIO_DEFAULT_BASE,
  VIRTIO_MMIO_DEFAULT_IRQ,
  VIRTIO_MMIO_DEFAULT_VENDOR,
  type MmioPlatformInfo,
  type MmioSharedMemory,
  type MmioTransportStats,
  type VirtioMmioOptions,
} from './mmio-device.js';
export * from './registers.js';
export { MmioInterruptState, type MmioInterruptStats } from './interrupt.js';
export { dtsSnippet, type DtDmaPool, type DtsOptions } from './dt.js';
export { SwiotlbSpaceSwitch } from '../swiotlb-switch.js';
