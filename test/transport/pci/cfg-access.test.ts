import { describe, expect, it } from 'vitest';
import { rig } from './helpers.js';
import { COMMON_CFG as C } from '../../../src/transport/pci/common-cfg.js';
import { VIRTIO_PCI_CAP_PCI_CFG } from '../../../src/transport/pci/capabilities.js';

function windowCap(r: ReturnType<typeof rig>): number {
  return r.dev.capabilities.find(VIRTIO_PCI_CAP_PCI_CFG)!.offset;
}

/** Point the window and read pci_cfg_data, as firmware without BAR mappings would. */
function viaWindow(r: ReturnType<typeof rig>, bar: number, off: number, len: number) {
  const cap = windowCap(r);
  r.dev.configWrite(cap + 4, 1, bar);
  r.dev.configWrite(cap + 12, 4, len);
  r.dev.configWrite(cap + 8, 4, off);
  return {
    read: () => r.dev.configRead(cap + 16, 4) & (len === 4 ? 0xffffffff : (1 << (len * 8)) - 1),
    write: (v: number) => r.dev.configWrite(cap + 16, 4, v),
  };
}

describe('VIRTIO_PCI_CAP_PCI_CFG window', () => {
  it('[pci.pci-cfg-access.device.3] reading pci_cfg_data reads common cfg (memory space off)', () => {
    const r = rig();
    expect(r.dev.memoryEnabled).toBe(false);
    const bar = r.dev.layout.common.bar;
    expect(viaWindow(r, bar, C.NUM_QUEUES, 2).read()).toBe(3);
    r.core.writeDeviceFeatureSelect(1);
    expect(viaWindow(r, bar, C.DEVICE_FEATURE, 4).read()).toBe(r.core.offered.word(1));
  });

  it('[pci.pci-cfg-access.device.2] writing pci_cfg_data writes the BAR (device_status, queue_select)', () => {
    const r = rig();
    const bar = r.dev.layout.common.bar;
    viaWindow(r, bar, C.DEVICE_STATUS, 1).write(1);
    expect(r.core.status).toBe(1);
    viaWindow(r, bar, C.QUEUE_SELECT, 2).write(0xaa0001); // only the first 2 bytes count
    expect(r.core.queueSelect).toBe(1);
    expect(viaWindow(r, bar, C.QUEUE_SIZE, 2).read()).toBe(128);
  });

  it('[pci.pci-cfg-access.driver.1] a misaligned or odd-length window performs no access', () => {
    const r = rig();
    const bar = r.dev.layout.common.bar;
    viaWindow(r, bar, C.DEVICE_STATUS + 1, 2).write(1);
    viaWindow(r, bar, C.DEVICE_STATUS, 3).write(1);
    expect(r.core.status).toBe(0);
    expect(r.dev.cfgAccess.refused).toBe(2);
  });

  it('[pci.pci-cfg-access.driver.2] a window outside every virtio structure performs no access', () => {
    const r = rig();
    const m = r.dev.layout.msix!;
    viaWindow(r, m.bar, m.tableOffset, 4).write(0x1234); // MSI-X table is no virtio structure
    expect(r.dev.msix!.tableRead(0, 4)).toBe(0);
    viaWindow(r, 5, 0, 4).read();
    expect(r.dev.cfgAccess.refused).toBe(2);
  });

  it('[pci.isr.device.5] the window reaches the ISR too (read clears)', () => {
    const r = rig();
    r.dev.isr.raise(1);
    const isr = r.dev.layout.isr;
    expect(viaWindow(r, isr.bar, isr.offset, 1).read()).toBe(1);
    expect(r.dev.isr.value).toBe(0);
  });
});
