import { describe, expect, it } from 'vitest';
import { SgList } from '../../src/queue/types.js';
import { CC } from '../../src/driver/pci-regs.js';
import { VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_NOTIFICATION_DATA } from '../../src/features/bits.js';
import { rig, pattern, type RigOptions } from './helpers.js';

const MODES: Array<{ name: string; o: RigOptions }> = [
  { name: 'direct', o: { policy: 'off' } },
  { name: 'swiotlb', o: { policy: 'required', deviceSpace: 'none' } },
];
const RINGS = [
  { name: 'split', packed: false },
  { name: 'packed', packed: true },
];

describe.each(MODES)('traffic, $name DMA', ({ name, o }) => {
  const clause = name === 'swiotlb' ? '[rfc-swiotlb.feature.driver.1] [rfc-swiotlb.pci.driver.2]' : '[reserved.reserved-feature-bits.driver.4]';
  describe.each(RINGS)('$name ring', ({ packed }) => {
    it(`${clause} submit: multi-segment echo, more requests than ring slots`, async () => {
      const r = await rig({ ...o, packed, driver: { queueSize: 8 } });
      r.drv.init();
      expect(r.drv.dma!.mode).toBe(name);
      const ringAllocs = r.drv.ram.liveCount; // direct mode: the rings live in guest RAM
      const q = r.drv.queue(0);
      const jobs = Array.from({ length: 40 }, (_, i) => q.submit([pattern(50 + i, i), pattern(7, i + 1)], [30, 100]));
      const res = await Promise.all(jobs);
      res.forEach((x, i) => {
        const want = Buffer.concat([pattern(50 + i, i), pattern(7, i + 1)]);
        expect(x.len).toBe(want.length);
        expect(Buffer.concat(x.data)).toEqual(want);
      });
      expect(r.dev.core.choke.count).toBe(0);
      expect(r.drv.ram.liveCount).toBe(ringAllocs); // every request buffer was freed
      if (name === 'swiotlb') {
        const w = r.dev.window!;
        expect(r.model.seen.every(([a, l]) => w.contains(a, l))).toBe(true);
        expect(r.drv.pool!.stats().liveMappings).toBe(0);
      } else {
        expect(r.model.seen.every(([a, l]) => r.ram.check(a, l, false))).toBe(true);
      }
    });

    it(`${clause} allocation-free API: add / kick / poll with interrupts off, data copied back to guest RAM`, async () => {
      const r = await rig({ ...o, packed });
      r.drv.init();
      const q = r.drv.queue(1);
      q.disableInterrupts();
      const N = 16;
      const src = r.drv.ram.alloc(N * 64);
      const dst = r.drv.ram.allocZeroed(N * 64);
      for (let i = 0; i < N; i++) r.ram.write(src + i * 64, pattern(64, i));
      const sg = new SgList(2);
      for (let i = 0; i < N; i++) {
        sg.clear().out(src + i * 64, 64).in(dst + i * 64, 64);
        expect(q.add(sg, 1000 + i)).toBe(true);
      }
      q.kick();
      const got = new Map<number, number>();
      while (q.poll()) got.set(q.lastToken, q.lastLen);
      expect(got.size).toBe(N);
      for (let i = 0; i < N; i++) {
        expect(got.get(1000 + i)).toBe(64);
        const b = new Uint8Array(64);
        r.ram.read(dst + i * 64, b);
        expect(b).toEqual(pattern(64, i));
      }
      expect(r.drv.stats.msi).toBe(0);
      expect(r.dev.core.choke.count).toBe(0);
    });

    it(`${clause} indirect descriptors: tables allocated where the device may read them`, async () => {
      const r = await rig({ ...o, packed, driver: { indirectThreshold: 2 } });
      r.drv.init();
      const q = r.drv.queue(0);
      const res = await Promise.all([0, 1, 2, 3].map((i) => q.submit([pattern(10, i), pattern(11, i), pattern(12, i)], [40])));
      res.forEach((x, i) => expect(x.data[0]).toEqual(new Uint8Array(Buffer.concat([pattern(10, i), pattern(11, i), pattern(12, i)]))));
      expect(r.dev.core.choke.count).toBe(0);
    });
  });

  it(`${clause} interrupts on: used-buffer interrupts reach the add()-API FIFO and onUsed`, async () => {
    const r = await rig({ ...o });
    r.drv.init();
    const q = r.drv.queue(0);
    const a = r.drv.ram.allocZeroed(32);
    const sg = new SgList(1).in(a, 32);
    // echo of nothing writes 0 bytes; a readable segment gives data
    const b = r.drv.ram.alloc(8);
    r.ram.write(b, pattern(8));
    const sg2 = new SgList(2).out(b, 8).in(a, 32);
    expect(q.add(sg, 1)).toBe(true);
    q.kick();
    expect(r.drv.stats.msi).toBe(1);
    expect(q.poll()).toBe(true); // collected by the interrupt handler into the FIFO
    expect([q.lastToken, q.lastLen]).toEqual([1, 0]);
    const seen: Array<[number, number]> = [];
    q.onUsed = (t, l) => seen.push([t, l]);
    q.add(sg2, 2);
    q.kick();
    expect(seen).toEqual([[2, 8]]);
    expect(q.poll()).toBe(false);
  });
});

describe('notifications', () => {
  it('[pci.available-buffer-notif.driver.1] without NOTIFICATION_DATA: 16-bit writes of the vq index', async () => {
    const r = await rig({ spy: true });
    r.drv.init();
    await r.drv.queue(1).submit([pattern(4)], [4]);
    const nBase = r.drv.regs.addrs.notify;
    const w = r.spy!.writes.filter(([a]) => a >= nBase && a < nBase + 0x1000);
    expect(w.length).toBeGreaterThan(0);
    expect(w.every(([, s, v]) => s === 2 && v === 1)).toBe(true);
    expect(w[0]![0]).toBe(nBase + r.dev.core.queueRegs(1)!.notifyOff * r.drv.probe.notify.multiplier);
    expect(r.dev.pci.notifyRegion.stats).toMatchObject({ widthMismatch: 0, valueMismatch: 0 });
  });

  it.each([false, true])('[pci.available-buffer-notif.driver.2] with NOTIFICATION_DATA: 32-bit writes with next_off/next_wrap (packed %s)', async (packed) => {
    const r = await rig({ spy: true, notificationData: true, packed });
    r.drv.init();
    expect(r.drv.negotiated!.has(VIRTIO_F_NOTIFICATION_DATA)).toBe(true);
    const q = r.drv.queue(1);
    for (let i = 0; i < 3; i++) await q.submit([pattern(4)], [4]);
    const nBase = r.drv.regs.addrs.notify;
    const w = r.spy!.writes.filter(([a]) => a >= nBase && a < nBase + 0x1000);
    expect(w.map(([, s]) => s)).toEqual([4, 4, 4]);
    expect(w.map(([, , v]) => v & 0xffff)).toEqual([1, 1, 1]);
    // next_off after the 1st, 2nd, 3rd buffer: split = avail idx, packed = next descriptor offset (2 per buffer)
    const want = packed ? [2, 4, 6] : [1, 2, 3];
    expect(w.map(([, , v]) => (v >>> 16) & 0x7fff)).toEqual(want);
    expect(r.dev.pci.notifyRegion.stats.widthMismatch).toBe(0);
    expect(r.dev.pci.notifyRegion.lastNotificationData & 0x7fff).toBe(want[2]);
    // next_wrap: packed = the driver's wrap counter (starts at 1), split = avail idx bit 15 (0 here)
    expect(w.every(([, , v]) => v >>> 31 === (packed ? 1 : 0))).toBe(true);
  });

  it('[pci.available-buffer-notif.driver.4] with NOTIF_CONFIG_DATA the value is queue_notif_config_data', async () => {
    const r = await rig({ spy: true, device: { extraFeatures: [VIRTIO_F_NOTIF_CONFIG_DATA] } });
    r.drv.init();
    expect(r.drv.negotiated!.has(VIRTIO_F_NOTIF_CONFIG_DATA)).toBe(true);
    await r.drv.queue(1).submit([pattern(4)], [4]);
    const c = r.drv.regs.addrs.common;
    expect(r.spy!.reads.some(([a]) => a === c + CC.QUEUE_NOTIF_CONFIG_DATA)).toBe(true);
    const nBase = r.drv.regs.addrs.notify;
    expect(r.spy!.writes.filter(([a]) => a >= nBase && a < nBase + 0x1000).map(([, , v]) => v)).toEqual([r.dev.core.queueRegs(1)!.index]);
  });

  it('EVENT_IDX off: flags-based suppression still delivers every completion', async () => {
    const r = await rig({ driver: { features: { eventIdx: false } } });
    r.drv.init();
    for (let i = 0; i < 5; i++) expect((await r.drv.queue(0).submit([pattern(9, i)], [9])).data[0]).toEqual(pattern(9, i));
  });
});
