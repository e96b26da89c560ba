/**
 * Batch API of the split ring: popBatch (ChainBatch), pushUsedBatch with batch.head, addBatch
 * (SgBatch), getUsedBatch — layout of the results, segment room, errors in the middle of a batch,
 * and a differential property test of the fast paths against the complete walkers.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { F_INDIRECT, F_NEXT, F_WRITE } from './expect.js';
import { disableFastPath, makeEnv, newChain, RAM_BASE, RAM_SIZE, type Env } from './helpers.js';
import { ChainBatch, CHAIN_STRIDE, SgBatch, SgList } from '../../../src/queue/types.js';

/** Segments of chain i of `b` as [region, len, offset, addr] rows. */
function segsOf(b: ChainBatch, i: number): number[][] {
  const f = b.chain[CHAIN_STRIDE * i]!;
  const n = b.chain[CHAIN_STRIDE * i + 1]!;
  const rows: number[][] = [];
  for (let s = f; s < f + n; s++) rows.push([b.seg[2 * s]!, b.seg[2 * s + 1]!, b.pos[2 * s]!, b.pos[2 * s + 1]!]);
  return rows;
}

describe('split popBatch', () => {
  it('pops several chains into flat arrays; batch.head completes them with one used idx store', () => {
    const e = makeEnv({ size: 16 });
    const sg = new SgList(4);
    const tokens: number[] = [];
    for (let k = 0; k < 5; k++) {
      sg.clear();
      if (k % 2 === 0) sg.out(e.data + 0x100 * k, 16).in(e.data + 0x100 * k + 0x40, 64).in(e.data + 0x100 * k + 0xc0, 1);
      else sg.in(e.data + 0x100 * k, 32);
      expect(e.drv.add(sg, 100 + k)).toBeGreaterThanOrEqual(0);
      tokens.push(100 + k);
    }
    e.drv.publish();
    const b = new ChainBatch(8);
    expect(e.dev.popBatch(b, 8)).toBe(5);
    expect(b.count).toBe(5);
    let first = 0;
    for (let k = 0; k < 5; k++) {
      const three = k % 2 === 0;
      expect(Array.from(b.chain.subarray(CHAIN_STRIDE * k, CHAIN_STRIDE * k + 4))).toEqual([first, three ? 3 : 1, three ? 1 : 0, three ? 3 : 1]);
      expect([b.bytes[2 * k], b.bytes[2 * k + 1]]).toEqual(three ? [16, 65] : [0, 32]);
      const a = e.data + 0x100 * k;
      expect(segsOf(b, k)).toEqual(
        three
          ? [
              [0, 16, a - RAM_BASE, a],
              [0, 64, a + 0x40 - RAM_BASE, a + 0x40],
              [0, 1, a + 0xc0 - RAM_BASE, a + 0xc0],
            ]
          : [[0, 32, a - RAM_BASE, a]],
      );
      first += three ? 3 : 1;
    }
    expect(e.dev.inFlight).toBe(5);
    const c = newChain();
    b.copyChain(2, c);
    expect([c.head, c.count, c.readable, c.readableBytes, c.writableBytes, c.descCount]).toEqual([b.head[2], 3, 1, 16, 65, 3]);
    const lens = new Uint32Array([1, 2, 3, 4, 5]);
    e.dev.pushUsedBatch(b.head, lens, 5);
    expect(e.raw.usedIdx()).toBe(5);
    const tok = new Int32Array(8);
    const got = new Uint32Array(8);
    expect(e.drv.getUsedBatch(tok, got, 8)).toBe(5);
    expect(Array.from(tok.subarray(0, 5))).toEqual(tokens);
    expect(Array.from(got.subarray(0, 5))).toEqual([1, 2, 3, 4, 5]);
    expect(e.drv.freeCount).toBe(16);
    expect(e.devSink.errors).toEqual([]);
    expect(e.drvSink.errors).toEqual([]);
  });

  it('respects max and maxChains, and continues where it stopped', () => {
    const e = makeEnv({ size: 16 });
    const sg = new SgList(1);
    for (let k = 0; k < 10; k++) e.drv.add(sg.clear().in(e.data + 64 * k, 8), k);
    e.drv.publish();
    const b = new ChainBatch(4);
    expect(e.dev.popBatch(b, 3)).toBe(3);
    expect(e.dev.popBatch(b, 100)).toBe(4);
    expect(e.dev.popBatch(b, 100)).toBe(3);
    expect(e.dev.popBatch(b, 100)).toBe(0);
    expect(e.dev.inFlight).toBe(10);
  });

  it('a chain that does not fit in the segment room left stays in the ring for the next call', () => {
    const e = makeEnv({ size: 16 });
    const sg = new SgList(3);
    for (let k = 0; k < 3; k++) e.drv.add(sg.clear().out(e.data + 256 * k, 16).in(e.data + 256 * k + 64, 8).in(e.data + 256 * k + 128, 1), k);
    e.drv.publish();
    const b = new ChainBatch(8, 7); // room for two 3-segment chains, not three
    expect(e.dev.popBatch(b, 8)).toBe(2);
    expect(e.dev.inFlight).toBe(2);
    expect(e.dev.popBatch(b, 8)).toBe(1);
    expect(b.chain[1]).toBe(3);
    expect(e.devSink.errors).toEqual([]);
  });

  it('[basic.split-vq.message-framing.device.2] a chain longer than the whole segment capacity -> CHAIN_LOOP', () => {
    const e = makeEnv({ size: 8 });
    for (let i = 0; i < 3; i++) e.raw.desc(i, e.data + 16 * i, 16, i < 2 ? F_NEXT : 0, i + 1);
    e.raw.offer(0);
    expect(e.dev.popBatch(new ChainBatch(4, 2), 4)).toBe(0);
    expect(e.devSink.errors.map((x) => [x.code, x.clause])).toEqual([['CHAIN_LOOP', 'basic.split-vq.message-framing.device.2']]);
    expect(e.dev.parked).toBe(true);
  });

  const bad: Array<[string, string, string | undefined, (e: Env) => void]> = [
    ['head out of range', 'DESC_INDEX_OUT_OF_RANGE', undefined, (e) => e.raw.offer(8)],
    ['head already in flight', 'HEAD_IN_FLIGHT', undefined, (e) => e.raw.offer(0)],
    ['[basic.split-vq.message-framing.driver.1] readable after writable', 'READABLE_AFTER_WRITABLE', 'basic.split-vq.message-framing.driver.1', (e) => {
      e.raw.desc(5, e.data + 0x800, 8, F_WRITE | F_NEXT, 6);
      e.raw.desc(6, e.data + 0x900, 8, 0);
      e.raw.offer(5);
    }],
    ['[basic.split-vq.vq-desc-table.device.1] buffer outside the space', 'ADDRESS_OUT_OF_SPACE', 'basic.split-vq.vq-desc-table.device.1', (e) => {
      e.raw.desc(5, RAM_BASE + RAM_SIZE - 4, 8, F_WRITE);
      e.raw.offer(5);
    }],
    ['[basic.split-vq.vq-desc-table.driver.1] loop', 'CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1', (e) => {
      e.raw.desc(5, e.data + 0x800, 8, F_NEXT, 6);
      e.raw.desc(6, e.data + 0x900, 8, F_NEXT, 5);
      e.raw.offer(5);
    }],
    ['[basic.split-vq.indirect-desc.driver.1] indirect not negotiated', 'INDIRECT_NOT_NEGOTIATED', 'basic.split-vq.indirect-desc.driver.1', (e) => {
      e.raw.desc(5, e.data + 0x800, 32, F_INDIRECT);
      e.raw.offer(5);
    }],
    ['[basic.split-vq.vq-available-ring.driver.1] avail idx too far ahead', 'AVAIL_IDX_AHEAD', 'basic.split-vq.vq-available-ring.driver.1', (e) => e.raw.setAvailIdx(3 + 9)],
  ];
  for (const [what, code, clause, corrupt] of bad) {
    it(`${what} after three good chains: the good ones are returned, then ${code} once and the queue parks`, () => {
      const e = makeEnv({ size: 8 });
      for (let i = 0; i < 3; i++) e.raw.desc(i, e.data + 64 * i, 16, F_WRITE);
      e.raw.offer(0, 1, 2);
      const b = new ChainBatch(8);
      if (code === 'AVAIL_IDX_AHEAD') {
        expect(e.dev.popBatch(b, 2)).toBe(2); // read idx 3 and validated; the third is still pending
        corrupt(e);
        expect(e.dev.popBatch(b, 8)).toBe(1); // the already-validated entry, then the bad idx
      } else {
        corrupt(e);
        expect(e.dev.popBatch(b, 8)).toBe(3);
        expect(Array.from(b.head.subarray(0, 3))).toEqual([0, 1, 2]);
      }
      expect(e.devSink.errors.map((x) => [x.code, x.clause])).toEqual([[code, clause]]);
      expect(e.dev.parked).toBe(true);
      const calls = e.space.calls;
      expect(e.dev.popBatch(b, 8)).toBe(0);
      expect(e.space.calls).toBe(calls);
      expect(e.dev.inFlight).toBe(3);
      expect(e.space.bad).toEqual([]);
    });
  }

  it('[basic.split-vq.vq-desc-table.device.1] a region moved between batches is not used at its old address', () => {
    const b2 = new ArrayBuffer(0x1000);
    const e = makeEnv({ size: 8, extra: [{ base: 0x900000, size: 0x1000, buffer: b2, name: 'r2' }] });
    e.raw.desc(0, 0x900100, 16, F_WRITE);
    e.raw.desc(1, 0x900100, 16, F_WRITE);
    e.raw.offer(0);
    const b = new ChainBatch(4);
    expect(e.dev.popBatch(b, 4)).toBe(1);
    expect(b.seg[0]).toBe(1);
    e.space.moveRegion(1, 0xa00000);
    e.raw.offer(1);
    expect(e.dev.popBatch(b, 4)).toBe(0);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['ADDRESS_OUT_OF_SPACE']);
  });
});

describe('split addBatch / getUsedBatch', () => {
  it('adds chains until the ring is full, writing heads; the rest can be added later', () => {
    const e = makeEnv({ size: 8 });
    const b = new SgBatch(4);
    for (let k = 0; k < 4; k++) b.begin(50 + k).out(e.data + 64 * k, 16).in(e.data + 64 * k + 32, 8).in(e.data + 64 * k + 48, 1);
    expect(b.segs).toBe(12);
    expect(e.drv.addBatch(b)).toBe(2); // 8 descriptors hold two 3-segment chains
    expect(e.drv.freeCount).toBe(2);
    const heads = [b.chain[3], b.chain[7]];
    e.drv.publish();
    const cb = new ChainBatch(4);
    expect(e.dev.popBatch(cb, 4)).toBe(2);
    expect(Array.from(cb.head.subarray(0, 2))).toEqual(heads);
    e.dev.pushUsedBatch(cb.head, new Uint32Array([9, 1]), 2);
    const tok = new Int32Array(4);
    const len = new Uint32Array(4);
    expect(e.drv.getUsedBatch(tok, len, 4)).toBe(2);
    expect(Array.from(tok.subarray(0, 2))).toEqual([50, 51]);
    expect(Array.from(len.subarray(0, 2))).toEqual([9, 1]);
    expect(e.drv.freeCount).toBe(8);
  });

  it('an empty chain throws INVALID_ARGUMENT after the chains before it were added', () => {
    const e = makeEnv({ size: 8 });
    const b = new SgBatch(4);
    b.begin(1).in(e.data, 8);
    b.begin(2);
    expect(() => e.drv.addBatch(b)).toThrow(/no segments/);
    expect(e.drv.inFlight).toBe(1);
    expect(e.drv.freeCount).toBe(7);
  });

  it('SgBatch refuses readable segments after writable ones and overflow', () => {
    const b = new SgBatch(1, 2);
    expect(() => b.begin(1).in(0x1000, 1).out(0x2000, 1)).toThrow(/precede/);
    expect(() => new SgBatch(1, 1).begin(1).in(0, 1).in(0, 1)).toThrow(/segments/);
    expect(() => new SgBatch(1).begin(1).begin(2)).toThrow(/chains/);
  });

  it('[basic.split-vq.vq-used-ring.device.2] getUsedBatch returns the valid entries before a bad one, then stops', () => {
    const e = makeEnv({ size: 8 });
    const sg = new SgList(1);
    for (let k = 0; k < 3; k++) e.drv.add(sg.clear().in(e.data + 64 * k, 8), 70 + k);
    e.drv.publish();
    e.raw.writeUsedElem(0, 0, 8);
    e.raw.writeUsedElem(1, 1, 9); // 9 > 8 writable bytes
    e.raw.setUsedIdx(2);
    const tok = new Int32Array(4);
    const len = new Uint32Array(4);
    expect(e.drv.getUsedBatch(tok, len, 4)).toBe(1);
    expect([tok[0], len[0]]).toEqual([70, 8]);
    expect(e.drvSink.errors.map((x) => [x.code, x.clause])).toEqual([['DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2']]);
    expect(e.drv.getUsedBatch(tok, len, 4)).toBe(0);
  });
});

describe('fast paths agree with the complete walkers', () => {
  it('random (often corrupt) rings: popBatch and pop with fast paths == pop with the complete walker only', () => {
    const ROM = 0x400000;
    const descArb = fc.record({
      addr: fc.oneof(fc.integer({ min: RAM_BASE, max: RAM_BASE + RAM_SIZE + 64 }), fc.integer({ min: ROM - 16, max: ROM + 0x1010 }), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
      hi: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
      len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff })),
      flags: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xffff })),
      next: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff })),
    });
    fc.assert(
      fc.property(
        fc.array(descArb, { minLength: 8, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        (descs, ring, availIdx, max, segCap, cap) => {
          const mk = (): Env => makeEnv({ size: 8, indirect: true, maxChainSegments: cap, extra: [{ base: ROM, size: 0x1000, buffer: new ArrayBuffer(0x1000), readOnly: true, name: 'rom' }] });
          const fast = mk();
          const slow = mk();
          const one = mk();
          disableFastPath(slow.dev);
          for (const e of [fast, slow, one]) {
            descs.forEach((d, i) => e.raw.desc(i, d.addr, d.len, d.flags, d.next, d.hi === 0 ? undefined : d.hi));
            ring.forEach((h, i) => e.space.writeU16(e.layout.driver + 4 + 2 * i, h));
            e.raw.setAvailIdx(availIdx);
          }
          // fast: popBatch with a random max and segment capacity; slow: pop() with the same per-chain cap
          const b = new ChainBatch(8, segCap);
          const got: unknown[] = [];
          for (let round = 0; round < 10; round++) {
            const n = fast.dev.popBatch(b, max);
            for (let i = 0; i < n; i++) got.push([b.head[i], Array.from(b.chain.subarray(4 * i + 1, 4 * i + 4)), b.bytes[2 * i], b.bytes[2 * i + 1], segsOf(b, i)]);
            if (n === 0) break;
          }
          const viaPop = (e: Env): unknown[] => {
            const out: unknown[] = [];
            const c = newChain(segCap);
            for (let round = 0; round < 10 && e.dev.pop(c); round++) {
              const rows: number[][] = [];
              for (let s = 0; s < c.count; s++) rows.push([c.region[s]!, c.len[s]!, c.offset[s]!, c.addr[s]!]);
              out.push([c.head, [c.count, c.readable, c.descCount], c.readableBytes, c.writableBytes, rows]);
            }
            return out;
          };
          const want = viaPop(slow);
          expect(got).toEqual(want);
          expect(viaPop(one)).toEqual(want);
          const errs = (e: Env) => e.devSink.errors.map((x) => [x.code, x.clause]);
          expect(errs(fast)).toEqual(errs(slow));
          expect(errs(one)).toEqual(errs(slow));
          expect(fast.dev.parked).toBe(slow.dev.parked);
          expect(one.dev.parked).toBe(slow.dev.parked);
          expect(fast.space.bad).toEqual([]);
          expect(one.space.bad).toEqual([]);
        },
      ),
      { numRuns: 400 },
    );
  });
});
