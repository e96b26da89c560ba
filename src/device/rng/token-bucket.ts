/**
 * A token bucket (bytes per second with a burst allowance) for rate-limiting a device.
 * Time comes from an injectable millisecond clock so tests can use fake timers.
 */
import { requireArg } from '../../errors.js';

/** Token bucket: `rate` tokens per second, at most `burst` banked. Starts full. */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly now: () => number;

  /**
   * @param rate tokens (bytes) per second, > 0
   * @param burst bucket capacity (default: one second's worth, at least 1)
   * @param now millisecond clock (default Date.now)
   */
  constructor(rate: number, burst: number = Math.max(1, Math.floor(rate)), now: () => number = Date.now) {
    requireArg(Number.isFinite(rate) && rate > 0, `TokenBucket: rate must be a positive number of bytes per second (got ${rate})`);
    requireArg(Number.isFinite(burst) && burst >= 1, `TokenBucket: burst must be at least 1 (got ${burst})`);
    this.rate = rate;
    this.burst = burst;
    this.now = now;
    this.tokens = burst;
    this.last = now();
  }

  /** Tokens available now (refilled for the time elapsed). */
  available(): number {
    const t = this.now();
    const dt = t - this.last;
    if (dt > 0) {
      const v = this.tokens + (dt * this.rate) / 1000;
      this.tokens = v > this.burst ? this.burst : v;
      this.last = t;
    }
    return this.tokens;
  }

  /** Spend `n` tokens (call after {@link available} showed at least `n`). */
  take(n: number): void {
    this.tokens -= n;
  }

  /** Milliseconds until `n` tokens (capped at the burst) will be available; 0 when they are now. */
  msUntil(n: number): number {
    const want = n > this.burst ? this.burst : n;
    const have = this.available();
    if (have >= want) return 0;
    return Math.ceil(((want - have) * 1000) / this.rate);
  }

  /** Refill completely (device reset). */
  refill(): void {
    this.tokens = this.burst;
    this.last = this.now();
  }
}
