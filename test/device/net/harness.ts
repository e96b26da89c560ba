/**
 * In-process virtio-net test stack: guest RAM as an AddressSpace, a VirtioDeviceCore with the real
 * split queue factory, driver-side SplitDriverQueues over the same memory, and a {@link NetDriver}
 * that behaves like a minimal guest driver (posts receive buffers, transmits frames with a
 * virtio_net_hdr, issues control commands, collects received frames incl. mergeable buffers).
 *
 * The generic bring-up ({@link startDevice}) is copied from test/device/blk/harness.ts (split only)
 * so the two device suites do not depend on each other.
 */
import { VirtioDeviceCore } from '../../../src/device/core.js';
import { RecordingSink } from '../../../src/device/choke.js';
import type { TransportHooks, VirtioDeviceModel } from '../../../src/device/types.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../../../src/features/bits.js';
import { FeatureSet } from '../../../src/features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../../src/features/status.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createSplitDeviceQueue, layoutSplitRings, SplitDriverQueue } from '../../../src/queue/split/index.js';
import { SgList, type QueueConfig } from '../../../src/queue/types.js';
import { VirtioNetDevice, type NetDeviceOptions } from '../../../src/device/net/net-device.js';
import { NetHdr, netHdrSize } from '../../../src/device/net/header.js';
import { NET_F } from '../../../src/device/net/features.js';

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
  /** Queue size the driver picks (default min(64, model max)). */
  queueSize?: number;
  /** Queues to enable (default all of the model's). */
  queues?: number[];
  /** Device-specific bits the driver declines (default: accept everything offered). */
  decline?: number[];
  /** Device-independent bits offered besides VERSION_1 (default INDIRECT_DESC, EVENT_IDX). */
  extraFeatures?: number[];
  /** Guest RAM size (default 8 MiB). */
  ramBytes?: number;
}

/** A running device with its driver side. */
export interface DeviceRig {
  core: VirtioDeviceCore;
  hooks: CountingHooks;
  space: AddressSpace;
  ram: Uint8Array;
  drivers: Array<SplitDriverQueue | undefined>;
  driverSink: RecordingSink;
  features: FeatureSet;
  alloc(bytes: number, align?: number): number;
}

/** Build the stack and run driver initialization. Throws when the device refuses a step. */
export function startDevice(model: VirtioDeviceModel, opts: RigOptions = {}): DeviceRig {
  const ramBytes = opts.ramBytes ?? 8 << 20;
  const buf = new ArrayBuffer(ramBytes);
  const space = new AddressSpace([{ base: 0, size: ramBytes, buffer: buf, name: 'ram' }], 'guest-ram');
  const ram = new Uint8Array(buf);
  const hooks = new CountingHooks();
  const core = new VirtioDeviceCore({
    model,
    space,
    hooks,
    queueFactories: { split: createSplitDeviceQueue },
    extraFeatures: opts.extraFeatures ?? [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX],
  });
  const offered = new FeatureSet();
  for (let w = 0; w < 4; w++) {
    core.writeDeviceFeatureSelect(w);
    offered.setWord(w, core.readDeviceFeature());
  }
  const accepted = offered.clone();
  for (const b of opts.decline ?? []) accepted.clear(b);
  accepted.clear(VIRTIO_F_RING_PACKED);
  core.writeStatus(STATUS_ACKNOWLEDGE);
  core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  for (let w = 0; w < 4; w++) {
    core.writeDriverFeatureSelect(w);
    core.writeDriverFeature(accepted.word(w));
  }
  const fo = core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  if (!fo.accepted || (core.status & STATUS_FEATURES_OK) === 0) throw new Error(`FEATURES_OK refused: ${fo.reason ?? ''} ${JSON.stringify(core.trace.ofKind('negotiation-refused').map((e) => e.detail))}`);

  let next = 0x1000;
  const alloc = (bytes: number, align = 16): number => {
    const a = Math.ceil(next / align) * align;
    next = a + bytes;
    if (next > ramBytes) throw new Error(`harness: guest RAM exhausted (${ramBytes} bytes)`);
    return a;
  };
  const driverSink = new RecordingSink();
  const drivers: Array<SplitDriverQueue | undefined> = [];
  const queues = opts.queues ?? Array.from({ length: model.numQueues }, (_, i) => i);
  for (const q of queues) {
    const size = opts.queueSize ?? Math.min(64, model.maxQueueSize(q));
    const lay = layoutSplitRings(alloc(0, 4096), size);
    alloc(lay.bytes);
    core.writeQueueSelect(q);
    core.writeQueueSize(size);
    core.writeQueueAddr('desc', false, lay.desc);
    core.writeQueueAddr('driver', false, lay.driver);
    core.writeQueueAddr('device', false, lay.device);
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
    drivers[q] = new SplitDriverQueue(space, cfg, driverSink);
  }
  const dok = core.writeStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  if (!dok.accepted) throw new Error(`DRIVER_OK refused: ${dok.reason ?? ''}`);
  next = Math.ceil(next / 4096) * 4096;
  return { core, hooks, space, ram, drivers, driverSink, features: accepted, alloc };
}

/** A frame the driver received. */
export interface RxFrame {
  hdr: NetHdr;
  frame: Uint8Array;
  /** Buffers the frame arrived in. */
  buffers: number;
  /** Used len of each buffer. */
  lens: number[];
  /** Receive queue. */
  q: number;
}

/** A receive buffer posted by the driver. */
interface RxBuf {
  addr: number;
  len: number;
}

/** Options of {@link NetDriver.send}. */
export interface SendOptions {
  hdr?: NetHdr;
  /** Transmit queue (default 1). */
  q?: number;
  /** Put the header in its own descriptor (default true, as Linux without ANY_LAYOUT tricks). */
  splitHeader?: boolean;
  /** Append a device-writable descriptor of this many bytes (malformed-ish). */
  writable?: number;
  /** Readable bytes actually supplied (truncate header+frame to this many; malformed). */
  truncateTo?: number;
  /** Do not kick (caller kicks). */
  noKick?: boolean;
}

/** A minimal guest virtio-net driver over a {@link DeviceRig}. */
export class NetDriver {
  readonly rig: DeviceRig;
  readonly dev: VirtioNetDevice;
  readonly hdrSize: number;
  readonly mergeable: boolean;
  private readonly sg = new SgList(8);
  private readonly rxBufs = new Map<number, RxBuf>();
  private nextToken = 1;

  constructor(rig: DeviceRig, dev: VirtioNetDevice) {
    this.rig = rig;
    this.dev = dev;
    this.hdrSize = netHdrSize(rig.features);
    this.mergeable = rig.features.has(NET_F.MRG_RXBUF);
  }

  /** Post `count` receive buffers of `size` bytes on queue `q` and kick. */
  postRx(q = 0, count = 8, size = 2048, kick = true): void {
    const dq = this.rig.drivers[q]!;
    for (let i = 0; i < count; i++) {
      const addr = this.rig.alloc(size);
      this.rig.ram.fill(0xcc, addr, addr + size);
      const t = this.nextToken++;
      this.rxBufs.set(t, { addr, len: size });
      if (dq.add(this.sg.clear().in(addr, size), t) < 0) throw new Error(`rx queue ${q} full`);
    }
    if (dq.publish() && kick) this.rig.core.notify(q);
  }

  /** Kick queue `q` unconditionally. */
  kick(q: number): void {
    this.rig.core.notify(q);
  }

  /** Transmit `frame` with a virtio_net_hdr (default all zero); collects the TX used buffers. Returns the used lens. */
  send(frame: Uint8Array, opts: SendOptions = {}): number[] {
    const q = opts.q ?? 1;
    const hs = this.hdrSize;
    const total = hs + frame.length;
    const addr = this.rig.alloc(total + (opts.writable ?? 0));
    const h = opts.hdr ?? new NetHdr();
    h.serialize(this.rig.ram, addr, hs);
    this.rig.ram.set(frame, addr + hs);
    const supplied = Math.min(total, opts.truncateTo ?? total);
    const sg = this.sg.clear();
    if ((opts.splitHeader ?? true) && supplied > hs) {
      sg.out(addr, hs);
      sg.out(addr + hs, supplied - hs);
    } else {
      sg.out(addr, supplied);
    }
    if (opts.writable !== undefined) sg.in(addr + total, opts.writable);
    const dq = this.rig.drivers[q]!;
    if (dq.add(sg, this.nextToken++) < 0) throw new Error(`tx queue ${q} full`);
    const want = dq.publish();
    if (opts.noKick === true) return [];
    if (want) this.rig.core.notify(q);
    return this.collectTx(q);
  }

  /** Collect used TX buffers of queue `q`; returns their used lens. */
  collectTx(q = 1): number[] {
    const dq = this.rig.drivers[q]!;
    const lens: number[] = [];
    while (dq.getUsed()) lens.push(dq.lastLen);
    return lens;
  }

  /** Collect every frame received on queue `q` (mergeable buffers are joined using num_buffers). */
  recv(q = 0): RxFrame[] {
    const dq = this.rig.drivers[q]!;
    const ram = this.rig.ram;
    const out: RxFrame[] = [];
    const take = (): RxBuf & { used: number } => {
      if (!dq.getUsed()) throw new Error(`rx queue ${q}: expected another used buffer`);
      const b = this.rxBufs.get(dq.lastToken);
      if (b === undefined) throw new Error(`rx queue ${q}: unknown token ${dq.lastToken}`);
      this.rxBufs.delete(dq.lastToken);
      return { ...b, used: dq.lastLen };
    };
    while (dq.hasUsed()) {
      const first = take();
      const hdr = new NetHdr().parse(ram, first.addr);
      const n = this.mergeable ? hdr.numBuffers : 1;
      const parts: Uint8Array[] = [ram.slice(first.addr + this.hdrSize, first.addr + first.used)];
      const lens = [first.used];
      for (let i = 1; i < n; i++) {
        const b = take();
        parts.push(ram.slice(b.addr, b.addr + b.used));
        lens.push(b.used);
      }
      const len = parts.reduce((a, p) => a + p.length, 0);
      const frame = new Uint8Array(len);
      let o = 0;
      for (const p of parts) {
        frame.set(p, o);
        o += p.length;
      }
      out.push({ hdr, frame, buffers: n, lens, q });
    }
    return out;
  }

  /** Issue a control command; returns the ack byte (or -1 when the chain was not used). */
  ctrl(cls: number, cmd: number, data: Uint8Array = new Uint8Array(0)): number {
    const q = this.dev.controlQueue;
    if (q < 0) throw new Error('no control queue negotiated');
    const addr = this.rig.alloc(2 + data.length + 1);
    const ram = this.rig.ram;
    ram[addr] = cls;
    ram[addr + 1] = cmd;
    ram.set(data, addr + 2);
    const ackAt = addr + 2 + data.length;
    ram[ackAt] = 0xee;
    const sg = this.sg.clear().out(addr, 2);
    if (data.length > 0) sg.out(addr + 2, data.length);
    sg.in(ackAt, 1);
    const dq = this.rig.drivers[q]!;
    dq.add(sg, this.nextToken++);
    if (dq.publish()) this.rig.core.notify(q);
    if (!dq.getUsed()) return -1;
    if (dq.lastLen !== 1) throw new Error(`control used len ${dq.lastLen}, expected 1`);
    return ram[ackAt]!;
  }
}

/** A started net device with its driver. */
export interface NetGuest {
  dev: VirtioNetDevice;
  rig: DeviceRig;
  drv: NetDriver;
}

/** Build a device, bring it up, wrap a driver. */
export function netGuest(devOpts: NetDeviceOptions = {}, rigOpts: RigOptions = {}): NetGuest {
  const dev = new VirtioNetDevice(devOpts);
  const rig = startDevice(dev, rigOpts);
  return { dev, rig, drv: new NetDriver(rig, dev) };
}
