import { describe, expect, it } from 'vitest';
import { BAR_ADDR, enable, rig } from './helpers.js';
import {
  VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_DEVICE_CFG,
  VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_CAP_PCI_CFG,
} from '../../../src/transport/pci/capabilities.js';
import type { VirtioPciDevice } from '../../../src/transport/pci/virtio-pci-device.js';

interface FoundCap {
  at: number;
  cfgType: number;
  bar: number;
  offset: number;
  length: number;
  capLen: number;
}

/** Walk the list the way Linux virtio_pci_modern does: from 0x34, follow cap_next, keep vendor caps. */
function walk(dev: VirtioPciDevice): { vendor: FoundCap[]; ids: number[] } {
  const vendor: FoundCap[] = [];
  const ids: number[] = [];
  let guard = 0;
  for (let p = dev.configRead(0x34, 1) & 0xfc; p !== 0; p = dev.configRead(p + 1, 1) & 0xfc) {
    if (++guard > 48) throw new Error('capability list loops');
    const id = dev.configRead(p, 1);
    ids.push(id);
    if (id !== 0x09) continue;
    vendor.push({ at: p, cfgType: dev.configRead(p + 3, 1), bar: dev.configRead(p + 4, 1), offset: dev.configRead(p + 8, 4), length: dev.configRead(p + 12, 4), capLen: dev.configRead(p + 2, 1) });
  }
  return { vendor, ids };
}

function barSize(dev: VirtioPciDevice, bar: number): number {
  return dev.bars.find((b) => b.index === bar)?.size ?? 0;
}

describe('virtio-pci header', () => {
  it('[pci.discovery.device.1] [pci.discovery.device.2] [pci.discovery.device.4] vendor 0x1AF4, device 0x1040 + virtio id', () => {
    const { dev } = rig();
    expect(dev.configRead(0x00, 2)).toBe(0x1af4);
    expect(dev.configRead(0x02, 2)).toBe(0x1041);
    expect(dev.configRead(0x00, 4)).toBe(0x10411af4);
  });

  it('[pci.discovery.device.5] [pci.discovery.device.6] revision ≥ 1, subsystem ids, class, header type, pin', () => {
    const { dev } = rig();
    expect(dev.configRead(0x08, 1)).toBeGreaterThanOrEqual(1);
    expect(dev.configRead(0x2c, 2)).toBe(0x1af4);
    expect(dev.configRead(0x2e, 2)).toBeGreaterThanOrEqual(0x40);
    expect(dev.configRead(0x09, 4) & 0xffffff).toBe(0x020000); // net controller
    expect(dev.configRead(0x0e, 1)).toBe(0);
    expect(dev.configRead(0x3d, 1)).toBe(1);
    expect(() => rig({ pci: { revisionId: 0 } })).toThrow(/revisionId/);
    expect(() => rig({ pci: { subsystemId: 0x3f } })).toThrow(/subsystemId/);
  });

  it('[pci.general.device.1] status has the capability-list bit; pointer at 0x34 is dword aligned; extended space reads 0', () => {
    const { dev } = rig();
    expect(dev.configRead(0x06, 2) & 0x10).toBe(0x10);
    const p = dev.configRead(0x34, 1);
    expect(p).toBeGreaterThanOrEqual(0x40);
    expect(p % 4).toBe(0);
    for (let off = 0x100; off < 0x1000; off += 0x7c) expect(dev.configRead(off, 4)).toBe(0);
  });
});

describe('virtio-pci capability list (walked like Linux virtio_pci_modern)', () => {
  it('[pci.common-cfg.device.2] [pci.notify.device.1] [pci.isr.device.1] [pci.pci-cfg-access.device.1] every required structure is present', () => {
    const { dev } = rig();
    const { vendor, ids } = walk(dev);
    const types = vendor.map((c) => c.cfgType);
    for (const t of [VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_PCI_CFG]) expect(types).toContain(t);
    expect(ids).toContain(0x11); // MSI-X
  });

  it('[pci.caps.device.1] [pci.common-cfg.device.1] [pci.dev-cfg.device.1] [pci.notify.device.7] alignment, cap_len and BAR ranges', () => {
    const { dev } = rig();
    for (const c of walk(dev).vendor) {
      expect(c.at % 4).toBe(0);
      if (c.cfgType === VIRTIO_PCI_CAP_PCI_CFG) {
        expect(c.capLen).toBe(20);
        continue;
      }
      expect(c.capLen).toBe(c.cfgType === VIRTIO_PCI_CAP_NOTIFY_CFG ? 20 : 16);
      expect(c.bar).toBeLessThanOrEqual(5);
      expect(c.offset + c.length).toBeLessThanOrEqual(barSize(dev, c.bar));
      if (c.cfgType === VIRTIO_PCI_CAP_COMMON_CFG) {
        expect(c.offset % 4).toBe(0);
        expect(c.length).toBeGreaterThanOrEqual(64);
      }
      if (c.cfgType === VIRTIO_PCI_CAP_DEVICE_CFG) {
        expect(c.offset % 4).toBe(0);
        expect(c.length).toBe(8);
      }
      if (c.cfgType === VIRTIO_PCI_CAP_NOTIFY_CFG) expect(c.offset % 4).toBe(0);
    }
  });

  it('[pci.notify.device.6] [pci.notify.device.8] [pci.notify.device.9] notify multiplier and length cover every queue', () => {
    const { dev, core } = rig();
    const n = walk(dev).vendor.find((c) => c.cfgType === VIRTIO_PCI_CAP_NOTIFY_CFG)!;
    const mult = dev.configRead(n.at + 16, 4);
    expect(mult === 0 || (mult % 4 === 0 && (mult & (mult - 1)) === 0)).toBe(true);
    for (let q = 0; q < core.numQueues; q++) expect(n.length).toBeGreaterThanOrEqual(core.queueRegs(q)!.notifyOff * mult + 4);
  });

  it('[pci.caps.driver.7] capabilities ignore driver writes except the PCI_CFG window fields', () => {
    const { dev } = rig();
    const { vendor } = walk(dev);
    const common = vendor.find((c) => c.cfgType === VIRTIO_PCI_CAP_COMMON_CFG)!;
    dev.configWrite(common.at + 8, 4, 0x1234);
    dev.configWrite(common.at + 4, 1, 3);
    expect(dev.configRead(common.at + 8, 4)).toBe(common.offset);
    expect(dev.configRead(common.at + 4, 1)).toBe(common.bar);
    const pc = vendor.find((c) => c.cfgType === VIRTIO_PCI_CAP_PCI_CFG)!;
    dev.configWrite(pc.at + 12, 4, 2);
    expect(dev.configRead(pc.at + 12, 4)).toBe(2);
  });

  it('[pci.vendor-data.device.1] [pci.shm-cap.device.1] optional vendor and shared-memory caps appear in the walk', () => {
    const { dev } = rig({ pci: { vendorCaps: [{ vendorId: 0x8086, data: new Uint8Array([0xaa]) }], extraBars: [{ index: 3, size: 0x10000 }], sharedMemory: [{ shmid: 0, bar: 3, offset: 0x1000, length: 0x2000 }] } });
    const v = walk(dev).vendor;
    const vd = v.find((c) => c.cfgType === 9)!;
    expect(dev.configRead(vd.at + 4, 2)).toBe(0x8086);
    expect(vd.capLen % 4).toBe(0);
    const shm = v.find((c) => c.cfgType === 8)!;
    expect(shm).toMatchObject({ bar: 3, offset: 0x1000, length: 0x2000, capLen: 24 });
  });
});

describe('virtio-pci BARs', () => {
  it('[pci.general.device.1] sizing: 64-bit structure BAR and 32-bit MSI-X BAR report their sizes', () => {
    const { dev } = rig();
    const sizes: Record<number, number> = {};
    for (const b of dev.bars) {
      const off = 0x10 + b.index * 4;
      dev.configWrite(off, 4, 0xffffffff);
      const lo = dev.configRead(off, 4);
      expect(lo & 0x1).toBe(0); // memory BAR
      expect((lo >>> 1) & 0x3).toBe(b.is64 ? 2 : 0);
      expect((lo & 0x8) !== 0).toBe(b.prefetchable);
      const size = ((~(lo & 0xfffffff0) >>> 0) + 1) >>> 0;
      if (b.is64) {
        dev.configWrite(off + 4, 4, 0xffffffff);
        expect(dev.configRead(off + 4, 4)).toBe(0xffffffff);
      }
      sizes[b.index] = size;
    }
    expect(sizes[0]).toBe(barSize(dev, 0));
    expect(sizes[2]).toBe(barSize(dev, 2));
    expect(dev.bars.map((b) => [b.index, b.is64])).toEqual([
      [0, true],
      [2, false],
    ]);
  });

  it('[pci.general.device.1] memory-space enable gates BAR accesses (all-ones reads, dropped writes)', () => {
    const { dev, core } = rig();
    expect(dev.barRead(0, 18, 2)).toBe(0xffff); // num_queues invisible
    dev.barWrite(0, 20, 1, 1);
    expect(core.status).toBe(0);
    enable(dev);
    expect(dev.barRead(0, 18, 2)).toBe(3);
    expect(dev.mmioRead(BAR_ADDR[0]! + 18, 2)).toBe(3);
    dev.configWrite(0x04, 2, 0x0004); // memory off, bus master on
    expect(dev.barRead(0, 18, 2)).toBe(0xffff);
    expect(dev.stats.memoryDisabledAccesses).toBeGreaterThan(0);
    expect(dev.barRead(1, 0, 4)).toBe(0xffffffff);
  });

  it('[pci.general.device.1] unimplemented BARs and out-of-BAR offsets read all-ones', () => {
    const { dev } = rig();
    enable(dev);
    expect(dev.barRead(5, 0, 4)).toBe(0xffffffff);
    expect(dev.barRead(0, 0x100000, 4)).toBe(0xffffffff);
    expect(dev.barRead(0, -4, 4)).toBe(0xffffffff);
  });
});
