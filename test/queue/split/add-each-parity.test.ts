/**
 * addEach (straight-line fast path for chains of up to three segments, the general writer for
 * longer ones) must write exactly what add() writes for the same requests: descriptor table, avail
 * ring and the device's view of every chain.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SgList, type ChainFiller } from '../../../src/queue/types.js';
import { makeEnv, type Env } from './helpers.js';

interface Req {
  lens: number[];
  readable: number;
  hi: boolean;
}

const req = fc
  .array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 })
  .chain((lens) => fc.record({ lens: fc.constant(lens), readable: fc.integer({ min: 0, max: lens.length }), hi: fc.boolean() }));

/** Bus address of segment i of request k (above 2^32 when `hi`, where the device cannot reach it; only the bytes matter). */
function segAddr(e: Env, k: number, i: number, hi: boolean): number {
  return hi ? 0x1_0000_0000 * (1 + i) + 512 * k : e.data + 2048 * k + 320 * i;
}

class Filler implements ChainFiller {
  token = 0;
  readable = 0;
  constructor(
    private readonly e: Env,
    private readonly reqs: Req[],
  ) {}
  fill(k: number, addr: Float64Array, len: Uint32Array): number {
    const r = this.reqs[k];
    if (r === undefined) return 0;
    r.lens.forEach((l, i) => {
      addr[i] = segAddr(this.e, k, i, r.hi);
      len[i] = l;
    });
    this.token = 1000 + k;
    this.readable = r.readable;
    return r.lens.length;
  }
}

function ringBytes(e: Env): Uint8Array {
  const off = e.layout.desc - (e.data - Math.ceil(e.layout.bytes / 4096) * 4096);
  return e.ram.slice(off, off + e.layout.bytes);
}

describe('split addEach writes what add writes', () => {
  it('[basic.split-vq.message-framing.driver.1] [basic.split-vq.vq-desc-table.driver.1] random chains of 1–6 segments, any readable split, addresses above 2^32', () => {
    fc.assert(
      fc.property(fc.array(req, { minLength: 1, maxLength: 12 }), (reqs) => {
        const a = makeEnv({ size: 64 });
        const b = makeEnv({ size: 64 });
        expect(a.drv.addEach(new Filler(a, reqs), reqs.length)).toBe(reqs.length);
        const sg = new SgList(8);
        reqs.forEach((r, k) => {
          sg.clear();
          r.lens.forEach((l, i) => (i < r.readable ? sg.out(segAddr(b, k, i, r.hi), l) : sg.in(segAddr(b, k, i, r.hi), l)));
          expect(b.drv.add(sg, 1000 + k)).toBeGreaterThanOrEqual(0);
        });
        a.drv.publish();
        b.drv.publish();
        expect(ringBytes(a)).toEqual(ringBytes(b));
        expect(a.drvSink.errors).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
