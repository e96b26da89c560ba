/** Property tests: random valid traffic round-trips exactly; random ring corruption is contained. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ChainBatch, DescChain, SgList } from '../../../src/queue/types.js';
import { makeFixture, PAD, RAM_SIZE, type Fixture } from './helpers.js';

interface Buf {
  token: number;
  outs: Array<[number, number]>;
  ins: Array<[number, number]>;
  payload: number[];
}

const bufShape = fc.record({
  outs: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }),
  ins: fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 3 }),
});

type Op = { t: 'add'; shape: { outs: number[]; ins: number[] } } | { t: 'publish' } | { t: 'pop'; n: number } | { t: 'popBatch'; n: number; segs: number } | { t: 'collectBatch'; n: number } | { t: 'complete'; pick: number[]; batch: boolean } | { t: 'collect' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: bufShape.map((shape) => ({ t: 'add' as const, shape })) },
  { weight: 2, arbitrary: fc.constant({ t: 'publish' as const }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }).map((n) => ({ t: 'pop' as const, n })) },
  { weight: 3, arbitrary: fc.record({ pick: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), batch: fc.boolean() }).map((r) => ({ t: 'complete' as const, ...r })) },
  { weight: 2, arbitrary: fc.constant({ t: 'collect' as const }) },
  { weight: 2, arbitrary: fc.record({ n: fc.integer({ min: 1, max: 8 }), segs: fc.integer({ min: 6, max: 14 }) }).map((r) => ({ t: 'popBatch' as const, ...r })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 8 }).map((n) => ({ t: 'collectBatch' as const, n })) },
);

/** Device reply byte k for buffer `token`. */
const reply = (token: number, k: number): number => (token * 29 + k * 3 + 1) & 0xff;

function run(f: Fixture, ops: Op[], threshold: number): void {
  const sg = new SgList(8);
  const chain = new DescChain(16);
  const byToken = new Map<number, Buf>();
  // device side: popped and not yet completed, in pop order; id → token via memory check
  const inflight: Array<{ id: number; wlen: number; token: number }> = [];
  let token = 0;
  // reuse a data area per in-flight token slot to keep memory bounded
  const slotBase = f.alloc(f.cfg.size * 4 * 6 * 48 + 64);
  const freeSlots: number[] = [];
  for (let i = f.cfg.size * 4 - 1; i >= 0; i--) freeSlots.push(i);
  const slotOf = new Map<number, number>();
  const check = (tok: number, len: number): void => {
    const b = byToken.get(tok)!;
    expect(b).toBeDefined();
    const wtotal = b.ins.reduce((s, [, l]) => s + l, 0);
    expect(len).toBeLessThanOrEqual(wtotal);
    let k = 0;
    for (const [a, l] of b.ins) {
      for (let i = 0; i < l && k < len; i++, k++) expect(f.u8[f.at(a) + i]).toBe(reply(b.token, k));
    }
    byToken.delete(b.token);
    freeSlots.push(slotOf.get(b.token)!);
    slotOf.delete(b.token);
  };
  const finish = (): void => {
    while (f.drv.getUsed()) check(f.drv.lastToken, f.drv.lastLen);
  };
  const handle = (): void => {
    // identify the buffer by its readable payload / first segment address
    const first = chain.addr[0]!;
    const tok = Math.floor((first - slotBase) / (6 * 48));
    const t = [...slotOf.entries()].find(([, s]) => s === tok)![0];
    const b = byToken.get(t)!;
    expect(chain.count).toBe(b.outs.length + b.ins.length);
    expect(chain.readable).toBe(b.outs.length);
    if (threshold === 0 || chain.count < threshold) expect(chain.descCount).toBe(chain.count);
    else expect(chain.descCount).toBe(1);
    let k = 0;
    for (let s = 0; s < chain.readable; s++) {
      const u8 = f.space.regions[chain.region[s]!]!.u8;
      for (let i = 0; i < chain.len[s]!; i++, k++) expect(u8[chain.offset[s]! + i]).toBe(b.payload[k]);
    }
    inflight.push({ id: chain.head, wlen: chain.writableBytes, token: t });
    // device writes its reply now (before completion)
    k = 0;
    for (let s = chain.readable; s < chain.count; s++) {
      const u8 = f.space.regions[chain.region[s]!]!.u8;
      for (let i = 0; i < chain.len[s]!; i++, k++) u8[chain.offset[s]! + i] = reply(t, k);
    }
  };
  for (const op of ops) {
    switch (op.t) {
      case 'add': {
        const { outs, ins } = op.shape;
        const nseg = outs.length + ins.length;
        if (nseg === 0) break;
        if ((threshold === 0 || nseg < threshold) && nseg > f.cfg.size) break; // could never fit: add() throws
        const slot = freeSlots.pop();
        if (slot === undefined) break;
        const base = slotBase + slot * 6 * 48;
        const b: Buf = { token, outs: [], ins: [], payload: [] };
        sg.clear();
        let p = base;
        for (const l of outs) {
          for (let i = 0; i < l; i++) {
            const v = (token * 7 + b.payload.length * 13) & 0xff;
            f.u8[f.at(p) + i] = v;
            b.payload.push(v);
          }
          sg.out(p, l);
          b.outs.push([p, l]);
          p += 48;
        }
        for (const l of ins) {
          f.u8.fill(0, f.at(p), f.at(p) + l);
          sg.in(p, l);
          b.ins.push([p, l]);
          p += 48;
        }
        const id = f.drv.add(sg, token);
        if (id < 0) {
          freeSlots.push(slot);
          break;
        }
        byToken.set(token, b);
        slotOf.set(token, slot);
        token++;
        break;
      }
      case 'publish':
        f.drv.publish();
        break;
      case 'popBatch': {
        const cb = new ChainBatch(8, op.segs);
        const n = f.dev.popBatch(cb, op.n);
        expect(n).toBe(cb.count);
        for (let i = 0; i < n; i++) {
          cb.copyChain(i, chain);
          handle();
        }
        break;
      }
      case 'collectBatch': {
        const toks = new Int32Array(8);
        const lens = new Uint32Array(8);
        const n = f.drv.getUsedBatch(toks, lens, op.n);
        for (let i = 0; i < n; i++) check(toks[i]!, lens[i]!);
        break;
      }
      case 'pop':
        for (let i = 0; i < op.n && f.dev.pop(chain); i++) handle();
        break;
        break;
      case 'complete': {
        if (inflight.length === 0) break;
        const picked: Array<{ id: number; wlen: number }> = [];
        for (const p of op.pick) {
          if (inflight.length === 0) break;
          // in-order queues complete the oldest first; others pick at random
          const j = f.cfg.inOrder ? 0 : p % inflight.length;
          picked.push(inflight.splice(j, 1)[0]!);
        }
        const lens = picked.map((p, i) => (f.cfg.inOrder && i < picked.length - 1 ? p.wlen : Math.min(p.wlen, (op.pick[i]! * 7) % (p.wlen + 1))));
        if (op.batch) f.dev.pushUsedBatch(picked.map((p) => p.id), lens, picked.length);
        else picked.forEach((p, i) => f.dev.pushUsed(p.id, lens[i]!));
        break;
      }
      case 'collect':
        finish();
        break;
    }
  }
  // drain everything
  f.drv.publish();
  while (f.dev.pop(chain)) inflight.push({ id: chain.head, wlen: chain.writableBytes, token: -1 });
  for (const p of inflight) {
    // reply bytes for drained buffers were not written: complete with len 0
    f.dev.pushUsed(p.id, 0);
  }
  finish();
  expect(byToken.size).toBe(0);
  expect(f.dev.inFlight).toBe(0);
  expect(f.drv.inFlight).toBe(0);
  expect(f.drv.freeCount).toBe(f.cfg.size);
  expect(f.sink.errors).toEqual([]);
  expect(f.drvSink.errors).toEqual([]);
}

describe('packed ring properties', () => {
  it('random valid traffic (any size, chains, indirect, out-of-order or in-order, batches) round-trips data exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 19 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.array(opArb, { minLength: 20, maxLength: 150, size: 'large' }),
        (size, indirect, inOrder, eventIdx, ops) => {
          const threshold = indirect ? 2 : 0;
          const f = makeFixture({ size, indirect, inOrder, eventIdx, indirectThreshold: threshold, maxChainSegments: 8 });
          run(f, ops, threshold);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('random corruption of the descriptor ring never throws, never resolves outside the space, and is either served validly or reported once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.record({ pos: fc.nat(), val: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 24 }),
        fc.array(fc.record({ slot: fc.nat(), lo: fc.nat(), hi: fc.oneof(fc.constant(0), fc.nat(), fc.constant(0xffffffff)), len: fc.nat(), id: fc.nat(0xffff), flags: fc.nat(0xffff) }), { maxLength: 6 }),
        fc.boolean(),
        (size, indirect, preload, bytes, descs, useBatch) => {
          const f = makeFixture({ size, indirect, indirectThreshold: indirect ? 2 : 0, maxChainSegments: 16 });
          const sg = new SgList(4);
          const chain = new DescChain(16);
          // some legitimate traffic first, some of it left in flight
          for (let i = 0; i < preload; i++) {
            sg.clear().out(f.alloc(8), 8);
            if (size > 1) sg.in(f.alloc(8), 8);
            if (f.drv.add(sg, i) < 0) break;
          }
          f.drv.publish();
          if (f.dev.pop(chain)) f.dev.pushUsed(chain.head, 1);
          // corrupt: raw bytes, then whole descriptors (some pointing anywhere, incl. indirect tables in RAM)
          const ringAt = f.at(f.layout.desc);
          for (const { pos, val } of bytes) f.u8[ringAt + (pos % (16 * size))] = val;
          const dv = new DataView(f.backing);
          for (const d of descs) {
            const o = ringAt + 16 * (d.slot % size);
            dv.setUint32(o, d.lo >>> 0, true);
            dv.setUint32(o + 4, d.hi >>> 0, true);
            dv.setUint32(o + 8, d.len % 3 === 0 ? d.len >>> 0 : d.len % 512, true);
            dv.setUint16(o + 12, d.id, true);
            dv.setUint16(o + 14, d.flags, true);
          }
          const before = f.u8.slice(0, PAD);
          const after = f.u8.slice(PAD + RAM_SIZE);
          f.space.log.length = 0;
          let popped = 0;
          const ids: number[] = [];
          const cb = new ChainBatch(3, 20);
          const check1 = (): void => {
            popped++;
            ids.push(chain.head);
            expect(chain.head).toBeLessThan(size);
            for (let s = 0; s < chain.count; s++) {
              const r = f.space.regions[chain.region[s]!]!;
              expect(r.contains(chain.addr[s]!, chain.len[s]!)).toBe(true);
              expect(chain.offset[s]).toBe(r.offset + (chain.addr[s]! - r.base));
              if (s >= chain.readable) expect(r.readOnly).toBe(false);
            }
            expect(chain.readableBytes + chain.writableBytes).toBeLessThanOrEqual(2 ** 32);
          };
          for (let i = 0; i < 3 * size + 4; i++) {
            if (useBatch) {
              const n = f.dev.popBatch(cb, 3);
              for (let k = 0; k < n; k++) {
                cb.copyChain(k, chain);
                check1();
              }
              if (n === 0) break;
            } else {
              if (!f.dev.pop(chain)) break;
              check1();
            }
          }
          // the walk is bounded: nothing spins; pops after the first false stay false or make progress
          expect(popped).toBeLessThanOrEqual(2 * size + 1);
          for (const e of f.space.log) {
            if (e.result >= 0) expect(f.space.regions[e.result]!.contains(e.addr, e.len)).toBe(true);
          }
          if (f.dev.parked) {
            expect(f.sink.errors.length).toBe(1);
            expect(f.sink.errors[0]!.queue).toBe(f.cfg.index);
            expect(typeof f.sink.errors[0]!.code).toBe('string');
          } else {
            expect(f.sink.errors.length).toBe(0);
          }
          // returning everything popped is always accepted
          for (const id of ids) f.dev.pushUsed(id, 0);
          expect(f.sink.errors.length).toBe(f.dev.parked ? 1 : 0);
          // nothing outside the region's bytes was written
          expect(Buffer.compare(before, f.u8.subarray(0, PAD))).toBe(0);
          expect(Buffer.compare(after, f.u8.subarray(PAD + RAM_SIZE))).toBe(0);
        },
      ),
      { numRuns: 400 },
    );
  });
});
