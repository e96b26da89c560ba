/**
 * In-process test stack for device models: guest RAM (an ArrayBuffer) as an AddressSpace, a
 * VirtioDeviceCore with the real split / packed queue factories, and driver-side queues
 * (SplitDriverQueue / PackedDriverQueue) over the same memory. {@link startDevice} runs the
 * driver's initialization through the core's registers: status reset → ACKNOWLEDGE → DRIVER →
 * driver features → FEATURES_OK → queue setup → DRIVER_OK ({@link DeviceRig.reinit} repeats it).
 *
 * Generic part: {@link startDevice}, {@link DeviceRig}. Block-specific part: {@link BlkDriver}
 * (builds virtio-blk requests, kicks, waits for the model to go idle, collects completions).
 */
import { VirtioDeviceCore } from '../../../src/device/core.js';
import { RecordingSink } from '../../../src/device/choke.js';
import type { TransportHooks, VirtioDeviceModel } from '../../../src/device/types.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../../../src/features/bits.js';
import { FeatureSet } from '../../../src/features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../../src/features/status.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createPackedDeviceQueue, layoutPackedRings, PackedDriverQueue } from '../../../src/queue/packed/index.js';
import { createSplitDeviceQueue, layoutSplitRings, SplitDriverQueue } from '../../../src/queue/split/index.js';
import { SgList, type DriverQueue, type QueueConfig } from '../../../src/queue/types.js';
import {
  BLK_ID_BYTES,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
} from '../../../src/device/blk/constants.js';

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
    if (!fo.accepted || (core.status & STATUS_FEATURES_OK) === 0) throw new Error(`FEATURES_OK refused: ${fo.reason ?? ''}`);

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

// ================================================================================================
// virtio-blk driver helper

/** One block request as the test describes it. */
export interface BlkReqSpec {
  type: number;
  sector?: number;
  /** OUT / DISCARD / WRITE_ZEROES payload (device-readable data after the header). */
  out?: Uint8Array;
  /** IN / GET_ID: device-writable data bytes before the status byte. */
  inLen?: number;
  /** Split the 16-byte header into descriptors of these sizes (sum 16). */
  headerSplit?: number[];
  /** Split the data into this many descriptors (default 1). */
  dataSegs?: number;
  /** Put the status byte in the same descriptor as the IN data (default false). */
  statusWithData?: boolean;
  /** Leave out the status byte (malformed). */
  noStatus?: boolean;
  /** Raw reserved field. */
  reserved?: number;
}

/** A posted request. */
export interface BlkPosted {
  token: number;
  q: number;
  statusAddr: number;
  /** Guest address of the IN data (contiguous even when split into descriptors). */
  inAddr: number;
  inLen: number;
}

/** A completed request. */
export interface BlkDone {
  token: number;
  len: number;
  status: number;
  /** IN data (a copy). */
  data: Uint8Array;
}

/** Builds virtio-blk requests in guest memory and collects completions. */
export class BlkDriver {
  readonly rig: DeviceRig;
  readonly model: VirtioDeviceModel & { whenIdle(): Promise<void> };
  private readonly sg = new SgList(64);
  private nextToken = 1;
  private readonly posted = new Map<number, BlkPosted>();

  constructor(rig: DeviceRig, model: VirtioDeviceModel & { whenIdle(): Promise<void> }) {
    this.rig = rig;
    this.model = model;
  }

  /** Post a request on queue `q` (published, not kicked). */
  post(q: number, r: BlkReqSpec): BlkPosted {
    const rig = this.rig;
    const dv = new DataView(rig.ram.buffer);
    const sg = this.sg.clear();
    const hdr = rig.alloc(16);
    dv.setUint32(hdr, r.type >>> 0, true);
    dv.setUint32(hdr + 4, r.reserved ?? 0, true);
    const sector = r.sector ?? 0;
    dv.setUint32(hdr + 8, sector >>> 0, true);
    dv.setUint32(hdr + 12, Math.floor(sector / 4294967296) >>> 0, true);
    let o = 0;
    for (const part of r.headerSplit ?? [16]) {
      sg.out(hdr + o, part);
      o += part;
    }
    const segs = (len: number, n: number, addr: number, out: boolean): void => {
      const k = Math.max(1, Math.min(n, len));
      let done = 0;
      for (let i = 0; i < k; i++) {
        const l = i === k - 1 ? len - done : Math.floor(len / k);
        if (l === 0) continue;
        if (out) sg.out(addr + done, l);
        else sg.in(addr + done, l);
        done += l;
      }
    };
    if (r.out !== undefined && r.out.length > 0) {
      const a = rig.alloc(r.out.length);
      rig.ram.set(r.out, a);
      segs(r.out.length, r.dataSegs ?? 1, a, true);
    }
    const inLen = r.inLen ?? 0;
    const inAddr = rig.alloc(inLen + 1);
    rig.ram.fill(0xee, inAddr, inAddr + inLen + 1);
    const statusAddr = inAddr + inLen;
    if (r.statusWithData === true && inLen > 0 && r.noStatus !== true) {
      sg.in(inAddr, inLen + 1);
    } else {
      if (inLen > 0) segs(inLen, r.dataSegs ?? 1, inAddr, false);
      if (r.noStatus !== true) sg.in(statusAddr, 1);
    }
    const token = this.nextToken++;
    const dq = rig.drivers[q]!;
    if (dq.add(sg, token) < 0) throw new Error(`queue ${q} full`);
    dq.publish();
    const p: BlkPosted = { token, q, statusAddr, inAddr, inLen };
    this.posted.set(token, p);
    return p;
  }

  /** Kick queue `q`. */
  kick(q: number): void {
    this.rig.core.notify(q);
  }

  /** Collect every used buffer of queue `q`. */
  collect(q: number): BlkDone[] {
    const dq = this.rig.drivers[q]!;
    const out: BlkDone[] = [];
    while (dq.getUsed()) {
      const p = this.posted.get(dq.lastToken);
      if (p === undefined) throw new Error(`unknown token ${dq.lastToken}`);
      this.posted.delete(p.token);
      out.push({ token: p.token, len: dq.lastLen, status: this.rig.ram[p.statusAddr]!, data: this.rig.ram.slice(p.inAddr, p.inAddr + p.inLen) });
    }
    return out;
  }

  /** Post, kick, wait for the device to go idle, collect: one request's completion. */
  async run(q: number, r: BlkReqSpec): Promise<BlkDone> {
    const p = this.post(q, r);
    this.kick(q);
    await this.model.whenIdle();
    const done = this.collect(q);
    const mine = done.find((d) => d.token === p.token);
    if (mine === undefined) throw new Error(`request ${p.token} did not complete (got ${done.length} others)`);
    return mine;
  }

  read(q: number, sector: number, bytes: number, extra: Partial<BlkReqSpec> = {}): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_IN, sector, inLen: bytes, ...extra });
  }
  write(q: number, sector: number, data: Uint8Array, extra: Partial<BlkReqSpec> = {}): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_OUT, sector, out: data, ...extra });
  }
  flush(q: number): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_FLUSH });
  }
  getId(q: number, len = BLK_ID_BYTES): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_GET_ID, inLen: len });
  }
  /** DISCARD / WRITE_ZEROES with segments [sector, numSectors, flags]. */
  dwz(q: number, discard: boolean, segs: Array<[number, number, number]>): Promise<BlkDone> {
    return this.run(q, { type: discard ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES, out: dwzPayload(segs) });
  }
}

/** Encode `struct virtio_blk_discard_write_zeroes` segments. */
export function dwzPayload(segs: Array<[number, number, number]>): Uint8Array {
  const b = new Uint8Array(16 * segs.length);
  const dv = new DataView(b.buffer);
  segs.forEach(([sector, n, flags], i) => {
    dv.setUint32(i * 16, sector >>> 0, true);
    dv.setUint32(i * 16 + 4, Math.floor(sector / 4294967296) >>> 0, true);
    dv.setUint32(i * 16 + 8, n >>> 0, true);
    dv.setUint32(i * 16 + 12, flags >>> 0, true);
  });
  return b;
}
