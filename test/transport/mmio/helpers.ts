/** Test rig for the virtio-mmio device: the shared fake model and queue factories, a core and the device. */
import { VirtioDeviceCore } from '../../../src/device/core.js';
import type { DeviceCoreOptions } from '../../../src/device/types.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createVirtioMmioDevice, MMIO_CORE_OPTIONS, type VirtioMmioDevice, type VirtioMmioOptions } from '../../../src/transport/mmio/mmio-device.js';
import { MMIO } from '../../../src/transport/mmio/registers.js';
import { FakeModel, fakeFactories, type FakeQueue } from '../../device/fakes.js';

export interface Rig {
  dev: VirtioMmioDevice;
  core: VirtioDeviceCore;
  model: FakeModel;
  queues: FakeQueue[];
  /** Interrupt line levels in the order they were signalled. */
  levels: boolean[];
  space: AddressSpace;
}

/** Guest RAM for tests (1 MiB at 0). */
export function ram(): AddressSpace {
  return new AddressSpace([{ base: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20), name: 'ram' }], 'guest-ram');
}

/** Model offering device bits 0, 1 (window 0) and 69, 70 (window 2); two queues of 256. */
export function rig(opts: { core?: Partial<DeviceCoreOptions>; mmio?: VirtioMmioOptions; model?: FakeModel; extra?: number[] } = {}): Rig {
  const model = opts.model ?? new FakeModel({ offer: [0, 1, 69, 70] });
  const f = fakeFactories();
  const levels: boolean[] = [];
  const space = ram();
  let core!: VirtioDeviceCore;
  const dev = createVirtioMmioDevice(
    (hooks) =>
      (core = new VirtioDeviceCore({
        model,
        space,
        hooks,
        queueFactories: { split: f.split, packed: f.packed },
        extraFeatures: [28, 29, ...(opts.extra ?? [])],
        ...MMIO_CORE_OPTIONS,
        ...opts.core,
      })),
    { ...opts.mmio, onIrq: (l) => levels.push(l) },
  );
  return { dev, core, model, queues: f.made, levels, space };
}

/** 32-bit register helpers. */
export function regs(dev: VirtioMmioDevice) {
  return {
    r: (off: number) => dev.read(off, 4),
    w: (off: number, v: number) => dev.write(off, 4, v),
  };
}

/** ACKNOWLEDGE → DRIVER → driver feature windows → FEATURES_OK. Returns Status read back. */
export function negotiate(dev: VirtioMmioDevice, words: number[]): number {
  const { r, w } = regs(dev);
  w(MMIO.STATUS, 1);
  w(MMIO.STATUS, 3);
  words.forEach((v, i) => {
    w(MMIO.DRIVER_FEATURES_SEL, i);
    w(MMIO.DRIVER_FEATURES, v);
  });
  w(MMIO.STATUS, 0xb);
  return r(MMIO.STATUS);
}

/** Program queue `q` (size, ring addresses) and set QueueReady. */
export function setupQueue(dev: VirtioMmioDevice, q: number, base = 0x10000 * (q + 1), size = 128): void {
  const { w } = regs(dev);
  w(MMIO.QUEUE_SEL, q);
  w(MMIO.QUEUE_SIZE, size);
  w(MMIO.QUEUE_DESC_LOW, base);
  w(MMIO.QUEUE_DESC_HIGH, 0);
  w(MMIO.QUEUE_DRIVER_LOW, base + 0x1000);
  w(MMIO.QUEUE_DRIVER_HIGH, 0);
  w(MMIO.QUEUE_DEVICE_LOW, base + 0x2000);
  w(MMIO.QUEUE_DEVICE_HIGH, 0);
  w(MMIO.QUEUE_READY, 1);
}

/** VERSION_1 is bit 32: word 1, bit 0. */
export const V1 = [0, 1];

/** Refusals recorded in the core trace. */
export function refusals(core: VirtioDeviceCore): Array<{ detail: string; clause: string | undefined }> {
  return core.trace
    .events()
    .filter((e) => e.kind === 'refused')
    .map((e) => ({ detail: e.detail, clause: e.clause }));
}
