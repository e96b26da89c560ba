/** Modern virtio-pci transport, device side. */
export { createVirtioPciDevice, LateBoundHooks, VirtioPciDevice, VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID } from './virtio-pci-device.js';
export type { BarMapping, PciTransportStats, SharedMemorySpec, VirtioPciOptions } from './virtio-pci-device.js';
export { PciConfigSpace, initType0Header, PCI_CONFIG_HEADER_SIZE, PCI_CONFIG_SPACE_SIZE, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_COMMAND_INTX_DISABLE, PCI_STATUS, PCI_CAPABILITY_LIST } from './config-space.js';
export type { ConfigIntercept, PciIds } from './config-space.js';
export { PciBars, PCI_NUM_BARS, PCI_BAR_MEM_PREFETCH, PCI_BAR_MEM_TYPE_64 } from './bar.js';
export type { BarChange, BarInfo, BarSpec } from './bar.js';
export { BarRouter, type BarHandler } from './bar-router.js';
export * from './capabilities.js';
export { Msix, pbaBytes, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, PCI_MSIX_MAX_VECTORS, type MsiSink, type MsixOptions } from './msix.js';
export { IsrState, isrRegion, VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE } from './isr.js';
export { CommonCfg, COMMON_CFG, COMMON_CFG_FIELDS, COMMON_CFG_SIZE, type CommonCfgField, type CommonCfgHost } from './common-cfg.js';
export { NotifyRegion, type NotifyStats } from './notify.js';
export { DeviceCfgRegion } from './device-cfg.js';
export { PciCfgAccess, type BarAccess } from './pci-cfg-access.js';
export { computeLayout, barSizeFor, type LayoutInputs, type PciLayout, type PciLayoutOptions } from './layout.js';
export { SwiotlbBar } from './swiotlb-bar.js';
