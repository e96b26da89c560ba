/** Property tests: valid traffic round-trips exactly; corrupted rings never escape the space. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { makeEnv, newChain, RAM_BASE, RAM_SIZE, type Env } from './helpers.js';
import { SgList, type DescChain } from '../../../src/queue/types.js';
import { readFromChain, writeToChain } from '../../../src/queue/chain-io.js';

const SLOT = 4096;

interface Shape {
  nR: number;
  nW: number;
  lens: number[];
  seed: number;
}
interface RawDesc {
  addr: number;
  hi: number;
  len: number;
  flags: number;
  next: number;
}

/** Every popped segment lies inside its region, writable ones in writable regions. */
function checkInside(e: Env, c: DescChain): void {
  for (let i = 0; i < c.count; i++) {
    const r = e.space.regions[c.region[i]!]!;
    expect(c.addr[i]).toBeGreaterThanOrEqual(r.base);
    expect(c.addr[i]! + c.len[i]!).toBeLessThanOrEqual(r.base + r.size);
    expect(c.offset[i]).toBe(r.offset + (c.addr[i]! - r.base));
    if (i >= c.readable) expect(r.readOnly).toBe(false);
  }
}

describe('split ring properties', () => {
  it('random valid traffic round-trips data, tokens and lengths exactly', () => {
    const shape = fc.record({
      nR: fc.integer({ min: 0, max: 3 }),
      nW: fc.integer({ min: 0, max: 3 }),
      lens: fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 6, maxLength: 6 }),
      seed: fc.integer({ min: 0, max: 255 }),
    }).filter((s) => s.nR + s.nW > 0);
    fc.assert(
      fc.property(fc.array(fc.array(shape, { minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 12 }), fc.boolean(), fc.boolean(), fc.nat(), (batches, indirect, eventIdx, orderSeed) => {
        let tbl = 0;
        const e = makeEnv({ size: 16, indirect, eventIdx, driverOpts: indirect ? { indirectThreshold: 2, allocIndirect: (b) => RAM_BASE + 0x90000 + 256 * (tbl++ % 64) + 0 * b } : {} });
        const sg = new SgList(8);
        const c = newChain(16);
        const pending = new Map<number, { shape: Shape; slot: number }>();
        const freeSlots = Array.from({ length: 16 }, (_, i) => i);
        let rnd = orderSeed;
        for (const batch of batches) {
          for (const s of batch) {
            if (freeSlots.length === 0) break;
            const slot = freeSlots[freeSlots.length - 1]!;
            sg.clear();
            let off = e.data + slot * SLOT;
            for (let i = 0; i < s.nR + s.nW; i++) {
              const len = s.lens[i]!;
              if (i < s.nR) {
                for (let k = 0; k < len; k++) e.ram[off - RAM_BASE + k] = (s.seed + i * 31 + k) & 0xff;
                sg.out(off, len);
              } else sg.in(off, len);
              off += len;
            }
            const h = e.drv.add(sg, slot);
            if (h < 0) break;
            freeSlots.pop();
            pending.set(slot, { shape: s, slot });
          }
          e.drv.publish();
          const popped: Array<{ head: number; token: number; written: number }> = [];
          while (e.dev.pop(c)) {
            checkInside(e, c);
            // identify the slot from the first segment's address
            const slot = Math.floor((c.addr[0]! - e.data) / SLOT);
            const p = pending.get(slot)!;
            expect(c.readable).toBe(p.shape.nR);
            expect(c.count).toBe(p.shape.nR + p.shape.nW);
            const rb = new Uint8Array(c.readableBytes);
            readFromChain(e.space, c, rb);
            let k0 = 0;
            let bad = 0;
            for (let i = 0; i < p.shape.nR; i++) for (let k = 0; k < p.shape.lens[i]!; k++) if (rb[k0++] !== ((p.shape.seed + i * 31 + k) & 0xff)) bad++;
            expect(bad).toBe(0);
            const written = c.writableBytes === 0 ? 0 : (p.shape.seed * 7) % (c.writableBytes + 1);
            const wb = new Uint8Array(written).map((_, k) => (k * 13 + slot) & 0xff);
            expect(writeToChain(e.space, c, wb)).toBe(written);
            popped.push({ head: c.head, token: slot, written });
          }
          // random completion order
          for (let i = popped.length - 1; i > 0; i--) {
            rnd = (rnd * 1103515245 + 12345) >>> 0;
            const j = rnd % (i + 1);
            [popped[i], popped[j]] = [popped[j]!, popped[i]!];
          }
          for (const p of popped) e.dev.pushUsed(p.head, p.written);
          const expected = new Map(popped.map((p) => [p.token, p.written]));
          while (e.drv.getUsed()) {
            const tok = e.drv.lastToken;
            expect(expected.get(tok)).toBe(e.drv.lastLen);
            const p = pending.get(tok)!;
            let a = e.data + tok * SLOT + p.shape.lens.slice(0, p.shape.nR).reduce((x: number, y: number) => x + y, 0) - RAM_BASE;
            let bad = 0;
            for (let k = 0; k < e.drv.lastLen; k++) if (e.ram[a++] !== ((k * 13 + tok) & 0xff)) bad++;
            expect(bad).toBe(0);
            expected.delete(tok);
            pending.delete(tok);
            freeSlots.push(tok);
          }
          expect(expected.size).toBe(0);
        }
        expect(e.devSink.errors).toEqual([]);
        expect(e.drvSink.errors).toEqual([]);
        expect(e.space.bad).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it('random corruption of descriptors and the avail ring never throws, never escapes the space, reports exactly once', () => {
    const ROM = 0x400000;
    const addrArb = fc.oneof(
      fc.integer({ min: RAM_BASE, max: RAM_BASE + RAM_SIZE + 64 }), // inside RAM or just past it
      fc.integer({ min: ROM - 16, max: ROM + 0x1010 }), // around the read-only region
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.constantFrom(0, RAM_BASE + RAM_SIZE - 1, 2 ** 53 - 1),
    );
    const descArb = fc.record({
      addr: addrArb,
      hi: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 0xffffffff })),
      len: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(16, 32, 48, 0x1000)),
      flags: fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xffff })),
      next: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff })),
    });
    fc.assert(
      fc.property(
        fc.array(descArb, { minLength: 8, maxLength: 8 }),
        fc.array(descArb, { minLength: 4, maxLength: 4 }), // an indirect table at data+0x1000
        fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.boolean(),
        fc.uint8Array({ minLength: 0, maxLength: 64 }),
        (descs, table, ring, availIdx, indirect, noise) => {
          const e = makeEnv({ size: 8, indirect, extra: [{ base: ROM, size: 0x1000, buffer: new ArrayBuffer(0x1000), readOnly: true, name: 'rom' }] });
          const tbl = e.data + 0x1000;
          const w = (d: RawDesc, at: number) => {
            e.space.writeU32(at, d.addr % 2 ** 32);
            e.space.writeU32(at + 4, d.hi < 0 ? Math.floor(d.addr / 2 ** 32) : d.hi);
            e.space.writeU32(at + 8, d.len);
            e.space.writeU16(at + 12, d.flags);
            e.space.writeU16(at + 14, d.next);
          };
          descs.forEach((d, i) => w(i === 0 && indirect ? { ...d, addr: tbl, hi: 0, len: d.len % 80 } : d, e.layout.desc + 16 * i));
          table.forEach((d, i) => w(d, tbl + 16 * i));
          ring.forEach((h, i) => e.space.writeU16(e.layout.driver + 4 + 2 * i, h % 3 === 0 ? h % 10 : h));
          e.space.writeU16(e.layout.driver + 2, availIdx % 3 === 0 ? availIdx % 10 : availIdx);
          // raw byte noise over the descriptor table
          for (let i = 0; i + 1 < noise.length; i += 2) e.ram[e.layout.desc - RAM_BASE + (noise[i]! % 128)] = noise[i + 1]!;
          const c = newChain(16);
          let pops = 0;
          let ok = 0;
          let result = true;
          while (result && pops < 20) {
            result = e.dev.pop(c);
            pops++;
            if (result) {
              ok++;
              checkInside(e, c);
              expect(c.readableBytes + c.writableBytes).toBeLessThanOrEqual(2 ** 32);
            }
          }
          expect(ok).toBeLessThanOrEqual(8);
          expect(e.space.bad).toEqual([]);
          if (e.dev.parked) expect(e.devSink.errors).toHaveLength(1);
          else expect(e.devSink.errors).toHaveLength(0);
          // a parked queue stays inert
          const calls = e.space.calls;
          expect(e.dev.pop(c)).toBe(e.dev.parked ? false : e.dev.pop(c));
          if (e.dev.parked) expect(e.space.calls).toBe(calls);
        },
      ),
      { numRuns: 400 },
    );
  });
});
