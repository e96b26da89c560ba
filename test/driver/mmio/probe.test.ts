import { describe, expect, it } from 'vitest';
import { blkRig, spy, type Access } from './helpers.js';
import { probeVirtioMmio } from '../../../src/driver/mmio/probe.js';
import { VirtioMmioDriver } from '../../../src/driver/mmio/driver.js';
import type { MmioDeviceAccess } from '../../../src/driver/mmio/access.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { isVirtioError } from '../../../src/errors.js';

/** A register window with fixed id registers; records accesses. */
function fakeWindow(magic: number, version: number, deviceId: number): { access: MmioDeviceAccess; log: Access[] } {
  const log: Access[] = [];
  const vals: Record<number, number> = { 0: magic, 4: version, 8: deviceId, 0xc: 0x1af4 };
  return {
    access: {
      read: (off, size) => {
        log.push({ op: 'r', off, size, value: vals[off] ?? 0 });
        return vals[off] ?? 0;
      },
      write: (off, size, value) => {
        log.push({ op: 'w', off, size, value });
      },
    },
    log,
  };
}

const guestRam = new AddressSpace([{ base: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20) }], 'ram');

describe('virtio-mmio probe', () => {
  it('[mmio.dev-init.driver.1] reads MagicValue, then Version, then DeviceID and VendorID of a real device', () => {
    const r = blkRig();
    const s = spy(r.dev);
    const p = probeVirtioMmio(s.access);
    expect(p).toEqual({ version: 2, deviceId: 2, vendorId: 0x1af4 });
    expect(s.log.map((a) => [a.op, a.off, a.size])).toEqual([
      ['r', 0, 4],
      ['r', 4, 4],
      ['r', 8, 4],
      ['r', 0xc, 4],
    ]);
  });

  it('[mmio.regs.driver.4] a bad MagicValue: the device is ignored with a PROTOCOL error, nothing else is touched', () => {
    const f = fakeWindow(0x12345678, 2, 2);
    let err: unknown;
    try {
      probeVirtioMmio(f.access);
    } catch (e) {
      err = e;
    }
    expect(isVirtioError(err, 'PROTOCOL')).toBe(true);
    expect((err as Error).message).toMatch(/MagicValue reads 0x12345678/);
    expect(f.log.length).toBe(1);
  });

  it('[mmio.regs.driver.5] Version 1 (legacy) gives a clean "legacy not supported" error; other versions are refused too', () => {
    const f = fakeWindow(0x74726976, 1, 2);
    expect(() => probeVirtioMmio(f.access)).toThrow(/legacy interface \(Version 1\) is not supported/);
    expect(f.log.every((a) => a.op === 'r')).toBe(true);
    expect(f.log.length).toBe(2);
    expect(() => new VirtioMmioDriver(fakeWindow(0x74726976, 1, 2).access, { guestRam })).toThrow(/legacy/);
    expect(() => probeVirtioMmio(fakeWindow(0x74726976, 3, 2).access)).toThrow(/Version 3 is not supported/);
  });

  it('[mmio.regs.driver.6] [mmio.dev-init.driver.2] DeviceID 0: ignored silently, no register beyond DeviceID is accessed', () => {
    const f = fakeWindow(0x74726976, 2, 0);
    expect(probeVirtioMmio(f.access)).toBeNull();
    expect(f.log.map((a) => a.off)).toEqual([0, 4, 8]);
    const g = fakeWindow(0x74726976, 2, 0);
    expect(VirtioMmioDriver.open(g.access, { guestRam })).toBeNull();
    expect(g.log.map((a) => a.off)).toEqual([0, 4, 8]);
    expect(g.log.some((a) => a.op === 'w')).toBe(false);
    // Insisting on a driver for it is a usage error that says what to do.
    expect(() => new VirtioMmioDriver(fakeWindow(0x74726976, 2, 0).access, { guestRam })).toThrow(/placeholder.*open\(\)/);
  });
});
