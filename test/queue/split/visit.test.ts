/**
 * Semantics of the visitor entry points of the split ring (popEach / addEach / collectEach) that
 * the per-chain suites (re-run through them in via-visit.test.ts) do not cover: completion from the
 * visitor's return value, chains kept in flight, re-entrancy, visitors that throw, fillers that
 * stop or describe malformed chains.
 */
import { describe, expect, it } from 'vitest';
import { DescChain, SgList, type ChainFiller, type ChainVisitor, type UsedVisitor } from '../../../src/queue/types.js';
import { VirtioError } from '../../../src/errors.js';
import { F_INDIRECT, F_NEXT, F_WRITE } from './expect.js';
import { makeEnv, type Env } from './helpers.js';

/** A visitor that records every chain it sees and returns `ret(chain)`. */
class Recorder implements ChainVisitor {
  readonly seen: Array<{ head: number; count: number; readable: number; rb: number; wb: number; lens: number[] }> = [];
  constructor(private readonly ret: (c: DescChain) => number) {}
  visit(c: DescChain): number {
    this.seen.push({ head: c.head, count: c.count, readable: c.readable, rb: c.readableBytes, wb: c.writableBytes, lens: Array.from(c.len.subarray(0, c.count)) });
    return this.ret(c);
  }
}

/** Post `n` blk-like chains (16 B out, 100 B in, 1 B in) through the driver; tokens 10.. */
function postBlk(e: Env, n: number): void {
  const sg = new SgList(3);
  for (let k = 0; k < n; k++) {
    const b = e.data + 512 * k;
    expect(e.drv.add(sg.clear().out(b, 16).in(b + 64, 100).in(b + 256, 1), 10 + k)).toBeGreaterThanOrEqual(0);
  }
  e.drv.publish();
}

function drain(e: Env): Array<[number, number]> {
  const got: Array<[number, number]> = [];
  while (e.drv.getUsed()) got.push([e.drv.lastToken, e.drv.lastLen]);
  return got;
}

describe('split popEach', () => {
  it('[basic.split-vq.vq-used-ring.device.1] a returned length completes the chain at once; used idx is published once per call', () => {
    const e = makeEnv({ size: 16 });
    postBlk(e, 5);
    const v = new Recorder((c) => c.writableBytes);
    expect(e.dev.popEach(v, 64)).toBe(5);
    expect(v.seen.map((s) => [s.count, s.readable, s.rb, s.wb])).toEqual(Array(5).fill([3, 1, 16, 101]));
    expect(e.raw.usedIdx()).toBe(5);
    expect(e.dev.inFlight).toBe(0);
    expect(drain(e)).toEqual([10, 11, 12, 13, 14].map((t) => [t, 101]));
    expect(e.devSink.errors).toEqual([]);
    expect(e.drvSink.errors).toEqual([]);
  });

  it('respects max and continues where it stopped', () => {
    const e = makeEnv({ size: 16 });
    postBlk(e, 5);
    const v = new Recorder(() => 1);
    expect(e.dev.popEach(v, 2)).toBe(2);
    expect(e.dev.popEach(v, 2)).toBe(2);
    expect(e.dev.popEach(v, 2)).toBe(1);
    expect(e.dev.popEach(v, 2)).toBe(0);
    expect(v.seen.map((s) => s.head)).toEqual([0, 3, 6, 9, 12]);
  });

  it('a negative return keeps the chain in flight; pushUsed completes it later', () => {
    const e = makeEnv({ size: 16 });
    postBlk(e, 3);
    const v = new Recorder((c) => (c.head === 3 ? -1 : 1));
    expect(e.dev.popEach(v, 64)).toBe(3);
    expect(e.dev.inFlight).toBe(1);
    expect(drain(e)).toEqual([
      [10, 1],
      [12, 1],
    ]);
    e.dev.pushUsed(3, 7);
    expect(drain(e)).toEqual([[11, 7]]);
    expect(e.dev.inFlight).toBe(0);
  });

  it('a head offered again while the visitor still holds it -> HEAD_IN_FLIGHT, never visited twice', () => {
    const e = makeEnv({ size: 8 });
    e.raw.desc(0, e.data, 16, F_WRITE);
    e.raw.offer(0);
    const v = new Recorder(() => -1);
    expect(e.dev.popEach(v, 8)).toBe(1);
    e.raw.offer(0);
    expect(e.dev.popEach(v, 8)).toBe(0);
    expect(v.seen).toHaveLength(1);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['HEAD_IN_FLIGHT']);
    expect(e.dev.parked).toBe(true);
  });

  it('[basic.split-vq.vq-desc-table.device.1] an invalid chain never reaches the visitor; the valid ones before it do', () => {
    const e = makeEnv({ size: 8 });
    e.raw.desc(0, e.data, 16, F_WRITE);
    e.raw.desc(1, 0x7000_0000, 16, F_WRITE); // outside the space
    e.raw.offer(0, 1);
    const v = new Recorder(() => 16);
    expect(e.dev.popEach(v, 8)).toBe(1);
    expect(v.seen.map((s) => s.head)).toEqual([0]);
    expect(e.devSink.errors.map((x) => [x.code, x.clause])).toEqual([['ADDRESS_OUT_OF_SPACE', 'basic.split-vq.vq-desc-table.device.1']]);
    expect(e.dev.parked).toBe(true);
    expect(e.raw.usedIdx()).toBe(1); // the valid chain was still completed and published
    expect(e.dev.popEach(v, 8)).toBe(0);
  });

  it('[basic.split-vq.indirect-desc.device.1] indirect chains go through the complete walker and are visited like any other', () => {
    const e = makeEnv({ size: 8, indirect: true });
    const table = e.data + 0x1000;
    e.raw.indirect(table, 0, e.data, 16, F_NEXT, 1);
    e.raw.indirect(table, 1, e.data + 64, 32, F_WRITE);
    e.raw.desc(0, table, 32, F_INDIRECT);
    e.raw.desc(1, e.data + 128, 8, F_WRITE);
    e.raw.offer(0, 1);
    const v = new Recorder((c) => c.writableBytes);
    expect(e.dev.popEach(v, 8)).toBe(2);
    expect(v.seen.map((s) => [s.head, s.count, s.readable, s.lens])).toEqual([
      [0, 2, 1, [16, 32]],
      [1, 1, 0, [8]],
    ]);
    expect([e.raw.usedElem(0), e.raw.usedElem(1)]).toEqual([
      { id: 0, len: 32 },
      { id: 1, len: 8 },
    ]);
    expect(e.devSink.errors).toEqual([]);
  });

  it('[reserved.reserved-feature-bits.device.5] IN_ORDER: completing a later chain while an earlier one is held -> USED_BAD_ID', () => {
    const e = makeEnv({ size: 8, inOrder: true });
    postBlk(e, 2);
    const v = new Recorder((c) => (c.head === 0 ? -1 : 1));
    expect(e.dev.popEach(v, 8)).toBe(2);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['USED_BAD_ID']);
    expect(e.raw.usedIdx()).toBe(0);
  });

  it('a visitor that throws parks the queue through the sink (INTERNAL); popEach itself does not throw', () => {
    const e = makeEnv({ size: 8 });
    postBlk(e, 2);
    const v: ChainVisitor = {
      visit(): number {
        throw new Error('model bug');
      },
    };
    expect(() => e.dev.popEach(v, 8)).not.toThrow();
    expect(e.dev.parked).toBe(true);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['INTERNAL']);
    expect(e.devSink.errors[0]!.message).toContain('model bug');
  });

  it('re-entrant completion from inside the visitor is refused (REENTRANT_CALL, reported as INTERNAL)', () => {
    const e = makeEnv({ size: 8 });
    postBlk(e, 1);
    const v: ChainVisitor = {
      visit: (c) => {
        e.dev.pushUsed(c.head, 1);
        return 1;
      },
    };
    e.dev.popEach(v, 8);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['INTERNAL']);
    expect(e.devSink.errors[0]!.message).toContain('pushUsed() called from inside a popEach visitor');
    expect(e.raw.usedIdx()).toBe(0);
  });

  it('park() from the visitor stops popEach after that chain', () => {
    const e = makeEnv({ size: 16 });
    postBlk(e, 4);
    const v = new Recorder(() => {
      e.dev.park();
      return 1;
    });
    expect(e.dev.popEach(v, 8)).toBe(1);
    expect(e.raw.usedIdx()).toBe(1);
  });

  it('calls outside a visitor are not affected by an earlier popEach', () => {
    const e = makeEnv({ size: 8 });
    postBlk(e, 2);
    e.dev.popEach(new Recorder(() => -1), 1);
    const c = new DescChain(8);
    expect(e.dev.pop(c)).toBe(true);
    e.dev.pushUsedBatch([0, c.head], [1, 1], 2);
    expect(drain(e)).toEqual([
      [10, 1],
      [11, 1],
    ]);
  });
});

describe('split addEach / collectEach', () => {
  class Filler implements ChainFiller {
    token = 0;
    readable = 0;
    calls = 0;
    constructor(
      private readonly e: Env,
      private readonly n: number,
      private readonly segs = 2,
    ) {}
    fill(k: number, addr: Float64Array, len: Uint32Array): number {
      this.calls++;
      if (k >= this.n) return 0;
      for (let i = 0; i < this.segs; i++) {
        addr[i] = this.e.data + 256 * k + 64 * i;
        len[i] = 8 + i;
      }
      this.token = 100 + k;
      this.readable = 1;
      return this.segs;
    }
  }

  it('[basic.split-vq.message-framing.driver.1] adds what the filler describes, readable segments first; collectEach returns tokens and lengths', () => {
    const e = makeEnv({ size: 16 });
    const f = new Filler(e, 3);
    expect(e.drv.addEach(f, 10)).toBe(3);
    expect(f.calls).toBe(4); // the 4th call returned 0
    e.drv.publish();
    const c = new DescChain(8);
    const heads: number[] = [];
    while (e.dev.pop(c)) {
      expect([c.count, c.readable, c.readableBytes, c.writableBytes]).toEqual([2, 1, 8, 9]);
      heads.push(c.head);
    }
    expect(heads).toHaveLength(3);
    e.dev.pushUsedBatch(heads, [9, 0, 5], 3);
    const got: Array<[number, number]> = [];
    const v: UsedVisitor = { used: (t, l) => void got.push([t, l]) };
    expect(e.drv.collectEach(v, 64)).toBe(3);
    expect(got).toEqual([
      [100, 9],
      [101, 0],
      [102, 5],
    ]);
    expect(e.drv.freeCount).toBe(16);
  });

  it('stops when the ring is full and returns the chains added', () => {
    const e = makeEnv({ size: 8 });
    expect(e.drv.addEach(new Filler(e, 10, 3), 10)).toBe(2); // 2 × 3 descriptors fit in 8
    expect(e.drv.freeCount).toBe(2);
  });

  it('a malformed description throws INVALID_ARGUMENT; the chains before it are added', () => {
    const e = makeEnv({ size: 8 });
    const bad: ChainFiller = {
      token: 0,
      readable: 0,
      fill(k, addr, len) {
        addr[0] = e.data;
        len[0] = 8;
        this.readable = k === 1 ? 5 : 0; // readable > segments for chain 1
        return 1;
      },
    };
    let err: unknown;
    try {
      e.drv.addEach(bad, 4);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(VirtioError);
    expect((err as VirtioError).code).toBe('INVALID_ARGUMENT');
    expect(e.drv.inFlight).toBe(1);
  });

  it('a fractional segment count is malformed too (INVALID_ARGUMENT), and the queue stays usable', () => {
    const e = makeEnv({ size: 8 });
    const bad: ChainFiller = {
      token: 0,
      readable: 0,
      fill(_k, addr, len) {
        addr[0] = e.data;
        len[0] = 8;
        addr[1] = e.data + 64;
        len[1] = 8;
        return 1.5;
      },
    };
    expect(() => e.drv.addEach(bad, 1)).toThrow(/fill\(\) returned 1.5 segments/);
    expect(e.drv.freeCount).toBe(8);
    expect(e.drv.addEach(new Filler(e, 1), 1)).toBe(1);
  });

  it('a filler that throws stops the queue and the error reaches the caller', () => {
    const e = makeEnv({ size: 8 });
    const f: ChainFiller = {
      token: 0,
      readable: 0,
      fill(k, addr, len) {
        if (k === 1) throw new Error('filler bug');
        addr[0] = e.data;
        len[0] = 8;
        return 1;
      },
    };
    expect(() => e.drv.addEach(f, 4)).toThrow('filler bug');
    expect(e.drv.addEach(new Filler(e, 1), 1)).toBe(0); // stopped
  });

  it('publish / enableInterrupts from inside a filler or used visitor throw REENTRANT_CALL', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    const f: ChainFiller = {
      token: 0,
      readable: 0,
      fill() {
        e.drv.publish();
        return 0;
      },
    };
    expect(() => e.drv.addEach(f, 1)).toThrow(/publish\(\) called from inside/);
    const e2 = makeEnv({ size: 8, eventIdx: true });
    expect(e2.drv.addEach(new Filler(e2, 1), 1)).toBe(1);
    e2.drv.publish();
    e2.raw.writeUsedElem(0, 0, 1);
    e2.raw.setUsedIdx(1);
    expect(() => e2.drv.collectEach({ used: () => e2.drv.enableInterrupts() }, 8)).toThrow(/enableInterrupts\(\) called from inside/);
  });

  it('re-entrant add from a filler throws REENTRANT_CALL', () => {
    const e = makeEnv({ size: 8 });
    const f: ChainFiller = {
      token: 0,
      readable: 0,
      fill() {
        e.drv.add(new SgList(1).in(e.data, 8), 1);
        return 0;
      },
    };
    expect(() => e.drv.addEach(f, 1)).toThrow(/addEach filler/);
  });

  it('[basic.split-vq.vq-used-ring.device.2] collectEach refuses a length beyond the writable bytes (DEVICE_USED_BAD_LEN) and never shows it to the visitor', () => {
    const e = makeEnv({ size: 8 });
    expect(e.drv.addEach(new Filler(e, 2), 2)).toBe(2);
    e.drv.publish();
    e.raw.writeUsedElem(0, 0, 9);
    e.raw.writeUsedElem(1, 2, 1000); // head 2 has 9 writable bytes
    e.raw.setUsedIdx(2);
    const got: number[] = [];
    expect(e.drv.collectEach({ used: (t) => void got.push(t) }, 8)).toBe(1);
    expect(got).toEqual([100]);
    expect(e.drvSink.errors.map((x) => [x.code, x.clause])).toEqual([['DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2']]);
  });

  it('a used visitor that throws stops the queue and the error reaches the caller', () => {
    const e = makeEnv({ size: 8 });
    expect(e.drv.addEach(new Filler(e, 1), 1)).toBe(1);
    e.drv.publish();
    e.raw.writeUsedElem(0, 0, 1);
    e.raw.setUsedIdx(1);
    expect(() =>
      e.drv.collectEach(
        {
          used() {
            throw new Error('harness bug');
          },
        },
        8,
      ),
    ).toThrow('harness bug');
    expect(e.drv.getUsed()).toBe(false);
  });
});
