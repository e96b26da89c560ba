/** virtio-net: device model, switch, capture. */
export { VirtioNetDevice, flowHash, type NetDeviceOptions } from './net-device.js';
export { NetConfig, VIRTIO_NET_S_LINK_UP, VIRTIO_NET_S_ANNOUNCE, NET_CONFIG_SIZE, parseMac, formatMac, macToNumber } from './config.js';
export * from './header.js';
export { NET_F } from './features.js';
export { RxFilter, MAC_TABLE_ENTRIES } from './filter.js';
export * from './ctrl.js';
export { type NetBackend, type FrameReceiver, type FrameTap, type FrameDirection, NullBackend, DirectBackend, nowMicros } from './backend.js';
export { NetSwitch, SwitchPort, type SwitchStats, type NetSwitchOptions } from './switch.js';
export * from './capture.js';
export { type NetStats, newNetStats, MAX_FRAME_LEN, ETH_HLEN } from './stats.js';
export { completeChecksum, onesSum, foldSum } from './checksum.js';
export { SocketNetBackend, STREAM_PREFIX_LEN, type SocketNetBackendOptions, type SocketNetStats } from './socket-backend.js';
export { NetResponder, parseIpv4, type NetResponderOptions, type NetResponderStats } from './responder.js';
