import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { RngDevice, RandomPool, TokenBucket, type RngDeviceOptions } from '../../../src/device/rng/index.js';
import { STATUS_NEEDS_RESET, STATUS_SUSPEND } from '../../../src/features/status.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_SUSPEND } from '../../../src/features/bits.js';
import { SgList } from '../../../src/queue/types.js';
import { startDevice, type DeviceRig } from '../blk/harness.js';

interface Posted {
  token: number;
  segs: Array<[number, number]>;
}

/** Entropy driver side: posts buffers (segments in guest RAM pre-filled with a sentinel), kicks, collects. */
class RngDriver {
  readonly rig: DeviceRig;
  readonly model: RngDevice;
  private readonly sg = new SgList(64);
  private next = 1;
  readonly posted = new Map<number, Posted>();
  constructor(model: RngDevice, opts: { ramBytes?: number } = {}) {
    this.model = model;
    this.rig = startDevice(model, { queueSize: 64, extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_SUSPEND], ...opts });
  }
  /** Post one request: `readable` bytes device-readable (a sin), then writable segments of `lens`. */
  post(lens: number[], readable = 0): Posted {
    const sg = this.sg.clear();
    const segs: Array<[number, number]> = [];
    if (readable > 0) {
      const a = this.rig.alloc(readable);
      this.rig.ram.fill(0x5a, a, a + readable);
      sg.out(a, readable);
      segs.push([a, readable]);
    }
    for (const l of lens) {
      const a = this.rig.alloc(l);
      this.rig.ram.fill(0xee, a, a + l);
      sg.in(a, l);
      segs.push([a, l]);
    }
    const token = this.next++;
    const dq = this.rig.drivers[0]!;
    if (dq.add(sg, token) < 0) throw new Error('queue full');
    dq.publish();
    const p = { token, segs };
    this.posted.set(token, p);
    return p;
  }
  kick(): void {
    this.rig.core.notify(0);
  }
  /** Used buffers so far: token → written length. */
  collect(): Array<{ token: number; len: number }> {
    const dq = this.rig.drivers[0]!;
    const out: Array<{ token: number; len: number }> = [];
    while (dq.getUsed()) out.push({ token: dq.lastToken, len: dq.lastLen });
    return out;
  }
  /** The bytes of a posted request's writable segments, concatenated. */
  bytes(p: Posted, skipReadable = 0): Uint8Array {
    const parts = p.segs.slice(skipReadable);
    const total = parts.reduce((s, [, l]) => s + l, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const [a, l] of parts) {
      out.set(this.rig.ram.subarray(a, a + l), o);
      o += l;
    }
    return out;
  }
}

function rng(opts: RngDeviceOptions = {}): RngDriver {
  return new RngDriver(new RngDevice(opts));
}

afterEach(() => {
  vi.useRealTimers();
});

describe('virtio-rng requests', () => {
  it('[rng.dev-op.device.1] [rng.dev-op.driver.2] fills every writable byte with random data; used len = bytes written', () => {
    const d = rng();
    const ps = Array.from({ length: 16 }, () => d.post([256]));
    d.kick();
    const done = d.collect();
    expect(done.map((x) => x.token)).toEqual(ps.map((p) => p.token));
    for (const x of done) expect(x.len).toBe(256);
    const all = ps.map((p) => d.bytes(p));
    // Not all zeros / not left at the sentinel.
    for (const b of all) {
      expect(b.some((v) => v !== 0)).toBe(true);
      expect(b.every((v) => v === 0xee)).toBe(false);
    }
    // Requests differ from each other.
    const hex = new Set(all.map((b) => Buffer.from(b).toString('hex')));
    expect(hex.size).toBe(all.length);
    // Statistical sanity over 4096 bytes: the mean is near 127.5, and most byte values occur.
    const cat = Buffer.concat(all.map((b) => Buffer.from(b)));
    const mean = cat.reduce((s, v) => s + v, 0) / cat.length;
    expect(mean).toBeGreaterThan(110);
    expect(mean).toBeLessThan(145);
    expect(new Set(cat).size).toBeGreaterThan(200);
    expect(d.model.stats.bytes).toBe(4096);
    expect(d.rig.core.choke.count).toBe(0);
  });

  it('[rng.dev-op.device.1] fills a chain of several writable segments in order', () => {
    const d = rng();
    const p = d.post([10, 20, 30, 1]);
    d.kick();
    const [x] = d.collect();
    expect(x).toEqual({ token: p.token, len: 61 });
    // A random byte equals the 0xee sentinel 1 time in 256, so a 1-byte segment cannot prove it was written;
    // segments of 8+ bytes can (2^-64), and over all 61 bytes at most a handful may equal the sentinel.
    let sentinel = 0;
    for (const [a, l] of p.segs) {
      const seg = d.rig.ram.subarray(a, a + l);
      if (l >= 8) expect(seg.every((v) => v === 0xee)).toBe(false);
      for (const v of seg) if (v === 0xee) sentinel++;
    }
    expect(sentinel).toBeLessThan(8);
    // The 1-byte last segment is written too: over 8 more such chains, not every one still holds 0xee (2^-64).
    const more = Array.from({ length: 8 }, () => d.post([10, 20, 30, 1]));
    d.kick();
    expect(d.collect().map((c) => c.len)).toEqual(Array(8).fill(61));
    expect(more.every((q) => d.rig.ram[q.segs[3]![0]] === 0xee)).toBe(false);
  });

  it('[rng.dev-op.device.1] may fill less than the whole buffer: the rest is untouched and used len says how much', () => {
    const d = rng({ maxBytesPerRequest: 16 });
    const p = d.post([8, 100]);
    d.kick();
    const [x] = d.collect();
    expect(x!.len).toBe(16);
    const b = d.bytes(p);
    expect(b.subarray(16).every((v) => v === 0xee)).toBe(true);
    expect(b.subarray(0, 16).every((v) => v === 0xee)).toBe(false);
    expect(d.model.stats.partial).toBe(1);
  });

  it('[rng.dev-op.device.1] property: used len = min(writable, cap) and nothing past it is written', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 700 }), (lens, cap) => {
        const d = new RngDriver(new RngDevice({ maxBytesPerRequest: cap }), { ramBytes: 1 << 20 });
        const p = d.post(lens);
        d.kick();
        const [x] = d.collect();
        const total = lens.reduce((s, l) => s + l, 0);
        const want = Math.min(total, cap);
        expect(x!.len).toBe(want);
        expect(d.bytes(p).subarray(want).every((v) => v === 0xee)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('[rng.dev-op.driver.1] default: device-readable segments are ignored (never read or written), the writable part is served', () => {
    const d = rng();
    const p = d.post([32], 16);
    d.kick();
    const [x] = d.collect();
    expect(x!.len).toBe(32);
    const [ra, rl] = p.segs[0]!;
    expect(d.rig.ram.subarray(ra, ra + rl).every((v) => v === 0x5a)).toBe(true);
    expect(d.bytes(p, 1).every((v) => v === 0xee)).toBe(false);
    expect(d.model.stats.readableIgnored).toBe(1);
    expect(d.rig.core.choke.count).toBe(0);
    expect(d.rig.core.status & STATUS_NEEDS_RESET).toBe(0);
  });

  it("[rng.dev-op.driver.1] readableSegments 'error': guest error with the clause id, NEEDS_RESET, head returned with len 0, queue parked", () => {
    const d = rng({ readableSegments: 'error' });
    const p = d.post([32], 16);
    const q = d.post([32]);
    d.kick();
    const done = d.collect();
    expect(done).toEqual([{ token: p.token, len: 0 }]);
    expect(d.rig.core.choke.last?.clause).toBe('rng.dev-op.driver.1');
    expect(d.rig.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    expect(d.rig.core.isParked(0)).toBe(true);
    expect(d.bytes(q).every((v) => v === 0xee)).toBe(true);
  });

  it('[rng.dev-op.device.1] a request with no writable byte is returned with used len 0 (nothing can be placed)', () => {
    const d = rng();
    const p = d.post([], 8);
    d.kick();
    expect(d.collect()).toEqual([{ token: p.token, len: 0 }]);
    expect(d.model.stats.emptyRequests).toBe(1);
  });
});

describe('virtio-rng rate limit', () => {
  it('[rng.dev-op.device.1] requests beyond the budget complete later on a timer, possibly partially; kicks meanwhile do not spin', () => {
    vi.useFakeTimers();
    const d = rng({ maxBytesPerSecond: 100, burstBytes: 100 });
    const a = d.post([64]);
    const b = d.post([64]);
    const c = d.post([64]);
    d.kick();
    // 100 bytes of budget: a gets 64, b gets the remaining 36 (a partial fill), c waits.
    expect(d.collect()).toEqual([
      { token: a.token, len: 64 },
      { token: b.token, len: 36 },
    ]);
    expect(vi.getTimerCount()).toBe(1);
    d.rig.drivers[0]!.enableInterrupts();
    const irqs = d.rig.hooks.queueIrqs[0] ?? 0;
    for (let i = 0; i < 5; i++) d.kick();
    expect(d.collect()).toEqual([]);
    expect(vi.getTimerCount()).toBe(1); // still the one timer: no busy re-arming
    vi.advanceTimersByTime(300);
    expect(d.collect()).toEqual([]);
    vi.advanceTimersByTime(400); // 64 bytes at 100 B/s = 640 ms
    expect(d.collect()).toEqual([{ token: c.token, len: 64 }]);
    expect(d.rig.hooks.queueIrqs[0]).toBe(irqs + 1);
    expect(vi.getTimerCount()).toBe(0);
    expect(d.bytes(c).every((v) => v === 0xee)).toBe(false);
    expect(d.model.stats.throttled).toBeGreaterThanOrEqual(1);
  });

  it('[basic.dev-reset.device.1] a device reset while a request waits drops it and cancels the timer', () => {
    vi.useFakeTimers();
    const d = rng({ maxBytesPerSecond: 10, burstBytes: 10 });
    d.post([10]);
    const w = d.post([10]);
    d.kick();
    expect(d.collect()).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(1);
    d.rig.core.writeStatus(0);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(d.bytes(w).every((v) => v === 0xee)).toBe(true);
  });

  it('[init.dev-suspend.device.6] suspend answers a request held by the rate limiter (at least one byte) and cancels its timer', () => {
    vi.useFakeTimers();
    const model = new RngDevice({ maxBytesPerSecond: 10, burstBytes: 10 });
    const d = new RngDriver(model);
    d.post([10]);
    const w = d.post([10]);
    d.kick();
    expect(d.collect()).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(1);
    const st = d.rig.core.status;
    d.rig.core.writeStatus(st | STATUS_SUSPEND);
    expect(d.rig.core.status & STATUS_SUSPEND).toBe(STATUS_SUSPEND);
    expect(vi.getTimerCount()).toBe(0);
    const [x] = d.collect();
    expect(x!.token).toBe(w.token);
    expect(x!.len).toBeGreaterThanOrEqual(1);
    // Resumed: new requests are served again.
    // Resume (the core's status table: DRIVER_OK written again together with SUSPEND).
    expect(d.rig.core.writeStatus(st | STATUS_SUSPEND).kind).toBe('resume');
    vi.advanceTimersByTime(2000);
    d.post([4]);
    d.kick();
    expect(d.collect().map((y) => y.len)).toEqual([4]);
  });

  it('token bucket: refills at the rate, capped at the burst', () => {
    let t = 0;
    const tb = new TokenBucket(1000, 500, () => t);
    expect(tb.available()).toBe(500);
    tb.take(500);
    expect(tb.available()).toBe(0);
    expect(tb.msUntil(100)).toBe(100);
    t = 50;
    expect(tb.available()).toBe(50);
    t = 10_000;
    expect(tb.available()).toBe(500);
    expect(tb.msUntil(10_000)).toBe(0); // capped at the burst
  });
});

describe('random pool', () => {
  it('hands out each pool byte once: consecutive fills across a refill differ', () => {
    const pool = new RandomPool(64);
    const a = new Uint8Array(200);
    pool.fill(a, 0, 100);
    pool.fill(a, 100, 100);
    expect(pool.refills).toBe(4);
    expect(Buffer.from(a.subarray(0, 64)).equals(Buffer.from(a.subarray(64, 128)))).toBe(false);
    expect(a.some((v) => v !== 0)).toBe(true);
  });
});
