import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cc, enable, negotiate, rig, setupQueue, V1 } from './helpers.js';
import { COMMON_CFG as C, COMMON_CFG_FIELDS } from '../../../src/transport/pci/common-cfg.js';
import { NO_VECTOR } from '../../../src/device/queue-regs.js';
import { VIRTIO_F_RING_RESET } from '../../../src/features/bits.js';

function up(extra: number[] = []) {
  const r = rig({ extra });
  enable(r.dev);
  return { ...r, c: cc(r.dev) };
}

describe('common cfg: features', () => {
  it('[pci.common-cfg.device.3] device_feature presents the offer for every select window, 0 beyond', () => {
    const { c, core } = up();
    for (let sel = 0; sel < 6; sel++) {
      c.w(C.DEVICE_FEATURE_SELECT, 4, sel);
      expect(c.r(C.DEVICE_FEATURE_SELECT, 4)).toBe(sel);
      expect(c.r(C.DEVICE_FEATURE, 4)).toBe(core.offered.word(sel));
    }
    c.w(C.DEVICE_FEATURE_SELECT, 4, 2);
    expect(c.r(C.DEVICE_FEATURE, 4)).toBe((1 << 5) | (1 << 6)); // bits 69, 70
    c.w(C.DEVICE_FEATURE_SELECT, 4, 0xffffffff);
    expect(c.r(C.DEVICE_FEATURE, 4)).toBe(0);
  });

  it('[pci.common-cfg.device.4] driver_feature round-trips per window, including select 2 (bits ≥ 64)', () => {
    const { c, core } = up();
    c.w(C.DEVICE_STATUS, 1, 1);
    c.w(C.DEVICE_STATUS, 1, 3);
    const words = [1 << 5, 1, 1 << 6];
    words.forEach((w, i) => {
      c.w(C.DRIVER_FEATURE_SELECT, 4, i);
      c.w(C.DRIVER_FEATURE, 4, w);
    });
    words.forEach((w, i) => {
      c.w(C.DRIVER_FEATURE_SELECT, 4, i);
      expect(c.r(C.DRIVER_FEATURE_SELECT, 4)).toBe(i);
      expect(c.r(C.DRIVER_FEATURE, 4)).toBe(w);
    });
    c.w(C.DEVICE_STATUS, 1, 0xb);
    expect(c.r(C.DEVICE_STATUS, 1)).toBe(0xb);
    expect(core.negotiated!.has(70)).toBe(true);
  });

  it('[pci.common-cfg.driver.1] writes to device_feature, num_queues, config_generation, queue_notify_off are ignored', () => {
    const { c, dev } = up();
    const before = [c.r(C.DEVICE_FEATURE, 4), c.r(C.NUM_QUEUES, 2), c.r(C.CONFIG_GENERATION, 1), c.r(C.QUEUE_NOTIFY_OFF, 2), c.r(C.QUEUE_NOTIF_CONFIG_DATA, 2)];
    c.w(C.DEVICE_FEATURE, 4, 0xffffffff);
    c.w(C.NUM_QUEUES, 2, 99);
    c.w(C.CONFIG_GENERATION, 1, 77);
    c.w(C.QUEUE_NOTIFY_OFF, 2, 5);
    c.w(C.QUEUE_NOTIF_CONFIG_DATA, 2, 5);
    expect([c.r(C.DEVICE_FEATURE, 4), c.r(C.NUM_QUEUES, 2), c.r(C.CONFIG_GENERATION, 1), c.r(C.QUEUE_NOTIFY_OFF, 2), c.r(C.QUEUE_NOTIF_CONFIG_DATA, 2)]).toEqual(before);
    expect(dev.stats.refusedAccesses).toBe(5);
  });
});

describe('common cfg: status', () => {
  it('[pci.common-cfg.device.7] writing 0 resets: status, selects and queue registers read reset values', () => {
    const { c, dev, model, core } = up();
    expect(negotiate(dev, V1)).toBe(0xb);
    c.w(C.QUEUE_SELECT, 2, 1);
    c.w(C.QUEUE_SIZE, 2, 64);
    c.w(C.DEVICE_STATUS, 1, 0);
    expect(c.r(C.DEVICE_STATUS, 1)).toBe(0);
    expect(model.resets).toBe(1);
    expect(c.r(C.QUEUE_SELECT, 2)).toBe(0);
    c.w(C.QUEUE_SELECT, 2, 1);
    expect(c.r(C.QUEUE_SIZE, 2)).toBe(128);
    expect(core.negotiated).toBeNull();
  });

  it('[pci.common-cfg.device.8] [pci.msix.device.7] after reset queue_enable is 0 and every vector unmapped', () => {
    const { c, dev } = up();
    negotiate(dev, V1);
    c.w(C.CONFIG_MSIX_VECTOR, 2, 0);
    setupQueue(dev, 0);
    c.w(C.QUEUE_SELECT, 2, 1);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 2);
    c.w(C.DEVICE_STATUS, 1, 0);
    expect(c.r(C.CONFIG_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
    for (const q of [0, 1]) {
      c.w(C.QUEUE_SELECT, 2, q);
      expect(c.r(C.QUEUE_ENABLE, 2)).toBe(0);
      expect(c.r(C.QUEUE_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
    }
  });
});

describe('common cfg: queues', () => {
  it('[pci.common-cfg.device.15] queue_size resets to the maximum (a power of 2) and round-trips', () => {
    const { c, dev } = up();
    negotiate(dev, V1);
    c.w(C.QUEUE_SELECT, 2, 0);
    expect(c.r(C.QUEUE_SIZE, 2)).toBe(256);
    c.w(C.QUEUE_SIZE, 2, 64);
    expect(c.r(C.QUEUE_SIZE, 2)).toBe(64);
    c.w(C.QUEUE_SELECT, 2, 1);
    expect(c.r(C.QUEUE_SIZE, 2)).toBe(128);
  });

  it('[pci.common-cfg.device.14] out-of-range or unavailable queue_select: queue_size reads 0, writes ignored', () => {
    const { c, dev } = up();
    negotiate(dev, V1);
    for (const sel of [2, 3, 0xffff]) {
      c.w(C.QUEUE_SELECT, 2, sel);
      expect(c.r(C.QUEUE_SELECT, 2)).toBe(sel);
      c.w(C.QUEUE_SIZE, 2, 16);
      c.w(C.QUEUE_DESC_LO, 4, 0x1000);
      c.w(C.QUEUE_ENABLE, 2, 1);
      c.w(C.QUEUE_MSIX_VECTOR, 2, 0);
      expect(c.r(C.QUEUE_SIZE, 2)).toBe(0);
      expect(c.r(C.QUEUE_DESC_LO, 4)).toBe(0);
      expect(c.r(C.QUEUE_ENABLE, 2)).toBe(0);
      expect(c.r(C.QUEUE_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
    }
  });

  it('[pci.layout.device.1] 64-bit queue addresses: each 32-bit half written and read independently', () => {
    const { c, dev } = up();
    negotiate(dev, V1);
    c.w(C.QUEUE_SELECT, 2, 1);
    const fields = [C.QUEUE_DESC_LO, C.QUEUE_DESC_HI, C.QUEUE_DRIVER_LO, C.QUEUE_DRIVER_HI, C.QUEUE_DEVICE_LO, C.QUEUE_DEVICE_HI];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...fields), fc.integer({ min: 0, max: 0xffffffff })), { minLength: 1, maxLength: 12 }), (writes) => {
        const expected = new Map<number, number>(fields.map((f) => [f, c.r(f, 4)]));
        for (const [f, v] of writes) {
          c.w(f, 4, v);
          expected.set(f, v);
        }
        for (const f of fields) expect(c.r(f, 4)).toBe(expected.get(f));
      }),
      { numRuns: 100 },
    );
    // an 8-byte access is split into halves, low first
    c.w(C.QUEUE_DESC_LO, 8, 0x1_2345_6000);
    expect(c.r(C.QUEUE_DESC_LO, 4)).toBe(0x2345_6000);
    expect(c.r(C.QUEUE_DESC_HI, 4)).toBe(1);
    expect(c.r(C.QUEUE_DESC_LO, 8)).toBe(0x1_2345_6000);
  });

  it('[pci.common-cfg.device.8] queue_enable, queue_notify_off, queue_notif_config_data, admin fields', () => {
    const { c, dev, queues } = up();
    negotiate(dev, V1);
    setupQueue(dev, 1, 0x40000);
    c.w(C.QUEUE_SELECT, 2, 1);
    expect(c.r(C.QUEUE_ENABLE, 2)).toBe(1);
    expect(c.r(C.QUEUE_NOTIFY_OFF, 2)).toBe(1);
    expect(c.r(C.QUEUE_NOTIF_CONFIG_DATA, 2)).toBe(1);
    expect(c.r(C.ADMIN_QUEUE_INDEX, 2)).toBeGreaterThanOrEqual(c.r(C.NUM_QUEUES, 2)); // pci.common-cfg.device.16
    expect(c.r(C.ADMIN_QUEUE_NUM, 2)).toBe(0);
    c.w(C.DEVICE_STATUS, 1, 0xf);
    expect(queues.map((q) => [q.index, q.cfg.desc, q.cfg.driver, q.cfg.device])).toEqual([[1, 0x40000, 0x41000, 0x42000]]);
  });

  it('[pci.common-cfg.device.11] [pci.common-cfg.device.13] queue_reset with RING_RESET stops the queue; reads 0 after', () => {
    const { c, dev, core } = up([VIRTIO_F_RING_RESET]);
    negotiate(dev, [0, 1 | (1 << (VIRTIO_F_RING_RESET - 32))]);
    setupQueue(dev, 0);
    c.w(C.DEVICE_STATUS, 1, 0xf);
    expect(core.queue(0)).not.toBeNull();
    c.w(C.QUEUE_SELECT, 2, 0);
    c.w(C.QUEUE_RESET, 2, 1);
    expect(c.r(C.QUEUE_RESET, 2)).toBe(0);
    expect(c.r(C.QUEUE_ENABLE, 2)).toBe(0);
    expect(core.queue(0)).toBeNull();
    // re-enable after reset (pci.common-cfg.driver.8)
    setupQueue(dev, 0, 0x80000);
    expect(c.r(C.QUEUE_ENABLE, 2)).toBe(1);
    expect(core.queue(0)).not.toBeNull();
  });
});

describe('common cfg: MSI-X vectors', () => {
  it('[pci.msix.device.6] [pci.msix.device.9] vectors inside the table round-trip; beyond it read back NO_VECTOR', () => {
    const { c, dev } = up();
    const n = dev.msix!.vectors;
    c.w(C.CONFIG_MSIX_VECTOR, 2, n - 1);
    expect(c.r(C.CONFIG_MSIX_VECTOR, 2)).toBe(n - 1);
    c.w(C.CONFIG_MSIX_VECTOR, 2, n);
    expect(c.r(C.CONFIG_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
    c.w(C.QUEUE_SELECT, 2, 0);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 0);
    expect(c.r(C.QUEUE_MSIX_VECTOR, 2)).toBe(0);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 0x7ff);
    expect(c.r(C.QUEUE_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 1);
    c.w(C.QUEUE_MSIX_VECTOR, 2, NO_VECTOR); // pci.msix.device.5: unmapping
    expect(c.r(C.QUEUE_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
  });

  it('[pci.msix.device.9] without an MSI-X capability every mapping fails', () => {
    const r = rig({ pci: { msixVectors: 0 } });
    enable(r.dev);
    const c = cc(r.dev);
    expect(r.dev.msix).toBeUndefined();
    c.w(C.CONFIG_MSIX_VECTOR, 2, 0);
    expect(c.r(C.CONFIG_MSIX_VECTOR, 2)).toBe(NO_VECTOR);
  });
});

describe('common cfg: access widths', () => {
  it('[pci.layout.driver.1] every field reads at its natural width; other widths read 0 and write nothing', () => {
    const { c, dev, core } = up();
    c.w(C.DEVICE_STATUS, 1, 1);
    // wrong widths on 16-bit and 8-bit fields
    expect(c.r(C.NUM_QUEUES, 4)).toBe(0);
    expect(c.r(C.NUM_QUEUES, 1)).toBe(0);
    expect(c.r(C.NUM_QUEUES, 2)).toBe(3);
    expect(c.r(C.DEVICE_STATUS, 2)).toBe(0);
    expect(c.r(C.DEVICE_STATUS, 1)).toBe(1);
    c.w(C.DEVICE_STATUS, 4, 0); // a 32-bit write covering status+generation+queue_select: ignored
    expect(core.status).toBe(1);
    c.w(C.QUEUE_SELECT, 4, 1);
    expect(c.r(C.QUEUE_SELECT, 2)).toBe(0);
    c.w(C.QUEUE_SELECT + 1, 1, 1); // high byte of a 16-bit field
    expect(c.r(C.QUEUE_SELECT, 2)).toBe(0);
    expect(c.r(C.QUEUE_DESC_LO + 2, 4)).toBe(0); // misaligned inside a 64-bit field
    expect(dev.stats.refusedAccesses).toBeGreaterThanOrEqual(7);
    for (const f of COMMON_CFG_FIELDS) expect(typeof c.r(f.offset, f.width)).toBe('number');
  });

  it('[pci.layout.driver.1] no access of any size or offset throws (property)', () => {
    const { dev } = up();
    fc.assert(
      fc.property(fc.integer({ min: -8, max: 0x5000 }), fc.constantFrom(0, 1, 2, 3, 4, 5, 8, 16), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 6 }), (off, size, v, bar) => {
        const r = dev.barRead(bar, off, size);
        expect(Number.isFinite(r)).toBe(true);
        dev.barWrite(bar, off, size, v);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('common cfg: config_generation', () => {
  it('[pci.common-cfg.device.6] config_generation changes when the device config changes, and only then', () => {
    const { c, model, dev } = up();
    const g0 = c.r(C.CONFIG_GENERATION, 1);
    const d = dev.layout.device!;
    expect(dev.barRead(d.bar, d.offset, 4)).toBe(0);
    expect(c.r(C.CONFIG_GENERATION, 1)).toBe(g0);
    model.changeConfig(2, 0x7f);
    const g1 = c.r(C.CONFIG_GENERATION, 1);
    expect(g1).not.toBe(g0);
    expect(dev.barRead(d.bar, d.offset + 2, 1)).toBe(0x7f);
    expect(c.r(C.CONFIG_GENERATION, 1)).toBe(g1);
    // device config: out-of-range and odd widths read 0 and never throw
    expect(dev.barRead(d.bar, d.offset + 8, 4)).toBe(0);
    expect(dev.barRead(d.bar, d.offset + 6, 4)).toBe(0);
    expect(() => dev.barWrite(d.bar, d.offset + 7, 2, 1)).not.toThrow();
  });
});

describe('common cfg: queue_size validation with the real split factory', () => {
  it('[pci.common-cfg.driver.3] a queue_size above the maximum or 0 parks the queue at DRIVER_OK (NEEDS_RESET), never throws', async () => {
    const { createSplitDeviceQueue } = await import('../../../src/queue/split/device.js');
    for (const bad of [512, 0, 100]) {
      const r = rig({ core: { queueFactories: { split: createSplitDeviceQueue } } });
      enable(r.dev);
      const c = cc(r.dev);
      negotiate(r.dev, V1);
      c.w(C.QUEUE_SELECT, 2, 0);
      c.w(C.QUEUE_SIZE, 2, bad);
      expect(c.r(C.QUEUE_SIZE, 2)).toBe(bad);
      setupQueue(r.dev, 0);
      c.w(C.DEVICE_STATUS, 1, 0xf);
      expect(r.core.queue(0)).toBeNull();
      expect(r.core.choke.last?.code).toBe('QUEUE_SIZE_INVALID');
      expect(c.r(C.DEVICE_STATUS, 1) & 0x40).toBe(0x40);
    }
  });
});
