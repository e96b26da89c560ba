import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { negotiate, refusals, regs, rig, setupQueue, V1 } from './helpers.js';
import { MMIO, MMIO_REGISTERS, mmioRegisterAt, VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_MAGIC } from '../../../src/transport/mmio/registers.js';
import { VirtioDeviceCore } from '../../../src/device/core.js';
import { createVirtioMmioDevice, MMIO_CORE_OPTIONS } from '../../../src/transport/mmio/mmio-device.js';
import { FakeModel, FakeTransport, fakeFactories } from '../../device/fakes.js';
import { VIRTIO_F_ADMIN_VQ, VIRTIO_F_RING_RESET } from '../../../src/features/bits.js';

describe('virtio-mmio register map', () => {
  it('[mmio.regs.device.1] [mmio.regs.device.2] MagicValue "virt", Version 2, DeviceID and VendorID', () => {
    const r = rig({ mmio: { vendorId: 0x12345678 } });
    const { r: rd } = regs(r.dev);
    expect(rd(MMIO.MAGIC_VALUE)).toBe(0x74726976);
    expect(rd(MMIO.MAGIC_VALUE)).toBe(VIRTIO_MMIO_MAGIC);
    expect(Buffer.from(new Uint32Array([rd(MMIO.MAGIC_VALUE)]).buffer).toString('latin1')).toBe('virt');
    expect(rd(MMIO.VERSION)).toBe(2);
    expect(rd(MMIO.DEVICE_ID)).toBe(r.model.deviceId);
    expect(rd(MMIO.VENDOR_ID)).toBe(0x12345678);
    expect(r.dev.size).toBe(0x200);
    expect(r.dev.base).toBe(0x0a00_0000);
  });

  it('[mmio.regs.driver.1] the table: every register 32-bit aligned below 0x100, no overlaps, lookup finds each', () => {
    const seen = new Set<number>();
    for (const reg of MMIO_REGISTERS) {
      expect(reg.offset % 4).toBe(0);
      expect(reg.offset).toBeLessThan(VIRTIO_MMIO_CONFIG);
      expect(seen.has(reg.offset)).toBe(false);
      seen.add(reg.offset);
      expect(mmioRegisterAt(reg.offset, 4)).toBe(reg);
      expect(mmioRegisterAt(reg.offset, 2)).toBeUndefined();
      expect(mmioRegisterAt(reg.offset + 1, 4)).toBeUndefined();
    }
    expect(mmioRegisterAt(0x018, 4)).toBeUndefined(); // a hole
    expect(MMIO_REGISTERS.length).toBe(29);
  });

  it('[mmio.regs.driver.1] reads of write-only registers are 0 and writes to read-only ones are ignored (traced)', () => {
    const r = rig();
    const { r: rd, w } = regs(r.dev);
    w(MMIO.QUEUE_SEL, 1);
    expect(r.core.queueSelect).toBe(1);
    for (const reg of MMIO_REGISTERS.filter((x) => x.dir === 'W')) expect(rd(reg.offset)).toBe(0);
    const before = MMIO_REGISTERS.filter((x) => x.dir === 'R').map((x) => rd(x.offset));
    for (const reg of MMIO_REGISTERS.filter((x) => x.dir === 'R')) w(reg.offset, 0x5a5a5a5a);
    expect(MMIO_REGISTERS.filter((x) => x.dir === 'R').map((x) => rd(x.offset))).toEqual(before);
    const ref = refusals(r.core);
    expect(ref.some((x) => x.detail === 'read of write-only QueueSel' && x.clause === 'mmio.regs.driver.1')).toBe(true);
    expect(ref.some((x) => x.detail === 'write to read-only MagicValue' && x.clause === 'mmio.regs.driver.1')).toBe(true);
    expect(r.dev.stats.refusedAccesses).toBeGreaterThan(10);
  });

  it('[mmio.regs.driver.2] control registers: other widths/alignments read 0, writes ignored, never throw', () => {
    const r = rig();
    const st = r.dev.read(MMIO.STATUS, 4);
    r.dev.write(MMIO.STATUS, 1, 1); // byte write to Status: ignored
    r.dev.write(MMIO.STATUS, 2, 1);
    r.dev.write(MMIO.QUEUE_SEL + 2, 2, 1);
    expect(r.dev.read(MMIO.STATUS, 4)).toBe(st);
    expect(r.core.queueSelect).toBe(0);
    expect(r.dev.read(MMIO.MAGIC_VALUE, 1)).toBe(0);
    expect(r.dev.read(MMIO.MAGIC_VALUE, 2)).toBe(0);
    expect(r.dev.read(MMIO.MAGIC_VALUE + 1, 4)).toBe(0);
    expect(r.dev.read(MMIO.MAGIC_VALUE, 8)).toBe(0);
    expect(refusals(r.core).filter((x) => x.clause === 'mmio.regs.driver.2').length).toBe(7);
  });

  it('[mmio.regs.driver.2] property: arbitrary offsets, widths and values never throw; bad control accesses change nothing', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ off: fc.integer({ min: -8, max: 0x220 }), size: fc.constantFrom(0, 1, 2, 3, 4, 8), value: fc.integer({ min: 0, max: 0xffffffff }), write: fc.boolean() }), { maxLength: 40 }),
        (ops) => {
          const r = rig();
          negotiate(r.dev, V1);
          for (const o of ops) {
            const bad = o.off < VIRTIO_MMIO_CONFIG && mmioRegisterAt(o.off, o.size) === undefined;
            const st = r.core.status;
            const sel = r.core.queueSelect;
            if (o.write) {
              expect(() => r.dev.write(o.off, o.size, o.value)).not.toThrow();
              if (bad) {
                expect(r.core.status).toBe(st);
                expect(r.core.queueSelect).toBe(sel);
              }
            } else {
              let v = -1;
              expect(() => (v = r.dev.read(o.off, o.size))).not.toThrow();
              if (bad) expect(v).toBe(0);
              expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('feature windows', () => {
  it('[mmio.regs.driver.7] DeviceFeatures answers any DeviceFeaturesSel; bits ≥ 64 via select 2; 0 beyond', () => {
    const r = rig();
    const { r: rd, w } = regs(r.dev);
    const word = (i: number): number => {
      w(MMIO.DEVICE_FEATURES_SEL, i);
      return rd(MMIO.DEVICE_FEATURES);
    };
    expect(word(0)).toBe((0b11 | (1 << 28) | (1 << 29)) >>> 0);
    expect(word(1)).toBe(1); // VERSION_1 = bit 32
    expect(word(2)).toBe((1 << 5) | (1 << 6)); // bits 69, 70
    expect(word(3)).toBe(0);
    expect(word(100)).toBe(0);
    expect(word(0xffffffff)).toBe(0);
  });

  it('[mmio.regs.driver.8] DriverFeatures through DriverFeaturesSel windows, incl. select 2; FEATURES_OK negotiates them', () => {
    const r = rig();
    expect(negotiate(r.dev, [1, 1, 1 << 5])).toBe(0xb);
    const n = r.core.negotiated!;
    expect(n.has(0)).toBe(true);
    expect(n.has(32)).toBe(true);
    expect(n.has(69)).toBe(true);
    expect(n.has(70)).toBe(false);
    expect(n.has(1)).toBe(false);
  });

  it('[basic.feature-bits.driver.1] accepting a bit in a window beyond the offer makes FEATURES_OK fail', () => {
    const r = rig();
    expect(negotiate(r.dev, [0, 1, 0, 1]) & 0x8).toBe(0);
  });

  it('[mmio.regs.driver.1] VIRTIO_F_ADMIN_VQ is never offered on MMIO: core with transport mmio refuses it, the device refuses a core offering it', () => {
    const f = fakeFactories();
    const mk = (transport: 'mmio' | 'pci') =>
      new VirtioDeviceCore({ model: new FakeModel(), space: rigSpace(), hooks: new FakeTransport(), queueFactories: f, extraFeatures: [VIRTIO_F_ADMIN_VQ], transport, queueDisableAllowed: true });
    expect(() => mk('mmio')).toThrow(/ADMIN_VQ|41/);
    const pciCore = mk('pci');
    expect(() => createVirtioMmioDevice(pciCore)).toThrow(/VIRTIO_F_ADMIN_VQ/);
    const ok = rig();
    regs(ok.dev).w(MMIO.DEVICE_FEATURES_SEL, 1);
    expect(regs(ok.dev).r(MMIO.DEVICE_FEATURES) & (1 << (VIRTIO_F_ADMIN_VQ - 32))).toBe(0);
  });
});

function rigSpace() {
  return rig().space;
}

describe('status and reset', () => {
  it('[mmio.regs.device.5] [basic.dev-reset.device.1] Status 0 resets: Status reads 0, InterruptStatus and QueueReady cleared', () => {
    const r = rig();
    const { r: rd, w } = regs(r.dev);
    expect(negotiate(r.dev, V1)).toBe(0xb);
    setupQueue(r.dev, 0);
    setupQueue(r.dev, 1);
    w(MMIO.STATUS, 0xf);
    r.model.ctx!.interrupt(0);
    r.model.bump();
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(3);
    expect(r.dev.irqLevel).toBe(true);
    w(MMIO.STATUS, 0);
    expect(rd(MMIO.STATUS)).toBe(0);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(0);
    expect(r.dev.irqLevel).toBe(false);
    for (const q of [0, 1]) {
      w(MMIO.QUEUE_SEL, q);
      expect(rd(MMIO.QUEUE_READY)).toBe(0);
    }
    expect(r.levels).toEqual([true, false]);
  });

  it('[mmio.regs.device.5] platform reset() does the same', () => {
    const r = rig();
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    r.model.ctx!.interrupt(0);
    r.dev.reset();
    expect(r.core.status).toBe(0);
    expect(r.dev.read(MMIO.INTERRUPT_STATUS, 4)).toBe(0);
  });
});

describe('queue registers', () => {
  it('[mmio.regs.driver.9] QueueSizeMax per queue; 0 for unavailable queues; QueueSize programs the ring', () => {
    class Holes extends FakeModel {
      override maxQueueSize(q: number): number {
        return q === 1 ? 0 : 64;
      }
    }
    const r = rig({ model: new Holes({ numQueues: 3 }) });
    const { r: rd, w } = regs(r.dev);
    const max = (q: number): number => {
      w(MMIO.QUEUE_SEL, q);
      return rd(MMIO.QUEUE_SIZE_MAX);
    };
    expect([max(0), max(1), max(2), max(3), max(0xffff)]).toEqual([64, 0, 64, 0, 0]);
    negotiate(r.dev, V1);
    setupQueue(r.dev, 2, 0x40000, 32);
    w(MMIO.STATUS, 0xf);
    const q = r.queues.find((x) => x.index === 2)!;
    expect(q.cfg).toMatchObject({ size: 32, maxSize: 64, desc: 0x40000, driver: 0x41000, device: 0x42000 });
  });

  it('[mmio.regs.driver.10] writes to QueueSize and the ring addresses while QueueReady is set are ignored', () => {
    const r = rig();
    const { w } = regs(r.dev);
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0, 0x20000, 64);
    w(MMIO.QUEUE_SIZE, 16);
    w(MMIO.QUEUE_DESC_LOW, 0x90000);
    w(MMIO.QUEUE_DEVICE_HIGH, 1);
    expect(r.core.queueRegs(0)).toMatchObject({ size: 64, descLo: 0x20000, deviceHi: 0 });
    expect(refusals(r.core).filter((x) => x.clause === 'mmio.regs.driver.10').length).toBe(3);
    w(MMIO.STATUS, 0xf);
    expect(r.queues[0]!.cfg).toMatchObject({ size: 64, desc: 0x20000, device: 0x22000 });
  });

  it('[mmio.regs.driver.11] [mmio.regs.driver.15] QueueReady 0 stops the queue and reads 0; it can be reconfigured and made ready again', () => {
    const r = rig();
    const { r: rd, w } = regs(r.dev);
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0);
    w(MMIO.QUEUE_SEL, 0);
    expect(rd(MMIO.QUEUE_READY)).toBe(1);
    w(MMIO.QUEUE_READY, 0);
    expect(rd(MMIO.QUEUE_READY)).toBe(0);
    w(MMIO.QUEUE_SIZE, 16);
    w(MMIO.QUEUE_READY, 1);
    w(MMIO.STATUS, 0xf);
    expect(r.queues[0]!.cfg.size).toBe(16);
  });

  it('[mmio.regs.device.7] QueueNotify reaches the model only for a ready queue after DRIVER_OK', () => {
    const r = rig();
    const { w } = regs(r.dev);
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0);
    w(MMIO.QUEUE_NOTIFY, 0); // before DRIVER_OK
    w(MMIO.STATUS, 0xf);
    w(MMIO.QUEUE_NOTIFY, 1); // queue 1 not ready
    w(MMIO.QUEUE_NOTIFY, 0);
    w(MMIO.QUEUE_NOTIFY, 7); // no such queue
    expect(r.model.notifies).toEqual([0]);
    expect(r.dev.stats.notifies).toBe(4);
    expect(r.core.stats.badNotifies).toBe(1);
  });

  it('[pci.available-buffer-notif.driver.2] with VIRTIO_F_NOTIFICATION_DATA the low 16 bits of QueueNotify are the queue index', () => {
    const withNd = rig({ extra: [38] });
    negotiate(withNd.dev, [0, 1 | (1 << 6)]);
    setupQueue(withNd.dev, 1);
    regs(withNd.dev).w(MMIO.STATUS, 0xf);
    regs(withNd.dev).w(MMIO.QUEUE_NOTIFY, (0x8000_0000 | (5 << 16) | 1) >>> 0);
    expect(withNd.model.notifies).toEqual([1]);
    // Not negotiated: the same value names no queue.
    const without = rig({ extra: [38] });
    negotiate(without.dev, V1);
    setupQueue(without.dev, 1);
    regs(without.dev).w(MMIO.STATUS, 0xf);
    regs(without.dev).w(MMIO.QUEUE_NOTIFY, (0x8000_0000 | (5 << 16) | 1) >>> 0);
    expect(without.model.notifies).toEqual([]);
    expect(without.core.stats.badNotifies).toBe(1);
  });

  it('[mmio.regs.device.10] [mmio.regs.device.11] [mmio.regs.device.12] [mmio.regs.device.9] [mmio.regs.driver.16] QueueReset (RING_RESET): completes within the write, QueueReset and QueueReady read 0; re-enable with new values', () => {
    const r = rig({ extra: [VIRTIO_F_RING_RESET] });
    const { r: rd, w } = regs(r.dev);
    expect(negotiate(r.dev, [0, 1 | (1 << (VIRTIO_F_RING_RESET - 32))])).toBe(0xb);
    setupQueue(r.dev, 0, 0x20000, 64);
    w(MMIO.STATUS, 0xf);
    w(MMIO.QUEUE_SEL, 0);
    expect(rd(MMIO.QUEUE_RESET)).toBe(0); // mmio.regs.device.9
    const q = r.queues[0]!;
    w(MMIO.QUEUE_RESET, 1);
    expect(q.resets).toBe(1);
    expect(rd(MMIO.QUEUE_RESET)).toBe(0);
    expect(rd(MMIO.QUEUE_READY)).toBe(0);
    expect(r.model.calls).toContain('queueReset 0');
    // mmio.regs.driver.16: re-enable with different values.
    setupQueue(r.dev, 0, 0x60000, 32);
    expect(r.queues.at(-1)!.cfg).toMatchObject({ size: 32, desc: 0x60000 });
    expect(r.model.calls).toContain('queueStarted 0');
  });

  it('[mmio.regs.device.8] QueueReset reads 0 after a device reset (RING_RESET negotiated before)', () => {
    const r = rig({ extra: [VIRTIO_F_RING_RESET] });
    const { r: rd, w } = regs(r.dev);
    negotiate(r.dev, [0, 1 | (1 << (VIRTIO_F_RING_RESET - 32))]);
    setupQueue(r.dev, 0);
    w(MMIO.STATUS, 0xf);
    w(MMIO.STATUS, 0);
    for (const q of [0, 1]) {
      w(MMIO.QUEUE_SEL, q);
      expect(rd(MMIO.QUEUE_RESET)).toBe(0);
      expect(rd(MMIO.QUEUE_READY)).toBe(0);
    }
  });

  it('[mmio.regs.device.10] QueueReset without RING_RESET negotiated is ignored', () => {
    const r = rig({ extra: [VIRTIO_F_RING_RESET] });
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    regs(r.dev).w(MMIO.QUEUE_RESET, 1);
    expect(r.queues[0]!.resets).toBe(0);
    regs(r.dev).w(MMIO.QUEUE_SEL, 0);
    expect(regs(r.dev).r(MMIO.QUEUE_READY)).toBe(1);
  });
});

describe('shared memory registers', () => {
  it('[mmio.dev-init.driver.3] SHMLen reads −1 and SHMBase all-ones for an absent region; a present one reads its values', () => {
    const r = rig({ mmio: { sharedMemory: [{ id: 3, base: 0x1_2345_6000, length: 0x2_0000_1000 }] } });
    const { r: rd, w } = regs(r.dev);
    w(MMIO.SHM_SEL, 0);
    expect([rd(MMIO.SHM_LEN_LOW), rd(MMIO.SHM_LEN_HIGH), rd(MMIO.SHM_BASE_LOW), rd(MMIO.SHM_BASE_HIGH)]).toEqual([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]);
    w(MMIO.SHM_SEL, 3);
    expect([rd(MMIO.SHM_LEN_LOW), rd(MMIO.SHM_LEN_HIGH), rd(MMIO.SHM_BASE_LOW), rd(MMIO.SHM_BASE_HIGH)]).toEqual([0x1000, 2, 0x2345_6000, 1]);
  });
});

describe('construction', () => {
  it('builds from a ready core with a LateBoundHooks', async () => {
    const { LateBoundHooks } = await import('../../../src/transport/mmio/mmio-device.js');
    const hooks = new LateBoundHooks();
    const model = new FakeModel();
    const core = new VirtioDeviceCore({ model, space: rigSpace(), hooks, queueFactories: fakeFactories(), ...MMIO_CORE_OPTIONS });
    const dev = createVirtioMmioDevice(core, { hooks, base: 0x1000_0000, irq: 40 });
    expect(dev.platformInfo()).toEqual({ base: 0x1000_0000, size: 0x200, irq: 40, pool: undefined });
    expect(() => createVirtioMmioDevice(core, { size: 0x104 })).toThrow(/config space/);
  });
});
