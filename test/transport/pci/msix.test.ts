import { describe, expect, it } from 'vitest';
import { PciConfigSpace, initType0Header, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_STATUS, PCI_STATUS_INTERRUPT } from '../../../src/transport/pci/config-space.js';
import { PciBars } from '../../../src/transport/pci/bar.js';
import { CapabilityList, PCI_CAP_ID_MSIX } from '../../../src/transport/pci/capabilities.js';
import { Msix, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL } from '../../../src/transport/pci/msix.js';
import { IsrState, VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE } from '../../../src/transport/pci/isr.js';

function setup(vectors = 4) {
  const space = new PciConfigSpace();
  initType0Header(space, { vendorId: 0x1af4, deviceId: 0x1041, revisionId: 1, classCode: 0xff0000, subsystemVendorId: 0x1af4, subsystemId: 0x40 });
  const bars = new PciBars(space, [{ index: 2, size: 0x1000 }]);
  const caps = new CapabilityList(space, (b) => bars.size(b));
  const msgs: Array<[number, number, number]> = [];
  const msix = new Msix(space, caps, { vectors, tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x800 }, (a, d, v) => msgs.push([a, d, v]));
  const isr = new IsrState(space, () => msix.enabled);
  const levels: boolean[] = [];
  isr.onIntx((l) => levels.push(l));
  msix.onEnableChange(() => isr.update());
  const ctl = msix.capOffset + 2;
  return { space, msix, isr, msgs, levels, ctl };
}

function program(msix: Msix, v: number, addr: number, data: number): void {
  msix.tableWrite(v * 16, 4, addr);
  msix.tableWrite(v * 16 + 4, 4, 0);
  msix.tableWrite(v * 16 + 8, 4, data);
}

describe('MSI-X', () => {
  it('[pci.msix.device.2] capability reports Table Size N-1, table and PBA BIR/offset', () => {
    const { space, msix } = setup(4);
    expect(space.read(msix.capOffset, 1)).toBe(PCI_CAP_ID_MSIX);
    expect(space.read(msix.capOffset + 2, 2) & 0x7ff).toBe(3);
    expect(space.read(msix.capOffset + 4, 4)).toBe(0x0 | 2);
    expect(space.read(msix.capOffset + 8, 4)).toBe(0x800 | 2);
    // Table size is read-only
    space.write(msix.capOffset + 2, 2, 0x07ff);
    expect(space.read(msix.capOffset + 2, 2) & 0x7ff).toBe(3);
  });

  it('[pci.msix.device.2] entries start masked; only the mask bit of vector control is writable', () => {
    const { msix } = setup();
    for (let v = 0; v < 4; v++) expect(msix.tableRead(v * 16 + 12, 4)).toBe(1);
    msix.tableWrite(12, 4, 0xfffffffe);
    expect(msix.tableRead(12, 4)).toBe(0);
    msix.tableWrite(12, 4, 0xffffffff);
    expect(msix.tableRead(12, 4)).toBe(1);
  });

  it('[pci.msix.device.4] a message goes to the programmed address/data when enabled and unmasked', () => {
    const { space, msix, msgs, ctl } = setup();
    program(msix, 1, 0xfee00000, 0x4041);
    msix.tableWrite(16 + 12, 4, 0);
    expect(msix.notify(1)).toBe(false); // disabled → INTx fallback
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    expect(msix.notify(1)).toBe(true);
    expect(msgs).toEqual([[0xfee00000, 0x4041, 1]]);
  });

  it('[pci.msix.device.4] pending bit set while masked, delivered on unmask, PBA read-only', () => {
    const { space, msix, msgs, ctl } = setup();
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    program(msix, 2, 0xfee01000, 7);
    expect(msix.notify(2)).toBe(true); // masked (reset state)
    expect(msgs).toHaveLength(0);
    expect(msix.pbaRead(0, 4)).toBe(1 << 2);
    msix.pbaWrite(0, 4, 0);
    expect(msix.pbaRead(0, 4)).toBe(1 << 2);
    msix.tableWrite(2 * 16 + 12, 4, 0); // unmask
    expect(msgs).toEqual([[0xfee01000, 7, 2]]);
    expect(msix.pbaRead(0, 4)).toBe(0);
  });

  it('[pci.msix.device.4] function mask holds every vector pending until cleared', () => {
    const { space, msix, msgs, ctl } = setup();
    for (let v = 0; v < 4; v++) {
      program(msix, v, 0xfee00000 + v * 0x1000, v);
      msix.tableWrite(v * 16 + 12, 4, 0);
    }
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    msix.notify(0);
    msix.notify(3);
    expect(msgs).toHaveLength(0);
    expect(msix.pbaRead(0, 1)).toBe(0b1001);
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    expect(msgs.map((m) => m[2])).toEqual([0, 3]);
    expect(msix.pbaRead(0, 1)).toBe(0);
  });

  it('[pci.msix.device.2] out-of-range vectors and table offsets are harmless', () => {
    const { space, msix, msgs, ctl } = setup();
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    expect(msix.notify(4)).toBe(false);
    expect(msix.notify(0xffff)).toBe(false);
    expect(msix.tableRead(4 * 16, 4)).toBe(0);
    expect(() => msix.tableWrite(1 << 20, 4, 1)).not.toThrow();
    expect(msgs).toHaveLength(0);
  });
});

describe('ISR and INTx', () => {
  it('[pci.isr.device.4] ISR bits assert INTx and set status Interrupt when MSI-X is disabled', () => {
    const { space, isr, levels } = setup();
    isr.raise(VIRTIO_PCI_ISR_QUEUE);
    expect(levels).toEqual([true]);
    expect(space.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
  });

  it('[pci.isr.device.5] a read returns the bits, clears them and de-asserts INTx', () => {
    const { space, isr, levels } = setup();
    isr.raise(VIRTIO_PCI_ISR_QUEUE);
    isr.raise(VIRTIO_PCI_ISR_CONFIG);
    expect(isr.readAndClear()).toBe(3);
    expect(isr.readAndClear()).toBe(0);
    expect(levels).toEqual([true, false]);
    expect(space.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(0);
  });

  it('[pci.isr.device.4] command Interrupt Disable masks INTx but not the status bit', () => {
    const { space, isr, levels } = setup();
    space.write(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    isr.raise(VIRTIO_PCI_ISR_QUEUE);
    expect(levels).toEqual([]);
    expect(space.read(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT).toBe(PCI_STATUS_INTERRUPT);
    space.write(PCI_COMMAND, 2, 0);
    isr.update();
    expect(levels).toEqual([true]);
  });

  it('[pci.isr.device.3] with MSI-X enabled INTx stays de-asserted', () => {
    const { space, isr, levels, ctl } = setup();
    space.write(ctl, 2, PCI_MSIX_FLAGS_ENABLE);
    isr.raise(VIRTIO_PCI_ISR_QUEUE);
    expect(levels).toEqual([]);
    expect(isr.value).toBe(1);
    space.write(ctl, 2, 0); // disabling MSI-X exposes the pending ISR on INTx
    expect(levels).toEqual([true]);
  });
});
