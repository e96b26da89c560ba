import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FeatureSet, MAX_FEATURE_BITS } from '../../src/features/set.js';
import { isVirtioError } from '../../src/errors.js';

describe('FeatureSet', () => {
  it('holds bits beyond 64 (net uses 64..70) and reads them through 32-bit windows', () => {
    const s = FeatureSet.fromBits([0, 32, 64, 70]);
    expect(s.has(64)).toBe(true);
    expect(s.has(70)).toBe(true);
    expect(s.has(65)).toBe(false);
    expect(s.word(0)).toBe(1);
    expect(s.word(1)).toBe(1);
    expect(s.word(2)).toBe((1 | (1 << 6)) >>> 0);
    expect(s.toBits()).toEqual([0, 32, 64, 70]);
  });

  it('[pci.common-cfg.device.3] any window beyond the stored words reads 0', () => {
    const s = FeatureSet.fromBits([1, 33]);
    expect(s.word(5)).toBe(0);
    expect(s.word(0xffffffff)).toBe(0);
    expect(s.word(-1)).toBe(0);
  });

  it('bit 31 and window writes are unsigned', () => {
    const s = new FeatureSet().setWord(0, 0x80000001);
    expect(s.word(0)).toBe(0x80000001);
    expect(s.has(31)).toBe(true);
    expect(s.toString()).toBe('0x80000001');
    s.clear(31);
    expect(s.word(0)).toBe(1);
  });

  it('setWord beyond the maximum window throws INVALID_ARGUMENT; set out of range throws', () => {
    expect(() => new FeatureSet().setWord(MAX_FEATURE_BITS / 32, 1)).toThrow();
    try {
      new FeatureSet().set(MAX_FEATURE_BITS);
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'INVALID_ARGUMENT')).toBe(true);
    }
    expect(new FeatureSet().has(MAX_FEATURE_BITS + 5)).toBe(false);
  });

  it('frozen sets refuse mutation, clones are mutable', () => {
    const s = FeatureSet.fromBits([3]).freeze();
    expect(() => s.set(4)).toThrow(/frozen/);
    expect(() => s.setWord(0, 0)).toThrow(/frozen/);
    const c = s.clone().set(4);
    expect(c.toBits()).toEqual([3, 4]);
    expect(s.toBits()).toEqual([3]);
  });

  it('algebra matches BigInt arithmetic (property)', () => {
    const bits = fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { maxLength: 30 });
    fc.assert(
      fc.property(bits, bits, (a, b) => {
        const A = FeatureSet.fromBits(a);
        const B = FeatureSet.fromBits(b);
        const a1 = A.toBigInt();
        const b1 = B.toBigInt();
        expect(A.union(B).toBigInt()).toBe(a1 | b1);
        expect(A.intersect(B).toBigInt()).toBe(a1 & b1);
        expect(A.minus(B).toBigInt()).toBe(a1 & ~b1);
        expect(A.isSubsetOf(B)).toBe((a1 & ~b1) === 0n);
        expect(A.equals(B)).toBe(a1 === b1);
        expect(FeatureSet.fromBigInt(a1).equals(A)).toBe(true);
        expect(A.size).toBe(new Set(a).size);
        expect(A.highestBit()).toBe(a.length === 0 ? -1 : Math.max(...a));
        // operands untouched
        expect(A.toBigInt()).toBe(a1);
        expect(B.toBigInt()).toBe(b1);
      }),
      { numRuns: 200 },
    );
  });

  it('equals ignores storage size', () => {
    const a = FeatureSet.fromBits([1]);
    const b = FeatureSet.fromBits([1, 100]).clear(100);
    expect(a.equals(b)).toBe(true);
    expect(b.toWords()).toEqual([2]);
  });
});
