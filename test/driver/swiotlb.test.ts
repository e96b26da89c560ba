import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { SgList } from '../../src/queue/types.js';
import { rig, pattern } from './helpers.js';

describe('SWIOTLB: the device needs no guest RAM at all', () => {
  it.each([false, true])(
    '[rfc-swiotlb.feature.driver.1] [rfc-swiotlb.pci.driver.2] window-only device space, policy required, packed=%s: rings, indirect tables and buffers all inside the window, nothing at the choke point',
    async (packed) => {
      const r = await rig({ policy: 'required', deviceSpace: 'none', packed, driver: { indirectThreshold: 3 } });
      // The device's only memory: nothing before FEATURES_OK, the window after.
      expect(r.dev.core.space.regions.length).toBe(0);
      r.drv.init();
      const w = r.dev.window!;
      expect(r.dev.core.space).toBe(w.asAddressSpace());
      expect(r.dev.core.space.regions.length).toBe(1);
      for (const q of [0, 1]) {
        const regs = r.dev.core.queueRegs(q)!;
        for (const area of ['desc', 'driver', 'device'] as const) expect(w.contains(regs.addr(area), 4)).toBe(true);
      }
      const jobs: Array<Promise<unknown>> = [];
      for (let i = 0; i < 24; i++) {
        const q = r.drv.queue(i % 2);
        const segs = i % 3 === 0 ? [pattern(20, i), pattern(21, i), pattern(22, i)] : [pattern(64 + i, i)];
        jobs.push(
          q.submit(segs, [200]).then((res) => {
            expect(res.data[0]).toEqual(new Uint8Array(Buffer.concat(segs)));
          }),
        );
      }
      await Promise.all(jobs);
      expect(r.model.requests).toBe(24);
      expect(r.dev.core.choke.count).toBe(0);
      expect(r.dev.core.isParked(0) || r.dev.core.isParked(1)).toBe(false);
      expect(r.model.seen.length).toBeGreaterThan(24);
      expect(r.model.seen.every(([a, l]) => w.contains(a, l))).toBe(true);
      const st = r.drv.pool!.stats();
      expect(st.totalMappings).toBeGreaterThanOrEqual(24 + 16); // 16 three-segment + ... each segment bounced
      expect(st.liveMappings).toBe(0);
      expect(st.bytesToDevice).toBeGreaterThan(0);
      expect(st.bytesFromDevice).toBeGreaterThan(0);
    },
  );

  it('[rfc-swiotlb.feature.driver.1] a driver that does not bounce would hit the choke point (the proof can fail)', async () => {
    const r = await rig({ policy: 'required', deviceSpace: 'none' });
    r.drv.init();
    // Post a guest-RAM address by going around the DMA layer straight to the ring.
    const a = r.drv.ram.alloc(16);
    const q = r.drv.queue(0);
    const sg = new SgList(2).out(a, 16).in(a, 16);
    q.ring.add(sg, 0);
    q.kick();
    expect(r.dev.core.choke.count).toBe(1);
    expect(r.dev.core.choke.last!.code).toBe('ADDRESS_OUT_OF_SPACE');
  });

  it('[rfc-swiotlb.feature.device.1] inverse: acceptSwiotlb=false fails FEATURES_OK cleanly with policy required', async () => {
    const r = await rig({ policy: 'required', deviceSpace: 'none', driver: { features: { acceptSwiotlb: false } } });
    let err: unknown;
    try {
      r.drv.init();
    } catch (e) {
      err = e;
    }
    expect(isVirtioError(err, 'FEATURE_REQUIRED')).toBe(true);
    expect(r.dev.core.status & 0x80).toBe(0x80);
    expect(r.model.requests).toBe(0);
  });

  it('[rfc-swiotlb.pci.driver.1] without a mappable window BAR the driver declines the bit and says why', async () => {
    const r = await rig({ policy: 'preferred' });
    const noMap = { configRead: r.dev.configRead, configWrite: r.dev.configWrite, mmioRead: r.dev.mmioRead, mmioWrite: r.dev.mmioWrite, onMsi: r.dev.onMsi };
    const { VirtioPciDriver } = await import('../../src/driver/driver.js');
    const drv = new VirtioPciDriver(noMap, { guestRam: r.ram, probe: r.drv.probe });
    drv.init();
    expect(drv.swiotlb).toBe(false);
    expect(drv.swiotlbUnusableReason).toMatch(/not mappable/);
    expect((await drv.queue(0).submit([pattern(3)], [3])).len).toBe(3);
  });
});

describe('BAR reprogramming moves the window', () => {
  it('[rfc-swiotlb.pci.driver.2] the driver moves the window BAR, then allocates everything at the new bus addresses', async () => {
    const r = await rig({ policy: 'required', deviceSpace: 'none' });
    const NEW = 0x20_0000_0000;
    r.drv.relocateBar(4, NEW);
    expect(r.dev.bars.find((b) => b.index === 4)!.address).toBe(NEW);
    expect(r.dev.window!.base).toBe(NEW);
    r.drv.init();
    expect(r.drv.window!.base).toBe(NEW);
    await r.drv.queue(0).submit([pattern(33)], [33]);
    expect(r.model.seen.every(([a, l]) => a >= NEW && a + l <= NEW + (1 << 20))).toBe(true);
    expect(r.dev.core.queueRegs(0)!.addr('desc')).toBeGreaterThanOrEqual(NEW);

    // Moving while initialized is refused; after a reset it works and traffic follows again.
    expect(() => r.drv.relocateBar(4, NEW * 2)).toThrow(/resetDevice/);
    r.drv.resetDevice();
    const NEWER = 0x30_0000_0000;
    r.drv.relocateBar(4, NEWER);
    r.drv.init();
    r.model.seen.length = 0;
    const res = await r.drv.queue(1).submit([pattern(40, 3)], [40]);
    expect(res.data[0]).toEqual(pattern(40, 3));
    expect(r.model.seen.every(([a]) => a >= NEWER && a < NEWER + (1 << 20))).toBe(true);
    expect(r.dev.core.choke.count).toBe(0);
    expect(r.dev.pci.stats.windowMoveFailures).toBe(0);
  });

  it('moving the register BAR (BAR 0) rebases common/notify/ISR accesses', async () => {
    const r = await rig();
    r.drv.relocateBar(0, 0x50_0000_0000);
    r.drv.init();
    expect(r.drv.regs.addrs.common).toBe(0x50_0000_0000);
    expect((await r.drv.queue(0).submit([pattern(5)], [5])).len).toBe(5);
  });
});
