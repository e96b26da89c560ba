/** vfio-user: a device in its own process (server), the VMM side (client), and the three DMA models. */
export * from './protocol.js';
export * from './codec.js';
export { VfioUserConnection, type ConnectionOptions, type ConnectionStats, type IncomingMessage } from './connection.js';
export { DmaTable, DMA_PAGE, type DmaEntry, type DmaModel, type DmaTableOptions, type DmaTableStats } from './dma.js';
export { MessageDmaEngine, MessageDmaModel, type DmaPort, type MessageDmaStats } from './message-dma.js';
export { IrqState, type IrqStats } from './irqs.js';
export { createDeviceHost, DEVICE_KINDS, VFIO_CONFIG_SPACE_SIZE, type DeviceHost, type DeviceHostOptions, type DeviceKind } from './device-host.js';
export { VfioUserServer, type VfioUserServerOptions, type VfioUserServerStats } from './server.js';
export { VfioUserClient, deviceMainPath, type ClientDmaModel, type ClientStats, type VfioUserClientOptions } from './client.js';
export { spawnDeviceProcess, type DeviceProcess } from './launch.js';
