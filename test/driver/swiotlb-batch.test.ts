import { describe, expect, it } from 'vitest';
import { SgList } from '../../src/queue/types.js';
import { type BatchCopier, jsCopy, runBatch } from '../../src/swiotlb/copy.js';
import { pattern, rig } from './helpers.js';

/** A BatchCopier that records the record count of each call and copies through the JS path. */
function recordingBatch(): { fn: BatchCopier; calls: number[] } {
  const calls: number[] = [];
  const fn: BatchCopier = (bufs, ops, count) => {
    calls.push(count);
    return runBatch(jsCopy, bufs.map((b) => new Uint8Array(b)), ops, count);
  };
  return { fn, calls };
}

describe('SWIOTLB bounce copies are batched per kick and per interrupt', () => {
  it.each([false, true])(
    '[rfc-swiotlb.feature.driver.1] N add()s + one kick = one copy-in call; their completions = one copy-back call (interrupts %s)',
    async (interrupts) => {
      const rec = recordingBatch();
      const r = await rig({ policy: 'required', deviceSpace: 'none', driver: { bounce: { copyBatch: rec.fn } } });
      r.drv.init();
      const q = r.drv.queue(0);
      if (!interrupts) q.disableInterrupts();
      const N = 12;
      const src = r.drv.ram.alloc(N * 64);
      const dst = r.drv.ram.allocZeroed(N * 64);
      for (let i = 0; i < N; i++) r.ram.write(src + i * 64, pattern(64, i));
      const sg = new SgList(2);
      for (let i = 0; i < N; i++) {
        sg.clear().out(src + i * 64, 64).in(dst + i * 64, 64);
        expect(q.add(sg, 100 + i)).toBe(true);
      }
      expect(rec.calls).toEqual([]); // copy-ins wait for the kick
      expect(r.drv.pool!.queuedCopies).toBe(2 * N);
      q.kick(); // the device (in this thread) sees the data: it completes every request at once
      const got = new Map<number, number>();
      while (q.poll()) got.set(q.lastToken, q.lastLen);
      expect(got.size).toBe(N);
      // One call for the 2N copy-ins, one for the N copy-backs (the echoed `in` segments).
      expect(rec.calls).toEqual([2 * N, N]);
      for (let i = 0; i < N; i++) {
        expect(got.get(100 + i)).toBe(64);
        const b = new Uint8Array(64);
        r.ram.read(dst + i * 64, b);
        expect(b).toEqual(pattern(64, i));
      }
      expect(r.drv.pool!.stats()).toMatchObject({ liveMappings: 0, usedSlots: r.drv.pool!.stats().coherentSlots });
      expect(r.dev.core.choke.count).toBe(0);
    },
  );
});
