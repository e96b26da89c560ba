/**
 * Differential property tests of the packed ring's fast paths against its complete walkers:
 * popBatch (popFast) against pop() and against popBatch with the fast path off, on random — mostly
 * corrupt — descriptor rings; and random traffic through addBatch / pushUsedBatch / getUsedBatch
 * with bad ids and corrupted used descriptors, fast paths on and off, compared byte for byte.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressSpace } from '../../../src/memory/space.js';
import { RecordingSink } from '../../../src/device/choke.js';
import { ChainBatch, DescChain, SgBatch, type QueueConfig } from '../../../src/queue/types.js';
import { createPackedDeviceQueue, type PackedDeviceQueue } from '../../../src/queue/packed/device.js';
import { layoutPackedRings } from '../../../src/queue/packed/layout.js';
import { disableFastPath, makeFixture, RAM_BASE, RAM_SIZE, type Fixture } from './helpers.js';

const ROM = 0x400000;
const SIZE = 8;

interface Env {
  dev: PackedDeviceQueue;
  sink: RecordingSink;
  space: AddressSpace;
  ram: ArrayBuffer;
}

/** A device queue over RAM plus a read-only ROM region (no driver: the test writes the ring). */
function makeDev(cap: number, concurrent: boolean): Env {
  const ram = new ArrayBuffer(RAM_SIZE);
  const space = new AddressSpace(
    [
      { base: RAM_BASE, size: RAM_SIZE, buffer: ram, name: 'ram' },
      { base: ROM, size: 0x1000, buffer: new ArrayBuffer(0x1000), readOnly: true, name: 'rom' },
    ],
    'guest',
  );
  const layout = layoutPackedRings(RAM_BASE, SIZE);
  const cfg: QueueConfig = { index: 1, size: SIZE, maxSize: SIZE, desc: layout.desc, driver: layout.driver, device: layout.device, eventIdx: false, indirect: true, inOrder: false, maxChainSegments: cap, concurrent };
  const sink = new RecordingSink();
  const dev = createPackedDeviceQueue(space, cfg, sink) as PackedDeviceQueue;
  return { dev, sink, space, ram };
}

type Row = [number, number[], number, number, number[][]];

function rowsOfBatch(b: ChainBatch, n: number, out: Row[]): void {
  for (let i = 0; i < n; i++) {
    const f = b.chain[4 * i]!;
    const cnt = b.chain[4 * i + 1]!;
    const segs: number[][] = [];
    for (let s = f; s < f + cnt; s++) segs.push([b.seg[2 * s]!, b.seg[2 * s + 1]!, b.pos[2 * s]!, b.pos[2 * s + 1]!]);
    out.push([b.head[i]!, Array.from(b.chain.subarray(4 * i + 1, 4 * i + 4)), b.bytes[2 * i]!, b.bytes[2 * i + 1]!, segs]);
  }
}

/** A descriptor for the examples (id = slot index). */
const d = (addr: number, len: number, flags: number) => ({ addr, hi: 0, len, id: -1, flags });
/** Slots that are not available in the first lap. */
const idle = (n: number) => Array.from({ length: n }, () => d(RAM_BASE, 0, 0));

describe('packed fast paths agree with the complete walkers', () => {
  it('[basic.packed-vq.vq-desc-table.device.2] random (often corrupt) rings: popBatch with and without popFast == pop()', () => {
    const descArb = fc.record({
      addr: fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: RAM_BASE + 0x1000, max: RAM_BASE + 0x2000 }) },
        { weight: 3, arbitrary: fc.integer({ min: ROM, max: ROM + 0xf00 }) },
        fc.integer({ min: RAM_BASE + RAM_SIZE - 64, max: RAM_BASE + RAM_SIZE + 64 }),
        fc.integer({ min: ROM - 16, max: ROM + 0x1010 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      ),
      hi: fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffffffff })),
      len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff }), fc.constant(32)),
      // -1: the slot index (distinct ids, as a driver would use)
      id: fc.oneof({ weight: 4, arbitrary: fc.constant(-1) }, fc.integer({ min: 0, max: SIZE + 1 }), fc.integer({ min: 0, max: 0xffff })),
      // mostly available in the first lap (AVAIL=1, USED=0), plus NEXT / WRITE / INDIRECT; sometimes anything
      flags: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(0x80, 0x82) },
        { weight: 3, arbitrary: fc.constantFrom(0x81, 0x83) },
        fc.integer({ min: 0, max: 7 }).map((x) => 0x80 | x),
        fc.integer({ min: 0, max: 3 }).map((x) => 0x80 | x),
        fc.integer({ min: 0, max: 0xffff }),
      ),
    });
    fc.assert(
      fc.property(
        fc.array(descArb, { minLength: SIZE, maxLength: SIZE }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 5 }),
        fc.boolean(),
        (descs, max, segCap, cap, concurrent) => {
          const fast = makeDev(cap, concurrent);
          const slow = makeDev(cap, concurrent);
          const one = makeDev(cap, concurrent);
          disableFastPath(slow.dev);
          for (const e of [fast, slow, one]) {
            const dv = new DataView(e.ram);
            descs.forEach((d, i) => {
              const o = 16 * i;
              dv.setUint32(o, d.addr >>> 0, true);
              dv.setUint32(o + 4, d.hi >>> 0, true);
              dv.setUint32(o + 8, d.len >>> 0, true);
              dv.setUint16(o + 12, d.id < 0 ? i : d.id, true);
              dv.setUint16(o + 14, d.flags, true);
            });
          }
          const viaBatch = (e: Env): Row[] => {
            const b = new ChainBatch(8, segCap);
            const out: Row[] = [];
            for (let round = 0; round < 10; round++) {
              const n = e.dev.popBatch(b, max);
              rowsOfBatch(b, n, out);
              if (n === 0) break;
            }
            return out;
          };
          const viaPop = (e: Env): Row[] => {
            const out: Row[] = [];
            const c = new DescChain(segCap);
            for (let round = 0; round < 10 && e.dev.pop(c); round++) {
              const segs: number[][] = [];
              for (let s = 0; s < c.count; s++) segs.push([c.region[s]!, c.len[s]!, c.offset[s]!, c.addr[s]!]);
              out.push([c.head, [c.count, c.readable, c.descCount], c.readableBytes, c.writableBytes, segs]);
            }
            return out;
          };
          const want = viaPop(one);
          expect(viaBatch(fast)).toEqual(want);
          expect(viaBatch(slow)).toEqual(want);
          const errs = (e: Env) => e.sink.errors.map((x) => [x.code, x.clause]);
          expect(errs(fast)).toEqual(errs(one));
          expect(errs(slow)).toEqual(errs(one));
          expect(fast.dev.parked).toBe(one.dev.parked);
          expect(fast.dev.inFlight).toBe(one.dev.inFlight);
          expect(fast.dev.getBase()).toBe(one.dev.getBase());
        },
      ),
      {
        numRuns: 500,
        // Targeted cases besides the random ones: a writable-then-readable list in the cached region;
        // a readable ROM buffer (moves the region cache to ROM) followed by a writable ROM buffer.
        examples: [
          [[d(RAM_BASE + 0x1000, 16, 0x83), d(RAM_BASE + 0x1100, 16, 0x80), ...idle(6)], 8, 12, 4, false],
          [[d(RAM_BASE + 0x1000, 16, 0x81), d(RAM_BASE + 0x1100, 16, 0x82), d(RAM_BASE + 0x1200, 8, 0x83), d(RAM_BASE + 0x1300, 8, 0x81), d(RAM_BASE + 0x1400, 8, 0x80), ...idle(3)], 8, 12, 4, true],
          [[d(ROM + 0x10, 16, 0x80), d(ROM + 0x100, 16, 0x82), ...idle(6)], 8, 12, 4, false],
        ],
      },
    );
  });

  type TOp =
    | { t: 'add'; shapes: Array<[number, number]> }
    | { t: 'publish' }
    | { t: 'pop'; max: number; segs: number }
    | { t: 'push'; pick: number[]; bad: number }
    | { t: 'corrupt'; at: number; what: number; val: number }
    | { t: 'collect'; max: number };
  const opArb: fc.Arbitrary<TOp> = fc.oneof(
    { weight: 4, arbitrary: fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 5 }).map((shapes) => ({ t: 'add' as const, shapes })) },
    { weight: 2, arbitrary: fc.constant({ t: 'publish' as const }) },
    { weight: 3, arbitrary: fc.record({ max: fc.integer({ min: 1, max: 8 }), segs: fc.integer({ min: 2, max: 20 }) }).map((r) => ({ t: 'pop' as const, ...r })) },
    { weight: 3, arbitrary: fc.record({ pick: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), bad: fc.integer({ min: 0, max: 24 }) }).map((r) => ({ t: 'push' as const, ...r })) },
    { weight: 1, arbitrary: fc.record({ at: fc.nat(), what: fc.integer({ min: 0, max: 2 }), val: fc.integer({ min: 0, max: 0xffff }) }).map((r) => ({ t: 'corrupt' as const, ...r })) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }).map((max) => ({ t: 'collect' as const, max })) },
  );

  it('[basic.packed-vq.vq.device.2] random traffic with bad ids and corrupted used descriptors: fast paths on == off, byte for byte', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 10, maxLength: 60, size: 'max' }), fc.integer({ min: 2, max: 9 }), fc.boolean(), (ops, size, concurrent) => {
        const fast = makeFixture({ size, concurrent, maxChainSegments: 4 });
        const slow = makeFixture({ size, concurrent, maxChainSegments: 4 });
        disableFastPath(slow.dev);
        disableFastPath(slow.drv);
        const bufs = Array.from({ length: 8 }, () => fast.alloc(64));
        slow.alloc(64 * 8); // same addresses in both fixtures
        const step = (f: Fixture, popped: number[], op: TOp, token: { v: number }): unknown => {
          switch (op.t) {
            case 'add': {
              const sb = new SgBatch(8, 32);
              op.shapes.forEach(([outs, ins], c) => {
                sb.begin(token.v + c);
                for (let k = 0; k < outs; k++) sb.out(bufs[(c + k) % 8]!, 16);
                for (let k = 0; k < ins; k++) sb.in(bufs[(c + k + 3) % 8]! + 16, 48);
              });
              let r: unknown;
              try {
                r = f.drv.addBatch(sb);
              } catch (e) {
                r = (e as Error).message.replace(/\d+/g, '#');
              }
              token.v += op.shapes.length;
              return [r, Array.from(sb.chain)];
            }
            case 'publish':
              return f.drv.publish();
            case 'pop': {
              const b = new ChainBatch(8, op.segs);
              const n = f.dev.popBatch(b, op.max);
              const rows: Row[] = [];
              rowsOfBatch(b, n, rows);
              for (let i = 0; i < n; i++) popped.push(b.head[i]!);
              return rows;
            }
            case 'push': {
              const ids: number[] = [];
              const lens: number[] = [];
              for (const p of op.pick) {
                if (popped.length === 0) break;
                const k = p % popped.length;
                ids.push(popped[k]!);
                popped.splice(k, 1);
                lens.push(p % 50);
              }
              if (op.bad === 1) ids.push(size + 3);
              if (op.bad === 2 && ids.length > 0) ids.push(ids[0]!);
              if (op.bad === 3) ids.push(1.5);
              while (lens.length < ids.length) lens.push(0);
              f.dev.pushUsedBatch(ids, lens, ids.length);
              // refused batches leave their ids in flight
              if (f.sink.errors.length > 0) for (const id of ids) if (Number.isInteger(id) && id < size && !popped.includes(id)) popped.push(id);
              return f.dev.inFlight;
            }
            case 'corrupt': {
              const o = f.at(f.layout.desc) + 16 * (op.at % size);
              if (op.what === 0) f.u8[o + 12] = op.val & 0xff; // id
              else if (op.what === 1) f.u8[o + 8 + (op.val & 3)] = op.val >>> 8; // len
              else f.u8[o + 15] ^= 0x80; // USED flag
              return null;
            }
            case 'collect': {
              const toks = new Int32Array(8);
              const lens = new Uint32Array(8);
              const n = f.drv.getUsedBatch(toks, lens, op.max);
              return [n, Array.from(toks.subarray(0, n)), Array.from(lens.subarray(0, n))];
            }
          }
        };
        const pf: number[] = [];
        const ps: number[] = [];
        const tf = { v: 0 };
        const ts = { v: 0 };
        for (const op of ops) {
          const a = step(fast, pf, op, tf);
          const b = step(slow, ps, op, ts);
          expect(a).toEqual(b);
          expect(Buffer.compare(fast.u8, slow.u8)).toBe(0);
          expect(fast.sink.errors.map((e) => [e.code, e.clause])).toEqual(slow.sink.errors.map((e) => [e.code, e.clause]));
          expect(fast.drvSink.errors.map((e) => e.code)).toEqual(slow.drvSink.errors.map((e) => e.code));
          expect([fast.dev.parked, fast.dev.inFlight, fast.drv.inFlight, fast.drv.freeCount, fast.drv.broken]).toEqual([slow.dev.parked, slow.dev.inFlight, slow.drv.inFlight, slow.drv.freeCount, slow.drv.broken]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
