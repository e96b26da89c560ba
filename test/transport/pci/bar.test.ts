import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PciConfigSpace, initType0Header, PCI_ROM_ADDRESS } from '../../../src/transport/pci/config-space.js';
import { PciBars, PCI_BAR_MEM_PREFETCH, PCI_BAR_MEM_TYPE_64, type BarChange } from '../../../src/transport/pci/bar.js';

function setup(): { space: PciConfigSpace; bars: PciBars; changes: BarChange[] } {
  const space = new PciConfigSpace();
  initType0Header(space, { vendorId: 0x1af4, deviceId: 0x1041, revisionId: 1, classCode: 0xff0000, subsystemVendorId: 0x1af4, subsystemId: 0x40 });
  const bars = new PciBars(space, [
    { index: 0, size: 0x4000, is64: true },
    { index: 2, size: 0x1000 },
    { index: 4, size: 0x100000, is64: true, prefetchable: true },
  ]);
  const changes: BarChange[] = [];
  bars.onChange((c) => changes.push(c));
  return { space, bars, changes };
}

describe('BARs: sizing protocol and programming', () => {
  it('[pci.general.device.1] 32-bit BAR: all-ones write reads back the size mask with flags', () => {
    const { space } = setup();
    const off = 0x10 + 2 * 4;
    expect(space.read(off, 4)).toBe(0);
    space.write(off, 4, 0xffffffff);
    expect(space.read(off, 4)).toBe((~(0x1000 - 1) & 0xfffffff0) >>> 0);
    // size = ~(mask & ~0xf) + 1
    const mask = space.read(off, 4) & 0xfffffff0;
    expect(((~mask >>> 0) + 1) >>> 0).toBe(0x1000);
  });

  it('[pci.general.device.1] 64-bit prefetchable BAR: type bits, low mask and high dword', () => {
    const { space } = setup();
    const lo = 0x10 + 4 * 4;
    expect(space.read(lo, 4)).toBe(PCI_BAR_MEM_TYPE_64 | PCI_BAR_MEM_PREFETCH);
    space.write(lo, 4, 0xffffffff);
    space.write(lo + 4, 4, 0xffffffff);
    expect(space.read(lo, 4)).toBe(((~(0x100000 - 1) & 0xfffffff0) | 0xc) >>> 0);
    expect(space.read(lo + 4, 4)).toBe(0xffffffff);
  });

  it('[pci.general.device.1] unimplemented BARs and the ROM BAR size to 0', () => {
    const { space } = setup();
    const unused = 0x10 + 4 * 3; // BAR 3 is not implemented (1 and 5 are high halves of 64-bit BARs)
    space.write(unused, 4, 0xffffffff);
    expect(space.read(unused, 4)).toBe(0);
    space.write(PCI_ROM_ADDRESS, 4, 0xffffffff);
    expect(space.read(PCI_ROM_ADDRESS, 4)).toBe(0);
  });

  it('[pci.general.device.1] programming an address emits one change per BAR and info() reports it', () => {
    const { space, bars, changes } = setup();
    space.write(0x10 + 8, 4, 0xfebf1000);
    expect(changes).toEqual([{ index: 2, address: 0xfebf1000, oldAddress: 0, valid: true }]);
    space.write(0x10 + 16, 4, 0x00000000);
    space.write(0x10 + 20, 4, 0x1);
    expect(bars.info(4)).toMatchObject({ address: 0x1_0000_0000, size: 0x100000, is64: true, prefetchable: true, valid: true });
    expect(bars.decode(0x1_0000_0010, 4)).toBe(4);
    expect(bars.decode(0xfebf1ffc, 4)).toBe(2);
    expect(bars.decode(0xfebf2000, 4)).toBe(-1);
  });

  it('[pci.general.device.1] address bits below the BAR size are read-only zero (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
        const { space, bars } = setup();
        space.write(0x18, 4, v);
        const a = bars.info(2)!.address;
        expect(a % 0x1000).toBe(0);
        expect(a).toBe((v & ~0xfff) >>> 0);
      }),
      { numRuns: 200 },
    );
  });

  it('[pci.general.device.1] a 64-bit address at or above 2^53 is reported invalid', () => {
    const { space, bars } = setup();
    space.write(0x10 + 20, 4, 0xffffffff);
    expect(bars.info(4)!.valid).toBe(false);
    expect(bars.decode(0, 4)).not.toBe(4);
  });

  it('rejects bad BAR declarations', () => {
    const space = new PciConfigSpace();
    expect(() => new PciBars(space, [{ index: 5, size: 0x1000, is64: true }])).toThrow(/64-bit/);
    expect(() => new PciBars(new PciConfigSpace(), [{ index: 0, size: 0x1800 }])).toThrow(/power of two/);
    expect(() => new PciBars(new PciConfigSpace(), [{ index: 0, size: 0x1000, is64: true }, { index: 1, size: 0x1000 }])).toThrow(/already used/);
  });
});
