/** The simulated guest driver for virtio-pci (probe, init, queues, interrupts, SWIOTLB bouncing). */
export type { BarMemory, PciFunctionAccess } from './access.js';
export { MmioAllocator, type MmioAllocatorOptions, type MmioWindow } from './mmio-alloc.js';
export { probeVirtioPci, relocateBar, barAddress, CAP_COMMON, CAP_DEVICE, CAP_ISR, CAP_NOTIFY, CAP_SWIOTLB_DEFAULT, PCI_VENDOR_ID_VIRTIO } from './probe.js';
export type { IgnoredCap, MsixInfo, NotifyCapLocation, ProbeOptions, ProbedBar, VirtioCapLocation, VirtioPciProbe } from './probe.js';
export { CC, PciConfigIo, VirtioPciRegs, type VirtioRegAddrs } from './pci-regs.js';
export { GuestRamAllocator, type RamRange } from './ram-alloc.js';
export { chooseDriverFeatures, type DriverFeatureOptions } from './features.js';
export { DirectDma, SwiotlbDma, type DriverDma } from './dma.js';
export { vectorPlans, VIRTIO_MSI_NO_VECTOR, type InterruptMode, type VectorPlan } from './msix-plan.js';
export { VirtqueueDriver, type NotifyTarget, type QueueNotifier, type SubmitResult, type VirtqueueStats } from './virtqueue.js';
export type { QueueSizeOption } from './queue-setup.js';
export { VirtioPciDriver, DEFAULT_MSI_ADDRESS, DEFAULT_MSI_DATA_BASE, type DriverStats, type VirtioPciDriverOptions } from './driver.js';
// the virtio-mmio twin (also importable on its own from './mmio/index.js')
export * from './mmio/index.js';
