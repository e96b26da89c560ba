import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressSpace, Resolve } from '../../src/memory/space.js';
import { MemoryRegion } from '../../src/memory/region.js';
import { isVirtioError } from '../../src/errors.js';

function twoRegions(): AddressSpace {
  return new AddressSpace(
    [
      { base: 0x1000_0000, size: 0x10000, buffer: new ArrayBuffer(0x10000), name: 'hi' },
      { base: 0, size: 0x4000, buffer: new ArrayBuffer(0x5000), offset: 0x1000, name: 'lo' },
    ],
    'test',
  );
}

describe('AddressSpace', () => {
  it('sorts regions and resolves offsets inside each', () => {
    const s = twoRegions();
    expect(s.regions.map((r) => r.name)).toEqual(['lo', 'hi']);
    expect(s.resolve(0x10, 16, false)).toBe(0);
    expect(s.off).toBe(0x1010);
    expect(s.resolve(0x1000_0000 + 0xfff0, 16, true)).toBe(1);
    expect(s.off).toBe(0xfff0);
  });

  it('refuses accesses that straddle a region end or fall in a hole', () => {
    const s = twoRegions();
    expect(s.resolve(0x3ff8, 16, false)).toBe(Resolve.OUT_OF_SPACE);
    expect(s.resolve(0x5000, 1, false)).toBe(Resolve.OUT_OF_SPACE);
    expect(s.resolve(0x1000_0000 + 0x10000, 1, false)).toBe(Resolve.OUT_OF_SPACE);
  });

  it('handles 64-bit descriptor addresses exactly (high word never dropped)', () => {
    const s = twoRegions();
    // 2^32 + 0x10 must NOT alias 0x10
    expect(s.resolveHiLo(0x10, 1, 16, false)).toBe(Resolve.OUT_OF_SPACE);
    // high word at and above 2^21 (address >= 2^53)
    expect(s.resolveHiLo(0x10, 0x200000, 16, false)).toBe(Resolve.OUT_OF_SPACE);
    expect(s.resolveHiLo(0xfffffff0, 0xffffffff, 0x20, false)).toBe(Resolve.OVERFLOW);
    expect(s.resolveHiLo(0x10, 0, 16, false)).toBe(0);
  });

  it('reports overflow for lengths that run past 2^53 and for negative inputs', () => {
    const s = twoRegions();
    expect(s.resolve(2 ** 53 - 8, 16, false)).toBe(Resolve.OVERFLOW);
    expect(s.resolve(-1, 1, false)).toBe(Resolve.OVERFLOW);
    expect(s.resolve(Number.NaN, 1, false)).toBe(Resolve.OVERFLOW);
  });

  it('refuses writes to read-only regions', () => {
    const s = new AddressSpace([{ base: 0, size: 4096, buffer: new ArrayBuffer(4096), readOnly: true }]);
    expect(s.resolve(0, 4, false)).toBe(0);
    expect(s.resolve(0, 4, true)).toBe(Resolve.READ_ONLY);
    expect(() => s.writeU32(0, 1)).toThrow(/outside the address space/);
  });

  it('rejects overlapping regions and regions beyond their buffer', () => {
    expect(() => new AddressSpace([
      { base: 0, size: 0x2000, buffer: new ArrayBuffer(0x2000) },
      { base: 0x1000, size: 0x2000, buffer: new ArrayBuffer(0x2000) },
    ])).toThrow(/overlaps/);
    try {
      new MemoryRegion({ base: 0, size: 0x2000, buffer: new ArrayBuffer(0x1000) });
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'REGION_INVALID')).toBe(true);
    }
    expect(() => new MemoryRegion({ base: 2 ** 53 - 0x1000, size: 0x2000, buffer: new ArrayBuffer(0x2000) })).toThrow(/2\^53/);
  });

  it('moves a region (BAR reprogramming) and keeps it addressable only at the new base', () => {
    const s = twoRegions();
    s.writeU32(0x1000_0000, 0xdeadbeef);
    s.moveRegion(1, 0x8000_0000);
    expect(s.check(0x1000_0000, 4, false)).toBe(false);
    expect(s.readU32(0x8000_0000)).toBe(0xdeadbeef);
    expect(() => s.moveRegion(1, 0x2000)).toThrow(/overlaps/);
    expect(s.readU32(0x8000_0000)).toBe(0xdeadbeef);
  });

  it('restricts to ranges sharing the same backing', () => {
    const s = twoRegions();
    const r = s.restrict([{ start: 0x1000, end: 0x2000 }, { start: 0x1000_8000, end: 0x2000_0000 }]);
    expect(r.regions.length).toBe(2);
    expect(r.check(0x0, 1, false)).toBe(false);
    expect(r.check(0x1000, 0x1000, false)).toBe(true);
    r.writeU32(0x1000_8000, 42);
    expect(s.readU32(0x1000_8000)).toBe(42);
    expect(r.totalSize).toBe(0x1000 + 0x8000);
  });

  it('round-trips 64-bit values and byte ranges', () => {
    const s = twoRegions();
    s.writeU64(0x100, 2 ** 52 + 3);
    expect(s.readU64(0x100)).toBe(2 ** 52 + 3);
    s.writeU32(0x104, 0xffffffff);
    expect(() => s.readU64(0x100)).toThrow(/53 bits/);
    const src = Uint8Array.from([1, 2, 3, 4, 5]);
    s.write(0x200, src);
    const dst = new Uint8Array(5);
    s.read(0x200, dst);
    expect([...dst]).toEqual([1, 2, 3, 4, 5]);
  });

  it('property: a successful resolve always lies inside exactly one region', () => {
    const s = twoRegions();
    fc.assert(
      fc.property(fc.nat({ max: 0x2000_0000 }), fc.nat({ max: 0x20000 }), fc.boolean(), (addr, len, w) => {
        const i = s.resolve(addr, len, w);
        if (i >= 0) {
          const r = s.regions[i]!;
          expect(addr).toBeGreaterThanOrEqual(r.base);
          expect(addr + len).toBeLessThanOrEqual(r.end);
          expect(s.off).toBe(r.offset + addr - r.base);
          expect(s.off + len).toBeLessThanOrEqual(r.buffer.byteLength);
        } else {
          expect(s.regions.some((r) => r.contains(addr, len))).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
