/** virtio-blk: device model, configuration layout, request parsing and backends. */
export * from './constants.js';
export { BlkConfig, BLK_CFG, type BlkConfigValues } from './config.js';
export { IoVec, type BlkBackend } from './backend.js';
export { RamBackend, copyBytes, type RamBackendOptions } from './ram-backend.js';
export { FileBackend, type FileBackendOptions, type FileBackendStats } from './file-backend.js';
export { BlkRequest, CLAUSE_REQUEST_LAYOUT, chainToIov, checkDwzSegments, inCapacity, parseHeader, readDwzSegment } from './request.js';
export { BlkDevice, openBlkDevice, type BlkBackendSpec, type BlkDeviceOptions, type BlkStats, type OpenBlkOptions } from './blk-device.js';
