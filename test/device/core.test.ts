import { describe, it, expect } from 'vitest';
import { VirtioDeviceCore, NO_VECTOR } from '../../src/device/core.js';
import type { DeviceCoreOptions } from '../../src/device/types.js';
import {
  DeviceType,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_SUSPEND,
  VIRTIO_F_VERSION_1,
} from '../../src/features/bits.js';
import { FeatureSet } from '../../src/features/set.js';
import {
  STATUS_ACKNOWLEDGE as A,
  STATUS_DRIVER as D,
  STATUS_DRIVER_OK as K,
  STATUS_FEATURES_OK as F,
  STATUS_NEEDS_RESET,
  STATUS_SUSPEND as S,
} from '../../src/features/status.js';
import { VirtioError, isVirtioError } from '../../src/errors.js';
import { FakeModel, FakeTransport, fakeFactories, spaces } from './fakes.js';

interface Rig {
  core: VirtioDeviceCore;
  model: FakeModel;
  tr: FakeTransport;
  fac: ReturnType<typeof fakeFactories>;
  sp: ReturnType<typeof spaces>;
}

function rig(over: Partial<DeviceCoreOptions> = {}, model = new FakeModel()): Rig {
  const tr = new FakeTransport();
  const fac = fakeFactories();
  const sp = spaces();
  const core = new VirtioDeviceCore({ model, space: sp.ram, hooks: tr, queueFactories: { split: fac.split, packed: fac.packed }, ...over });
  return { core, model, tr, fac, sp };
}

/** Write a FeatureSet through the driver_feature windows (selects 0..n). */
function ackFeatures(core: VirtioDeviceCore, set: FeatureSet, windows = 3): void {
  for (let i = 0; i < windows; i++) {
    core.writeDriverFeatureSelect(i);
    core.writeDriverFeature(set.word(i));
  }
}

/** Configure queue q the usual way (after FEATURES_OK). */
function setupQueue(core: VirtioDeviceCore, q: number, size = 128): void {
  core.writeQueueSelect(q);
  core.writeQueueSize(size);
  core.writeQueueAddr('desc', false, 0x1000 + q * 0x10000);
  core.writeQueueAddr('driver', false, 0x3000 + q * 0x10000);
  core.writeQueueAddr('device', false, 0x4000 + q * 0x10000);
  core.writeQueueMsixVector(q + 1);
  core.writeQueueEnable(1);
}

/** Full initialization with the given accepted bits; queues 0..n-1 enabled. */
function bringUp(r: Rig, bits: number[], queues = [0, 1]): void {
  r.core.writeStatus(A);
  r.core.writeStatus(A | D);
  ackFeatures(r.core, FeatureSet.fromBits(bits));
  expect(r.core.writeStatus(A | D | F).accepted).toBe(true);
  r.core.writeConfigMsixVector(0);
  for (const q of queues) setupQueue(r.core, q);
  expect(r.core.writeStatus(A | D | F | K).accepted).toBe(true);
}

describe('feature windows', () => {
  it('[pci.common-cfg.device.3] presents offered bits per select, bits >= 64 via select 2, select 5 reads 0', () => {
    const { core } = rig({}, new FakeModel({ offer: [0, 64, 70] }));
    const read = (sel: number): number => {
      core.writeDeviceFeatureSelect(sel);
      return core.readDeviceFeature();
    };
    expect(read(0)).toBe((1 | (1 << VIRTIO_F_INDIRECT_DESC) | (1 << VIRTIO_F_EVENT_IDX)) >>> 0);
    expect(read(1)).toBe(1 << (VIRTIO_F_VERSION_1 - 32));
    expect(read(2)).toBe((1 | (1 << 6)) >>> 0);
    expect(read(5)).toBe(0);
    expect(read(0xffffffff)).toBe(0);
  });

  it('[pci.common-cfg.device.4] accumulates driver windows and negotiates bit 64', () => {
    const r = rig({}, new FakeModel({ offer: [0, 64] }));
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1, 64]));
    r.core.writeDriverFeatureSelect(2);
    expect(r.core.readDriverFeature()).toBe(1);
    expect(r.core.writeStatus(A | D | F).accepted).toBe(true);
    expect(r.core.negotiated?.toBits()).toEqual([32, 64]);
    expect(r.core.negotiated?.frozen).toBe(true);
    expect(r.core.trace.ofKind('feature-ack').map((e) => e.index)).toEqual([0, 1, 2]);
  });

  it('[basic.feature-bits.driver.1] an unoffered bit leaves FEATURES_OK clear (no guest error)', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1, 5]));
    const res = r.core.writeStatus(A | D | F);
    expect(res.accepted).toBe(false);
    expect(r.core.status).toBe(A | D);
    const ev = r.core.trace.ofKind('negotiation-refused');
    expect(ev).toHaveLength(1);
    expect(ev[0]!.code).toBe('FEATURE_NOT_OFFERED');
    expect(r.core.choke.count).toBe(0);
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(0);
    // the driver may retry with a valid set
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    expect(r.core.writeStatus(A | D | F).accepted).toBe(true);
  });

  it('[basic.feature-bits.driver.1] bits written in a window far beyond any offer are refused at FEATURES_OK', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeDriverFeatureSelect(1000);
    r.core.writeDriverFeature(1);
    expect(r.core.readDriverFeature()).toBe(0);
    expect(r.core.writeStatus(A | D | F).negotiation?.code).toBe('FEATURE_NOT_OFFERED');
  });

  it('[reserved.reserved-feature-bits.driver.1] a driver not accepting VERSION_1 is refused', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([0]));
    const res = r.core.writeStatus(A | D | F);
    expect(res.accepted).toBe(false);
    expect(res.negotiation?.clause).toBe('reserved.reserved-feature-bits.driver.1');
  });

  it('[init.dev-init.driver.1] driver_feature writes before DRIVER or after FEATURES_OK are ignored and recorded', () => {
    const r = rig();
    r.core.writeStatus(A);
    expect(r.core.writeDriverFeature(1)).toBe(false);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeStatus(A | D | F);
    r.core.writeDriverFeatureSelect(0);
    expect(r.core.writeDriverFeature(0xff)).toBe(false);
    expect(r.core.readDriverFeature()).toBe(0);
    const refused = r.core.trace.ofKind('refused');
    expect(refused.map((e) => e.code)).toEqual(['STATUS_TRANSITION', 'FEATURES_LOCKED']);
    expect(refused.every((e) => e.clause === 'init.dev-init.driver.1')).toBe(true);
  });
});

describe('SWIOTLB offer and policy', () => {
  const SW = 27;
  const word0 = (core: VirtioDeviceCore): number => {
    core.writeDeviceFeatureSelect(0);
    return core.readDeviceFeature();
  };

  it('[rfc-swiotlb.feature.device.2] never offered without a region; required without a region is a config error', () => {
    const pref = rig({ swiotlb: { policy: 'preferred' } });
    expect(word0(pref.core) & (1 << SW)).toBe(0);
    expect(pref.core.swiotlbBit).toBeNull();
    expect(() => rig({ swiotlb: { policy: 'required' } })).toThrow(/bounce region/);
    const off = rig({ swiotlb: { policy: 'off', space: spaces().window } });
    expect(word0(off.core) & (1 << SW)).toBe(0);
  });

  it('[rfc-swiotlb.feature.device.1] required: declined → FEATURES_OK refused; accepted → queues use the window', () => {
    const w = spaces().window;
    const r = rig({ swiotlb: { policy: 'required', space: w } });
    expect(word0(r.core) & (1 << SW)).not.toBe(0);
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    const res = r.core.writeStatus(A | D | F);
    expect(res.accepted).toBe(false);
    expect(res.negotiation?.clause).toBe('rfc-swiotlb.feature.device.1');
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1, SW]));
    expect(r.core.writeStatus(A | D | F).accepted).toBe(true);
    setupQueue(r.core, 0);
    r.core.writeStatus(A | D | F | K);
    expect(r.core.swiotlbNegotiated).toBe(true);
    expect(r.fac.made[0]!.space).toBe(w);
    expect(r.model.ctx?.space).toBe(w);
    // reset returns to the normal space
    r.core.writeStatus(0);
    expect(r.core.space).toBe(r.sp.ram);
  });

  it('[rfc-swiotlb.feature.device.1] preferred: a declining driver still gets FEATURES_OK and direct DMA', () => {
    const w = spaces().window;
    const r = rig({ swiotlb: { policy: 'preferred', space: w } });
    bringUp(r, [VIRTIO_F_VERSION_1], [0]);
    expect(r.core.swiotlbNegotiated).toBe(false);
    expect(r.fac.made[0]!.space).toBe(r.sp.ram);
  });

  it('the bit is configurable (45 → window 1 bit 13) and must not collide with a defined bit', () => {
    const r = rig({ swiotlb: { policy: 'preferred', bit: 45, space: spaces().window } });
    r.core.writeDeviceFeatureSelect(1);
    expect(r.core.readDeviceFeature() & (1 << 13)).not.toBe(0);
    expect(word0(r.core) & (1 << SW)).toBe(0);
    expect(() => rig({ swiotlb: { policy: 'preferred', bit: VIRTIO_F_INDIRECT_DESC, space: spaces().window } })).toThrow(/INDIRECT_DESC/);
  });
});

describe('lifecycle', () => {
  it('[init.dev-init.driver.1] DRIVER_OK creates a queue per enabled queue, then activates the model', () => {
    const r = rig({}, new FakeModel({ numQueues: 3 }));
    bringUp(r, [VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX], [0, 2]);
    expect(r.fac.made.map((q) => q.index)).toEqual([0, 2]);
    expect(r.fac.made[0]!.cfg).toMatchObject({ size: 128, maxSize: 256, desc: 0x1000, driver: 0x3000, device: 0x4000, eventIdx: true, indirect: false });
    expect(r.fac.made[0]!.kind).toBe('split');
    expect(r.model.calls).toEqual(['activate']);
    const ctx = r.model.ctx!;
    expect(ctx.queues[1]).toBeNull();
    expect(ctx.queues[2]).toBe(r.fac.made[1]);
    expect(ctx.features.has(VIRTIO_F_EVENT_IDX)).toBe(true);
    expect(() => ctx.features.set(1)).toThrow();
  });

  it('uses the packed factory when VIRTIO_F_RING_PACKED is negotiated; offering it needs the factory', () => {
    const r = rig({ extraFeatures: [VIRTIO_F_RING_PACKED] });
    bringUp(r, [VIRTIO_F_VERSION_1, VIRTIO_F_RING_PACKED], [0]);
    expect(r.fac.made[0]!.kind).toBe('packed');
    expect(() => new VirtioDeviceCore({ model: new FakeModel(), space: spaces().ram, hooks: new FakeTransport(), queueFactories: { split: fakeFactories().split }, extraFeatures: [VIRTIO_F_RING_PACKED] })).toThrow(/packed/);
  });

  it('[basic.dev-reset.device.1] [pci.common-cfg.device.8] [pci.msix.device.7] reset clears everything', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1, 0]);
    r.model.ctx!.sink.guestError({ code: 'CHAIN_LOOP', clause: undefined, message: 'x', queue: 0 });
    r.core.writeDeviceFeatureSelect(1);
    r.core.writeQueueSelect(1);
    const res = r.core.writeStatus(0);
    expect(res.kind).toBe('reset');
    expect(r.core.status).toBe(0);
    expect(r.model.calls).toContain('reset');
    expect(r.fac.made.every((q) => q.resets === 1)).toBe(true);
    expect(r.core.negotiated).toBeNull();
    expect(r.core.driverFeatures().isEmpty()).toBe(true);
    expect(r.core.deviceFeatureSelect).toBe(0);
    expect(r.core.queueSelect).toBe(0);
    expect(r.core.readConfigMsixVector()).toBe(NO_VECTOR);
    expect(r.core.choke.count).toBe(0);
    expect(r.core.choke.broken).toBe(false);
    expect(r.core.context).toBeNull();
    for (const q of [0, 1]) {
      r.core.writeQueueSelect(q);
      expect(r.core.readQueueEnable()).toBe(0);
      expect(r.core.readQueueSize()).toBe(256);
      expect(r.core.readQueueMsixVector()).toBe(NO_VECTOR);
      expect(r.core.readQueueAddr('desc', false)).toBe(0);
      expect(r.core.queue(q)).toBeNull();
      expect(r.core.isParked(q)).toBe(false);
    }
    expect(r.core.trace.ofKind('reset')).toHaveLength(1);
    // after reset: no interrupts, notifies ignored
    r.core.interrupt(0);
    r.core.notify(0);
    expect(r.model.notifies).toEqual([]);
    // and the device can be brought up again
    bringUp(r, [VIRTIO_F_VERSION_1]);
    expect(r.fac.made).toHaveLength(4);
  });

  it('[basic.dev-status-field.device.3] a reported guest error sets NEEDS_RESET and raises one config interrupt', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    const sink = r.model.ctx!.sink;
    sink.guestError({ code: 'CHAIN_LOOP', clause: 'basic.split-vq.vq-desc-table.device.1', message: 'loop', queue: 1 });
    sink.guestError({ code: 'CHAIN_LOOP', clause: undefined, message: 'again', queue: 1 });
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    expect(r.tr.configIrqs).toEqual([0]); // exactly once, on the config vector
    expect(r.core.isParked(1)).toBe(true);
    expect(r.core.isParked(0)).toBe(false);
    expect(r.core.trace.ofKind('guest-error')).toHaveLength(2);
  });

  it('[basic.dev-status-field.device.2] notify on a parked queue does nothing', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.core.notify(0);
    expect(r.model.notifies).toEqual([0]);
    r.model.ctx!.sink.guestError({ code: 'AVAIL_IDX_AHEAD', clause: undefined, message: 'x', queue: 0 });
    r.core.notify(0);
    r.core.notify(1);
    expect(r.model.notifies).toEqual([0, 1]);
    // a queue that parked itself is skipped too
    r.fac.made[1]!.parked = true;
    r.core.notify(1);
    expect(r.model.notifies).toEqual([0, 1]);
    expect(r.core.stats.ignoredNotifies).toBe(2);
  });

  it('a model throwing in notify does not throw out of core.notify: INTERNAL report, queue parked', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.model.throwOnNotify = new TypeError('boom');
    expect(() => r.core.notify(0)).not.toThrow();
    expect(r.core.choke.last?.code).toBe('INTERNAL');
    expect(r.core.choke.last?.message).toContain('boom');
    expect(r.core.isParked(0)).toBe(true);
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    // a thrown VirtioError keeps its code and clause
    r.model.throwOnNotify = new VirtioError('DEVICE_REQUEST_INVALID', 'bad request', { clause: 'blk.dev-op.device.1' });
    expect(() => r.core.notify(1)).not.toThrow();
    expect(r.core.choke.last).toMatchObject({ code: 'DEVICE_REQUEST_INVALID', clause: 'blk.dev-op.device.1', queue: 1 });
    // non-Error throw values too
    const r2 = rig();
    bringUp(r2, [VIRTIO_F_VERSION_1]);
    r2.model.throwOnNotify = 'string thrown';
    expect(() => r2.core.notify(0)).not.toThrow();
    expect(r2.core.choke.last?.code).toBe('INTERNAL');
  });

  it('a model throwing in activate does not throw out of writeStatus', () => {
    const m = new FakeModel();
    m.throwOnActivate = true;
    const r = rig({}, m);
    expect(() => bringUp(r, [VIRTIO_F_VERSION_1])).not.toThrow();
    expect(r.core.choke.last?.code).toBe('INTERNAL');
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
  });

  it('[init.dev-init.driver.4] notify before DRIVER_OK is ignored and recorded once; unknown queue is BAD_NOTIFY', () => {
    const r = rig();
    r.core.notify(0);
    r.core.notify(0);
    r.core.notify(9);
    r.core.notify(9);
    expect(r.model.notifies).toEqual([]);
    const refused = r.core.trace.ofKind('refused');
    expect(refused.map((e) => [e.code, e.clause])).toEqual([
      ['QUEUE_NOT_READY', 'init.dev-init.driver.4'],
      ['BAD_NOTIFY', undefined],
    ]);
    expect(r.core.stats.badNotifies).toBe(2);
  });

  it('[basic.dev-status-field.device.1] interrupt(q) raises only when needsInterrupt() and after DRIVER_OK', () => {
    const r = rig();
    r.core.interrupt(0); // before DRIVER_OK: nothing
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.fac.made[0]!.wantInterrupt = false;
    r.core.interrupt(0);
    r.core.interrupt(1);
    r.core.interrupt(7);
    expect(r.tr.queueIrqs).toEqual([[1, 2]]); // queue 1 mapped to vector 2 by setupQueue
  });

  it('a queue factory returning null (invalid config) reports through the choke point', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeStatus(A | D | F);
    setupQueue(r.core, 0, 0);
    r.core.writeStatus(A | D | F | K);
    expect(r.core.queue(0)).toBeNull();
    expect(r.core.choke.last?.code).toBe('QUEUE_SIZE_INVALID');
    expect(r.core.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    expect(r.tr.configIrqs).toHaveLength(1);
  });
});

describe('queue registers', () => {
  it('[pci.common-cfg.device.14] queue_select out of range reads as size 0; writes are ignored and recorded', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeStatus(A | D | F);
    r.core.writeQueueSelect(2);
    expect(r.core.readQueueSize()).toBe(0);
    expect(r.core.readQueueMaxSize()).toBe(0);
    expect(r.core.readQueueEnable()).toBe(0);
    expect(r.core.readQueueMsixVector()).toBe(NO_VECTOR);
    expect(r.core.writeQueueSize(64)).toBe(false);
    expect(r.core.writeQueueEnable(1)).toBe(false);
    expect(r.core.writeQueueAddr('desc', false, 0x1000)).toBe(false);
    expect(r.core.writeQueueMsixVector(1)).toBe(false);
    const refused = r.core.trace.ofKind('refused');
    expect(refused).toHaveLength(4);
    expect(refused.every((e) => e.code === 'QUEUE_SELECT_OUT_OF_RANGE')).toBe(true);
    r.core.writeQueueSelect(0xffff);
    expect(r.core.readQueueSize()).toBe(0);
    r.core.writeQueueSelect(1);
    expect(r.core.readQueueSize()).toBe(256); // reset value = max
  });

  it('[init.dev-init.driver.1] queue config before FEATURES_OK is ignored; [pci.common-cfg.driver.4] not while enabled', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    r.core.writeQueueSelect(0);
    expect(r.core.writeQueueSize(64)).toBe(false);
    expect(r.core.readQueueSize()).toBe(256);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeStatus(A | D | F);
    expect(r.core.writeQueueSize(64)).toBe(true);
    expect(r.core.writeQueueEnable(1)).toBe(true);
    expect(r.core.writeQueueSize(32)).toBe(false);
    expect(r.core.readQueueSize()).toBe(64);
    const clauses = r.core.trace.ofKind('refused').map((e) => e.clause);
    expect(clauses).toEqual(['init.dev-init.driver.1', 'pci.common-cfg.driver.4']);
  });

  it('64-bit queue addresses are written as independent 32-bit halves', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1]));
    r.core.writeStatus(A | D | F);
    r.core.writeQueueSelect(0);
    r.core.writeQueueAddr('desc', true, 0x1);
    r.core.writeQueueAddr('desc', false, 0x2000);
    expect(r.core.readQueueAddr('desc', true)).toBe(1);
    expect(r.core.readQueueAddr('desc', false)).toBe(0x2000);
    r.core.writeQueueEnable(1);
    r.core.writeStatus(A | D | F | K);
    expect(r.fac.made[0]!.cfg.desc).toBe(0x1_0000_2000);
  });

  it('[init.dev-init.driver.1] after DRIVER_OK queue config is refused without RING_RESET', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1], [0]);
    r.core.writeQueueSelect(1);
    expect(r.core.writeQueueSize(64)).toBe(false);
    expect(r.core.trace.ofKind('refused').at(-1)?.clause).toBe('init.dev-init.driver.1');
    expect(r.core.writeQueueReset(1)).toBe(false);
  });

  it('[basic.vq-reset.device.2] [pci.common-cfg.device.13] RING_RESET resets one queue; re-enable creates it again', () => {
    const r = rig({ extraFeatures: [VIRTIO_F_RING_RESET] });
    bringUp(r, [VIRTIO_F_VERSION_1, VIRTIO_F_RING_RESET]);
    const old = r.core.queue(0)!;
    r.core.writeQueueSelect(0);
    expect(r.core.writeQueueReset(1)).toBe(true);
    expect(r.core.readQueueReset()).toBe(0);
    expect(r.core.readQueueEnable()).toBe(0);
    expect(r.core.readQueueSize()).toBe(256);
    expect(r.core.queue(0)).toBeNull();
    expect(r.model.ctx!.queues[0]).toBeNull();
    expect(r.model.calls).toContain('queueReset 0');
    expect(r.fac.made[0]!.resets).toBe(1);
    // other queue untouched
    expect(r.core.queue(1)).not.toBeNull();
    // basic.vq-re-enable.driver.1: configure again and enable
    setupQueue(r.core, 0, 64);
    const fresh = r.core.queue(0);
    expect(fresh).not.toBeNull();
    expect(fresh).not.toBe(old);
    expect(fresh!.size).toBe(64);
    expect(r.model.ctx!.queues[0]).toBe(fresh);
    expect(r.model.calls).toContain('queueStarted 0');
  });

  it('[pci.common-cfg.driver.6] queue_enable = 0 is ignored on PCI; MMIO may disable a queue', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.core.writeQueueSelect(0);
    expect(r.core.writeQueueEnable(0)).toBe(false);
    expect(r.core.readQueueEnable()).toBe(1);
    const m = rig({ queueDisableAllowed: true, transport: 'mmio' });
    bringUp(m, [VIRTIO_F_VERSION_1]);
    m.core.writeQueueSelect(0);
    expect(m.core.writeQueueEnable(0)).toBe(true);
    expect(m.core.readQueueEnable()).toBe(0);
    expect(m.core.queue(0)).toBeNull();
    m.core.notify(0);
    expect(m.model.notifies).toEqual([]);
  });
});

describe('config space', () => {
  it('[pci.common-cfg.device.6] config_generation bumps on configChanged; interrupt only once the driver is up', () => {
    const r = rig();
    const g0 = r.core.configGeneration;
    r.model.bump();
    expect(r.core.configGeneration).toBe(g0 + 1);
    expect(r.tr.configIrqs).toEqual([]); // status 0: no notification
    expect(r.core.readConfig(0, 4)).toBe(1);
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.model.bump();
    expect(r.core.configGeneration).toBe(g0 + 2);
    expect(r.tr.configIrqs).toEqual([0]);
  });

  it('config reads/writes out of range read 0 and are recorded; model values pass through', () => {
    const r = rig();
    r.core.writeConfig(4, 4, 0xdeadbeef);
    expect(r.core.readConfig(4, 4)).toBe(0xdeadbeef);
    expect(r.core.readConfig(6, 2)).toBe(0xdead);
    expect(r.core.readConfig(6, 4)).toBe(0);
    r.core.writeConfig(8, 1, 1);
    expect(r.core.trace.ofKind('refused')).toHaveLength(2);
  });

  it('[init.dev-suspend.device.4] [init.dev-suspend.device.5] suspend holds config interrupts until resume; notifies ignored', () => {
    const r = rig({ extraFeatures: [VIRTIO_F_SUSPEND] });
    bringUp(r, [VIRTIO_F_VERSION_1, VIRTIO_F_SUSPEND]);
    expect(r.core.writeStatus(A | D | F | K | S).kind).toBe('suspend');
    expect(r.core.status).toBe(A | D | F | S);
    r.core.notify(0);
    expect(r.model.notifies).toEqual([]);
    r.core.writeConfig(4, 4, 7); // init.dev-suspend.device.2: ignored
    expect(r.core.readConfig(4, 4)).toBe(0);
    r.model.bump();
    expect(r.tr.configIrqs).toEqual([]);
    expect(r.core.writeStatus(A | D | F | S | K).kind).toBe('resume');
    expect(r.core.status).toBe(A | D | F | K);
    expect(r.tr.configIrqs).toEqual([0]);
    r.core.notify(0);
    expect(r.model.notifies).toEqual([0]);
  });
});

describe('construction checks', () => {
  it('[basic.feature-bits.device.3] a model offering a legacy-only bit on a modern device is refused', () => {
    try {
      rig({}, new FakeModel({ deviceId: DeviceType.NET, offer: [6] }));
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'INVALID_ARGUMENT')).toBe(true);
      expect((e as Error).message).toContain('VIRTIO_NET_F_GSO');
    }
  });

  it('a required bit that is not offered is a configuration error', () => {
    expect(() => rig({}, new FakeModel({ offer: [0], require: [1] }))).toThrow(/required/);
  });

  it('required model bits are enforced at FEATURES_OK', () => {
    const r = rig({}, new FakeModel({ offer: [0, 1], require: [1] }));
    r.core.writeStatus(A);
    r.core.writeStatus(A | D);
    ackFeatures(r.core, FeatureSet.fromBits([VIRTIO_F_VERSION_1, 0]));
    expect(r.core.writeStatus(A | D | F).negotiation?.code).toBe('FEATURE_REQUIRED');
  });
});

describe('trace', () => {
  it('is bounded and keeps sequence numbers', () => {
    const r = rig({ traceCapacity: 4 });
    bringUp(r, [VIRTIO_F_VERSION_1]);
    const ev = r.core.trace.events();
    expect(ev).toHaveLength(4);
    expect(r.core.trace.total).toBeGreaterThan(4);
    for (let i = 1; i < ev.length; i++) expect(ev[i]!.seq).toBe(ev[i - 1]!.seq + 1);
    expect(ev.at(-1)!.kind).toBe('driver-ok');
  });

  it('records status writes with the clause of the matched row', () => {
    const r = rig();
    r.core.writeStatus(A);
    r.core.writeStatus(A | D | F | K);
    const sw = r.core.trace.ofKind('status-write');
    expect(sw.map((e) => [e.value, e.accepted, e.clause])).toEqual([
      [A, true, 'init.dev-init.driver.1'],
      [A | D | F | K, false, 'init.dev-init.driver.1'],
    ]);
  });
});

describe('choke point parks the live queues', () => {
  it('[basic.dev-status-field.device.2] an error a model reports parks every DeviceQueue, so later pops stop', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    const q0 = r.core.queue(0)!;
    const q1 = r.core.queue(1)!;
    expect(q0.parked).toBe(false);
    r.model.ctx!.sink.guestError({ code: 'DEVICE_REQUEST_INVALID', clause: undefined, message: 'test', queue: -1 });
    expect(q0.parked).toBe(true);
    expect(q1.parked).toBe(true);
    expect(r.core.status & 64).toBe(64);
  });

  it('[basic.dev-status-field.device.2] an error on one queue parks that queue only', () => {
    const r = rig();
    bringUp(r, [VIRTIO_F_VERSION_1]);
    r.model.ctx!.sink.guestError({ code: 'CHAIN_LOOP', clause: undefined, message: 'test', queue: 1 });
    expect(r.core.queue(1)!.parked).toBe(true);
    expect(r.core.queue(0)!.parked).toBe(false);
  });
});
