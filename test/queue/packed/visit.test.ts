/**
 * Visitor forms of the packed hot paths: popEach / addEach / collectEach behave like pop (+ pushUsed) /
 * add / getUsed — same chains, lengths, tokens, ring bytes, errors — and keep their own rules
 * (publication at the end of a popEach call, re-entrancy, throwing callbacks, malformed fills).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtioError } from '../../../src/errors.js';
import { ChainBatch, type ChainFiller, type ChainVisitor, DescChain, SgList, type UsedVisitor, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/queue/types.js';
import { availFlags, disableFastPath, type Fixture, type FixtureOpts, makeFixture, RAM_BASE, RAM_SIZE, sameBytes, writeDesc } from './helpers.js';

const A1 = availFlags(1);

/** One chain shape: readable segment lengths, then writable ones. */
interface Shape {
  outs: number[];
  ins: number[];
}

/** A chain as seen by the device (copied out of the DescChain). */
interface Seen {
  head: number;
  count: number;
  readable: number;
  rBytes: number;
  wBytes: number;
  descCount: number;
  segs: Array<[number, number, number, number]>;
}

function copySeen(c: DescChain): Seen {
  const segs: Array<[number, number, number, number]> = [];
  for (let i = 0; i < c.count; i++) segs.push([c.region[i]!, c.offset[i]!, c.addr[i]!, c.len[i]!]);
  return { head: c.head, count: c.count, readable: c.readable, rBytes: c.readableBytes, wBytes: c.writableBytes, descCount: c.descCount, segs };
}

function expectThrowsCode(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(VirtioError);
  expect((err as VirtioError).code).toBe(code);
}

/** Segment addresses for chain slot `s` (a fixed pool, so two fixtures built alike get equal addresses). */
const SEG_BYTES = 48;

/** A filler over a list of shapes (token = base + k). */
class ShapeFiller implements ChainFiller {
  token = 0;
  readable = 0;
  constructor(
    private readonly shapes: Shape[],
    private readonly base: number,
    private readonly pool: number,
    private readonly tokenBase: number,
  ) {}
  fill(k: number, addr: Float64Array, len: Uint32Array): number {
    const sh = this.shapes[k];
    if (sh === undefined) return 0;
    const segs = [...sh.outs, ...sh.ins];
    for (let i = 0; i < segs.length; i++) {
      addr[i] = this.pool + ((this.base + k) % 64) * 8 * SEG_BYTES + i * SEG_BYTES;
      len[i] = segs[i]!;
    }
    this.token = this.tokenBase + k;
    this.readable = sh.outs.length;
    return segs.length;
  }
}

type Op =
  | { t: 'add'; shapes: Shape[] }
  | { t: 'publish' }
  | { t: 'serve'; n: number; keep: number }
  | { t: 'complete'; pick: number[] }
  | { t: 'collect'; n: number }
  | { t: 'irq'; on: boolean };

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  outs: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }),
  ins: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }),
});
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.array(shapeArb, { minLength: 1, maxLength: 5 }).map((shapes) => ({ t: 'add' as const, shapes })) },
  { weight: 3, arbitrary: fc.constant({ t: 'publish' as const }) },
  { weight: 4, arbitrary: fc.record({ n: fc.integer({ min: 1, max: 9 }), keep: fc.nat({ max: 7 }) }).map((r) => ({ t: 'serve' as const, ...r })) },
  { weight: 2, arbitrary: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }).map((pick) => ({ t: 'complete' as const, pick })) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 9 }).map((n) => ({ t: 'collect' as const, n })) },
  { weight: 1, arbitrary: fc.boolean().map((on) => ({ t: 'irq' as const, on })) },
);

/** Everything observable of one run, for comparing the chain-at-a-time and visitor forms. */
interface Trace {
  events: unknown[];
}

/**
 * Run `ops` on `f`, with the plain calls (`visit` false) or the visitor forms (`visit` true). Chains
 * whose pop ordinal o has `(o + keep) % 3 === 0` stay in flight (completed by 'complete' ops; not
 * with IN_ORDER, where completions must follow pop order); the others are completed at once with
 * `(7 * o) % (writable + 1)` bytes.
 */
function run(f: Fixture, ops: Op[], visit: boolean): Trace {
  const events: unknown[] = [];
  const pool = f.alloc(64 * 8 * SEG_BYTES);
  const chain = new DescChain(f.cfg.maxChainSegments ?? f.cfg.size);
  const kept: number[] = [];
  let ordinal = 0;
  let tokenBase = 0;
  let addCalls = 0;
  const sg = new SgList(16);
  for (const op of ops) {
    switch (op.t) {
      case 'add': {
        // Skip shapes add() would refuse outright (empty, longer than a direct list may be).
        const th = f.cfg.indirect ? 3 : 0;
        const shapes = op.shapes.filter((s) => {
          const n = s.outs.length + s.ins.length;
          return n > 0 && ((th > 0 && n >= th) || n <= f.cfg.size);
        });
        if (shapes.length === 0) break;
        const base = addCalls++ * 5;
        let added = 0;
        if (visit) {
          added = f.drv.addEach(new ShapeFiller(shapes, base, pool, tokenBase), shapes.length);
        } else {
          const filler = new ShapeFiller(shapes, base, pool, tokenBase);
          for (let k = 0; k < shapes.length; k++) {
            const n = filler.fill(k, sg.addr, sg.len);
            sg.count = n;
            sg.readable = filler.readable;
            if (f.drv.add(sg, filler.token) < 0) break;
            added++;
          }
        }
        events.push(['add', added]);
        tokenBase += shapes.length;
        break;
      }
      case 'publish':
        events.push(['publish', f.drv.publish()]);
        break;
      case 'serve': {
        const decide = (c: DescChain): number => {
          const o = ordinal++;
          events.push(['chain', copySeen(c)]);
          // With IN_ORDER the device must complete the oldest buffer first: nothing is held back then.
          if ((o + op.keep) % 3 === 0 && !f.cfg.inOrder) {
            kept.push(c.head);
            return -1;
          }
          return (7 * o) % (c.writableBytes + 1);
        };
        let n = 0;
        if (visit) {
          n = f.dev.popEach({ visit: decide }, op.n);
        } else {
          while (n < op.n && f.dev.pop(chain)) {
            n++;
            const r = decide(chain);
            if (r >= 0) f.dev.pushUsed(chain.head, r);
            // popEach ends the call after a buffer that filled the ring (its used descriptor
            // lands on the next avail slot, so pop() would find nothing more either).
          }
        }
        events.push(['served', n, f.dev.parked, f.dev.inFlight, f.dev.needsInterrupt()]);
        break;
      }
      case 'complete': {
        for (const p of op.pick) {
          if (kept.length === 0) break;
          const [id] = kept.splice(p % kept.length, 1);
          f.dev.pushUsed(id!, 0);
        }
        events.push(['completed', f.dev.needsInterrupt()]);
        break;
      }
      case 'collect': {
        const got: Array<[number, number]> = [];
        if (visit) {
          const n = f.drv.collectEach({ used: (t, l) => got.push([t, l]) }, op.n);
          expect(n).toBe(got.length);
        } else {
          while (got.length < op.n && f.drv.getUsed()) got.push([f.drv.lastToken, f.drv.lastLen]);
        }
        events.push(['collect', got]);
        break;
      }
      case 'irq':
        if (op.on) f.drv.enableInterrupts();
        else f.drv.disableInterrupts();
        break;
    }
  }
  events.push(['end', f.drv.freeCount, f.drv.inFlight, f.dev.inFlight, f.dev.getBase(), f.sink.errors.map((e) => e.code), f.drvSink.errors.map((e) => e.code)]);
  return { events };
}

const fixtureArb = fc.record({
  size: fc.integer({ min: 1, max: 12 }),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  inOrder: fc.boolean(),
  concurrent: fc.boolean(),
  fastOff: fc.boolean(),
});

describe('packed visitor forms: differential against pop / add / getUsed', () => {
  it('[basic.packed-vq.vq.device.1] [basic.packed-vq.vq.device.2] random valid traffic gives the same chains, lengths, tokens, interrupts and ring bytes', () => {
    fc.assert(
      fc.property(fixtureArb, fc.array(opArb, { minLength: 1, maxLength: 60 }), (fo, ops) => {
        const o: FixtureOpts = { size: fo.size, eventIdx: fo.eventIdx, indirect: fo.indirect, inOrder: fo.inOrder, concurrent: fo.concurrent, maxChainSegments: 8 };
        if (fo.indirect) o.indirectThreshold = 3;
        const a = makeFixture(o);
        const b = makeFixture(o);
        if (fo.fastOff) {
          disableFastPath(b.dev);
          disableFastPath(b.drv);
        }
        const ta = run(a, ops, false);
        const tb = run(b, ops, true);
        expect(tb.events).toEqual(ta.events);
        expect(a.sink.errors).toEqual([]);
        expect(a.drvSink.errors).toEqual([]);
        expect(sameBytes(a.u8, b.u8)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('packed popEach', () => {
  it('[reserved.reserved-feature-bits.device.5] IN_ORDER: completing a later buffer first is refused (USED_BAD_ID) by pushUsed, pushUsedBatch and popEach', () => {
    const f = makeFixture({ size: 8, inOrder: true });
    const sg = new SgList(1);
    const buf = f.alloc(64);
    for (let k = 0; k < 3; k++) f.drv.add(sg.clear().in(buf + 16 * k, 8), 50 + k);
    f.drv.publish();
    const heads: number[] = [];
    // popEach: hold the first, try to complete the second at once -> refused, stays in flight
    expect(f.dev.popEach({ visit: (c) => (heads.push(c.head), heads.length === 1 ? -1 : 4) }, 2)).toBe(2);
    expect(f.sink.errors.map((e) => [e.code, e.clause])).toEqual([['USED_BAD_ID', 'reserved.reserved-feature-bits.device.5']]);
    expect(f.dev.inFlight).toBe(2);
    const c = new DescChain(4);
    expect(f.dev.pop(c)).toBe(true);
    f.dev.pushUsed(c.head, 1); // third before the first -> refused
    f.dev.pushUsedBatch([heads[1]!, heads[0]!], [1, 1], 2); // wrong order -> refused, all or nothing
    expect(f.sink.errors).toHaveLength(3);
    expect(f.dev.inFlight).toBe(3);
    expect(f.drv.getUsed()).toBe(false);
    f.dev.pushUsedBatch([heads[0]!, heads[1]!, c.head], [8, 8, 2], 3); // in order: accepted
    const got: number[] = [];
    while (f.drv.getUsed()) got.push(f.drv.lastToken);
    expect(got.length).toBeGreaterThan(0);
    expect(f.dev.inFlight).toBe(0);
    expect(f.drvSink.errors).toEqual([]);
  });

  it('[basic.packed-vq.vq.device.2] a visitor returning -1 keeps the buffer in flight; pushUsed completes it later', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(2);
    const buf = f.alloc(64);
    f.drv.add(sg.clear().out(buf, 8).in(buf + 16, 16), 42);
    f.drv.add(sg.clear().in(buf + 32, 8), 43);
    f.drv.publish();
    const heads: number[] = [];
    const n = f.dev.popEach({ visit: (c) => (heads.push(c.head), c.writableBytes === 16 ? -1 : 8) }, 8);
    expect(n).toBe(2);
    expect(f.dev.inFlight).toBe(1);
    // Only the second buffer is used so far.
    expect(f.drv.getUsed()).toBe(true);
    expect([f.drv.lastToken, f.drv.lastLen]).toEqual([43, 8]);
    expect(f.drv.getUsed()).toBe(false);
    f.dev.pushUsed(heads[0]!, 5);
    expect(f.dev.inFlight).toBe(0);
    expect(f.drv.getUsed()).toBe(true);
    expect([f.drv.lastToken, f.drv.lastLen]).toEqual([42, 5]);
    expect(f.sink.errors).toEqual([]);
  });

  it('[basic.packed-vq.vq-desc-table.device.3] used descriptors of one call are published together (first flags last)', () => {
    const f = makeFixture({ size: 8, concurrent: true });
    const sg = new SgList(1);
    for (let i = 0; i < 3; i++) f.drv.add(sg.clear().in(f.alloc(16), 16), i);
    f.drv.publish();
    const seenByDriver: boolean[] = [];
    const n = f.dev.popEach(
      {
        visit: () => {
          // The driver (another queue object) polls while the device is still in the call.
          seenByDriver.push(f.drv.getUsed());
          return 4;
        },
      },
      8,
    );
    expect(n).toBe(3);
    expect(seenByDriver).toEqual([false, false, false]);
    const toks: number[] = [];
    while (f.drv.getUsed()) toks.push(f.drv.lastToken);
    expect(toks).toEqual([0, 1, 2]);
  });

  it('a buffer that fills the ring ends the call (its used descriptor sits on the next avail slot), like pop + pushUsed', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(1);
    for (let i = 0; i < 4; i++) expect(f.drv.add(sg.clear().in(f.alloc(16), 16), i)).toBeGreaterThanOrEqual(0);
    f.drv.publish();
    const heads: number[] = [];
    // Keep the first three, complete the fourth: the used position trails the avail one by a whole ring.
    expect(f.dev.popEach({ visit: (c) => (heads.push(c.head), heads.length < 4 ? -1 : 1) }, 8)).toBe(4);
    expect(f.dev.popEach({ visit: () => 0 }, 8)).toBe(0);
    expect(f.drv.getUsed()).toBe(true);
    expect(f.drv.lastToken).toBe(3);
    // The driver reuses the freed slot; the device pops it normally.
    expect(f.drv.add(sg.clear().in(f.alloc(16), 16), 9)).toBeGreaterThanOrEqual(0);
    f.drv.publish();
    expect(f.dev.popEach({ visit: () => 2 }, 8)).toBe(1);
    for (const h of heads.slice(0, 3)) f.dev.pushUsed(h, 0);
    const toks: number[] = [];
    while (f.drv.getUsed()) toks.push(f.drv.lastToken);
    expect(toks.sort()).toEqual([0, 1, 2, 9]);
    expect(f.sink.errors).toEqual([]);
    expect(f.drvSink.errors).toEqual([]);
  });

  it.each([false, true])('[basic.packed-vq.vq-desc-table.driver.1] a slot re-offered while the whole ring is in flight is not popped from under the used descriptor (fast paths off: %s)', (slow) => {
    // A misbehaving driver marks slot 0 available for the next lap while the device is in the
    // call: pop + pushUsed would overwrite it with the used descriptor and find nothing; popEach must too.
    const build = (): Fixture => {
      const f = makeFixture({ size: 4 });
      if (slow) disableFastPath(f.dev);
      for (let i = 0; i < 4; i++) writeDesc(f, i, { addr: f.alloc(16), len: 16, id: i, flags: A1 | VIRTQ_DESC_F_WRITE });
      return f;
    };
    const flip = (f: Fixture): void => writeDesc(f, 0, { addr: f.alloc(16), len: 16, id: 0, flags: availFlags(0) | VIRTQ_DESC_F_WRITE });
    const a = build();
    const chain = new DescChain(4);
    const ha: number[] = [];
    while (a.dev.pop(chain)) {
      ha.push(chain.head);
      if (ha.length === 4) {
        flip(a);
        a.dev.pushUsed(chain.head, 1);
      }
    }
    const b = build();
    const hb: number[] = [];
    const n = b.dev.popEach(
      {
        visit: (c) => {
          hb.push(c.head);
          if (hb.length < 4) return -1;
          flip(b);
          return 1;
        },
      },
      8,
    );
    expect(n).toBe(4);
    expect(hb).toEqual(ha);
    expect(b.dev.popEach({ visit: (c) => (hb.push(c.head), 0) }, 8)).toBe(0);
    expect(hb).toEqual(ha);
    expect(b.sink.errors).toEqual(a.sink.errors);
    expect(b.dev.getBase()).toBe(a.dev.getBase());
  });

  it.each([
    ['ADDRESS_OUT_OF_SPACE', 'buffer outside the space', (f: Fixture) => writeDesc(f, 1, { addr: RAM_BASE + RAM_SIZE + 64, len: 8, id: 1, flags: A1 })],
    ['PACKED_BAD_ID', 'id not below the queue size', (f: Fixture) => writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 99, flags: A1 })],
    ['READABLE_AFTER_WRITABLE', 'readable after writable', (f: Fixture) => {
      writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 1, flags: A1 | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT });
      writeDesc(f, 2, { addr: f.alloc(8), len: 8, id: 1, flags: A1 });
    }],
    ['INDIRECT_NOT_NEGOTIATED', 'indirect without the feature', (f: Fixture) => writeDesc(f, 1, { addr: f.alloc(32), len: 32, id: 1, flags: A1 | VIRTQ_DESC_F_INDIRECT })],
  ])('[basic.packed-vq.vq-desc-table.device.1] an invalid buffer (%s: %s) never reaches the visitor and parks the queue as pop() does', (code, _what, corrupt) => {
    const build = (): Fixture => {
      const f = makeFixture({ size: 8 });
      writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | VIRTQ_DESC_F_WRITE });
      corrupt(f);
      return f;
    };
    const a = build();
    const chain = new DescChain(8);
    expect(a.dev.pop(chain)).toBe(true);
    expect(a.dev.pop(chain)).toBe(false);
    const b = build();
    const seen: number[] = [];
    expect(b.dev.popEach({ visit: (c) => (seen.push(c.head), 0) }, 8)).toBe(1);
    expect(seen).toEqual([0]);
    expect(b.dev.parked).toBe(true);
    expect(a.sink.errors.map((e) => e.code)).toEqual([code]);
    expect(b.sink.errors.map((e) => [e.code, e.clause])).toEqual(a.sink.errors.map((e) => [e.code, e.clause]));
    expect(b.dev.popEach({ visit: () => 0 }, 8)).toBe(0);
  });

  it('a visitor that throws parks the queue with INTERNAL; popEach does not throw; buffers completed before it are published', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(1);
    for (let i = 0; i < 3; i++) f.drv.add(sg.clear().in(f.alloc(16), 16), i);
    f.drv.publish();
    let calls = 0;
    const v: ChainVisitor = {
      visit: () => {
        if (++calls === 2) throw new Error('model bug');
        return 1;
      },
    };
    let n = -1;
    expect(() => (n = f.dev.popEach(v, 8))).not.toThrow();
    expect(n).toBeGreaterThanOrEqual(0);
    expect(f.dev.parked).toBe(true);
    expect(f.sink.errors.map((e) => e.code)).toEqual(['INTERNAL']);
    expect(f.sink.last!.message).toContain('model bug');
    expect(f.dev.popEach(v, 8)).toBe(0);
    expect(calls).toBe(2);
    // Not re-entrant any more after the throw.
    expect(() => f.dev.pushUsed(0, 0)).not.toThrow();
  });

  it('re-entrant calls from the visitor throw REENTRANT_CALL; park() is allowed and ends the call', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(1);
    for (let i = 0; i < 3; i++) f.drv.add(sg.clear().in(f.alloc(16), 16), i);
    f.drv.publish();
    const codes: string[] = [];
    const attempt = (fn: () => unknown): void => {
      try {
        fn();
        codes.push('none');
      } catch (e) {
        codes.push(e instanceof VirtioError ? e.code : 'other');
      }
    };
    let calls = 0;
    const n = f.dev.popEach(
      {
        visit: (c) => {
          calls++;
          attempt(() => f.dev.pop(new DescChain(8)));
          attempt(() => f.dev.popBatch(new ChainBatch(1), 1));
          attempt(() => f.dev.popEach({ visit: () => 0 }, 1));
          attempt(() => f.dev.pushUsed(c.head, 0));
          attempt(() => f.dev.pushUsedBatch([c.head], [0], 1));
          f.dev.park();
          return 1;
        },
      },
      8,
    );
    expect(n).toBe(1);
    expect(calls).toBe(1);
    expect(codes).toEqual(Array(5).fill('REENTRANT_CALL'));
    expect(f.sink.errors).toEqual([]);
    // The buffer completed before park() is published.
    expect(f.drv.getUsed()).toBe(true);
    expect(f.drv.lastToken).toBe(0);
  });

  it('needsInterrupt after popEach follows the driver event suppression area', () => {
    const f = makeFixture({ size: 8, eventIdx: true });
    const sg = new SgList(1);
    f.drv.disableInterrupts();
    f.drv.add(sg.clear().in(f.alloc(16), 16), 0);
    f.drv.publish();
    expect(f.dev.popEach({ visit: () => 1 }, 8)).toBe(1);
    expect(f.dev.needsInterrupt()).toBe(false);
    expect(f.drv.getUsed()).toBe(true);
    f.drv.enableInterrupts(); // DESC at the next used position
    f.drv.add(sg.clear().in(f.alloc(16), 16), 1);
    f.drv.publish();
    expect(f.dev.popEach({ visit: () => 1 }, 8)).toBe(1);
    expect(f.dev.needsInterrupt()).toBe(true);
    expect(f.dev.needsInterrupt()).toBe(false);
  });
});

describe('packed addEach', () => {
  const oneSeg = (f: Fixture, count: number): ChainFiller & { calls: number } => {
    const bufs = Array.from({ length: 16 }, () => f.alloc(16));
    return {
      token: 0,
      readable: 0,
      calls: 0,
      fill(k, addr, len) {
        this.calls++;
        if (k >= count) return 0;
        addr[0] = bufs[k % 16]!;
        len[0] = 16;
        this.token = 100 + k;
        this.readable = 0;
        return 1;
      },
    };
  };

  it.each([false, true])('stops when the filler returns 0 (fast paths off: %s)', (slow) => {
    const f = makeFixture({ size: 8 });
    if (slow) disableFastPath(f.drv);
    const fl = oneSeg(f, 3);
    expect(f.drv.addEach(fl, 8)).toBe(3);
    expect(fl.calls).toBe(4);
    expect(f.drv.inFlight).toBe(3);
    f.drv.publish();
    const toks: number[] = [];
    expect(f.dev.popEach({ visit: () => 0 }, 8)).toBe(3);
    f.drv.collectEach({ used: (t) => toks.push(t) }, 8);
    expect(toks).toEqual([100, 101, 102]);
  });

  it.each([false, true])('[basic.packed-vq.scatter-gather-support.driver.5] stops at a chain that does not fit and returns the count (fast paths off: %s)', (slow) => {
    const f = makeFixture({ size: 4 });
    if (slow) disableFastPath(f.drv);
    const bufs = Array.from({ length: 3 }, () => f.alloc(16));
    const filler: ChainFiller = {
      token: 0,
      readable: 1,
      fill(k, addr, len) {
        for (let i = 0; i < 3; i++) {
          addr[i] = bufs[i]!;
          len[i] = 16;
        }
        this.token = k;
        this.readable = 1;
        return 3;
      },
    };
    expect(f.drv.addEach(filler, 8)).toBe(1); // 3 + 3 > 4 slots
    expect(f.drv.freeCount).toBe(1);
    expect(f.drv.addEach(filler, 8)).toBe(0);
    expect(f.drv.addEach(oneSeg(f, 8), 8)).toBe(1);
    expect(f.drv.freeCount).toBe(0);
    expect(f.drv.addEach(oneSeg(f, 8), 8)).toBe(0);
    expect(f.drvSink.errors).toEqual([]);
  });

  it.each([
    ['negative count', -1, 0],
    ['count above the scratch capacity', 9, 0],
    ['fractional count', 1.5, 0],
    ['readable above the count', 1, 2],
    ['negative readable', 1, -1],
    ['NaN count', NaN, 0],
  ])('malformed fill (%s) throws INVALID_ARGUMENT; the chains before it stay added', (_what, cnt, rd) => {
    for (const slow of [false, true]) {
      const f = makeFixture({ size: 8 });
      if (slow) disableFastPath(f.drv);
      const buf = f.alloc(16);
      const filler: ChainFiller = {
        token: 0,
        readable: 0,
        fill(k, addr, len) {
          addr[0] = buf;
          len[0] = 16;
          this.token = k;
          this.readable = k === 0 ? 0 : rd;
          return k === 0 ? 1 : cnt;
        },
      };
      expectThrowsCode(() => f.drv.addEach(filler, 8), 'INVALID_ARGUMENT');
      expect(f.drv.inFlight).toBe(1);
      f.drv.publish();
      expect(f.dev.popEach({ visit: () => 3 }, 8)).toBe(1);
      expect(f.drv.getUsed()).toBe(true);
      expect(f.drv.lastToken).toBe(0);
      expect(f.sink.errors).toEqual([]);
    }
  });

  it('re-entrant calls from the filler throw REENTRANT_CALL', () => {
    const f = makeFixture({ size: 8 });
    const buf = f.alloc(16);
    const codes: string[] = [];
    const attempt = (fn: () => unknown): void => {
      try {
        fn();
        codes.push('none');
      } catch (e) {
        codes.push(e instanceof VirtioError ? e.code : 'other');
      }
    };
    const filler: ChainFiller = {
      token: 0,
      readable: 0,
      fill(k, addr, len) {
        if (k > 0) return 0;
        attempt(() => f.drv.add(new SgList(1).in(buf, 8), 1));
        attempt(() => f.drv.addEach(filler, 1));
        attempt(() => f.drv.publish());
        attempt(() => f.drv.getUsed());
        attempt(() => f.drv.collectEach({ used: () => undefined }, 1));
        addr[0] = buf;
        len[0] = 16;
        this.token = 7;
        return 1;
      },
    };
    expect(f.drv.addEach(filler, 8)).toBe(1);
    expect(codes).toEqual(Array(5).fill('REENTRANT_CALL'));
    expect(f.drv.inFlight).toBe(1);
  });

  it('a filler that throws stops the queue and rethrows; the chains before it are added consistently', () => {
    const f = makeFixture({ size: 8 });
    const buf = f.alloc(16);
    const filler: ChainFiller = {
      token: 0,
      readable: 0,
      fill(k, addr, len) {
        if (k === 2) throw new Error('filler bug');
        addr[0] = buf;
        len[0] = 16;
        this.token = k;
        return 1;
      },
    };
    expect(() => f.drv.addEach(filler, 8)).toThrow('filler bug');
    expect(f.drv.broken).toBe(true);
    expect(f.drv.inFlight).toBe(2);
    expect(f.drv.freeCount).toBe(6);
    f.drv.publish();
    // The device sees exactly the two chains added.
    expect(f.dev.popEach({ visit: () => 0 }, 8)).toBe(2);
    expect(f.sink.errors).toEqual([]);
  });
});

describe('packed collectEach', () => {
  const post = (f: Fixture, n: number): number[] => {
    const sg = new SgList(1);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) ids.push(f.drv.add(sg.clear().in(f.alloc(16), 16), 10 + i));
    f.drv.publish();
    return ids;
  };

  it.each([
    ['DEVICE_USED_BAD_ID', 'an id that is not in flight', 5, 4],
    ['DEVICE_USED_BAD_ID', 'an id not below the queue size', 99, 4],
    ['DEVICE_USED_BAD_LEN', 'a length beyond the writable bytes', -1, 17],
  ])('reports %s (%s) like getUsed; entries before it are returned', (code, _what, badId, badLen) => {
    for (const slow of [false, true]) {
      const run = (visit: boolean): [Array<[number, number]>, string[]] => {
        const f = makeFixture({ size: 8 });
        if (slow) disableFastPath(f.drv);
        const ids = post(f, 3);
        const chain = new DescChain(8);
        for (let i = 0; i < 3; i++) expect(f.dev.pop(chain)).toBe(true);
        f.dev.pushUsed(ids[0]!, 4);
        f.dev.pushUsed(ids[1]!, 4);
        // Corrupt the second used descriptor (slot 1): id and length.
        const a = f.layout.desc + 16;
        f.space.writeU32(a + 8, badLen);
        if (badId >= 0) f.space.writeU16(a + 12, badId);
        const got: Array<[number, number]> = [];
        if (visit) {
          expect(f.drv.collectEach({ used: (t, l) => got.push([t, l]) }, 8)).toBe(got.length);
          expect(f.drv.collectEach({ used: () => undefined }, 8)).toBe(0);
        } else {
          while (f.drv.getUsed()) got.push([f.drv.lastToken, f.drv.lastLen]);
        }
        return [got, f.drvSink.errors.map((e) => e.code)];
      };
      const [ga, ea] = run(false);
      const [gb, eb] = run(true);
      expect(ga).toEqual([[10, 4]]);
      expect(ea).toEqual([code]);
      expect(gb).toEqual(ga);
      expect(eb).toEqual(ea);
    }
  });

  it('re-entrant calls from the visitor throw REENTRANT_CALL; a visitor that throws stops the queue and rethrows', () => {
    const f = makeFixture({ size: 8 });
    const ids = post(f, 3);
    const chain = new DescChain(8);
    for (const id of ids) {
      expect(f.dev.pop(chain)).toBe(true);
      f.dev.pushUsed(id, 1);
    }
    const codes: string[] = [];
    const v: UsedVisitor = {
      used: (t) => {
        for (const fn of [() => f.drv.getUsed(), () => f.drv.getUsedBatch(new Int32Array(1), new Uint32Array(1), 1), () => f.drv.collectEach(v, 1), () => f.drv.addEach({ token: 0, readable: 0, fill: () => 0 }, 1), () => f.drv.enableInterrupts()]) {
          try {
            fn();
            codes.push('none');
          } catch (e) {
            codes.push(e instanceof VirtioError ? e.code : 'other');
          }
        }
        if (t === 11) throw new Error('visitor bug');
      },
    };
    expect(() => f.drv.collectEach(v, 8)).toThrow('visitor bug');
    expect(codes).toEqual(Array(10).fill('REENTRANT_CALL'));
    expect(f.drv.broken).toBe(true);
    expect(f.drv.collectEach(v, 8)).toBe(0);
  });
});
