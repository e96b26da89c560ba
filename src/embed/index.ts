/** The in-process VMM embedding API: a device model behind a virtio-pci function. */
export { createPciDevice, DEFAULT_EMBED_WINDOW_SIZE, type CreatePciDeviceOptions, type EmbedQueueOptions, type EmbedSwiotlbOptions, type PciDeviceHandle } from './pci-device.js';
