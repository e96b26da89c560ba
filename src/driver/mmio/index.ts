/** The simulated guest driver for virtio-mmio (Version 2): probe, init, queues, interrupts, restricted-pool bouncing. */
export type { MmioDeviceAccess, MmioPlatformDescription } from './access.js';
export { probeVirtioMmio, MMIO_MAGIC, MMIO_VERSION, type VirtioMmioProbe } from './probe.js';
export { MR, MmioQueueNotifier, VirtioMmioRegs } from './regs.js';
export { VirtioMmioDriver, type MmioDriverStats, type VirtioMmioDriverOptions } from './driver.js';
