import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FrameBacklog } from '../../../src/device/net/backlog.js';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import { netGuest } from './harness.js';

describe('properties', () => {
  it('FrameBacklog: a frame that exactly fills the gap after a wrap, then another frame, is refused (regression: head === tail read as empty)', () => {
    const bl = new FrameBacklog(8, 1024);
    const f = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);
    // seed -323508946 of the property below, shrunk: fill, wrap, fill the gap exactly, push again
    expect(bl.push(f(600, 1), 0, 600, null)).toBe(true);
    expect(bl.push(f(300, 2), 0, 300, null)).toBe(true);
    bl.shift(); // head = 600
    expect(bl.push(f(200, 3), 0, 200, null)).toBe(true); // 900 + 200 > 1024: wraps to 0
    expect(bl.push(f(400, 4), 0, 400, null)).toBe(true); // [200, 600): tail meets head
    expect(bl.push(f(1, 5), 0, 1, null)).toBe(false); // full: must not overwrite the oldest frame
    expect(Array.from(bl.bytes.subarray(bl.frameOff, bl.frameOff + 3))).toEqual([2, 2, 2]);
  });

  it('FrameBacklog is a FIFO that never exceeds its frame and byte bounds', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 300 }), fc.constant(0)), { maxLength: 200 }), (ops) => {
        const bl = new FrameBacklog(8, 1024);
        const model: Uint8Array[] = [];
        let seed = 0;
        for (const op of ops) {
          if (op === 0) {
            if (model.length > 0) {
              const want = model.shift()!;
              expect(bl.bytes.subarray(bl.frameOff, bl.frameOff + bl.frameLen)).toEqual(want);
              bl.shift();
            }
            continue;
          }
          const f = Uint8Array.from({ length: op }, () => ++seed & 0xff);
          const used = model.reduce((a, m) => a + m.length, 0);
          const ok = bl.push(f, 0, f.length, null);
          if (ok) model.push(f);
          // an empty backlog always takes a frame that fits the byte ring
          else expect(used).toBeGreaterThan(0);
          expect(bl.count).toBe(model.length);
          expect(bl.count).toBeLessThanOrEqual(8);
          expect(model.reduce((a, m) => a + m.length, 0)).toBeLessThanOrEqual(1024);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('[net.processing-incoming-packets.device.3] any frame sizes over any mergeable buffer sizes reassemble exactly; every buffer but the last is full', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 12, max: 700 }), { minLength: 1, maxLength: 24 }),
        fc.array(fc.integer({ min: 14, max: 3000 }), { minLength: 1, maxLength: 6 }),
        (bufSizes, frameLens) => {
          const be = new DirectBackend();
          const g = netGuest({ mac: '52:54:00:00:00:01', backend: be }, { ramBytes: 1 << 20 });
          const frames = frameLens.map((n, k) => {
            const f = Uint8Array.from({ length: n }, (_, i) => (i * 31 + k) & 0xff);
            f.set([0x52, 0x54, 0, 0, 0, 1], 0);
            return f;
          });
          for (const f of frames) be.inject(f);
          for (const s of bufSizes) g.drv.postRx(0, 1, s);
          const got = g.drv.recv();
          // Frames come out in order; those that could not be placed yet wait in the backlog.
          expect(got.length + g.dev.backlogged).toBe(frames.length);
          let b = 0;
          got.forEach((r, i) => {
            expect(r.frame).toEqual(frames[i]);
            // buffers are used in ring order; all but the last of a frame are filled to their size
            r.lens.forEach((len, j) => {
              if (j < r.lens.length - 1) expect(len).toBe(bufSizes[b + j]);
              else expect(len).toBeLessThanOrEqual(bufSizes[b + j]!);
            });
            b += r.lens.length;
            expect(r.lens.reduce((a, b) => a + b, 0)).toBe(12 + frames[i]!.length);
            expect(r.hdr.numBuffers).toBe(r.lens.length);
          });
          expect(g.rig.core.choke.count).toBe(0);
          expect(g.rig.features.has(NET_F.MRG_RXBUF)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });
});
