import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressSpace } from '../../src/memory/space.js';
import { GuestRamAllocator } from '../../src/driver/ram-alloc.js';
import { MmioAllocator } from '../../src/driver/mmio-alloc.js';
import { vectorPlans, VIRTIO_MSI_NO_VECTOR } from '../../src/driver/msix-plan.js';

function twoRegions(): AddressSpace {
  // Two adjacent regions: an allocation must never span them.
  return new AddressSpace(
    [
      { base: 0x1000, size: 0x4000, buffer: new ArrayBuffer(0x4000), name: 'a' },
      { base: 0x5000, size: 0x4000, buffer: new ArrayBuffer(0x4000), name: 'b' },
    ],
    'ram',
  );
}

describe('GuestRamAllocator', () => {
  it('allocations are aligned, disjoint, inside one region each; freeing everything restores the free space (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom(1, 16, 64, 4096), fc.boolean()), { maxLength: 40 }), (ops) => {
        const space = twoRegions();
        const a = new GuestRamAllocator(space);
        const total = a.freeBytes;
        const live: Array<[number, number]> = [];
        for (const [size, align, freeOne] of ops) {
          if (freeOne && live.length > 0) {
            const [addr] = live.splice(size % live.length, 1)[0]!;
            a.release(addr);
            continue;
          }
          let addr: number;
          try {
            addr = a.alloc(size, align);
          } catch {
            continue;
          }
          expect(addr % align).toBe(0);
          expect(space.check(addr, size, true)).toBe(true);
          for (const [b, s] of live) expect(addr + size <= b || b + s <= addr).toBe(true);
          live.push([addr, size]);
        }
        for (const [addr] of live) a.release(addr);
        expect(a.freeBytes).toBe(total);
        expect(a.liveCount).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses unknown frees and says how much is free when full', () => {
    const a = new GuestRamAllocator(twoRegions());
    expect(() => a.release(0x1234)).toThrow(/not a live allocation/);
    expect(() => a.alloc(0x5000)).toThrow(/no free block.*bytes free/);
  });
});

describe('MmioAllocator', () => {
  it('[pci.general.device.1] places BARs naturally aligned in the 32- and 64-bit windows', () => {
    const m = new MmioAllocator();
    expect(m.alloc(0x1000, false)).toBe(0xe000_0000);
    expect(m.alloc(0x10000, false)).toBe(0xe001_0000);
    expect(m.alloc(0x4000, true)).toBe(0x8_0000_0000);
    expect(m.alloc(0x100000, true)).toBe(0x8_0010_0000);
    expect(() => new MmioAllocator({ window32: { start: 0xe000_0000, end: 0xe000_1000 } }).alloc(0x2000, false)).toThrow(/no room/);
  });
});

describe('vectorPlans', () => {
  it('[pci.msix.driver.4] no plan names a vector outside the table; the last resort is INTx (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2048 }), fc.integer({ min: 0, max: 64 }), (table, nq) => {
        const plans = vectorPlans(table, nq);
        expect(plans[plans.length - 1]!.mode).toBe('intx');
        for (const p of plans) {
          if (p.mode === 'intx') {
            expect(p.queueVectors.every((v) => v === VIRTIO_MSI_NO_VECTOR)).toBe(true);
            continue;
          }
          expect(p.vectorsUsed).toBeLessThanOrEqual(table);
          expect(p.configVector).toBeLessThan(table);
          expect(p.queueVectors.every((v) => v < table)).toBe(true);
          expect(p.queueVectors.length).toBe(nq);
        }
      }),
    );
  });
});
