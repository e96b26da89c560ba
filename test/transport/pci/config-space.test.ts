import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PciConfigSpace,
  initType0Header,
  PCI_COMMAND,
  PCI_STATUS,
  PCI_STATUS_W1C,
  PCI_CAPABILITY_LIST,
  PCI_INTERRUPT_LINE,
} from '../../../src/transport/pci/config-space.js';
import { CapabilityList, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_VENDOR_CFG } from '../../../src/transport/pci/capabilities.js';

function header(): PciConfigSpace {
  const s = new PciConfigSpace();
  initType0Header(s, { vendorId: 0x1af4, deviceId: 0x1042, revisionId: 1, classCode: 0x010000, subsystemVendorId: 0x1af4, subsystemId: 0x40 });
  return s;
}

describe('PCI config space', () => {
  it('[pci.general.device.1] read-only fields ignore writes; command and interrupt line are writable', () => {
    const s = header();
    s.write(0, 4, 0);
    expect(s.read(0, 4)).toBe(0x10421af4);
    s.write(PCI_COMMAND, 2, 0xffff);
    expect(s.read(PCI_COMMAND, 2)).toBe(0x0546); // no I/O space
    s.write(PCI_INTERRUPT_LINE, 1, 11);
    expect(s.read(PCI_INTERRUPT_LINE, 1)).toBe(11);
  });

  it('[pci.general.device.1] status error bits are write-1-to-clear', () => {
    const s = header();
    s.set(PCI_STATUS, 2, 0x2000 | 0x0010);
    s.write(PCI_STATUS, 2, 0);
    expect(s.read(PCI_STATUS, 2)).toBe(0x2010);
    s.write(PCI_STATUS, 2, 0xffff);
    expect(s.read(PCI_STATUS, 2)).toBe(0x0010);
    expect(PCI_STATUS_W1C & 0x0010).toBe(0);
  });

  it('[pci.general.device.1] bad accesses never throw: all-ones reads, dropped writes', () => {
    const s = header();
    expect(s.read(4096, 4)).toBe(0xffffffff);
    expect(s.read(4094, 4)).toBe(0xffffffff);
    expect(s.read(0, 3)).toBe(0xffffff);
    expect(s.read(-1, 1)).toBe(0xff);
    expect(s.read(1.5, 2)).toBe(0xffff);
    expect(() => s.write(4096, 4, 1)).not.toThrow();
    expect(() => s.write(0, 8, 1)).not.toThrow();
    expect(s.badAccesses).toBe(7);
  });

  it('[pci.general.device.1] extended space 0x100-0xFFF reads 0 and is read-only', () => {
    const s = header();
    fc.assert(
      fc.property(fc.integer({ min: 0x100, max: 0xffc }), fc.constantFrom(1, 2, 4), fc.integer({ min: 0, max: 0xffffffff }), (off, size, v) => {
        const o = off - (off % size);
        s.write(o, size, v);
        expect(s.read(o, size)).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('[pci.caps.device.1] capability list: pointer at 0x34, status cap bit, cap_len, linked walk', () => {
    const s = header();
    const caps = new CapabilityList(s, (b) => (b === 0 ? 0x4000 : 0));
    caps.addCommonCfg({ bar: 0, offset: 0, length: 0x1000 });
    caps.addNotifyCfg({ bar: 0, offset: 0x3000, length: 0x1000 }, { multiplier: 4, maxNotifyOff: 3, notificationData: true });
    caps.addVendorData(0x8086, new Uint8Array([1, 2, 3]));
    caps.addPciCfg();
    expect(s.read(PCI_STATUS, 2) & 0x10).toBe(0x10);
    const seen: Array<[number, number, number]> = [];
    for (let p = s.read(PCI_CAPABILITY_LIST, 1); p !== 0; p = s.read(p + 1, 1)) {
      expect(p % 4).toBe(0);
      seen.push([s.read(p, 1), s.read(p + 3, 1), s.read(p + 2, 1)]);
    }
    expect(seen).toEqual([
      [9, VIRTIO_PCI_CAP_COMMON_CFG, 16],
      [9, VIRTIO_PCI_CAP_NOTIFY_CFG, 20],
      [9, VIRTIO_PCI_CAP_VENDOR_CFG, 12],
      [9, 5, 20],
    ]);
  });

  it('[pci.caps.driver.7] virtio capabilities are read-only to the driver', () => {
    const s = header();
    const caps = new CapabilityList(s, () => 0x4000);
    const off = caps.addCommonCfg({ bar: 0, offset: 0, length: 0x1000 });
    const before = [0, 4, 8, 12].map((i) => s.read(off + i, 4));
    for (const i of [0, 4, 8, 12]) s.write(off + i, 4, 0xa5a5a5a5);
    expect([0, 4, 8, 12].map((i) => s.read(off + i, 4))).toEqual(before);
  });

  it('[pci.common-cfg.device.1] [pci.dev-cfg.device.1] [pci.notify.device.2] [pci.notify.device.7] alignment is enforced at build time', () => {
    const caps = new CapabilityList(header(), () => 0x4000);
    expect(() => caps.addCommonCfg({ bar: 0, offset: 2, length: 64 })).toThrow(/4-byte/);
    expect(() => caps.addDeviceCfg({ bar: 0, offset: 0x2002, length: 8 })).toThrow(/4-byte/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0x3001, length: 0x100 }, { multiplier: 4, maxNotifyOff: 0, notificationData: false })).toThrow(/2-byte/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0x3002, length: 0x100 }, { multiplier: 4, maxNotifyOff: 0, notificationData: true })).toThrow(/4-byte/);
  });

  it('[pci.notify.device.3] [pci.notify.device.6] [pci.notify.device.5] [pci.notify.device.9] multiplier and length rules', () => {
    const caps = new CapabilityList(header(), () => 0x4000);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0, length: 0x100 }, { multiplier: 3, maxNotifyOff: 0, notificationData: false })).toThrow(/multiplier/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0, length: 0x100 }, { multiplier: 2, maxNotifyOff: 0, notificationData: true })).toThrow(/multiple of 4/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0, length: 9 }, { multiplier: 4, maxNotifyOff: 2, notificationData: false })).toThrow(/too small/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0, length: 11 }, { multiplier: 4, maxNotifyOff: 2, notificationData: true })).toThrow(/too small/);
    expect(() => caps.addNotifyCfg({ bar: 0, offset: 0, length: 12 }, { multiplier: 4, maxNotifyOff: 2, notificationData: true })).not.toThrow();
  });

  it('[pci.vendor-data.device.1] [pci.vendor-data.device.2] [pci.shm-cap.device.1] [pci.shm-cap.device.2] vendor and shared-memory caps', () => {
    const s = header();
    const caps = new CapabilityList(s, (b) => (b === 4 ? 0x1_0000_0000 * 2 : 0));
    expect(() => caps.addVendorData(0x1af4)).toThrow(/0x1AF4/);
    const v = caps.addVendorData(0x1234, new Uint8Array(5));
    expect(s.read(v + 2, 1) % 4).toBe(0);
    expect(s.read(v + 4, 2)).toBe(0x1234);
    const shm = caps.addSharedMemory(1, 4, 0x1_0000_0000, 0x8000_0000);
    expect(s.read(shm + 2, 1)).toBe(24);
    expect(s.read(shm + 3, 1)).toBe(8);
    expect(s.read(shm + 5, 1)).toBe(1);
    expect(s.read(shm + 8, 4)).toBe(0);
    expect(s.read(shm + 16, 4)).toBe(1);
    expect(s.read(shm + 12, 4)).toBe(0x8000_0000);
    expect(s.read(shm + 20, 4)).toBe(0);
    expect(() => caps.addSharedMemory(1, 4, 0, 0x1000)).toThrow(/already used/);
    expect(() => caps.addSharedMemory(2, 4, 0x1_8000_0000, 0x8000_0001)).toThrow(/must lie/);
  });

  it('[pci.caps.device.1] the list refuses to overflow the 256-byte header', () => {
    const caps = new CapabilityList(header(), () => 0x4000);
    expect(() => {
      for (let i = 0; i < 20; i++) caps.addPciCfg();
    }).toThrow(/full/);
  });
});
