/** virtio-blk: device model, configuration layout, request parsing and backends. */
export * from './constants.js';
export { BlkConfig, BLK_CFG, type BlkConfigValues } from './config.js';
export { IoVec, type BlkBackend } from './backend.js';
export { RamBackend, copyBytes, type RamBackendOptions } from './ram-backend.js';
export { FileBackend, type FileBackendOptions, type FileBackendStats } from './file-backend.js';
export { BlkRequest, CLAUSE_REQUEST_LAYOUT, chainToIov, checkDwzSegments, inCapacity, parseHeader, readDwzSegment } from './request.js';
export { OrderRing } from './in-order.js';
export { newBlkStats, type BlkBackendSpec, type BlkDeviceOptions, type BlkStats, type OpenBlkOptions } from './options.js';
export { BlkDevice } from './blk-device.js';
export { openBlkDevice } from './open.js';
