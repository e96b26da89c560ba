/** virtio-console: device model, ports, backends, control messages and configuration. */
export {
  ConsoleDevice,
  CONSOLE_CONTROL_RXQ,
  CONSOLE_CONTROL_TXQ,
  VIRTIO_CONSOLE_F_EMERG_WRITE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_F_SIZE,
  VIRTIO_ID_CONSOLE,
  type ConsoleDeviceOptions,
  type ConsoleStats,
} from './console-device.js';
export { ConsolePort, rxQueueOf, txQueueOf, DEFAULT_INPUT_BUFFER_BYTES, TX_PIECE_BYTES, type ConsolePortOptions, type PortStats, type PortHost } from './port.js';
export {
  NullBackend,
  StreamBackend,
  UnixSocketBackend,
  type BackendStats,
  type PortBackend,
  type PortBackendEvents,
  type StreamBackendOptions,
  type UnixSocketBackendOptions,
  type UnixSocketStats,
} from './backends.js';
export { ConsoleConfig, CONSOLE_CFG, type ConsoleConfigValues } from './config.js';
export * from './control.js';
