/**
 * In-process test stack for device models: guest RAM (an ArrayBuffer) as an AddressSpace, a
 * VirtioDeviceCore with the real split / packed queue factories, and driver-side queues
 * (SplitDriverQueue / PackedDriverQueue) over the same memory. {@link startDevice} runs the
 * driver's initialization through the core's registers: status reset → ACKNOWLEDGE → DRIVER →
 * driver features → FEATURES_OK → queue setup → DRIVER_OK ({@link DeviceRig.reinit} repeats it).
 *
 * Shared by the device suites; the device-specific drivers sit beside them
 * (`blk/harness.ts` BlkDriver, `net/harness.ts` NetDriver, `console/console-driver.ts`).
 */
import { VirtioDeviceCore } from '../../src/device/core.js';
import { RecordingSink } from '../../src/device/choke.js';
import type { TransportHooks, VirtioDeviceModel } from '../../src/device/types.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../../src/features/bits.js';
import { FeatureSet } from '../../src/features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../src/features/status.js';
import { AddressSpace } from '../../src/memory/space.js';
import { createPackedDeviceQueue, layoutPackedRings, PackedDriverQueue } from '../../src/queue/packed/index.js';
import { createSplitDeviceQueue, layoutSplitRings, SplitDriverQueue } from '../../src/queue/split/index.js';
import type { DriverQueue, QueueConfig } from '../../src/queue/types.js';

/** Transport hooks that count interrupts. */
export class CountingHooks implements TransportHooks {
  readonly queueIrqs: number[] = [];
  configIrqs = 0;
  queueInterrupt(q: number): void {
    this.queueIrqs[q] = (this.queueIrqs[q] ?? 0) + 1;
  }
  configInterrupt(): void {
    this.configIrqs++;
  }
}

/** Options of {@link startDevice}. */
export interface RigOptions {
  /** Ring layout (default split). */
  ring?: 'split' | 'packed';
  /** Queue size the driver picks (default min(64, model max)). */
  queueSize?: number;
  /** Queues to enable (default all of the model's). */
  queues?: number[];
  /** Device-specific bits the driver declines (default: accept everything offered). */
  decline?: number[];
  /** Device-independent bits offered besides VERSION_1 (default INDIRECT_DESC, EVENT_IDX; packed adds RING_PACKED). */
  extraFeatures?: number[];
  /** Guest RAM size (default 8 MiB). */
  ramBytes?: number;
}

/** A running device with its driver side. */
export interface DeviceRig {
  core: VirtioDeviceCore;
  hooks: CountingHooks;
  space: AddressSpace;
  /** Guest RAM bytes (bus address = index). */
  ram: Uint8Array;
  /** Driver queue per enabled queue index. */
  drivers: Array<DriverQueue | undefined>;
  /** Where the driver side reports device misbehaviour. */
  driverSink: RecordingSink;
  /** The negotiated features. */
  features: FeatureSet;
  /** Allocate `bytes` of guest RAM (16-aligned); {@link resetAlloc} frees everything. */
  alloc(bytes: number, align?: number): number;
  /** Free all buffers allocated since the rig (re)started. */
  resetAlloc(): void;
  /** Reset the device and run driver initialization again (new rings and driver queues). */
  reinit(): void;
}

/** Build the stack and run driver initialization. Throws when the device refuses a step. */
export function startDevice(model: VirtioDeviceModel, opts: RigOptions = {}): DeviceRig {
  const ramBytes = opts.ramBytes ?? 8 << 20;
  const buf = new ArrayBuffer(ramBytes);
  const space = new AddressSpace([{ base: 0, size: ramBytes, buffer: buf, name: 'ram' }], 'guest-ram');
  const ram = new Uint8Array(buf);
  const hooks = new CountingHooks();
  const packed = opts.ring === 'packed';
  const extra = opts.extraFeatures ?? [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, ...(packed ? [VIRTIO_F_RING_PACKED] : [])];
  const core = new VirtioDeviceCore({
    model,
    space,
    hooks,
    queueFactories: { split: createSplitDeviceQueue, packed: createPackedDeviceQueue },
    extraFeatures: extra,
  });

  const driverSink = new RecordingSink();
  let next = 0x1000;
  let dataStart = next;
  const alloc0 = (bytes: number, align = 16): number => {
    const a = Math.ceil(next / align) * align;
    next = a + bytes;
    if (next > ramBytes) throw new Error(`harness: guest RAM exhausted (${ramBytes} bytes)`);
    return a;
  };
  const rig: DeviceRig = {
    core,
    hooks,
    space,
    ram,
    drivers: [],
    driverSink,
    features: new FeatureSet(),
    alloc: alloc0,
    resetAlloc: () => {
      next = dataStart;
    },
    reinit: () => init(),
  };

  /** The driver's side of initialization (virtio 1.4 §3.1.1), through the core's registers. */
  function init(): void {
    // Offered bits → accepted bits (everything offered minus `decline`).
    const offered = new FeatureSet();
    for (let w = 0; w < 4; w++) {
      core.writeDeviceFeatureSelect(w);
      offered.setWord(w, core.readDeviceFeature());
    }
    const accepted = offered.clone();
    for (const b of opts.decline ?? []) accepted.clear(b);
    if (!packed) accepted.clear(VIRTIO_F_RING_PACKED);

    core.writeStatus(0);
    core.writeStatus(STATUS_ACKNOWLEDGE);
    core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    for (let w = 0; w < 4; w++) {
      core.writeDriverFeatureSelect(w);
      core.writeDriverFeature(accepted.word(w));
    }
    const fo = core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!fo.accepted || (core.status & STATUS_FEATURES_OK) === 0) throw new Error(`FEATURES_OK refused: ${fo.reason ?? ''} ${JSON.stringify(core.trace.ofKind('negotiation-refused').map((e) => e.detail))}`);

    next = Math.max(next, dataStart); // fresh rings after everything used so far
    const drivers: Array<DriverQueue | undefined> = [];
    const queues = opts.queues ?? Array.from({ length: model.numQueues }, (_, i) => i);
    for (const q of queues) {
      const size = opts.queueSize ?? Math.min(64, model.maxQueueSize(q));
      const lay = packed ? layoutPackedRings(alloc0(0, 4096), size) : layoutSplitRings(alloc0(0, 4096), size);
      alloc0(lay.bytes);
      core.writeQueueSelect(q);
      core.writeQueueSize(size);
      core.writeQueueAddr('desc', false, lay.desc);
      core.writeQueueAddr('desc', true, 0);
      core.writeQueueAddr('driver', false, lay.driver);
      core.writeQueueAddr('driver', true, 0);
      core.writeQueueAddr('device', false, lay.device);
      core.writeQueueAddr('device', true, 0);
      core.writeQueueEnable(1);
      const cfg: QueueConfig = {
        index: q,
        size,
        maxSize: model.maxQueueSize(q),
        desc: lay.desc,
        driver: lay.driver,
        device: lay.device,
        eventIdx: accepted.has(VIRTIO_F_EVENT_IDX),
        indirect: accepted.has(VIRTIO_F_INDIRECT_DESC),
        inOrder: accepted.has(VIRTIO_F_IN_ORDER),
      };
      drivers[q] = packed ? new PackedDriverQueue(space, cfg, driverSink) : new SplitDriverQueue(space, cfg, driverSink);
    }
    const dok = core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    if (!dok.accepted) throw new Error(`DRIVER_OK refused: ${dok.reason ?? ''}`);
    dataStart = Math.ceil(next / 4096) * 4096;
    next = dataStart;
    rig.drivers = drivers;
    rig.features = accepted;
  }

  init();
  return rig;
}
