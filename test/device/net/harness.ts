/**
 * In-process virtio-net test stack: guest RAM as an AddressSpace, a VirtioDeviceCore with the real
 * split queue factory, driver-side SplitDriverQueues over the same memory, and a {@link NetDriver}
 * that behaves like a minimal guest driver (posts receive buffers, transmits frames with a
 * virtio_net_hdr, issues control commands, collects received frames incl. mergeable buffers).
 *
 * The generic bring-up ({@link startDevice}) is the shared device rig (`test/device/harness.ts`),
 * with split rings (its default).
 */
import { SplitDriverQueue } from '../../../src/queue/split/index.js';
import { SgList } from '../../../src/queue/types.js';
import { startDevice, type DeviceRig, type RigOptions } from '../harness.js';
import { VirtioNetDevice, type NetDeviceOptions } from '../../../src/device/net/net-device.js';
import { NetHdr, netHdrSize } from '../../../src/device/net/header.js';
import { NET_F } from '../../../src/device/net/features.js';

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
    const dq = this.rig.drivers[q];
    // The rig builds split rings by default; hasUsed() (peek without taking) is the split driver's.
    if (!(dq instanceof SplitDriverQueue)) throw new Error(`rx queue ${q}: not a split ring (the net harness drives split rings)`);
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
