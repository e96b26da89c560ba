import { describe, expect, it } from 'vitest';
import { CC } from '../../src/driver/pci-regs.js';
import { isVirtioError } from '../../src/errors.js';
import { DEFAULT_MSI_ADDRESS, DEFAULT_MSI_DATA_BASE } from '../../src/driver/driver.js';
import { rig, pattern } from './helpers.js';

describe('MSI-X vectors and interrupt delivery', () => {
  it('[pci.msix.driver.4] [pci.msix.driver.5] per-queue vectors: config 0, queue i → 1+i, read back and used by the device', async () => {
    const r = await rig({ numQueues: 2 });
    const msgs: Array<[number, number, number]> = [];
    r.dev.onMsi((a, d, v) => msgs.push([a, d, v]));
    r.drv.init();
    expect(r.drv.interruptMode).toBe('per-queue');
    expect(r.dev.core.readConfigMsixVector()).toBe(0);
    expect(r.dev.core.queueRegs(0)!.msixVector).toBe(1);
    expect(r.dev.core.queueRegs(1)!.msixVector).toBe(2);
    expect(r.dev.pci.msix!.enabled).toBe(true);
    expect(r.dev.pci.msix!.entry(2)).toEqual({ address: DEFAULT_MSI_ADDRESS, data: DEFAULT_MSI_DATA_BASE + 2, masked: false });
    const res = await r.drv.queue(1).submit([pattern(32)], [32]);
    expect(res.data[0]).toEqual(pattern(32));
    expect(msgs).toEqual([[DEFAULT_MSI_ADDRESS, DEFAULT_MSI_DATA_BASE + 2, 2]]);
    expect(r.drv.stats.msi).toBe(1);
  });

  it('[pci.isr.driver.1] with MSI-X enabled the driver never reads ISR', async () => {
    const r = await rig({ spy: true });
    r.drv.init();
    for (let i = 0; i < 5; i++) await r.drv.queue(0).submit([pattern(8, i)], [8]);
    const isr = r.drv.regs.addrs.isr;
    expect(r.spy!.reads.some(([a]) => a === isr)).toBe(false);
    expect(r.drv.stats.isrReads).toBe(0);
  });

  it('[pci.msix.driver.6] a queue vector read back as NO_VECTOR makes the driver fall back to a shared vector', async () => {
    const r = await rig({ spy: true, numQueues: 2 });
    const c = r.drv.regs.addrs.common;
    let selected = 0;
    r.spy!.writeHook = (a, _s, v) => {
      if (a === c + CC.QUEUE_SELECT) selected = v;
      return false;
    };
    // The device "fails" to map vector 2 (queue 1 in per-queue mode).
    r.spy!.readHook = (a, s, v) => (a === c + CC.QUEUE_MSIX_VECTOR && s === 2 && selected === 1 && v === 2 ? 0xffff : v);
    r.drv.init();
    expect(r.drv.stats.vectorFailures).toBe(1);
    expect(r.drv.interruptMode).toBe('shared');
    expect(r.dev.core.queueRegs(0)!.msixVector).toBe(1);
    expect(r.dev.core.queueRegs(1)!.msixVector).toBe(1);
    const [a, b] = await Promise.all([r.drv.queue(0).submit([pattern(5)], [5]), r.drv.queue(1).submit([pattern(6)], [6])]);
    expect(a.len + b.len).toBe(11);
  });

  it('[pci.msix.driver.1] a 2-entry table gives shared vectors; [pci.msix.driver.2] a 1-entry table a single vector', async () => {
    const s = await rig({ numQueues: 2, msixVectors: 2 });
    s.drv.init();
    expect(s.drv.interruptMode).toBe('shared');
    await s.drv.queue(1).submit([pattern(3)], [3]);
    const one = await rig({ numQueues: 2, msixVectors: 1 });
    one.drv.init();
    expect(one.drv.interruptMode).toBe('single');
    const res = await one.drv.queue(1).submit([pattern(3)], [3]);
    expect(res.len).toBe(3);
    const noSingle = await rig({ numQueues: 2, msixVectors: 1, driver: { singleVector: false } });
    noSingle.drv.init();
    expect(noSingle.drv.interruptMode).toBe('intx');
  });

  it('[pci.notif-dev-cfg-changes.driver.1] one vector for queues and config: a config change is seen via config_generation', async () => {
    const r = await rig({ numQueues: 2, msixVectors: 1 });
    r.drv.init();
    let changes = 0;
    r.drv.onConfigChange = () => changes++;
    await r.drv.queue(0).submit([pattern(3)], [3]);
    expect(changes).toBe(0); // a queue interrupt on the shared vector is not a config change
    r.model.changeConfig(0x55);
    expect(changes).toBe(1);
    expect(r.drv.readConfig(0, 4)).toBe(0x55);
  });

  it('config changes arrive on the config vector with per-queue vectors', async () => {
    const r = await rig();
    r.drv.init();
    let changes = 0;
    r.drv.onConfigChange = () => changes++;
    r.model.changeConfig(7);
    expect(changes).toBe(1);
  });

  it('[pci.msix.driver.1] no MSI-X capability: INTx + ISR; interrupts: "msix" refuses to fall back', async () => {
    const r = await rig({ msixVectors: 0, spy: true });
    const levels: boolean[] = [];
    r.dev.onIntx((l) => levels.push(l));
    r.drv.init();
    expect(r.drv.interruptMode).toBe('intx');
    expect(r.drv.probe.msix).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      const res = await r.drv.queue(0).submit([pattern(16, i)], [16]);
      expect(res.data[0]).toEqual(pattern(16, i));
    }
    expect(r.drv.stats.intx).toBeGreaterThanOrEqual(3);
    expect(r.drv.stats.isrReads).toBe(r.drv.stats.intx);
    expect(r.dev.pci.intxLevel).toBe(false); // the ISR read de-asserted it
    expect(levels.filter((l) => l).length).toBeGreaterThanOrEqual(3);
    let changes = 0;
    r.drv.onConfigChange = () => changes++;
    r.model.changeConfig(9);
    expect(changes).toBe(1); // ISR bit 1

    const strict = await rig({ msixVectors: 0, driver: { interrupts: 'msix' } });
    try {
      strict.drv.init();
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'PROTOCOL')).toBe(true);
    }
  });

  it('interrupts: "intx" disables MSI-X and unmaps every vector', async () => {
    const r = await rig({ driver: { interrupts: 'intx' } });
    r.drv.init();
    expect(r.dev.pci.msix!.enabled).toBe(false);
    expect(r.dev.core.queueRegs(0)!.msixVector).toBe(0xffff);
    expect(r.dev.core.readConfigMsixVector()).toBe(0xffff);
    const res = await r.drv.queue(1).submit([pattern(9)], [9]);
    expect(res.len).toBe(9);
  });

  it('MSI messages with a foreign address or data are counted as spurious', async () => {
    const r = await rig();
    r.drv.init();
    r.drv.handleMsi(0x1234, DEFAULT_MSI_DATA_BASE);
    r.drv.handleMsi(DEFAULT_MSI_ADDRESS, DEFAULT_MSI_DATA_BASE + 99);
    expect(r.drv.stats.spuriousMsi).toBe(2);
  });
});
