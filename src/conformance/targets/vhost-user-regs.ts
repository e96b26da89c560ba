/**
 * A register view over a vhost-user back-end, so the conformance checks' raw driver can drive it.
 *
 * vhost-user has no device registers: the front-end (this file) keeps the virtio state itself —
 * status, acked features, per-queue size/addresses/enable — and turns the transitions a virtio
 * driver makes into the requests QEMU's front-end sends:
 *
 * - FEATURES_OK → SET_FEATURES (64 bits; VHOST_USER_F_PROTOCOL_FEATURES added back when offered)
 *   and SET_MEM_TABLE (guest RAM, one memfd region);
 * - DRIVER_OK (or queue_enable after it) → per enabled queue SET_VRING_NUM/ADDR/BASE, CALL, ERR,
 *   KICK and SET_VRING_ENABLE — a ring starts at DRIVER_OK, as QEMU starts vhost there;
 * - status 0 (reset) → GET_VRING_BASE for every started ring (the back-end stops it) plus
 *   RESET_DEVICE when that protocol feature is negotiated; when the back-end is in an error state
 *   (connection closed, error eventfd, refused request) the reset closes the connection and opens
 *   a fresh one instead (libvhost-user back-ends close the connection on a guest error);
 * - notify → a write to the ring's kick eventfd (after a reset: the old kick eventfd, so a check
 *   can prove the stopped ring stays stopped); device config reads come from a GET_CONFIG cache.
 *
 * Requests are sent at once, in order, without waiting (register writes are synchronous for the
 * raw driver); with REPLY_ACK every request asks for an ack. Replies and acks are checked as they
 * arrive: a NACK, an error eventfd write or a closed connection puts the back-end in an error
 * state, which reads as DEVICE_NEEDS_RESET (and a refused SET_FEATURES as FEATURES_OK clear).
 * {@link VhostUserRegs.sync} waits for the outstanding replies and refreshes the config cache.
 *
 * The virtio view of the offer leaves out the vhost-user protocol bits (30 PROTOCOL_FEATURES,
 * 26 LOG_ALL), as a front-end does before showing features to a guest.
 */
import { VirtioError } from '../../errors.js';
import { VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { FeatureSet } from '../../features/set.js';
import { STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../features/status.js';
import { logger } from '../../log.js';
import type { GuestRam } from '../../memory/ram.js';
import { native as defaultNative } from '../../native/index.js';
import { POLL_READABLE, type NativeApi, type PollHandle } from '../../native/types.js';
import { encodeConfig, encodeMemTable, encodeU64, encodeU64Mask, encodeVringAddr, encodeVringState } from '../../vhost-user/codec.js';
import { VhostUserFrontend } from '../../vhost-user/frontend.js';
import {
  type Mask64,
  maskHas,
  maskOf,
  Req,
  reqName,
  VHOST_F_LOG_ALL,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_RESET_DEVICE,
} from '../../vhost-user/protocol.js';
import type { VhostUserLink } from '../check.js';
import type { TransportRegs } from '../raw.js';

const log = logger('conformance:vhost-user');

/** DEVICE_NEEDS_RESET. */
const NEEDS_RESET = 0x40;
/** Protocol features the adapter uses when offered. */
const WANTED_PROTOCOL = [VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_CONFIG, VHOST_USER_PROTOCOL_F_RESET_DEVICE];
/** GET_CONFIG sizes tried, largest first (virtio-blk 1.4 = 96, QEMU 7.2 = 72 or 60 bytes, ...). */
const CONFIG_SIZES = [96, 72, 64, 60, 56, 48, 40, 36, 34, 32, 24, 20, 16, 12, 8, 4];

/** What a probe of the back-end found (shared by every connection of a target). */
export interface VhostUserBackendInfo {
  readonly socketPath: string;
  /** GET_FEATURES as sent by the back-end (vhost-user bits included). */
  readonly rawOffered: Mask64;
  /** Protocol features offered (zero when bit 30 is not offered). */
  readonly protocolOffered: Mask64;
  /** Protocol features the adapter negotiates (offered ∩ MQ, REPLY_ACK, CONFIG, RESET_DEVICE). */
  readonly protocol: Mask64;
  /** Rings (GET_QUEUE_NUM with MQ, else 1). */
  readonly numQueues: number;
  /** Device config size answered by GET_CONFIG (0 without CONFIG). */
  readonly configSize: number;
  /** Device config at probe time. */
  readonly config: Uint8Array;
}

/** Options of {@link probeVhostUser} and {@link VhostUserRegs}. */
export interface VhostUserRegsOptions {
  /** Reply timeout of one request (default 3000 ms). */
  timeoutMs?: number;
  /** Largest ring size shown as queue_size max (default 256). */
  queueMax?: number;
  native?: NativeApi;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolve after `ms` (unref'd). */
function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Connect once, read what the back-end offers and its config, disconnect. */
export async function probeVhostUser(socketPath: string, opts: VhostUserRegsOptions = {}): Promise<VhostUserBackendInfo> {
  let fe: VhostUserFrontend;
  try {
    fe = VhostUserFrontend.connect(socketPath, { timeoutMs: opts.timeoutMs ?? 3000, ...(opts.native !== undefined ? { native: opts.native } : {}) });
  } catch (e) {
    throw new VirtioError('INVALID_ARGUMENT', `vhost-user target: cannot connect to ${socketPath}: ${errText(e)} (is a back-end listening there?)`);
  }
  try {
    const rawOffered = await fe.getFeatures();
    let protocolOffered: Mask64 = { lo: 0, hi: 0 };
    let protocol: Mask64 = { lo: 0, hi: 0 };
    if (maskHas(rawOffered, VHOST_USER_F_PROTOCOL_FEATURES)) {
      protocolOffered = await fe.getProtocolFeatures();
      protocol = maskOf(WANTED_PROTOCOL.filter((b) => maskHas(protocolOffered, b)));
      await fe.setProtocolFeatures(protocol);
    }
    const numQueues = maskHas(protocol, VHOST_USER_PROTOCOL_F_MQ) ? Math.max(1, Math.min(64, await fe.getQueueNum())) : 1;
    let config: Uint8Array = new Uint8Array(0);
    if (maskHas(protocol, VHOST_USER_PROTOCOL_F_CONFIG)) {
      for (const size of CONFIG_SIZES) {
        try {
          config = await fe.getConfig(0, size);
          break;
        } catch (e) {
          if (fe.isClosedNow) throw e;
        }
      }
    }
    return { socketPath, rawOffered, protocolOffered, protocol, numQueues, configSize: config.length, config };
  } finally {
    fe.close();
  }
}

/** One started (or configured) ring. */
interface Ring {
  size: number;
  desc: number;
  driver: number;
  device: number;
  enabled: boolean;
  started: boolean;
  call: number;
  err: number;
  polls: PollHandle[];
}

/** One connection to the back-end. */
interface Conn {
  readonly fe: VhostUserFrontend;
  readonly pending: Set<Promise<unknown>>;
  /** Anything beyond the preamble was sent (a reset has something to undo). */
  dirty: boolean;
  closing: boolean;
}

/** The register adapter; one per device under test (one fresh connection per check). */
export class VhostUserRegs implements TransportRegs, VhostUserLink {
  readonly transport = 'vhost-user' as const;
  private readonly nat: NativeApi;
  private readonly timeoutMs: number;
  private readonly queueMaxSize: number;
  private readonly offered: FeatureSet;
  private readonly ack: boolean;
  private conn: Conn;
  private st = 0;
  private readonly drv = [0, 0, 0, 0];
  private sel = 0;
  private rings: Ring[] = [];
  /** Last kick eventfd of each queue (kept after a reset). */
  private readonly kicks = new Map<number, number>();
  /** fds to close at the end. */
  private readonly retired: number[] = [];
  private config: Uint8Array<ArrayBufferLike>;
  private broken: string | undefined;
  private featuresRefused: string | undefined;
  private readonly listeners: Array<(kind: 'queue' | 'error', q: number) => void> = [];
  private closed = false;
  /** Connections opened (1 + reconnects). */
  connections = 0;

  constructor(
    readonly info: VhostUserBackendInfo,
    private readonly ram: GuestRam,
    /** Front-end user address = guest-physical + this (exercises the back-end's translation). */
    private readonly uaddrOffset: number,
    opts: VhostUserRegsOptions = {},
  ) {
    this.nat = opts.native ?? defaultNative;
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.queueMaxSize = opts.queueMax ?? 256;
    const f = new FeatureSet();
    f.setWord(0, info.rawOffered.lo);
    f.setWord(1, info.rawOffered.hi);
    f.clear(VHOST_USER_F_PROTOCOL_FEATURES);
    f.clear(VHOST_F_LOG_ALL);
    this.offered = f;
    this.ack = maskHas(info.protocol, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    this.config = info.config.slice();
    this.conn = this.connect();
  }

  get regs(): TransportRegs {
    return this;
  }

  get errorReason(): string | undefined {
    return this.broken;
  }

  onSignal(fn: (kind: 'queue' | 'error', q: number) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  private emit(kind: 'queue' | 'error', q: number): void {
    for (const l of this.listeners.slice()) l(kind, q);
  }

  // ---------------------------------------------------------------------------------- connection

  private connect(): Conn {
    let fe: VhostUserFrontend;
    try {
      fe = VhostUserFrontend.connect(this.info.socketPath, { timeoutMs: this.timeoutMs, native: this.nat });
    } catch (e) {
      throw new VirtioError('CLOSED', `vhost-user: cannot connect to ${this.info.socketPath}: ${errText(e)}`);
    }
    this.connections++;
    const c: Conn = { fe, pending: new Set(), dirty: false, closing: false };
    void fe.closed.then((why) => {
      if (!c.closing && this.conn === c) this.markBroken(`the back-end closed the connection${why !== undefined ? `: ${why.message}` : ''}`);
    });
    // The preamble QEMU sends on every connection.
    this.track(c, Req.GET_FEATURES, fe.request(Req.GET_FEATURES));
    if (maskHas(this.info.rawOffered, VHOST_USER_F_PROTOCOL_FEATURES)) {
      this.track(c, Req.GET_PROTOCOL_FEATURES, fe.request(Req.GET_PROTOCOL_FEATURES));
      this.track(c, Req.SET_PROTOCOL_FEATURES, fe.request(Req.SET_PROTOCOL_FEATURES, encodeU64Mask(this.info.protocol), undefined, false));
    }
    this.send(c, Req.SET_OWNER);
    return c;
  }

  /** Follow a request's reply: a failure puts the back-end into the error state. */
  private track(c: Conn, req: number, p: Promise<unknown>, onFail?: (why: string) => void): void {
    const q = p.then(
      () => undefined,
      (e: unknown) => {
        if (c.closing || this.conn !== c) return;
        const why = `${reqName(req)}: ${errText(e)}`;
        onFail?.(why);
        this.markBroken(why);
      },
    );
    c.pending.add(q);
    void q.finally(() => c.pending.delete(q));
  }

  /** Send a request without a reply body (acked when REPLY_ACK is negotiated). */
  private send(c: Conn, req: number, payload?: Uint8Array, fds?: number[], onFail?: (why: string) => void): void {
    if (c.fe.isClosedNow) {
      if (!c.closing && this.conn === c) this.markBroken(`${reqName(req)} on a closed connection`);
      return;
    }
    let p: Promise<unknown>;
    try {
      p = c.fe.request(req, payload, fds, this.ack);
    } catch (e) {
      p = Promise.reject(e);
    }
    this.track(c, req, p, onFail);
  }

  private markBroken(why: string): void {
    if (this.broken !== undefined || this.closed) return;
    log('back-end error state: %s', why);
    this.broken = why;
  }

  /** Close the connection (and the rings' fds) and open a fresh one. */
  private reconnect(): void {
    const old = this.conn;
    old.closing = true;
    this.dropRings();
    old.fe.close();
    this.broken = undefined;
    this.conn = this.connect();
  }

  // ---------------------------------------------------------------------------------- rings

  private ring(q: number): Ring {
    let r = this.rings[q];
    if (r === undefined) {
      r = { size: 0, desc: 0, driver: 0, device: 0, enabled: false, started: false, call: -1, err: -1, polls: [] };
      this.rings[q] = r;
    }
    return r;
  }

  private startRing(q: number, r: Ring): void {
    const c = this.conn;
    c.dirty = true;
    const nat = this.nat;
    const kick = nat.eventfdCreate(0);
    const call = nat.eventfdCreate(0);
    const err = nat.eventfdCreate(0);
    const oldKick = this.kicks.get(q);
    if (oldKick !== undefined) this.retired.push(oldKick);
    this.kicks.set(q, kick);
    r.call = call;
    r.err = err;
    const packed = this.featureBit(VIRTIO_F_RING_PACKED);
    const off = this.uaddrOffset;
    this.send(c, Req.SET_VRING_NUM, encodeVringState({ index: q, num: r.size }));
    this.send(c, Req.SET_VRING_ADDR, encodeVringAddr({ index: q, flags: 0, desc: r.desc + off, used: r.device + off, avail: r.driver + off, log: 0 }));
    this.send(c, Req.SET_VRING_BASE, encodeVringState({ index: q, num: packed ? (0x8000 | 0x8000_0000) >>> 0 : 0 }));
    this.send(c, Req.SET_VRING_CALL, encodeU64(q), [call]);
    this.send(c, Req.SET_VRING_ERR, encodeU64(q), [err]);
    this.send(c, Req.SET_VRING_KICK, encodeU64(q), [kick]);
    if (maskHas(this.info.rawOffered, VHOST_USER_F_PROTOCOL_FEATURES)) this.send(c, Req.SET_VRING_ENABLE, encodeVringState({ index: q, num: 1 }));
    r.polls.push(
      nat.poll(call, POLL_READABLE, () => {
        if (nat.eventfdRead(call) > 0) this.emit('queue', q);
      }),
      nat.poll(err, POLL_READABLE, () => {
        if (nat.eventfdRead(err) > 0) {
          this.markBroken(`the back-end signalled the error eventfd of ring ${q}`);
          this.emit('error', q);
        }
      }),
    );
    for (const p of r.polls) p.unref();
    r.started = true;
  }

  /** Stop a started ring with GET_VRING_BASE (the back-end stops processing it). */
  private stopRing(q: number, r: Ring): void {
    if (r.started && !this.conn.fe.isClosedNow) {
      let p: Promise<unknown>;
      try {
        p = this.conn.fe.request(Req.GET_VRING_BASE, encodeVringState({ index: q, num: 0 }));
      } catch (e) {
        p = Promise.reject(e);
      }
      this.track(this.conn, Req.GET_VRING_BASE, p);
    }
    this.releaseRing(r);
  }

  private releaseRing(r: Ring): void {
    for (const p of r.polls) p.stop();
    r.polls = [];
    for (const fd of [r.call, r.err]) if (fd >= 0) this.retired.push(fd);
    r.call = -1;
    r.err = -1;
    r.started = false;
  }

  private dropRings(): void {
    for (const r of this.rings) if (r !== undefined) this.releaseRing(r);
    this.rings = [];
  }

  private featureBit(b: number): boolean {
    return ((this.drv[Math.floor(b / 32)]! >>> b % 32) & 1) === 1;
  }

  // ---------------------------------------------------------------------------------- status

  private reset(): void {
    if (this.broken !== undefined || this.conn.fe.isClosedNow) {
      this.reconnect();
    } else if (this.conn.dirty) {
      this.rings.forEach((r, q) => {
        if (r !== undefined) this.stopRing(q, r);
      });
      this.rings = [];
      if (maskHas(this.info.protocol, VHOST_USER_PROTOCOL_F_RESET_DEVICE)) this.send(this.conn, Req.RESET_DEVICE);
      this.conn.dirty = false;
    }
    this.st = 0;
    this.drv.fill(0);
    this.sel = 0;
    this.featuresRefused = undefined;
  }

  private featuresOk(): void {
    const c = this.conn;
    c.dirty = true;
    if (this.drv[2] !== 0 || this.drv[3] !== 0) {
      this.featuresRefused = `feature bits above 63 acked (0x${this.drv[3]!.toString(16)}${this.drv[2]!.toString(16).padStart(8, '0')} << 64): vhost-user carries 64 bits`;
      return;
    }
    let hi = this.drv[1]!;
    let lo = this.drv[0]!;
    if (maskHas(this.info.rawOffered, VHOST_USER_F_PROTOCOL_FEATURES)) lo = (lo | (1 << VHOST_USER_F_PROTOCOL_FEATURES)) >>> 0;
    hi >>>= 0;
    this.send(c, Req.SET_FEATURES, encodeU64Mask({ lo, hi }), undefined, (why) => (this.featuresRefused = why));
    const regions = this.ram.regions.map((r) => {
      if (r.fd === undefined) throw new VirtioError('INVALID_ARGUMENT', `vhost-user: guest RAM region ${r.name} is not memfd-backed`);
      return { gpa: r.base, size: r.size, uaddr: r.base + this.uaddrOffset, mmapOffset: 0, fd: r.fd };
    });
    this.send(
      c,
      Req.SET_MEM_TABLE,
      encodeMemTable(regions),
      regions.map((r) => r.fd),
    );
  }

  status(): number {
    let s = this.st;
    if (this.featuresRefused !== undefined) s &= ~STATUS_FEATURES_OK;
    if (this.broken !== undefined) s |= NEEDS_RESET;
    return s;
  }

  setStatus(v: number): void {
    v &= 0xff;
    if (v === 0) {
      this.reset();
      return;
    }
    const added = v & ~this.st;
    this.st = v;
    if ((added & STATUS_FEATURES_OK) !== 0) this.featuresOk();
    if ((added & STATUS_DRIVER_OK) !== 0 && this.featuresRefused === undefined) {
      this.rings.forEach((r, q) => {
        if (r !== undefined && r.enabled && !r.started) this.startRing(q, r);
      });
    }
  }

  // ---------------------------------------------------------------------------------- features

  deviceFeatures(word: number): number {
    return this.offered.word(word);
  }
  setDriverFeatures(word: number, v: number): void {
    if (word >= 0 && word < 4) this.drv[word] = v >>> 0;
  }
  driverFeatures(word: number): number {
    return this.drv[word] ?? 0;
  }

  // ---------------------------------------------------------------------------------- queues

  selectQueue(q: number): void {
    this.sel = q & 0xffff;
  }
  queueMax(): number {
    return this.sel < this.info.numQueues ? this.queueMaxSize : 0;
  }
  queueSize(): number {
    return this.sel < this.info.numQueues ? this.ring(this.sel).size || this.queueMaxSize : 0;
  }
  setQueueSize(n: number): void {
    if (this.sel < this.info.numQueues) this.ring(this.sel).size = n & 0xffff;
  }
  setQueueAddrs(desc: number, driver: number, device: number): void {
    if (this.sel >= this.info.numQueues) return;
    const r = this.ring(this.sel);
    r.desc = desc;
    r.driver = driver;
    r.device = device;
  }
  setQueueEnable(v: number): void {
    if (this.sel >= this.info.numQueues || v !== 1) return;
    const r = this.ring(this.sel);
    r.enabled = true;
    if ((this.st & STATUS_DRIVER_OK) !== 0 && !r.started && this.featuresRefused === undefined) this.startRing(this.sel, r);
  }
  queueEnable(): number {
    return this.rings[this.sel]?.enabled === true ? 1 : 0;
  }
  /** Queue reset (RING_RESET) maps to stopping the ring. */
  setQueueReset(v: number): void {
    const r = this.rings[this.sel];
    if (v === 1 && r !== undefined) {
      this.stopRing(this.sel, r);
      r.enabled = false;
    }
  }
  queueReset(): number {
    return 0;
  }
  numQueues(): number {
    return this.info.numQueues;
  }
  notify(q: number): void {
    const fd = this.kicks.get(q);
    if (fd !== undefined) this.nat.eventfdWrite(fd, 1);
  }

  // ---------------------------------------------------------------------------------- config

  readConfig(off: number, width: 1 | 2 | 4): number {
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + (this.config[off + i] ?? 0);
    return v;
  }
  writeConfig(off: number, width: 1 | 2 | 4, v: number): void {
    const b = new Uint8Array(width);
    for (let i = 0; i < width; i++) b[i] = Math.floor(v / 256 ** i) & 0xff;
    for (let i = 0; i < width; i++) if (off + i < this.config.length) this.config[off + i] = b[i]!;
    this.conn.dirty = true;
    this.send(this.conn, Req.SET_CONFIG, encodeConfig(off, 0, b));
  }
  generation(): number {
    return 0;
  }

  // ---------------------------------------------------------------------------------- waiting

  async sync(ms: number): Promise<void> {
    const c = this.conn;
    const end = performance.now() + ms;
    while (c.pending.size > 0 && performance.now() < end) {
      await Promise.race([Promise.allSettled([...c.pending]), delay(Math.max(1, end - performance.now()))]);
    }
    if (this.info.configSize > 0 && this.broken === undefined && !c.fe.isClosedNow && performance.now() < end) {
      try {
        const got = await Promise.race([c.fe.getConfig(0, this.info.configSize), delay(Math.max(1, end - performance.now())).then(() => undefined)]);
        if (got !== undefined) this.config = got;
      } catch (e) {
        if (!c.closing && this.conn === c) this.markBroken(`GET_CONFIG: ${errText(e)}`);
      }
    }
  }

  /** Close the connection and every fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.closing = true;
    this.dropRings();
    this.conn.fe.close();
    for (const fd of [...this.retired, ...this.kicks.values()]) {
      try {
        this.nat.close(fd);
      } catch {
        // already closed
      }
    }
    this.retired.length = 0;
    this.kicks.clear();
  }
}
