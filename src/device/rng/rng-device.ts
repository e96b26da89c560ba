/**
 * virtio-rng, the entropy device (virtio 1.4 §5.4): one request queue, no feature bits, no
 * configuration space.
 *
 * Serving requests
 *  - Every device-writable byte of a request (up to `maxBytesPerRequest`) is filled from the
 *    platform CSPRNG through a {@link RandomPool} (bulk `randomFillSync`, then copies into the
 *    guest segments: faster than one `randomFillSync` per request for 16 B–4 KiB, see
 *    random-pool.ts). The used length is the number of bytes written; the driver reads it
 *    (`rng.dev-op.driver.2`). The device may fill less than the whole buffer
 *    (`rng.dev-op.device.1`) — it does when the request is larger than `maxBytesPerRequest` or the
 *    rate limit leaves fewer bytes.
 *  - Rate limit (`maxBytesPerSecond`): a token bucket. When it is empty the request at the head of
 *    the queue is held (popped, not answered) and a timer fires when enough tokens for it have
 *    accumulated; nothing spins and later requests wait behind it. Kicks meanwhile do nothing.
 *
 * Device-readable descriptors (`rng.dev-op.driver.1`: the driver must not post them)
 *  - default (`readableSegments: 'ignore'`): the readable segments are never read; the writable
 *    part is served as usual and the event is counted (`stats.readableIgnored`). This is what
 *    QEMU does and keeps a sloppy-but-harmless driver working.
 *  - `'error'`: the request is a guest error (choke point with clause `rng.dev-op.driver.1`: the
 *    queue parks and NEEDS_RESET is set); its head is still returned with used length 0.
 *  A request with no writable byte at all is returned with used length 0 (nothing can be placed;
 *    counted in `stats.emptyRequests`).
 */
import { requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import { FeatureSet } from '../../features/set.js';
import { DescChain } from '../../queue/types.js';
import type { DeviceContext, DeviceConfigSpace, VirtioDeviceModel } from '../types.js';
import { RandomPool } from './random-pool.js';
import { TokenBucket } from './token-bucket.js';

const log = logger('rng');

/** Virtio device ID of the entropy device. */
export const VIRTIO_ID_RNG = 4;
/** The one queue. */
export const RNG_REQUESTQ = 0;

/** Options of {@link RngDevice}. */
export interface RngDeviceOptions {
  /** Largest queue size offered (power of two, default 256). */
  queueSize?: number;
  /** Most bytes placed in one request (default 64 KiB); larger buffers are filled partially. */
  maxBytesPerRequest?: number;
  /** Rate limit in bytes per second (default: none). */
  maxBytesPerSecond?: number;
  /** Token bucket capacity in bytes (default: one second's worth, at most 64 KiB, at least 1). */
  burstBytes?: number;
  /** What a request with device-readable segments gets (default 'ignore', see the module doc). */
  readableSegments?: 'ignore' | 'error';
  /** Millisecond clock for the rate limiter (default Date.now; tests use fake timers). */
  now?: () => number;
  /** Random pool size (default 64 KiB). */
  poolBytes?: number;
}

/** Counters. */
export interface RngStats {
  /** Requests answered. */
  requests: number;
  /** Random bytes placed in guest memory. */
  bytes: number;
  /** Requests answered with fewer bytes than their writable length. */
  partial: number;
  /** Requests that carried device-readable segments (rng.dev-op.driver.1). */
  readableIgnored: number;
  /** Requests without any writable byte (answered with used length 0). */
  emptyRequests: number;
  /** Times a request had to wait for the rate limiter. */
  throttled: number;
}

const EMPTY_CONFIG: DeviceConfigSpace = {
  size: 0,
  read: () => 0,
  write: () => undefined,
};

/** The entropy device model. */
export class RngDevice implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_RNG;
  readonly name = 'virtio-rng';
  readonly numQueues = 1;
  /** No device-specific configuration (device-types/entropy: none). */
  readonly config: DeviceConfigSpace = EMPTY_CONFIG;
  readonly stats: RngStats = { requests: 0, bytes: 0, partial: 0, readableIgnored: 0, emptyRequests: 0, throttled: 0 };

  private readonly queueSize: number;
  private readonly maxPerRequest: number;
  private readonly strictReadable: boolean;
  private readonly pool: RandomPool;
  private readonly bucket: TokenBucket | null;
  private readonly chain: DescChain;
  private ctx: DeviceContext | null = null;
  /** `chain` holds a popped request waiting for the rate limiter. */
  private held = false;
  private timer: NodeJS.Timeout | null = null;
  private suspended = false;
  /**
   * A guest error was reported for the queue. The core parks its register state, which the
   * DeviceQueue does not show, so the model stops on its own until a (queue) reset.
   */
  private broken = false;

  constructor(opts: RngDeviceOptions = {}) {
    const qs = opts.queueSize ?? 256;
    requireArg(Number.isInteger(qs) && qs >= 1 && qs <= 32768 && (qs & (qs - 1)) === 0, `virtio-rng: queueSize must be a power of two 1..32768 (got ${qs})`);
    const maxReq = opts.maxBytesPerRequest ?? 64 * 1024;
    requireArg(Number.isInteger(maxReq) && maxReq >= 1, `virtio-rng: maxBytesPerRequest must be a positive integer (got ${maxReq})`);
    const mode = opts.readableSegments ?? 'ignore';
    requireArg(mode === 'ignore' || mode === 'error', `virtio-rng: readableSegments must be 'ignore' or 'error' (got ${String(mode)})`);
    this.queueSize = qs;
    this.maxPerRequest = maxReq;
    this.strictReadable = mode === 'error';
    this.pool = new RandomPool(opts.poolBytes);
    if (opts.maxBytesPerSecond !== undefined) {
      const rate = opts.maxBytesPerSecond;
      requireArg(Number.isFinite(rate) && rate > 0, `virtio-rng: maxBytesPerSecond must be a positive number (got ${rate})`);
      const burst = opts.burstBytes ?? Math.max(1, Math.min(64 * 1024, Math.floor(rate)));
      this.bucket = new TokenBucket(rate, burst, opts.now ?? Date.now);
    } else {
      this.bucket = null;
    }
    // The chain lives across a rate-limit wait, so it is sized for the longest chain the queue allows.
    this.chain = new DescChain(qs);
  }

  maxQueueSize(q: number): number {
    return q === RNG_REQUESTQ ? this.queueSize : 0;
  }

  offeredFeatures(): FeatureSet {
    return new FeatureSet(); // entropy device: no feature bits
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.held = false;
    this.suspended = false;
    this.broken = false;
    this.bucket?.refill();
  }

  notify(q: number): void {
    if (q !== RNG_REQUESTQ) return;
    if (this.timer !== null) return; // a held request is waiting: the timer resumes the queue
    this.pump();
  }

  reset(): void {
    this.stop();
    this.ctx = null;
    this.suspended = false;
  }

  queueReset(q: number): void {
    if (q === RNG_REQUESTQ) this.stop();
  }

  queueStarted(q: number): void {
    if (q === RNG_REQUESTQ) this.pump();
  }

  suspend(): void {
    // init.dev-suspend.device.6: finish in-flight work. A request held by the rate limiter is
    // answered now with what the bucket allows, but at least one byte (rng.dev-op.device.1).
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const ctx = this.ctx;
    if (this.held && ctx !== null) {
      const queue = ctx.queues[RNG_REQUESTQ];
      this.held = false;
      if (queue !== null && queue !== undefined) {
        const n = this.serve(1);
        queue.pushUsed(this.chain.head, n);
        ctx.interrupt(RNG_REQUESTQ);
      }
    }
    this.suspended = true;
  }

  resume(): void {
    this.suspended = false;
    this.pump();
  }

  /** Serve available requests until the queue is empty or the rate limiter says wait. */
  private pump(): void {
    const ctx = this.ctx;
    if (ctx === null || this.suspended || this.broken) return;
    const queue = ctx.queues[RNG_REQUESTQ];
    if (queue === null || queue === undefined) return;
    const chain = this.chain;
    let pushed = false;
    outer: for (;;) {
      queue.disableNotifications();
      for (;;) {
        if (!this.held && !queue.pop(chain)) break;
        this.held = false;
        const n = this.serve(0);
        if (n < 0) {
          this.held = true;
          this.wait();
          break outer; // notifications stay off: the timer comes back here
        }
        queue.pushUsed(chain.head, n);
        pushed = true;
        if (this.broken) break outer;
      }
      // A parked queue pops nothing: leave rather than spin on enableNotifications().
      if (queue.parked || !queue.enableNotifications()) break;
    }
    if (pushed) ctx.interrupt(RNG_REQUESTQ);
  }

  /**
   * Fill `this.chain`'s writable part.
   * @param minGrant bytes to place even when the bucket is empty (suspend)
   * @returns bytes written, or -1 when the request must wait for the rate limiter
   */
  private serve(minGrant: number): number {
    const chain = this.chain;
    if (chain.readable > 0) {
      this.stats.readableIgnored++;
      if (this.strictReadable) {
        // rng.dev-op.driver.1: the driver must not place device-readable buffers in the queue.
        this.ctx?.sink.guestError({
          code: 'DEVICE_REQUEST_INVALID',
          clause: 'rng.dev-op.driver.1',
          message: `virtio-rng: request ${chain.head} has ${chain.readable} device-readable descriptor(s) (${chain.readableBytes} bytes); the driver must post only device-writable buffers`,
          queue: RNG_REQUESTQ,
        });
        this.broken = true;
        this.stats.requests++;
        return 0;
      }
      if (this.stats.readableIgnored === 1) log('request with %d device-readable bytes: ignored them [rng.dev-op.driver.1]', chain.readableBytes);
    }
    let want = chain.writableBytes < this.maxPerRequest ? chain.writableBytes : this.maxPerRequest;
    if (want === 0) {
      // Nothing can be placed (rng.dev-op.device.1 needs a writable byte); return the head.
      this.stats.emptyRequests++;
      this.stats.requests++;
      return 0;
    }
    const bucket = this.bucket;
    if (bucket !== null) {
      let have = Math.floor(bucket.available());
      if (have < minGrant) have = minGrant;
      if (have < 1) {
        this.stats.throttled++;
        return -1;
      }
      if (have < want) want = have;
      bucket.take(want);
    }
    // rng.dev-op.device.1: one or more random bytes, possibly fewer than the buffer holds.
    const regions = this.ctx!.space.regions;
    const cRegion = chain.region;
    const cOff = chain.offset;
    const cLen = chain.len;
    const pool = this.pool;
    const n = chain.count;
    let left = want;
    for (let i = chain.readable; i < n && left > 0; i++) {
      const sl = cLen[i]!;
      const take = sl < left ? sl : left;
      pool.fill(regions[cRegion[i]!]!.u8, cOff[i]!, take);
      left -= take;
    }
    this.stats.requests++;
    this.stats.bytes += want;
    if (want < chain.writableBytes) this.stats.partial++;
    return want;
  }

  private wait(): void {
    const bucket = this.bucket!;
    const w = this.chain.writableBytes < this.maxPerRequest ? this.chain.writableBytes : this.maxPerRequest;
    const ms = Math.max(1, bucket.msUntil(w));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, ms);
  }

  private stop(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.held = false;
    this.broken = false;
  }
}
