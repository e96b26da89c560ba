import { describe, expect, it } from 'vitest';
import { PciConfigSpace, initType0Header, PCI_STATUS, PCI_CAPABILITY_LIST } from '../../src/transport/pci/config-space.js';
import { PciBars } from '../../src/transport/pci/bar.js';
import { probeVirtioPci } from '../../src/driver/probe.js';
import { MmioAllocator } from '../../src/driver/mmio-alloc.js';
import type { PciFunctionAccess } from '../../src/driver/access.js';
import { isVirtioError } from '../../src/errors.js';
import { rig } from './helpers.js';

/** A synthetic function: real header + BAR logic, capabilities written by hand. */
function fakeFunction(ids: { vendorId?: number; deviceId?: number; revisionId?: number; subsystemId?: number } = {}) {
  const cs = new PciConfigSpace(256);
  initType0Header(cs, { vendorId: ids.vendorId ?? 0x1af4, deviceId: ids.deviceId ?? 0x1042, revisionId: ids.revisionId ?? 1, classCode: 0xff0000, subsystemVendorId: 0x1af4, subsystemId: ids.subsystemId ?? 0x40 });
  new PciBars(cs, [
    { index: 0, size: 0x4000, is64: true },
    { index: 2, size: 0x1000 },
  ]);
  const caps: number[] = [];
  /** Append a virtio cap at `at`; link from the previous one. */
  const vcap = (at: number, cfgType: number, bar: number, offset: number, length: number, capLen = 16, extra?: number): void => {
    cs.set(at, 1, 0x09);
    cs.set(at + 1, 1, 0);
    cs.set(at + 2, 1, capLen);
    cs.set(at + 3, 1, cfgType);
    cs.set(at + 4, 1, bar);
    cs.set(at + 8, 4, offset);
    cs.set(at + 12, 4, length);
    if (extra !== undefined) cs.set(at + 16, 4, extra);
    link(at);
  };
  const link = (at: number): void => {
    if (caps.length === 0) cs.set(PCI_CAPABILITY_LIST, 1, at);
    else cs.set(caps[caps.length - 1]! + 1, 1, at);
    caps.push(at);
    cs.set(PCI_STATUS, 2, cs.get(PCI_STATUS, 2) | 0x10);
  };
  const access: PciFunctionAccess = {
    configRead: (off, size) => cs.read(off, size),
    configWrite: (off, size, v) => cs.write(off, size, v),
    mmioRead: () => 0,
    mmioWrite: () => undefined,
  };
  return { cs, vcap, link, access };
}

describe('probe: ids, BARs, command register', () => {
  it('[pci.discovery.driver.1] matches 0x1AF4 / 0x1040+id on the real transport and programs BARs from the allocator', async () => {
    const r = await rig({ policy: 'preferred' });
    const p = r.drv.probe;
    expect(p.vendorId).toBe(0x1af4);
    expect(p.deviceId).toBe(0x1040 + 42);
    expect(p.virtioDeviceId).toBe(42);
    // BAR 0 (64-bit), BAR 2 (32-bit MSI-X), BAR 4 (64-bit window): addresses agree with the device.
    const devBars = r.dev.bars;
    expect(p.bars.map((b) => b.index)).toEqual(devBars.map((b) => b.index));
    for (const b of p.bars) {
      const d = devBars.find((x) => x.index === b.index)!;
      expect(d.address).toBe(b.address);
      expect(d.size).toBe(b.size);
      expect(b.address % b.size).toBe(0);
      if (b.is64) expect(b.address).toBeGreaterThanOrEqual(0x8_0000_0000);
      else expect(b.address).toBeGreaterThanOrEqual(0xe000_0000);
    }
    expect(r.dev.pci.memoryEnabled).toBe(true);
    expect(r.dev.pci.busMaster).toBe(true);
    expect(p.swiotlb).toMatchObject({ cfgType: 10, bar: 4, offset: 0, length: 1 << 20 });
    expect(p.notify.multiplier).toBe(4);
    expect(p.msix?.tableSize).toBe(3);
  });

  it('[pci.discovery.driver.1] refuses a non-virtio vendor and a device id outside the ranges', () => {
    expect(() => probeVirtioPci(fakeFunction({ vendorId: 0x8086 }).access)).toThrow(/not virtio/);
    try {
      probeVirtioPci(fakeFunction({ deviceId: 0x1080 }).access);
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'INVALID_ARGUMENT')).toBe(true);
      expect((e as { clause?: string }).clause).toBe('pci.discovery.driver.1');
    }
  });

  it('[pci.discovery.driver.2] a transitional id takes the virtio id from the subsystem id', () => {
    const f = fakeFunction({ deviceId: 0x1001, subsystemId: 2, revisionId: 0 });
    f.vcap(0x40, 1, 0, 0, 0x100);
    f.vcap(0x50, 2, 0, 0x1000, 0x100, 20, 4);
    f.vcap(0x68, 3, 0, 0x2000, 4);
    const p = probeVirtioPci(f.access);
    expect(p.transitional).toBe(true);
    expect(p.virtioDeviceId).toBe(2);
  });

  it('[pci.discovery.driver.3] any revision id matches', async () => {
    const r = await rig({ device: { pci: { revisionId: 0xfe } } });
    expect(r.drv.probe.revisionId).toBe(0xfe);
  });

  it('[pci.general.device.1] BAR sizing restores and programs: a custom allocator window is honoured', async () => {
    const mmio = new MmioAllocator({ window32: { start: 0xc000_0000, end: 0xc100_0000 }, window64: { start: 0x40_0000_0000, end: 0x41_0000_0000 } });
    const r = await rig({ driver: { probe: { mmio } } });
    for (const b of r.dev.bars) expect(b.address).toBeGreaterThanOrEqual(b.is64 ? 0x40_0000_0000 : 0xc000_0000);
  });
});

describe('probe: capability walk', () => {
  it('[pci.caps.driver.1] [pci.caps.driver.3] [pci.caps.driver.4] reserved bar / cfg_type are ignored, a longer cap_len is accepted', () => {
    const f = fakeFunction();
    f.vcap(0x40, 1, 7, 0, 0x100); // reserved bar: ignored
    f.vcap(0x50, 7, 0, 0, 0x100); // reserved cfg_type: ignored
    f.vcap(0x60, 1, 0, 0x100, 0x40, 0x20); // cap_len 32 > 16: accepted
    f.vcap(0x80, 2, 0, 0x1000, 0x100, 20, 2);
    f.vcap(0x98, 3, 0, 0x2000, 1);
    const p = probeVirtioPci(f.access);
    expect(p.common).toMatchObject({ capOffset: 0x60, bar: 0, offset: 0x100, length: 0x40 });
    expect(p.notify).toMatchObject({ multiplier: 2, offset: 0x1000 });
    expect(p.ignoredCaps.map((c) => c.capOffset)).toEqual([0x40]);
    expect(p.ignoredCaps[0]!.reason).toMatch(/reserved/);
  });

  it('[pci.caps.driver.2] the first usable capability of each type wins; one outside its BAR is skipped', () => {
    const f = fakeFunction();
    f.vcap(0x40, 1, 0, 0x3f00, 0x200); // beyond the 16 KiB BAR: skipped
    f.vcap(0x50, 1, 0, 0x0, 0x100);
    f.vcap(0x60, 1, 0, 0x800, 0x100); // second usable one: ignored
    f.vcap(0x70, 2, 0, 0x1000, 0x100, 20, 0);
    f.vcap(0x88, 3, 2, 0x0, 4);
    const p = probeVirtioPci(f.access);
    expect(p.common.capOffset).toBe(0x50);
    expect(p.isr).toMatchObject({ bar: 2, offset: 0 });
    expect(p.ignoredCaps.find((c) => c.capOffset === 0x40)?.reason).toMatch(/exceeds the BAR/);
  });

  it('a cap_next loop ends the walk (loop guard); missing notify is a clean PROTOCOL error', () => {
    const f = fakeFunction();
    f.vcap(0x40, 1, 0, 0, 0x100);
    f.vcap(0x50, 3, 0, 0x2000, 4);
    f.cs.set(0x51, 1, 0x40); // loop back
    try {
      probeVirtioPci(f.access);
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'PROTOCOL')).toBe(true);
      expect((e as Error).message).toMatch(/notification/);
    }
  });

  it('[pci.caps.driver.7] probing writes nothing into capability structures', async () => {
    const r = await rig({ policy: 'preferred' });
    const before: number[] = [];
    for (let o = 0x40; o < 0x100; o += 4) before.push(r.dev.configRead(o, 4));
    const r2 = probeVirtioPci(r.dev);
    expect(r2.common.length).toBeGreaterThan(0);
    for (let o = 0x40, i = 0; o < 0x100; o += 4, i++) expect(r.dev.configRead(o, 4)).toBe(before[i]);
  });

  it('the SWIOTLB capability type is configurable on both sides', async () => {
    const r = await rig({ policy: 'preferred', device: { swiotlb: { policy: 'preferred', size: 1 << 20, backing: 'shared', cfgType: 0x80 } }, driver: { probe: { swiotlbCfgType: 0x80 } } });
    expect(r.drv.probe.swiotlb).toMatchObject({ cfgType: 0x80, bar: 4 });
    const r2 = await rig({ policy: 'preferred', device: { swiotlb: { policy: 'preferred', size: 1 << 20, backing: 'shared', cfgType: 0x80 } } });
    expect(r2.drv.probe.swiotlb).toBeUndefined();
    r2.drv.init();
    expect(r2.drv.swiotlb).toBe(false); // offered, but no capability found: declined with a reason
    expect(r2.drv.swiotlbUnusableReason).toMatch(/no SWIOTLB capability/);
  });
});
