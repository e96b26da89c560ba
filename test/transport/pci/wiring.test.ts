import { describe, expect, it } from 'vitest';
import { VirtioDeviceCore } from '../../../src/device/core.js';
import { createVirtioPciDevice, LateBoundHooks } from '../../../src/transport/pci/virtio-pci-device.js';
import { COMMON_CFG as C } from '../../../src/transport/pci/common-cfg.js';
import { cc, enable, FakeModel, fakeFactory, negotiate, ram, setupQueue, V1, type FakeQueue } from './helpers.js';

describe('wiring and function-level reset', () => {
  it('[pci.isr.device.3] a core built with LateBoundHooks is bound to the PCI function', () => {
    const model = new FakeModel();
    const hooks = new LateBoundHooks();
    const queues: FakeQueue[] = [];
    const core = new VirtioDeviceCore({ model, space: ram(), hooks, queueFactories: { split: fakeFactory(queues) }, transport: 'pci' });
    const levels: boolean[] = [];
    const dev = createVirtioPciDevice(core, { hooks, onIntx: (l) => levels.push(l) });
    enable(dev);
    negotiate(dev, V1);
    setupQueue(dev, 0);
    cc(dev).w(C.DEVICE_STATUS, 1, 0xf);
    model.ctx!.interrupt(0);
    expect(levels).toEqual([true]);
  });

  it('[pci.general.device.1] reset(): virtio reset, command 0, BARs 0, MSI-X disabled', () => {
    const model = new FakeModel();
    const dev = createVirtioPciDevice((hooks) => new VirtioDeviceCore({ model, space: ram(), hooks, queueFactories: { split: fakeFactory([]) }, transport: 'pci' }));
    enable(dev);
    negotiate(dev, V1);
    dev.configWrite(dev.msix!.capOffset + 2, 2, 0x8000);
    const moved: number[] = [];
    dev.onBarChange((c) => moved.push(c.index));
    dev.reset();
    expect(dev.core.status).toBe(0);
    expect(dev.configRead(0x04, 2)).toBe(0);
    expect(dev.bars.every((b) => b.address === 0)).toBe(true);
    expect(moved.sort()).toEqual([0, 2]);
    expect(dev.msix!.enabled).toBe(false);
    expect(dev.barRead(0, 18, 2)).toBe(0xffff);
  });
});
