/**
 * The virtio-net device model (virtio 1.4 §5.1): a {@link VirtioDeviceModel} connecting guest
 * virtqueues to a {@link NetBackend}.
 *
 * Queues (§5.1.2): receiveqN = 2(N−1), transmitqN = 2(N−1)+1, controlq = 2N where N is
 * max_virtqueue_pairs when VIRTIO_NET_F_MQ is negotiated and 1 otherwise — so without MQ the
 * control queue is queue 2 even on a device built with several pairs.
 *
 * Receive (frames from the backend):
 *  link down / before DRIVER_OK → drop; rx mode + MAC filter ({@link RxFilter}); offload fields
 *  adapted to what *this* driver negotiated (below); queue picked by a flow hash over the active
 *  pairs, falling back to the other active pairs when that queue has no buffer; no buffer anywhere
 *  → the frame waits in a bounded backlog ({@link FrameBacklog}, default 256 frames / 1 MiB) that
 *  drains when the driver adds receive buffers (a notify on a receive queue); backlog full → drop
 *  and count. Delivery never blocks the sender and never spins.
 *
 * Offloads — pass-through, never segmentation (choices documented with clause ids):
 *  - NEEDS_CSUM from the sender: passed through (flags, csum_start, csum_offset unchanged) when this
 *    driver negotiated GUEST_CSUM (net.processing-incoming-packets.device.15: the checksum field holds
 *    the pseudo-header sum, as the sender's driver left it per net.packet-transmission.driver.17);
 *    otherwise the device completes the checksum in software into the guest copy and sets flags to 0
 *    (net.processing-incoming-packets.device.5).
 *  - GSO frames: passed through (gso_type, gso_size, hdr_len) only when this driver negotiated the
 *    matching GUEST_TSO4/TSO6/UFO/USO (and GUEST_ECN for the ECN bit); otherwise dropped and counted
 *    in `rxGsoDropped` — the device does not segment (net.processing-incoming-packets.device.6–10,
 *    .12, .18). Offer the GUEST_* / HOST_* bits consistently on every port of a switch (the default
 *    offers them all) so that drivers which negotiate them never lose frames.
 *  - Without the sender's metadata, or without NEEDS_CSUM: flags 0, gso NONE. RSC_INFO, DATA_VALID
 *    and tunnel bits are never set (…device.21, .10, .11).
 *  - MTU negotiated: gso-NONE frames longer than mtu + Ethernet header are dropped (net.dev-cfg-layout.device.5).
 *
 * Transmit: see tx.ts (malformed chains, offload validation). Control queue: see ctrl.ts.
 * Config: MAC, status (LINK_UP via {@link VirtioNetDevice.setLink}, ANNOUNCE via
 * {@link VirtioNetDevice.announce}), max_virtqueue_pairs, mtu — config.ts.
 */
import { VirtioError } from '../../errors.js';
import { logger } from '../../log.js';
import { FeatureSet } from '../../features/set.js';
import { DeviceType } from '../../features/bits.js';
import type { AddressSpace } from '../../memory/space.js';
import type { DeviceQueue } from '../../queue/types.js';
import type { DeviceContext, ModelHost, VirtioDeviceModel } from '../types.js';
import type { FrameReceiver, FrameTap, NetBackend } from './backend.js';
import { nowMicros } from './backend.js';
import { FrameBacklog } from './backlog.js';
import { completeChecksum } from './checksum.js';
import { NetConfig, NET_MAX_QUEUE_PAIRS, VIRTIO_NET_S_ANNOUNCE, VIRTIO_NET_S_LINK_UP, formatMac, parseMac } from './config.js';
import { CtrlPath, type CtrlTarget } from './ctrl.js';
import { NET_F } from './features.js';
import { RxFilter } from './filter.js';
import {
  NET_HDR_MAX_SIZE,
  NetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  netHdrSize,
} from './header.js';
import { RxQueueState, RxResult } from './rx.js';
import { ETH_HLEN, MAX_FRAME_LEN, VLAN_HLEN, newNetStats, type NetStats } from './stats.js';
import { TxPath, isVlan, txCaps, type TxCaps } from './tx.js';

const log = logger('net');

/** Options of {@link VirtioNetDevice}. */
export interface NetDeviceOptions {
  /** MAC address ("52:54:00:12:34:56" or 6 bytes). Default: a locally administered 02:76:6b:xx:xx:xx. */
  mac?: string | Uint8Array;
  /** Where frames go and come from (default: a backend that drops everything). Can be set later with {@link VirtioNetDevice.attach}. */
  backend?: NetBackend;
  /** max_virtqueue_pairs (1..0x8000); above 1 offers VIRTIO_NET_F_MQ. Default 1. */
  queuePairs?: number;
  /** Maximum size of every queue (power of two). Default 256. */
  queueSize?: number;
  /** Advertise VIRTIO_NET_F_MTU with this mtu (68..65535). Default: not offered. */
  mtu?: number;
  /** Offer VIRTIO_NET_F_MRG_RXBUF. Default true. */
  mergeable?: boolean;
  /** Offer the control queue (CTRL_VQ, CTRL_RX, CTRL_RX_EXTRA, CTRL_MAC_ADDR). Default true. */
  ctrlVq?: boolean;
  /** Offer VIRTIO_NET_F_GUEST_ANNOUNCE (needs ctrlVq). Default true. */
  announce?: boolean;
  /** Offer checksum and TSO offloads both ways (CSUM, GUEST_CSUM, HOST_/GUEST_TSO4/TSO6/ECN). Default true. */
  offloads?: boolean;
  /** Initial link state. Default up. */
  linkUp?: boolean;
  /** Receive backlog bounds. Defaults 256 frames, 1 MiB. */
  backlogFrames?: number;
  backlogBytes?: number;
  /** Name for logs and taps. Default "virtio-net <mac>". */
  name?: string;
}

let macCounter = 0;

/** Result of delivering one frame now. */
const enum Delivery {
  DONE = 0,
  NO_BUFFERS = 1,
  DROPPED = 2,
}

/** The virtio-net device model. */
export class VirtioNetDevice implements VirtioDeviceModel, CtrlTarget {
  readonly deviceId = DeviceType.NET;
  readonly name: string;
  readonly numQueues: number;
  readonly config: NetConfig;
  readonly filter = new RxFilter();
  readonly stats: NetStats = newNetStats();
  /** Receive queue pairs the device offers (max_virtqueue_pairs). */
  readonly maxPairs: number;

  private readonly queueSize: number;
  private readonly offered: FeatureSet;
  private readonly hasCtrl: boolean;
  private backend: NetBackend;
  private readonly taps: FrameTap[] = [];
  private readonly backlog: FrameBacklog;
  private readonly tx: TxPath;
  private readonly ctrl: CtrlPath;
  private host: ModelHost | null = null;
  private ctx: DeviceContext | null = null;
  private space: AddressSpace | null = null;
  private feats: FeatureSet = new FeatureSet().freeze();
  private hdrSize = 12;
  private mergeable = false;
  private caps: TxCaps = txCaps(new FeatureSet(), 12, 0);
  private guestCsum = false;
  private guestTso4 = false;
  private guestTso6 = false;
  private guestEcn = false;
  private guestUfo = false;
  private guestUso = false;
  private rxMtu = 0;
  private mq = false;
  private ctrlIndex = -1;
  private pairs = 1;
  private rxStates: Array<RxQueueState | null> = [];
  /** Queues that reported a guest error (not used until reset). */
  private readonly broken: Uint8Array;
  private suspended = false;
  private rxBusy = false;
  private rxPending = false;
  private txBusy = false;
  private readonly txPending: Uint8Array;
  private txAnyPending = false;
  private readonly hdrScratch = new Uint8Array(NET_HDR_MAX_SIZE);
  private readonly outHdr = new NetHdr();
  private readonly backlogMeta = new NetHdr();

  constructor(opts: NetDeviceOptions = {}) {
    const mac = opts.mac === undefined ? defaultMac() : typeof opts.mac === 'string' ? parseMac(opts.mac) : Uint8Array.from(opts.mac);
    const pairs = opts.queuePairs ?? 1;
    if (!Number.isInteger(pairs) || pairs < 1 || pairs > NET_MAX_QUEUE_PAIRS) {
      throw new VirtioError('INVALID_ARGUMENT', `virtio-net: queuePairs must be 1..${NET_MAX_QUEUE_PAIRS} (got ${pairs})`);
    }
    const ctrl = opts.ctrlVq ?? true;
    if (pairs > 1 && !ctrl) throw new VirtioError('INVALID_ARGUMENT', 'virtio-net: queuePairs > 1 needs the control queue (VIRTIO_NET_F_MQ requires VIRTIO_NET_F_CTRL_VQ); set ctrlVq: true');
    const qs = opts.queueSize ?? 256;
    if (!Number.isInteger(qs) || qs < 2 || qs > 32768 || (qs & (qs - 1)) !== 0) {
      throw new VirtioError('INVALID_ARGUMENT', `virtio-net: queueSize must be a power of two 2..32768 (got ${qs})`);
    }
    this.config = new NetConfig({ mac, linkUp: opts.linkUp ?? true, maxQueuePairs: pairs, mtu: opts.mtu ?? 0 });
    this.name = opts.name ?? `virtio-net ${formatMac(mac)}`;
    this.maxPairs = pairs;
    this.hasCtrl = ctrl;
    this.queueSize = qs;
    this.numQueues = 2 * pairs + (ctrl ? 1 : 0);
    this.broken = new Uint8Array(this.numQueues);
    this.txPending = new Uint8Array(this.numQueues);
    this.backlog = new FrameBacklog(opts.backlogFrames ?? 256, opts.backlogBytes ?? 1 << 20);
    this.tx = new TxPath(qs);
    this.ctrl = new CtrlPath(qs);

    const o = new FeatureSet();
    o.set(NET_F.MAC).set(NET_F.STATUS);
    if (opts.mergeable ?? true) o.set(NET_F.MRG_RXBUF);
    if (opts.mtu !== undefined) o.set(NET_F.MTU);
    if (ctrl) {
      o.set(NET_F.CTRL_VQ).set(NET_F.CTRL_RX).set(NET_F.CTRL_RX_EXTRA).set(NET_F.CTRL_MAC_ADDR);
      if (opts.announce ?? true) o.set(NET_F.GUEST_ANNOUNCE);
      if (pairs > 1) o.set(NET_F.MQ);
    }
    if (opts.offloads ?? true) {
      for (const b of [NET_F.CSUM, NET_F.GUEST_CSUM, NET_F.HOST_TSO4, NET_F.HOST_TSO6, NET_F.HOST_ECN, NET_F.GUEST_TSO4, NET_F.GUEST_TSO6, NET_F.GUEST_ECN]) o.set(b);
    }
    this.offered = o.freeze();
    this.backend = opts.backend ?? { send: () => {}, onFrame: () => {} };
    this.backend.onFrame(this.receive);
  }

  // ==========================================================================================
  // Host API

  /** Connect a backend (replaces the previous one). */
  attach(backend: NetBackend): void {
    this.backend = backend;
    backend.onFrame(this.receive);
  }

  /** Observe every transmitted frame and every frame delivered to the guest. */
  addTap(tap: FrameTap): void {
    this.taps.push(tap);
  }

  /** Stop observing. */
  removeTap(tap: FrameTap): void {
    const i = this.taps.indexOf(tap);
    if (i >= 0) this.taps.splice(i, 1);
  }

  /**
   * Set the link state: flips VIRTIO_NET_S_LINK_UP and, when it changed, bumps config_generation
   * and raises a configuration-change interrupt. While down, frames are dropped both ways.
   * @returns true when the state changed.
   */
  setLink(up: boolean): boolean {
    const changed = this.config.setStatusBits(up ? VIRTIO_NET_S_LINK_UP : 0, VIRTIO_NET_S_LINK_UP);
    if (changed) {
      log('%s: link %s', this.name, up ? 'up' : 'down');
      this.host?.configChanged();
    }
    return changed;
  }

  /** Link state. */
  get linkUp(): boolean {
    return this.config.linkUp;
  }

  /**
   * Ask the driver to announce itself (sets VIRTIO_NET_S_ANNOUNCE + config interrupt). Only when
   * the driver negotiated VIRTIO_NET_F_GUEST_ANNOUNCE; it acknowledges with VIRTIO_NET_CTRL_ANNOUNCE_ACK.
   * @returns false when GUEST_ANNOUNCE is not negotiated.
   */
  announce(): boolean {
    if (this.ctx === null || !this.feats.has(NET_F.GUEST_ANNOUNCE)) return false;
    if (this.config.setStatusBits(VIRTIO_NET_S_ANNOUNCE, VIRTIO_NET_S_ANNOUNCE)) this.host?.configChanged();
    return true;
  }

  /** Active queue pairs (1 after reset; VQ_PAIRS_SET changes it). */
  get activePairs(): number {
    return this.pairs;
  }

  /** Frames waiting for receive buffers. */
  get backlogged(): number {
    return this.backlog.count;
  }

  /** Index of the control queue under the negotiated features (-1 without CTRL_VQ / before DRIVER_OK). */
  get controlQueue(): number {
    return this.ctrlIndex;
  }

  /** The receive function given to the backend (bound; frames are valid only during the call). */
  readonly receive: FrameReceiver = (buf, off, len, meta) => {
    this.onFrame(buf, off, len, meta);
  };

  // ==========================================================================================
  // VirtioDeviceModel

  maxQueueSize(q: number): number {
    return q >= 0 && q < this.numQueues ? this.queueSize : 0;
  }

  offeredFeatures(): FeatureSet {
    return this.offered;
  }

  bind(host: ModelHost): void {
    this.host = host;
  }

  get negotiated(): FeatureSet {
    return this.feats;
  }

  activate(ctx: DeviceContext): void {
    const f = ctx.features;
    this.ctx = ctx;
    this.space = ctx.space;
    this.feats = f;
    this.hdrSize = netHdrSize(f);
    this.mergeable = f.has(NET_F.MRG_RXBUF);
    this.mq = f.has(NET_F.MQ);
    // §5.1.2: controlq = 2N, N = max_virtqueue_pairs with MQ, else 1.
    this.ctrlIndex = this.hasCtrl && f.has(NET_F.CTRL_VQ) ? 2 * (this.mq ? this.maxPairs : 1) : -1;
    // net.automatic-receive-steering-in-multiqueue-mode.device.1: only receiveq1 after reset.
    this.pairs = 1;
    this.guestCsum = f.has(NET_F.GUEST_CSUM);
    this.guestTso4 = f.has(NET_F.GUEST_TSO4);
    this.guestTso6 = f.has(NET_F.GUEST_TSO6);
    this.guestEcn = f.has(NET_F.GUEST_ECN);
    this.guestUfo = f.has(NET_F.GUEST_UFO);
    this.guestUso = f.has(NET_F.GUEST_USO4) || f.has(NET_F.GUEST_USO6);
    this.rxMtu = f.has(NET_F.MTU) ? this.config.mtu : 0;
    this.caps = txCaps(f, this.hdrSize, this.config.mtu);
    this.filter.controlled = f.has(NET_F.CTRL_RX);
    this.filter.knowsMac = f.has(NET_F.MAC);
    this.rxStates = new Array<RxQueueState | null>(this.maxPairs).fill(null);
    this.broken.fill(0);
    log('%s: activated, hdr %d bytes, mergeable %s, ctrl queue %d', this.name, this.hdrSize, this.mergeable, this.ctrlIndex);
  }

  notify(q: number): void {
    const ctx = this.ctx;
    if (ctx === null || this.broken[q] === 1) return;
    if (q === this.ctrlIndex) {
      this.runCtrl();
      return;
    }
    const usable = 2 * (this.mq ? this.maxPairs : 1);
    if (q >= usable) return; // not a queue under the negotiated features
    if ((q & 1) === 0) this.drainBacklog();
    else this.runTx(q);
  }

  reset(): void {
    this.ctx = null;
    this.space = null;
    this.feats = new FeatureSet().freeze();
    this.filter.reset(); // net.setting-mac-address-filtering.device.1
    this.config.reset();
    this.backlog.clear();
    this.rxStates = [];
    this.pairs = 1;
    this.ctrlIndex = -1;
    this.broken.fill(0);
    this.txPending.fill(0);
    this.txAnyPending = false;
    this.suspended = false;
  }

  queueReset(q: number): void {
    if ((q & 1) === 0 && q !== this.ctrlIndex) {
      const p = q >>> 1;
      if (p < this.rxStates.length) this.rxStates[p] = null;
    }
    this.broken[q] = 0;
  }

  queueStarted(q: number, _queue: DeviceQueue): void {
    this.broken[q] = 0;
  }

  suspend(): void {
    this.suspended = true;
  }

  resume(): void {
    this.suspended = false;
    if (this.ctx !== null) this.drainBacklog();
  }

  /** CtrlTarget: VQ_PAIRS_SET accepted. */
  setQueuePairs(n: number): void {
    log('%s: %d queue pairs active', this.name, n);
    this.pairs = n;
  }

  /** CtrlTarget: a config field changed through a command. */
  configChanged(): void {
    this.host?.configChanged();
  }

  /** Receive-queue state of pair `p` (inspection and tests). */
  rxQueueState(p: number): RxQueueState | null {
    return this.rxState(p);
  }

  // ==========================================================================================
  // Transmit and control

  private runTx(q: number): void {
    if (this.txBusy) {
      // Re-entered from our own emit (a backend delivered synchronously back into this guest, which
      // kicked again): finish the current frame first, then run this queue.
      this.txPending[q] = 1;
      this.txAnyPending = true;
      return;
    }
    this.txBusy = true;
    try {
      this.runTxQueue(q);
      for (let round = 0; this.txAnyPending && round < 64; round++) {
        this.txAnyPending = false;
        for (let i = 1; i < this.txPending.length; i += 2) {
          if (this.txPending[i] === 1) {
            this.txPending[i] = 0;
            this.runTxQueue(i);
          }
        }
      }
    } finally {
      this.txBusy = false;
    }
  }

  private runTxQueue(q: number): void {
    const ctx = this.ctx;
    if (ctx === null || this.space === null || this.broken[q] === 1) return;
    const queue = ctx.queues[q];
    if (queue === null || queue === undefined) return;
    const ok = this.tx.run(queue, this.space, ctx.sink, this.caps, this.config.linkUp, this.stats, this.emit);
    if (!ok) this.broken[q] = 1;
    ctx.interrupt(q);
  }

  private readonly emit = (buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void => {
    const taps = this.taps;
    if (taps.length > 0) {
      const ts = nowMicros();
      for (let i = 0; i < taps.length; i++) taps[i]!(buf, off, len, 'tx', ts, this.name);
    }
    this.backend.send(buf, off, len, meta);
  };

  private runCtrl(): void {
    const ctx = this.ctx;
    const q = this.ctrlIndex;
    if (ctx === null || this.space === null) return;
    const queue = ctx.queues[q];
    if (queue === null || queue === undefined) return;
    if (!this.ctrl.run(queue, this.space, ctx.sink, this)) this.broken[q] = 1;
    ctx.interrupt(q);
  }

  // ==========================================================================================
  // Receive

  private onFrame(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    const st = this.stats;
    if (this.ctx === null) {
      st.rxNotReady++;
      return;
    }
    if (!this.config.linkUp) {
      st.rxLinkDown++;
      return;
    }
    if (len < ETH_HLEN) {
      st.rxRunt++;
      return;
    }
    if (len > MAX_FRAME_LEN) {
      st.rxOversize++;
      return;
    }
    if (!this.filter.accepts(buf, off, this.config.isMac(buf, off))) {
      st.rxFiltered++;
      return;
    }
    const gso = meta === null ? VIRTIO_NET_HDR_GSO_NONE : meta.gsoType;
    if (gso !== VIRTIO_NET_HDR_GSO_NONE) {
      if (!this.gsoAllowed(gso)) {
        st.rxGsoDropped++;
        return;
      }
    } else if (this.rxMtu > 0 && len > this.rxMtu + ETH_HLEN + (isVlan(buf, off) ? VLAN_HLEN : 0)) {
      // net.dev-cfg-layout.device.5
      st.rxOversize++;
      return;
    }
    if (meta !== null && (meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 && meta.csumStart + meta.csumOffset + 2 > len) {
      st.rxBadOffload++;
      return;
    }
    if (this.backlog.count > 0 || this.suspended) {
      // Keep order: older frames first.
      this.drainBacklog();
      if (this.backlog.count > 0 || this.suspended) {
        this.enqueue(buf, off, len, meta);
        return;
      }
    }
    if (this.deliverNow(buf, off, len, meta) === Delivery.NO_BUFFERS) this.enqueue(buf, off, len, meta);
  }

  private enqueue(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    if (this.backlog.push(buf, off, len, meta)) this.stats.rxBacklogged++;
    else this.stats.rxNoBuffer++;
  }

  /** GSO type allowed towards this driver (net.processing-incoming-packets.device.6–10, .12). */
  private gsoAllowed(g: number): boolean {
    if ((g & VIRTIO_NET_HDR_GSO_ECN) !== 0 && !this.guestEcn) return false; // …device.12
    switch (g & ~VIRTIO_NET_HDR_GSO_ECN) {
      case VIRTIO_NET_HDR_GSO_TCPV4:
        return this.guestTso4; // …device.6
      case VIRTIO_NET_HDR_GSO_TCPV6:
        return this.guestTso6; // …device.8
      case VIRTIO_NET_HDR_GSO_UDP:
        return this.guestUfo; // …device.7
      case VIRTIO_NET_HDR_GSO_UDP_L4:
        return this.guestUso; // …device.9
      default:
        return false; // tunnel bits (…device.10, .16) and unknown types
    }
  }

  private drainBacklog(): void {
    if (this.rxBusy) {
      this.rxPending = true;
      return;
    }
    if (this.ctx === null || this.suspended) return;
    this.rxBusy = true;
    try {
      const bl = this.backlog;
      for (let round = 0; round < 16; round++) {
        this.rxPending = false;
        while (bl.count > 0 && this.ctx !== null && !this.suspended) {
          const r = this.deliverNow(bl.bytes, bl.frameOff, bl.frameLen, bl.frameMeta(this.backlogMeta));
          if (r === Delivery.NO_BUFFERS) break;
          bl.shift();
        }
        if (!this.rxPending) break;
      }
    } finally {
      this.rxBusy = false;
    }
  }

  /** Write one (already filtered) frame into a receive queue now. */
  private deliverNow(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): Delivery {
    const ctx = this.ctx!;
    const space = this.space!;
    const st = this.stats;
    const h = this.outHdr.clear();
    let patchAt = -1;
    let patchVal = 0;
    if (meta !== null) {
      if ((meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
        if (this.guestCsum) {
          // net.processing-incoming-packets.device.15: pass the partial checksum through.
          h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
          h.csumStart = meta.csumStart;
          h.csumOffset = meta.csumOffset;
        } else {
          // net.processing-incoming-packets.device.5: flags 0 and a fully checksummed packet.
          patchAt = meta.csumStart + meta.csumOffset;
          patchVal = completeChecksum(buf, off, len, meta.csumStart);
        }
      }
      if (meta.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
        // Allowed by gsoAllowed(); GUEST_TSO*/UFO/USO imply GUEST_CSUM, so NEEDS_CSUM passed too (…device.19).
        h.gsoType = meta.gsoType;
        h.gsoSize = meta.gsoSize;
        h.hdrLen = meta.hdrLen; // …device.22
      }
    }
    const hdr = this.hdrScratch;
    const hdrSize = this.hdrSize;
    h.serialize(hdr, 0, hdrSize);
    const n = this.pairs;
    const start = n === 1 ? 0 : flowHash(buf, off, len) % n;
    let sawNoBuffers = false;
    for (let i = 0; i < n; i++) {
      const p = (start + i) % n;
      const rs = this.rxState(p);
      if (rs === null) continue;
      const r = rs.deliver(space, ctx.sink, hdr, hdrSize, buf, off, len, this.mergeable, patchAt, patchVal);
      if (r === RxResult.DELIVERED) {
        st.rxFrames++;
        st.rxBytes += len;
        st.rxBuffers += hdr[10]! | (hdr[11]! << 8);
        if (patchAt >= 0) st.rxCsumCompleted++;
        const taps = this.taps;
        if (taps.length > 0) {
          const ts = nowMicros();
          for (let t = 0; t < taps.length; t++) taps[t]!(buf, off, len, 'rx', ts, this.name);
        }
        ctx.interrupt(2 * p);
        return Delivery.DONE;
      }
      if (r === RxResult.TOO_BIG) {
        st.rxTooBig++;
        return Delivery.DROPPED;
      }
      if (r === RxResult.NO_BUFFERS) sawNoBuffers = true;
      else this.broken[2 * p] = 1;
      // NO_BUFFERS / BROKEN: try the next active pair (cf. net.automatic-receive-steering-in-multiqueue-mode.device.3).
    }
    if (sawNoBuffers) return Delivery.NO_BUFFERS;
    // net.automatic-receive-steering-in-multiqueue-mode.device.4: no usable receive queue → drop.
    st.rxNotReady++;
    return Delivery.DROPPED;
  }

  private rxState(p: number): RxQueueState | null {
    const ctx = this.ctx;
    if (ctx === null || p >= this.rxStates.length) return null;
    const q = 2 * p;
    if (this.broken[q] === 1) return null;
    const queue = ctx.queues[q];
    if (queue === null || queue === undefined) return null;
    let rs = this.rxStates[p] ?? null;
    if (rs === null || rs.queue !== queue) {
      rs = new RxQueueState(queue);
      this.rxStates[p] = rs;
    }
    return rs;
  }
}

/** A flow hash for receive-queue selection (IPv4 addresses + TCP/UDP ports, else the MAC pair). No allocation. */
export function flowHash(buf: Uint8Array, off: number, len: number): number {
  let h = 0x811c9dc5;
  let from = off;
  let to = off + 12;
  let ports = -1;
  if (len >= 34 && buf[off + 12] === 0x08 && buf[off + 13] === 0x00) {
    from = off + 26;
    to = off + 34;
    const ihl = (buf[off + 14]! & 15) * 4;
    const proto = buf[off + 23];
    if ((proto === 6 || proto === 17) && len >= ETH_HLEN + ihl + 4) ports = off + ETH_HLEN + ihl;
  }
  for (let i = from; i < to; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  if (ports >= 0) for (let i = ports; i < ports + 4; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

function defaultMac(): Uint8Array {
  const n = ++macCounter;
  return Uint8Array.from([0x02, 0x76, 0x6b, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}
