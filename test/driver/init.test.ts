import { describe, expect, it } from 'vitest';
import { isVirtioError, VirtioError } from '../../src/errors.js';
import { CC } from '../../src/driver/pci-regs.js';
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1 } from '../../src/features/bits.js';
import { rig, pattern } from './helpers.js';

function statusWrites(r: Awaited<ReturnType<typeof rig>>): number[] {
  const at = r.drv.regs.addrs.common + CC.DEVICE_STATUS;
  return r.spy!.writes.filter(([a, s]) => a === at && s === 1).map(([, , v]) => v);
}

describe('init sequence', () => {
  it('[init.dev-init.driver.1] [basic.dev-status-field.driver.1] reset, ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK in order', async () => {
    const r = await rig({ spy: true });
    r.drv.init();
    expect(statusWrites(r)).toEqual([0, 1, 3, 0xb, 0xf]);
    expect(r.dev.core.status).toBe(0xf);
  });

  it('[basic.dev-status-field.driver.2] every status write after the reset keeps all bits set before', async () => {
    const r = await rig({ spy: true, policy: 'required', driver: { features: { acceptSwiotlb: false } } });
    expect(() => r.drv.init()).toThrow();
    const w = statusWrites(r);
    for (let i = 2; i < w.length; i++) expect(w[i]! & w[i - 1]!).toBe(w[i - 1]);
  });

  it('[pci.common-cfg.driver.5] after writing 0 the driver reads status until 0, a bounded number of times', async () => {
    const r = await rig({ spy: true, driver: { resetPolls: 5 } });
    const at = r.drv.regs.addrs.common + CC.DEVICE_STATUS;
    let fakeBusy = 3;
    r.spy!.readHook = (a, s, v) => (a === at && s === 1 && fakeBusy-- > 0 ? 0x40 : v);
    r.drv.init(); // 3 busy reads, then 0
    expect(r.drv.status).toBe(0xf);
    fakeBusy = 1e9; // never completes
    r.spy!.reads.length = 0;
    try {
      r.drv.init();
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'TIMEOUT')).toBe(true);
      expect((e as VirtioError).clause).toBe('pci.common-cfg.driver.5');
    }
    expect(r.spy!.reads.filter(([a]) => a === at).length).toBe(5);
  });

  it('[basic.feature-bits.driver.1] [reserved.reserved-feature-bits.driver.1] accepts VERSION_1 and only offered bits; reads 4 feature windows', async () => {
    const r = await rig({ spy: true, policy: 'preferred' });
    r.drv.init();
    const off = r.drv.offered!;
    const neg = r.drv.negotiated!;
    expect(neg.has(VIRTIO_F_VERSION_1)).toBe(true);
    expect(neg.minus(off).isEmpty()).toBe(true);
    expect(neg.has(VIRTIO_F_EVENT_IDX) && neg.has(VIRTIO_F_INDIRECT_DESC)).toBe(true);
    expect(r.dev.core.negotiated!.equals(neg)).toBe(true);
    const sel = r.drv.regs.addrs.common + CC.DEVICE_FEATURE_SELECT;
    expect(r.spy!.writes.filter(([a]) => a === sel).map(([, , v]) => v)).toEqual([0, 1, 2, 3]);
  });

  it('[rfc-swiotlb.feature.driver.1] accepts VIRTIO_F_SWIOTLB when offered (preferred) and the device switches to the window', async () => {
    const r = await rig({ policy: 'preferred' });
    r.drv.init();
    expect(r.drv.swiotlb).toBe(true);
    expect(r.dev.core.swiotlbNegotiated).toBe(true);
    expect(r.dev.core.space).toBe(r.dev.window!.asAddressSpace());
    expect(r.drv.dma!.mode).toBe('swiotlb');
  });

  it('[init.dev-init.driver.2] [init.dev-init.driver.3] FEATURES_OK refused (policy required, acceptSwiotlb=false): FAILED, a clear error, no queue setup', async () => {
    const r = await rig({ spy: true, policy: 'required', driver: { features: { acceptSwiotlb: false } } });
    let err: unknown;
    try {
      r.drv.init();
    } catch (e) {
      err = e;
    }
    expect(isVirtioError(err, 'FEATURE_REQUIRED')).toBe(true);
    expect((err as Error).message).toMatch(/refused FEATURES_OK/);
    expect((err as Error).message).toMatch(/VIRTIO_F_SWIOTLB/);
    expect(r.dev.core.status & 0x80).toBe(0x80);
    expect(r.dev.core.status & 0x8).toBe(0);
    const qsel = r.drv.regs.addrs.common + CC.QUEUE_SELECT;
    expect(r.spy!.writes.some(([a]) => a === qsel)).toBe(false);
    // basic.dev-status-field.driver.3: a later init resets first and can succeed with other choices
    expect(() => r.drv.init()).toThrow(/refused/);
  });

  it('[basic.feature-bits.driver.1] a select policy accepting an unoffered bit is refused by the device and reported', async () => {
    const r = await rig({ driver: { features: { select: (_off, p) => p.clone().set(50) } } });
    expect(() => r.drv.init()).toThrow(/refused FEATURES_OK/);
  });

  it('[rfc-swiotlb.feature.device.1] same driver: acceptSwiotlb=false works with preferred (direct DMA), and off never offers the bit', async () => {
    const pref = await rig({ policy: 'preferred', driver: { features: { acceptSwiotlb: false } } });
    pref.drv.init();
    expect(pref.drv.offered!.has(DEFAULT_SWIOTLB_BIT)).toBe(true);
    expect(pref.drv.swiotlb).toBe(false);
    expect(pref.dev.core.space).toBe(pref.ram);
    const res = await pref.drv.queue(0).submit([pattern(10)], [10]);
    expect(res.data[0]).toEqual(pattern(10));
    expect(pref.model.seen.every(([a, l]) => pref.ram.check(a, l, false))).toBe(true);

    const off = await rig({ policy: 'off' });
    off.drv.init();
    expect(off.drv.offered!.has(DEFAULT_SWIOTLB_BIT)).toBe(false);
    expect(off.drv.probe.swiotlb).toBeUndefined();
    expect(off.drv.swiotlb).toBe(false);
  });

  it('[reserved.reserved-feature-bits.driver.5] accepts RING_PACKED when offered, unless told not to', async () => {
    const a = await rig({ packed: true });
    a.drv.init();
    expect(a.drv.negotiated!.has(VIRTIO_F_RING_PACKED)).toBe(true);
    expect(a.drv.queue(0).kind).toBe('packed');
    const b = await rig({ packed: true, driver: { features: { packed: false } } });
    b.drv.init();
    expect(b.drv.queue(0).kind).toBe('split');
  });
});

describe('queue setup', () => {
  it('[pci.common-cfg.driver.3] [pci.common-cfg.driver.2] split sizes are powers of two, packed sizes any non-zero value', async () => {
    const s = await rig({ driver: { queueSize: 100 } });
    s.drv.init();
    expect(s.drv.queue(0).size).toBe(64);
    expect(s.dev.core.queueRegs(0)!.size).toBe(64);
    const p = await rig({ packed: true, driver: { queueSize: 100 } });
    p.drv.init();
    expect(p.drv.queue(0).size).toBe(100);
    expect(p.dev.core.queueRegs(0)!.size).toBe(100);
    const big = await rig({ driver: { queueSize: 100000 } });
    big.drv.init();
    expect(big.drv.queue(0).size).toBe(256); // capped at the device maximum
  });

  it('[pci.common-cfg.driver.4] [pci.common-cfg.driver.6] queue fields are written before queue_enable, which is only ever written 1', async () => {
    const r = await rig({ spy: true });
    r.drv.init();
    const c = r.drv.regs.addrs.common;
    const w = r.spy!.writes.filter(([a]) => a >= c && a < c + 64).map(([a, , v]) => [a - c, v] as const);
    const enables = w.map(([o, v], i) => ({ o, v, i })).filter((x) => x.o === CC.QUEUE_ENABLE);
    expect(enables.length).toBe(2);
    expect(enables.every((x) => x.v === 1)).toBe(true);
    const lastConfig = Math.max(...w.map(([o], i) => (o === CC.QUEUE_DESC || o === CC.QUEUE_DRIVER + 4 || o === CC.QUEUE_DEVICE || o === CC.QUEUE_MSIX_VECTOR ? i : -1)));
    expect(enables[0]!.i).toBeGreaterThan(lastConfig);
    expect(r.dev.core.trace.ofKind('refused')).toEqual([]);
  });

  it('[init.dev-init.driver.4] no notification before DRIVER_OK; a queue of a reset device cannot be kicked', async () => {
    const r = await rig();
    r.drv.init();
    const q = r.drv.queue(0);
    r.drv.resetDevice();
    expect(() => q.kick()).toThrow(/kick before DRIVER_OK|reset/);
    await expect(q.submit([pattern(4)], [4])).rejects.toThrow(/reset/);
    expect(r.dev.core.trace.ofKind('refused').filter((e) => e.clause === 'init.dev-init.driver.4')).toEqual([]);
  });

  it('queues: only the first N are set up when asked; unavailable queues are skipped', async () => {
    const r = await rig({ numQueues: 3, driver: { queues: 2 } });
    r.drv.init();
    expect(r.drv.queues.filter(Boolean).length).toBe(2);
    expect(() => r.drv.queue(2)).toThrow(/not set up/);
  });

  it('device config is read through the device cfg structure', async () => {
    const r = await rig();
    r.drv.init();
    expect(r.drv.readConfig(0, 4)).toBe(0x1234);
  });
});
