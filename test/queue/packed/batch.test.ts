/** Batch forms: popBatch / addBatch / getUsedBatch behave like pop / add / getUsed. */
import { describe, expect, it } from 'vitest';
import { ChainBatch, SgBatch, VIRTQ_DESC_F_NEXT } from '../../../src/queue/types.js';
import { availFlags, makeFixture, writeDesc } from './helpers.js';

const A1 = availFlags(1);

describe('packed batch API', () => {
  it.each([
    [7, 0],
    [100, 0],
    [16, 3],
  ])('addBatch / popBatch / pushUsedBatch / getUsedBatch round-trip over many laps (size %i, indirect threshold %i)', (size, th) => {
    const f = makeFixture({ size, indirect: th > 0, indirectThreshold: th, maxChainSegments: 8 });
    const sb = new SgBatch(16, 64);
    const cb = new ChainBatch(16, 64);
    const toks = new Int32Array(16);
    const lens = new Uint32Array(16);
    const bufs = Array.from({ length: 64 }, () => f.alloc(32));
    let token = 0;
    let got = 0;
    for (let lap = 0; lap < 60; lap++) {
      sb.clear();
      const shapes: number[] = [];
      for (let c = 0; c < 4; c++) {
        const n = 1 + ((lap + c) % 4);
        sb.begin(token + c);
        for (let k = 0; k < n; k++) (k === 0 ? sb.out(bufs[(c * 4 + k) % 64]!, 16) : sb.in(bufs[(c * 4 + k) % 64]!, 8));
        shapes.push(n);
      }
      const added = f.drv.addBatch(sb);
      expect(added).toBeGreaterThan(0);
      f.drv.publish();
      const n = f.dev.popBatch(cb, 16);
      expect(n).toBe(added);
      for (let i = 0; i < n; i++) {
        expect(cb.chain[4 * i + 1]).toBe(shapes[i]);
        expect(cb.chain[4 * i + 2]).toBe(1);
        expect(cb.chain[4 * i + 3]).toBe(th > 0 && shapes[i]! >= th ? 1 : shapes[i]);
        expect(cb.head[i]).toBe(sb.chain[4 * i + 3]);
        lens[i] = Math.min(cb.bytes[2 * i + 1]!, i);
      }
      f.dev.pushUsedBatch(cb.head, lens, n);
      const lensCopy = Array.from(lens.subarray(0, n));
      const m = f.drv.getUsedBatch(toks, lens, 16);
      expect(m).toBe(n);
      expect(Array.from(toks.subarray(0, m))).toEqual(Array.from({ length: m }, (_, i) => token + i));
      expect(Array.from(lens.subarray(0, m))).toEqual(lensCopy);
      token += added;
      got += m;
    }
    expect(got).toBe(token);
    expect(f.drv.freeCount).toBe(size);
    expect(f.sink.errors).toEqual([]);
    expect(f.drvSink.errors).toEqual([]);
  });

  it('popBatch leaves a buffer that does not fit the remaining segment room for the next call', () => {
    const f = makeFixture({ size: 16 });
    const sb = new SgBatch(4, 16);
    sb.begin(0).out(f.alloc(8), 8).in(f.alloc(8), 8);
    sb.begin(1).out(f.alloc(8), 8).in(f.alloc(8), 8).in(f.alloc(8), 8);
    expect(f.drv.addBatch(sb)).toBe(2);
    f.drv.publish();
    const cb = new ChainBatch(4, 3);
    expect(f.dev.popBatch(cb, 4)).toBe(1);
    expect(f.dev.popBatch(cb, 4)).toBe(1);
    expect(cb.chain[1]).toBe(3);
    expect(f.sink.errors).toEqual([]);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.1] popBatch: a buffer longer than the whole batch capacity is a guest error', () => {
    const f = makeFixture({ size: 16 });
    for (let i = 0; i < 4; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | (i < 3 ? VIRTQ_DESC_F_NEXT : 0) });
    expect(f.dev.popBatch(new ChainBatch(4, 3), 4)).toBe(0);
    expect(f.dev.parked).toBe(true);
    expect(f.sink.errors.map((e) => [e.code, e.clause])).toEqual([['CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1']]);
  });

  it('popBatch returns the valid buffers before an invalid one, then parks (PACKED_BAD_ID)', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 1, flags: A1 });
    writeDesc(f, 2, { addr: f.alloc(8), len: 8, id: 9, flags: A1 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    const cb = new ChainBatch(8);
    expect(f.dev.popBatch(cb, 8)).toBe(2);
    expect(Array.from(cb.head.subarray(0, 2))).toEqual([0, 1]);
    expect(f.dev.parked).toBe(true);
    expect(f.dev.inFlight).toBe(2);
    expect(f.sink.errors.map((e) => e.code)).toEqual(['PACKED_BAD_ID']);
    expect(f.dev.popBatch(cb, 8)).toBe(0);
    // the two valid ones can still be completed
    f.dev.pushUsedBatch(cb.head, [0, 0], 2);
    expect(f.dev.inFlight).toBe(0);
  });

  it('getUsedBatch returns entries before an invalid used descriptor and reports DEVICE_USED_BAD_ID', () => {
    const f = makeFixture({ size: 8 });
    const sb = new SgBatch(4);
    for (let i = 0; i < 3; i++) sb.begin(10 + i).in(f.alloc(8), 8);
    expect(f.drv.addBatch(sb)).toBe(3);
    f.drv.publish();
    const cb = new ChainBatch(4);
    expect(f.dev.popBatch(cb, 4)).toBe(3);
    f.dev.pushUsedBatch(cb.head, [1, 2, 3], 3);
    // corrupt the third used descriptor's id
    f.space.writeU16(f.layout.desc + 32 + 12, 7);
    const toks = new Int32Array(4);
    const lens = new Uint32Array(4);
    expect(f.drv.getUsedBatch(toks, lens, 4)).toBe(2);
    expect(Array.from(toks.subarray(0, 2))).toEqual([10, 11]);
    expect(f.drvSink.errors.map((e) => e.code)).toEqual(['DEVICE_USED_BAD_ID']);
    expect(f.drv.getUsedBatch(toks, lens, 4)).toBe(0);
  });

  it('addBatch stops when the ring is full and throws for an empty chain', () => {
    const f = makeFixture({ size: 4 });
    const sb = new SgBatch(4);
    for (let i = 0; i < 3; i++) sb.begin(i).in(f.alloc(8), 8).in(f.alloc(8), 8);
    expect(f.drv.addBatch(sb)).toBe(2);
    expect(f.drv.freeCount).toBe(0);
    expect(() => f.drv.addBatch(new SgBatch(1).begin(5))).toThrowError(/segments/);
  });
});
