/** virtio-rng: the entropy device model, its random pool and rate limiter. */
export { RngDevice, RNG_REQUESTQ, VIRTIO_ID_RNG, type RngDeviceOptions, type RngStats } from './rng-device.js';
export { RandomPool, DEFAULT_RANDOM_POOL_BYTES } from './random-pool.js';
export { TokenBucket } from './token-bucket.js';
