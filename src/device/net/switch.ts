/**
 * An in-process L2 learning switch: several virtio-net devices' backends plug into its ports so
 * simulated guests can exchange frames (ARP, ping, ...).
 *
 * Forwarding per frame (synchronous, no copy: the sender's buffer view is passed to each receiver,
 * which copies into guest memory or its backlog before returning):
 *  - learn: a unicast source MAC is mapped to the ingress port (a MAC that moves is re-learned);
 *  - broadcast / multicast destination, or a destination not learned yet → flood to every other port;
 *  - a learned destination → that port only; learned on the ingress port itself → filtered (dropped).
 * The table holds at most `maxMacs` entries; when full it is flushed (then relearned by flooding).
 *
 * Offload metadata (virtio_net_hdr fields from the sending driver) travels with the frame; each
 * receiving device adapts it to what its own driver negotiated (see net-device.ts).
 */
import type { FrameReceiver, FrameTap, NetBackend } from './backend.js';
import { nowMicros } from './backend.js';
import { formatMac, macToNumber, parseMac } from './config.js';
import type { NetHdr } from './header.js';

/** Switch counters. */
export interface SwitchStats {
  /** Frames sent to exactly one learned port. */
  forwarded: number;
  /** Frames flooded (broadcast, multicast, unknown unicast). */
  flooded: number;
  /** Frames whose destination was learned on the ingress port (dropped). */
  filtered: number;
  /** Frames shorter than an Ethernet header (dropped). */
  runts: number;
  /** Table flushes because it reached maxMacs. */
  flushes: number;
}

/** One port; it is the {@link NetBackend} of the device plugged into it. */
export class SwitchPort implements NetBackend {
  readonly name: string;
  /** Frames this port sent into the switch / received from it. */
  txFrames = 0;
  rxFrames = 0;
  private rx: FrameReceiver | null = null;
  private readonly sw: NetSwitch;

  /** Use {@link NetSwitch.createPort}. */
  constructor(sw: NetSwitch, name: string) {
    this.sw = sw;
    this.name = name;
  }

  send(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    this.txFrames++;
    this.sw.forward(this, buf, off, len, meta);
  }

  onFrame(cb: FrameReceiver): void {
    this.rx = cb;
  }

  /** Hand a frame to the device on this port. */
  deliver(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    this.rxFrames++;
    const rx = this.rx;
    if (rx !== null) rx(buf, off, len, meta);
  }
}

/** Options of {@link NetSwitch}. */
export interface NetSwitchOptions {
  /** Most learned MACs before the table is flushed (default 1024). */
  maxMacs?: number;
  /** Name for taps (default "switch"). */
  name?: string;
}

/** The learning switch. */
export class NetSwitch {
  readonly name: string;
  readonly stats: SwitchStats = { forwarded: 0, flooded: 0, filtered: 0, runts: 0, flushes: 0 };
  private readonly portList: SwitchPort[] = [];
  private readonly table = new Map<number, SwitchPort>();
  private readonly maxMacs: number;
  private readonly taps: FrameTap[] = [];

  constructor(opts: NetSwitchOptions = {}) {
    this.maxMacs = opts.maxMacs ?? 1024;
    this.name = opts.name ?? 'switch';
  }

  /** Add a port (pass it as the device's backend). */
  createPort(name = `port${this.portList.length}`): SwitchPort {
    const p = new SwitchPort(this, name);
    this.portList.push(p);
    return p;
  }

  /** Remove a port and forget the MACs learned on it. */
  removePort(port: SwitchPort): void {
    const i = this.portList.indexOf(port);
    if (i >= 0) this.portList.splice(i, 1);
    for (const [mac, p] of this.table) if (p === port) this.table.delete(mac);
  }

  get ports(): readonly SwitchPort[] {
    return this.portList;
  }

  /** The port a MAC was learned on. */
  lookup(mac: string | Uint8Array): SwitchPort | undefined {
    const b = typeof mac === 'string' ? parseMac(mac) : mac;
    return this.table.get(macToNumber(b, 0));
  }

  /** Learned entries as "mac → port name" (inspection). */
  macTable(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [m, p] of this.table) {
      const b = new Uint8Array(6);
      let v = m;
      for (let i = 5; i >= 0; i--) {
        b[i] = v % 256;
        v = Math.floor(v / 256);
      }
      out.push([formatMac(b), p.name]);
    }
    return out;
  }

  /** Observe every frame entering the switch (direction 'tx' from the ingress port's point of view). */
  addTap(tap: FrameTap): void {
    this.taps.push(tap);
  }

  removeTap(tap: FrameTap): void {
    const i = this.taps.indexOf(tap);
    if (i >= 0) this.taps.splice(i, 1);
  }

  /** Forget every learned MAC. */
  flush(): void {
    this.table.clear();
  }

  /** Forward a frame that entered on `from` (called by {@link SwitchPort.send}). */
  forward(from: SwitchPort, buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    if (len < 14) {
      this.stats.runts++;
      return;
    }
    const taps = this.taps;
    if (taps.length > 0) {
      const ts = nowMicros();
      for (let i = 0; i < taps.length; i++) taps[i]!(buf, off, len, 'tx', ts, from.name);
    }
    // learn the source (unicast sources only)
    if ((buf[off + 6]! & 1) === 0) {
      const src = macToNumber(buf, off + 6);
      const known = this.table.get(src);
      if (known !== from) {
        if (known === undefined && this.table.size >= this.maxMacs) {
          this.table.clear();
          this.stats.flushes++;
        }
        this.table.set(src, from);
      }
    }
    const ports = this.portList;
    if ((buf[off]! & 1) === 0) {
      const to = this.table.get(macToNumber(buf, off));
      if (to !== undefined) {
        if (to === from) this.stats.filtered++;
        else {
          this.stats.forwarded++;
          to.deliver(buf, off, len, meta);
        }
        return;
      }
    }
    this.stats.flooded++;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i]!;
      if (p !== from) p.deliver(buf, off, len, meta);
    }
  }
}
