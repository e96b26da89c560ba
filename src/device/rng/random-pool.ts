/**
 * A reusable pool of CSPRNG bytes for the entropy device.
 *
 * `crypto.randomFillSync()` has a fixed cost of several microseconds per call (measured on the
 * project VM: ~6–10 µs for 16 B–4 KiB calls filling guest memory directly, against ~0.1–2 µs per
 * request when a 64 KiB pool is refilled in bulk and the bytes copied out), so requests are
 * served from a pool refilled in one call when it runs dry. Every pool byte is handed out once
 * and never again (the position only moves forward between refills).
 *
 * Hot path: {@link RandomPool.fill} allocates nothing: short runs are copied byte by byte, longer
 * ones through the native addon's `copy` ({@link copyBytes}). Not Buffer#copy: on Node 20 it builds
 * a Uint8Array view of the source per call (96 bytes of JS heap per request).
 */
import { randomFillSync } from 'node:crypto';
import { requireArg } from '../../errors.js';
import { copyBytes } from '../../memory/copy-bytes.js';

/** Default pool size in bytes. */
export const DEFAULT_RANDOM_POOL_BYTES = 64 * 1024;

/** A pool of random bytes, refilled from the platform CSPRNG in bulk. */
export class RandomPool {
  private readonly pool: Buffer;
  private readonly size: number;
  private pos: number;
  /** Number of bulk refills so far. */
  refills = 0;

  /** @param bytes pool size (default 64 KiB, at least 64). */
  constructor(bytes: number = DEFAULT_RANDOM_POOL_BYTES) {
    requireArg(Number.isInteger(bytes) && bytes >= 64 && bytes <= 1 << 24, `RandomPool: size must be an integer 64..16777216 (got ${bytes})`);
    this.pool = Buffer.allocUnsafeSlow(bytes);
    this.size = bytes;
    this.pos = bytes; // empty: the first fill refills
  }

  /** Write `len` random bytes into `dst[off .. off+len)`. */
  fill(dst: Uint8Array, off: number, len: number): void {
    const pool = this.pool;
    const size = this.size;
    let pos = this.pos;
    let o = off;
    let left = len;
    while (left > 0) {
      if (pos === size) {
        randomFillSync(pool);
        this.refills++;
        pos = 0;
      }
      const take = left < size - pos ? left : size - pos;
      copyBytes(dst, o, pool, pos, take);
      pos += take;
      o += take;
      left -= take;
    }
    this.pos = pos;
  }
}
