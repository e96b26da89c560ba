/**
 * Model-based property test: random map / unmap / coherent sequences against a naive
 * slot-by-slot model of Linux's search (bitmap, circular walk from the rotating index, every
 * alignment rule checked directly with `%` arithmetic). The pool must pick the same slot, keep
 * live mappings disjoint and inside the window, and return to all-free after unmapping everything.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressSpace } from '../../src/memory/space.js';
import { BouncePool, type DmaDirection } from '../../src/swiotlb/pool.js';
import { SwiotlbWindow } from '../../src/swiotlb/window.js';
import { isVirtioError } from '../../src/errors.js';

const SLOT = 2048;
const SEG = 128;
const WIN = 512 << 10; // 256 slots, 2 segments: small enough to fill, wrap and fragment often
const RAM_BASE = 0x8000_0000;
const RAM_SIZE = 2 << 20;

/** x mod 2^(k) for mask = 2^k − 1, exact for any x < 2^53. */
const low = (x: number, mask: number): number => x % (mask + 1);
/** Bits of x in positions [11, k) for mask = 2^k − 1. */
const slotBits = (x: number, mask: number): number => (mask < SLOT ? 0 : low(x, mask) - low(x, SLOT - 1));

class Model {
  readonly n = WIN / SLOT;
  used = new Uint8Array(this.n);
  index = 0;
  free = this.n;
  constructor(readonly base: number) {}

  find(need: number, ok: (slotBus: number) => boolean): number {
    if (need > this.free) return -1;
    for (let k = 0; k < this.n; k++) {
      const c = (this.index + k) % this.n;
      if (!ok(this.base + c * SLOT)) continue;
      if (c + need > this.n || Math.floor(c / SEG) !== Math.floor((c + need - 1) / SEG)) continue;
      let allFree = true;
      for (let j = c; j < c + need; j++) if (this.used[j]) allFree = false;
      if (allFree) return c;
    }
    return -1;
  }
  take(s: number, need: number): void {
    for (let j = s; j < s + need; j++) this.used[j] = 1;
    this.free -= need;
    this.index = (s + need) % this.n;
  }
  give(s: number, need: number): void {
    for (let j = s; j < s + need; j++) this.used[j] = 0;
    this.free += need;
  }
}

type Cmd =
  | { t: 'map'; off: number; size: number; dir: DmaDirection; min: number; align: number }
  | { t: 'unmap'; pick: number }
  | { t: 'coh'; size: number; align: number }
  | { t: 'free'; pick: number };

const mask = fc.constantFrom(0, 0x3ff, 0x7ff, 0xfff, 0x3fff, 0xffff);
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('map' as const),
      off: fc.integer({ min: 0, max: RAM_SIZE - 300 * 1024 }),
      size: fc.oneof(fc.integer({ min: 1, max: 4200 }), fc.integer({ min: 1, max: 270 * 1024 })),
      dir: fc.constantFrom<DmaDirection>('to-device', 'from-device', 'bidirectional'),
      min: mask,
      align: fc.constantFrom(0, 0, 0xfff, 0x3fff),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('unmap' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('coh' as const), size: fc.integer({ min: 1, max: 70000 }), align: fc.constantFrom(16, 4096, 65536) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('free' as const), pick: fc.nat() }) },
);

interface Live {
  addr: number;
  size: number;
  dir: DmaDirection | 'coherent';
  slot: number;
  need: number;
}

describe('BouncePool properties', () => {
  it('[rfc-swiotlb.feature.driver.1][rfc-swiotlb.pci.driver.2][rfc-swiotlb.mmio.driver.2] random map/unmap: same slots as Linux\'s walk, disjoint, inside the window, alignment kept, all free at the end', () => {
    const ramBuf = new ArrayBuffer(RAM_SIZE);
    const ramU8 = new Uint8Array(ramBuf);
    for (let i = 0; i < RAM_SIZE; i++) ramU8[i] = (i * 2654435761) >>> 24;
    fc.assert(
      fc.property(fc.constantFrom(0xfe00_0000, 0xfe00_1000, 0x1_0000_3000, 0x10_0000_5000), fc.array(cmd, { minLength: 1, maxLength: 80 }), (base, cmds) => {
        const window = new SwiotlbWindow(new ArrayBuffer(WIN), { base });
        const ram = new AddressSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: ramBuf }], 'ram');
        const pool = new BouncePool({ window, ram });
        const model = new Model(base);
        const live: Live[] = [];
        for (const c of cmds) {
          if (c.t === 'map') {
            const orig = RAM_BASE + c.off;
            const offset = low(orig, c.min) % SLOT;
            const max = c.min === 0 ? 256 * 1024 : 256 * 1024 - Math.ceil(c.min / SLOT) * SLOT;
            const need = Math.ceil((c.size + offset) / SLOT);
            const conflict = slotBits(orig, Math.min(c.min, c.align)) !== 0;
            const pageBit = c.size >= 4096 && c.min < 0xfff;
            const s =
              c.size > max || conflict
                ? -1
                : model.find(need, (bus) => slotBits(bus, c.min) === slotBits(orig, c.min) && slotBits(bus, c.align) === 0 && (!pageBit || low(bus, 0xfff) === 0));
            const before = pool.stats().usedSlots;
            let addr: number;
            try {
              addr = pool.map(orig, c.size, c.dir, { minAlignMask: c.min, allocAlignMask: c.align });
            } catch (e) {
              const want = c.size > max ? 'BOUNCE_MAP_TOO_LARGE' : conflict ? 'INVALID_ARGUMENT' : 'BOUNCE_POOL_FULL';
              expect(isVirtioError(e, want), `${String(e)} (wanted ${want}, model slot ${s})`).toBe(true);
              expect(s).toBe(-1);
              expect(pool.stats().usedSlots).toBe(before);
              continue;
            }
            expect(s, 'the model found no room but the pool mapped').toBeGreaterThanOrEqual(0);
            expect(addr).toBe(base + s * SLOT + offset);
            model.take(s, need);
            expect(window.contains(addr, c.size)).toBe(true);
            expect(low(addr, c.min)).toBe(low(orig, c.min));
            expect(low(addr - offset, c.align)).toBe(0);
            for (const l of live) expect(addr + c.size <= l.addr || l.addr + l.size <= addr, 'overlap').toBe(true);
            // Map copied the original in.
            const w = window.u8;
            const wo = addr - base;
            for (const k of [0, c.size >> 1, c.size - 1]) expect(w[wo + k]).toBe(ramU8[c.off + k]);
            live.push({ addr, size: c.size, dir: c.dir, slot: s, need });
          } else if (c.t === 'coh') {
            const bytes = Math.ceil(c.size / 4096) * 4096;
            let order = 4096;
            while (order < bytes) order *= 2;
            const am = Math.max(order, c.align) - 1;
            const need = bytes / SLOT;
            const s = model.find(need, (bus) => low(bus, am) === 0);
            let addr: number;
            try {
              addr = pool.allocCoherent(c.size, c.align);
            } catch (e) {
              expect(isVirtioError(e, 'BOUNCE_POOL_FULL'), String(e)).toBe(true);
              expect(s).toBe(-1);
              continue;
            }
            expect(addr).toBe(base + s * SLOT);
            model.take(s, need);
            expect(low(addr, am)).toBe(0);
            for (const l of live) expect(addr + bytes <= l.addr || l.addr + l.size <= addr, 'overlap').toBe(true);
            live.push({ addr, size: bytes, dir: 'coherent', slot: s, need });
          } else {
            const want = c.t === 'free' ? 'coherent' : 'streaming';
            const cand = live.filter((l) => (l.dir === 'coherent') === (want === 'coherent'));
            if (cand.length === 0) continue;
            const l = cand[c.pick % cand.length]!;
            if (l.dir === 'coherent') pool.freeCoherent(l.addr);
            else pool.unmap(l.addr, l.size, l.dir);
            model.give(l.slot, l.need);
            live.splice(live.indexOf(l), 1);
          }
          expect(pool.stats().usedSlots).toBe(model.n - model.free);
        }
        pool.verify();
        const hw = pool.stats().highWaterSlots;
        for (const l of live) {
          if (l.dir === 'coherent') pool.freeCoherent(l.addr);
          else pool.unmap(l.addr, l.size, l.dir);
        }
        const st = pool.stats();
        expect(st.freeSlots).toBe(st.totalSlots);
        expect(st.liveMappings + st.liveCoherent).toBe(0);
        expect(st.highWaterSlots).toBe(hw);
        pool.verify();
      }),
      { numRuns: 200 },
    );
  });
});
