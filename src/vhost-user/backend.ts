/**
 * A vhost-user device back-end that runs any {@link VirtioDeviceModel} (blk, rng, console, ...).
 *
 * One {@link VhostUserBackend} holds the model and the policy (features offered, packed rings,
 * ACCESS_PLATFORM, `restrict` ranges); {@link VhostUserBackend.serve} runs one front-end
 * connection as a {@link VhostUserSession}. Messages are handled strictly in order (a handler may
 * wait, e.g. GET_VRING_BASE for in-flight requests), and every malformed or unsupported request
 * gets a failure reply (REPLY_ACK / NEED_REPLY) or is dropped with its fds closed — it never
 * crashes the process. Framing errors close the connection (`connection.ts`).
 *
 * Rings (vhost-user.rst "Ring states"): a ring starts at SET_VRING_KICK and stops at
 * GET_VRING_BASE, which waits for the model's in-flight requests, returns the ring position
 * (DeviceQueue.getBase) and closes the ring's kick and call fds. SET_VRING_ENABLE is recorded;
 * like libvhost-user, blk/rng/console rings are processed once started (these devices have no
 * side-effect-free "disabled" processing). Kicks: the kick eventfd is polled through libuv and
 * each wake-up drains it and calls `model.notify(q)`; `ctx.interrupt(q)` marks the ring, and once
 * per event-loop turn (setImmediate, after every completion of that turn was pushed) the call
 * eventfd is written for each marked ring whose `queue.needsInterrupt()` says so — one wake-up of
 * the front-end per batch of completions instead of one per completion (needsInterrupt covers
 * every used entry since the last check, so none is missed).
 *
 * Addresses: SET_VRING_ADDR carries front-end user addresses (QEMU virtual addresses), translated
 * to guest-physical through the memory table's `userspace_addr`; descriptors carry guest-physical
 * addresses. An IOMMU (VIRTIO_F_ACCESS_PLATFORM in SET_FEATURES, which means IOVAs and IOTLB
 * messages) is refused: QEMU without a vIOMMU strips the bit and sends guest-physical addresses.
 *
 * Restricted mode (`restrict`): the device's address space holds only the restrict ranges plus
 * the three areas of each started ring, each mapped from the region fds as exact byte ranges
 * (memory.ts). A buffer outside is refused by the queue layer through the guest-error choke
 * point: the ring parks (the front-end's err eventfd is signalled) until the ring is restarted.
 *
 * virtio-net (QEMU `-netdev vhost-user` + `virtio-net-pci`): QEMU keeps the control queue and the
 * config space, and passes only data-path bits (offloads, MRG_RXBUF, VERSION_1, ring bits) in
 * SET_FEATURES, so the model runs rings 0/1 (receiveq1/transmitq1) without a control queue
 * (`ctrlVq: false`, checked here) and GET_QUEUE_NUM answers in queue pairs. Neither RARP nor MTU
 * protocol features are offered (no SEND_RARP / NET_SET_MTU).
 *
 * Model lifecycle: the model is activated when the first ring starts (features = the acked
 * ones) and reset when the last ring stops or the session ends; a later ring joins with
 * `queueStarted`. When the address space must change (new memory table; a new ring area in
 * restricted mode) every ring is quiesced, the model reset, the space rebuilt and the rings
 * re-created at their positions.
 */
import { ChokePoint, type GuestError } from '../device/choke.js';
import type { DeviceContext, VirtioDeviceModel } from '../device/types.js';
import { VirtioError, isVirtioError } from '../errors.js';
import { DeviceType, requireFeatureBit, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1 } from '../features/bits.js';
import { negotiate } from '../features/negotiate.js';
import { FeatureSet } from '../features/set.js';
import { logger } from '../log.js';
import type { AddressSpace } from '../memory/space.js';
import { native as defaultNative } from '../native/index.js';
import { POLL_READABLE, type NativeApi, type PollHandle } from '../native/types.js';
import { createPackedDeviceQueue } from '../queue/packed/device.js';
import { createSplitDeviceQueue } from '../queue/split/device.js';
import type { DeviceQueue, QueueConfig } from '../queue/types.js';
import {
  decodeConfig,
  decodeMemTable,
  decodeU64Mask,
  decodeVringAddr,
  decodeVringFile,
  decodeVringState,
  encodeConfig,
  encodeU64,
  encodeU64Mask,
  encodeVringState,
  type VhostMessage,
  type VringAddr,
} from './codec.js';
import { VhostConnection } from './connection.js';
import { MemTable, type GpaRange, type MappedSpace } from './memory.js';
import {
  BackendReq,
  type Mask64,
  Req,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_MAX_REGIONS,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_PROTOCOL_F_BACKEND_REQ,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  VHOST_VRING_F_LOG,
  maskBits,
  maskHas,
  maskHex,
  maskOf,
  reqHasReply,
  reqName,
} from './protocol.js';

const log = logger('vhost-user');

const VIRTIO_NET_F_CTRL_VQ = requireFeatureBit('VIRTIO_NET_F_CTRL_VQ', DeviceType.NET);

/** Options of {@link VhostUserBackend}. */
export interface VhostUserBackendOptions {
  /** The device model to run (kept across sessions: a new connection gets the same disk). */
  model: VirtioDeviceModel;
  /** Offer VIRTIO_F_RING_PACKED (default false). */
  packed?: boolean;
  /**
   * Offer VIRTIO_F_ACCESS_PLATFORM (default false). QEMU's `iommu_platform=on` needs it, plus the
   * REPLY_ACK and BACKEND_REQ protocol features (always offered here).
   */
  accessPlatform?: boolean;
  /** Guest-physical ranges buffers must lie in (restricted mode); undefined maps all guest RAM. */
  restrict?: readonly GpaRange[];
  /** Device-independent bits offered besides VERSION_1 (default INDIRECT_DESC, EVENT_IDX). */
  extraFeatures?: readonly number[];
  /** How long GET_VRING_BASE and re-configuration wait for in-flight requests (default 5000 ms). */
  idleTimeoutMs?: number;
  /** Native API (default: the loaded addon). */
  native?: NativeApi;
}

/** Counters over all sessions. */
export interface VhostUserStats {
  sessions: number;
  messages: number;
  /** Requests answered with a failure (bad payload, unsupported request, bad state). */
  failedRequests: number;
  kicks: number;
  calls: number;
  guestErrors: number;
  /** Address spaces built (SET_MEM_TABLE, ring starts in restricted mode). */
  spaceBuilds: number;
}

/** Something the back-end refused or a guest error, for logs, tests and the CLI. */
export interface VhostUserEvent {
  kind: 'request-failed' | 'guest-error' | 'session-start' | 'session-end' | 'ring-start' | 'ring-stop' | 'space';
  message: string;
  request?: number;
  guestError?: GuestError;
}

/** Model with a `whenIdle()` (blk): lets the back-end wait for in-flight requests. */
interface IdleAware {
  whenIdle(): Promise<void>;
}
function isIdleAware(m: unknown): m is IdleAware {
  return typeof (m as { whenIdle?: unknown }).whenIdle === 'function';
}

/** The vhost-user back-end: policy + model; serves connections one at a time. */
export class VhostUserBackend {
  readonly model: VirtioDeviceModel;
  /** Virtio features offered by GET_FEATURES (bit 30 = protocol features included). */
  readonly offered: Mask64;
  /** Protocol features offered. */
  readonly protocolOffered: Mask64;
  readonly restrict: readonly GpaRange[] | undefined;
  readonly stats: VhostUserStats = { sessions: 0, messages: 0, failedRequests: 0, kicks: 0, calls: 0, guestErrors: 0, spaceBuilds: 0 };
  /** The most recent events (bounded to 200). */
  readonly events: VhostUserEvent[] = [];
  readonly idleTimeoutMs: number;
  readonly nat: NativeApi;
  private readonly listeners: Array<(e: VhostUserEvent) => void> = [];
  private current: VhostUserSession | null = null;

  constructor(opts: VhostUserBackendOptions) {
    const model = opts.model;
    if (model === undefined || model === null) throw new VirtioError('INVALID_ARGUMENT', 'VhostUserBackend: options.model is required');
    if (model.numQueues < 1 || model.numQueues > 256) throw new VirtioError('INVALID_ARGUMENT', `VhostUserBackend: ${model.name} has ${model.numQueues} queues; vhost-user addresses 1..256 rings`);
    if (opts.restrict !== undefined) {
      for (const r of opts.restrict) {
        if (!(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.end > r.start)) {
          throw new VirtioError('INVALID_ARGUMENT', `VhostUserBackend: restrict range [${r.start}, ${r.end}) must be non-empty integers below 2^53`);
        }
      }
    }
    const offered = model.offeredFeatures();
    if (model.deviceId === DeviceType.NET && offered.has(VIRTIO_NET_F_CTRL_VQ)) {
      // QEMU's vhost-user-net front-end runs the control queue itself and passes the back-end only
      // the data-path feature bits, so CTRL_VQ-dependent bits (GUEST_ANNOUNCE, MQ) would arrive alone.
      throw new VirtioError('INVALID_ARGUMENT', `VhostUserBackend: ${model.name} offers VIRTIO_NET_F_CTRL_VQ; build the net device with ctrlVq: false (the vhost-user front-end keeps the control queue)`);
    }
    this.model = model;
    this.nat = opts.native ?? defaultNative;
    this.restrict = opts.restrict;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 5000;
    const f = offered.clone();
    f.set(VIRTIO_F_VERSION_1);
    for (const b of opts.extraFeatures ?? [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX]) f.set(b);
    if (opts.packed === true) f.set(VIRTIO_F_RING_PACKED);
    if (opts.accessPlatform === true) f.set(VIRTIO_F_ACCESS_PLATFORM);
    f.set(VHOST_USER_F_PROTOCOL_FEATURES);
    this.offered = { lo: f.word(0), hi: f.word(1) };
    const proto = [VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_BACKEND_REQ];
    // net: QEMU owns the config space (MAC, status) and warns about a back-end offering CONFIG.
    if (model.config.size > 0 && model.deviceId !== DeviceType.NET) proto.push(VHOST_USER_PROTOCOL_F_CONFIG);
    this.protocolOffered = maskOf(proto);
  }

  /** Call `fn` for every event (guest errors, refused requests, sessions, rings). */
  onEvent(fn: (e: VhostUserEvent) => void): void {
    this.listeners.push(fn);
  }

  /** @internal */
  emit(e: VhostUserEvent): void {
    if (this.events.length >= 200) this.events.shift();
    this.events.push(e);
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        log('event listener threw: %O', err);
      }
    }
  }

  /** The session being served, if any. */
  get session(): VhostUserSession | null {
    return this.current;
  }

  /**
   * Serve one front-end on a connected socket fd (owned from now on). Only one session at a time:
   * a second call while one runs throws.
   */
  serve(fd: number): VhostUserSession {
    if (this.current !== null) throw new VirtioError('INVALID_ARGUMENT', 'VhostUserBackend: a session is already running; one front-end at a time');
    const s = new VhostUserSession(this, fd);
    this.current = s;
    this.stats.sessions++;
    this.emit({ kind: 'session-start', message: `session ${this.stats.sessions} on fd ${fd}` });
    void s.done.then(() => {
      if (this.current === s) this.current = null;
      this.emit({ kind: 'session-end', message: `session on fd ${fd} ended` });
    });
    return s;
  }
}

/** Per-ring state of a session. */
interface Ring {
  readonly index: number;
  num: number;
  addr: VringAddr | null;
  base: number;
  kickFd: number;
  callFd: number;
  errFd: number;
  enabled: boolean;
  /** SET_VRING_KICK received and not stopped by GET_VRING_BASE. */
  started: boolean;
  /** Parked by the choke point (guest error) until restarted. */
  parked: boolean;
  queue: DeviceQueue | null;
  poll: PollHandle | undefined;
}

/** Guest-physical placement of a ring's three areas. */
interface RingPlacement {
  desc: number;
  driver: number;
  device: number;
  descBytes: number;
  driverBytes: number;
  deviceBytes: number;
}

/** One front-end connection. */
export class VhostUserSession {
  /** Resolves when the connection closed and everything was released. */
  readonly done: Promise<void>;
  readonly choke: ChokePoint;
  private readonly be: VhostUserBackend;
  private readonly model: VirtioDeviceModel;
  private readonly nat: NativeApi;
  private readonly conn: VhostConnection;
  private readonly rings: Ring[];
  private readonly live: Array<DeviceQueue | null>;
  private readonly inbox: VhostMessage[] = [];
  private pumping = false;
  private ended = false;
  private resolveDone!: () => void;

  private owner = false;
  private acked: FeatureSet | null = null;
  private ackedProto: Mask64 = { lo: 0, hi: 0 };
  private mem: MemTable | null = null;
  private mapped: MappedSpace | null = null;
  private active = false;
  private backendReqFd = -1;
  /** Rings that asked for an interrupt since the last {@link flushInterrupts} (1 = pending). */
  private readonly irqPending: Uint8Array;
  private irqScheduled = false;
  private readonly flushInterruptsBound = (): void => this.flushInterrupts();

  constructor(be: VhostUserBackend, fd: number) {
    this.be = be;
    this.model = be.model;
    this.nat = be.nat;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.rings = [];
    this.live = [];
    this.irqPending = new Uint8Array(this.model.numQueues);
    for (let i = 0; i < this.model.numQueues; i++) {
      this.rings.push({ index: i, num: 0, addr: null, base: 0, kickFd: -1, callFd: -1, errFd: -1, enabled: false, started: false, parked: false, queue: null, poll: undefined });
      this.live.push(null);
    }
    this.choke = new ChokePoint({
      setNeedsReset: () => undefined,
      configInterrupt: () => undefined,
      park: (q) => {
        if (q >= 0) {
          const r = this.rings[q];
          if (r !== undefined) r.parked = true;
        } else {
          for (const r of this.rings) r.parked = true;
        }
      },
    });
    this.choke.onError((e) => {
      this.be.stats.guestErrors++;
      this.be.emit({ kind: 'guest-error', message: `${e.code}${e.queue >= 0 ? ` (queue ${e.queue})` : ''}: ${e.message}${e.clause !== undefined ? ` [${e.clause}]` : ''}`, guestError: e });
      const targets = e.queue >= 0 ? [this.rings[e.queue]] : this.rings;
      for (const r of targets) if (r !== undefined && r.errFd >= 0) this.signal(r.errFd);
    });
    this.conn = new VhostConnection(fd, { onMessage: (m) => this.enqueue(m), onClose: (why) => this.onClose(why) }, { native: this.nat, name: `vhost-user fd${fd}` });
  }

  /** Close the connection; {@link done} resolves after cleanup. */
  close(): void {
    this.conn.close();
  }

  /** The device's current address space (null before SET_MEM_TABLE). */
  get space(): AddressSpace | null {
    return this.mapped?.space ?? null;
  }

  /** Negotiated virtio features (null before SET_FEATURES). */
  get features(): FeatureSet | null {
    return this.acked;
  }

  /** Ring `q`'s live device queue (null when stopped). */
  queue(q: number): DeviceQueue | null {
    return this.live[q] ?? null;
  }

  /** Ring `q`'s enable state (SET_VRING_ENABLE). */
  ringEnabled(q: number): boolean {
    return this.rings[q]?.enabled ?? false;
  }

  // ----------------------------------------------------------------------------------------------
  // message loop

  private enqueue(m: VhostMessage): void {
    this.be.stats.messages++;
    this.inbox.push(m);
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.inbox.length > 0 && !this.conn.closed) await this.dispatch(this.inbox.shift()!);
    } finally {
      this.pumping = false;
      for (const m of this.inbox.splice(0)) this.closeFds(m.fds);
      if (this.conn.closed && !this.ended) await this.teardown();
    }
  }

  private async dispatch(m: VhostMessage): Promise<void> {
    let reply: Uint8Array | undefined;
    let failed: unknown;
    try {
      reply = await this.handle(m);
    } catch (e) {
      failed = e;
    }
    this.closeFds(m.fds); // whatever the handler did not take
    if (failed !== undefined) {
      this.be.stats.failedRequests++;
      const msg = isVirtioError(failed) || failed instanceof Error ? failed.message : String(failed);
      log('%s failed: %s', reqName(m.request), msg);
      this.be.emit({ kind: 'request-failed', message: msg, request: m.request });
    }
    if (this.conn.closed) return;
    try {
      if (reqHasReply(m.request)) {
        // A request with its own reply body: on failure answer with an empty body (GET_CONFIG's
        // documented error form) so the front-end never waits forever.
        this.conn.send(m.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, failed === undefined ? reply : new Uint8Array(0));
      } else if ((m.flags & VHOST_USER_NEED_REPLY_MASK) !== 0) {
        this.conn.send(m.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, encodeU64(failed === undefined ? 0 : 1));
      }
    } catch (e) {
      log('reply to %s failed: %O', reqName(m.request), e);
    }
  }

  private fail(req: number, msg: string): never {
    throw new VirtioError('PROTOCOL', `vhost-user ${reqName(req)}: ${msg}`);
  }

  private ring(req: number, index: number): Ring {
    const r = this.rings[index];
    if (r === undefined) this.fail(req, `ring ${index} does not exist (${this.model.name} has ${this.rings.length})`);
    return r;
  }

  /** Take the single fd of a message (or none when `noFd`). */
  private takeFd(m: VhostMessage, noFd: boolean): number {
    if (noFd) {
      if (m.fds.length !== 0) this.fail(m.request, `the invalid-fd flag is set but ${m.fds.length} fds came with the message`);
      return -1;
    }
    if (m.fds.length !== 1) this.fail(m.request, `expected exactly 1 file descriptor, got ${m.fds.length}`);
    return m.fds.shift()!;
  }

  private noFds(m: VhostMessage): void {
    if (m.fds.length > 0) this.fail(m.request, `${m.fds.length} unexpected file descriptors`);
  }

  private async handle(m: VhostMessage): Promise<Uint8Array | undefined> {
    const p = m.payload;
    const req = m.request;
    switch (req) {
      case Req.GET_FEATURES:
        this.noFds(m);
        return encodeU64Mask(this.be.offered);
      case Req.SET_FEATURES:
        this.noFds(m);
        this.setFeatures(decodeU64Mask(req, p));
        return undefined;
      case Req.GET_PROTOCOL_FEATURES:
        this.noFds(m);
        return encodeU64Mask(this.be.protocolOffered);
      case Req.SET_PROTOCOL_FEATURES: {
        this.noFds(m);
        const pf = decodeU64Mask(req, p);
        const extra = maskBits(pf).filter((b) => !maskHas(this.be.protocolOffered, b));
        if (extra.length > 0) this.fail(req, `protocol features ${extra.join(', ')} were not offered (offered ${maskHex(this.be.protocolOffered)})`);
        this.ackedProto = pf;
        return undefined;
      }
      case Req.SET_OWNER:
        this.noFds(m);
        this.owner = true;
        return undefined;
      case Req.RESET_OWNER:
      case Req.RESET_DEVICE:
        this.noFds(m);
        // Deprecated RESET_OWNER: disable all rings (vhost-user.rst's recommendation).
        await this.stopAll();
        if (req === Req.RESET_DEVICE) this.acked = null;
        return undefined;
      case Req.SET_MEM_TABLE: {
        const descs = decodeMemTable(req, p);
        const fds = m.fds.splice(0);
        const table = new MemTable(descs, fds, this.nat);
        await this.replaceMemory(table);
        return undefined;
      }
      case Req.SET_VRING_NUM: {
        this.noFds(m);
        const s = decodeVringState(req, p);
        const r = this.ring(req, s.index);
        if (s.num < 1 || s.num > 32768) this.fail(req, `ring ${s.index} size ${s.num} (1..32768)`);
        if (r.started) this.fail(req, `ring ${s.index} is started; stop it with GET_VRING_BASE first`);
        r.num = s.num;
        return undefined;
      }
      case Req.SET_VRING_ADDR: {
        this.noFds(m);
        const a = decodeVringAddr(req, p);
        const r = this.ring(req, a.index);
        if (this.mem === null) this.fail(req, `ring ${a.index}: addresses before SET_MEM_TABLE`);
        if ((a.flags & ~VHOST_VRING_F_LOG) !== 0) this.fail(req, `ring ${a.index}: unknown flags 0x${a.flags.toString(16)}`);
        for (const [k, v] of [['descriptor', a.desc], ['used', a.used], ['available', a.avail]] as const) {
          if (this.mem.userToGpa(v, 1) < 0) this.fail(req, `ring ${a.index}: ${k} address 0x${v.toString(16)} is outside the memory table`);
        }
        r.addr = a;
        if (r.started) await this.restartRing(r);
        return undefined;
      }
      case Req.SET_VRING_BASE: {
        this.noFds(m);
        const s = decodeVringState(req, p);
        const r = this.ring(req, s.index);
        r.base = s.num >>> 0;
        r.queue?.setBase(r.base);
        return undefined;
      }
      case Req.GET_VRING_BASE: {
        this.noFds(m);
        const s = decodeVringState(req, p);
        const r = this.ring(req, s.index);
        const base = await this.stopRing(r, true);
        return encodeVringState({ index: s.index, num: base });
      }
      case Req.SET_VRING_KICK: {
        const f = decodeVringFile(req, p);
        const r = this.ring(req, f.index);
        if (f.noFd) this.fail(req, `ring ${f.index}: polling mode (no kick fd) is not supported`);
        const fd = this.takeFd(m, false);
        this.stopKickPoll(r);
        if (r.kickFd >= 0) this.safeClose(r.kickFd);
        r.kickFd = fd;
        await this.startRing(r);
        return undefined;
      }
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        const f = decodeVringFile(req, p);
        const r = this.ring(req, f.index);
        const fd = this.takeFd(m, f.noFd);
        if (req === Req.SET_VRING_CALL) {
          if (r.callFd >= 0) this.safeClose(r.callFd);
          r.callFd = fd;
        } else {
          if (r.errFd >= 0) this.safeClose(r.errFd);
          r.errFd = fd;
        }
        return undefined;
      }
      case Req.GET_QUEUE_NUM:
        this.noFds(m);
        // vhost-user-net counts queue pairs here (QEMU compares it with `-netdev vhost-user,queues=`;
        // the control queue, if any, stays in QEMU); every other device counts rings.
        return encodeU64(this.model.deviceId === DeviceType.NET ? Math.max(1, this.model.numQueues >>> 1) : this.model.numQueues);
      case Req.SET_VRING_ENABLE: {
        this.noFds(m);
        const s = decodeVringState(req, p);
        const r = this.ring(req, s.index);
        if (s.num > 1) this.fail(req, `ring ${s.index}: enable value ${s.num} (0 or 1)`);
        r.enabled = s.num === 1;
        if (r.enabled && r.queue !== null) this.kick(r.index, false);
        return undefined;
      }
      case Req.SET_BACKEND_REQ_FD: {
        if (!maskHas(this.ackedProto, VHOST_USER_PROTOCOL_F_BACKEND_REQ)) this.fail(req, 'BACKEND_REQ protocol feature not negotiated');
        const fd = this.takeFd(m, false);
        if (this.backendReqFd >= 0) this.safeClose(this.backendReqFd);
        this.backendReqFd = fd;
        return undefined;
      }
      case Req.GET_CONFIG: {
        this.noFds(m);
        const c = decodeConfig(req, p);
        const cfg = this.model.config;
        const data = new Uint8Array(c.size);
        for (let i = 0; i < c.size; i++) data[i] = c.offset + i < cfg.size ? cfg.read(c.offset + i, 1) & 0xff : 0;
        return encodeConfig(c.offset, c.flags, data);
      }
      case Req.SET_CONFIG: {
        this.noFds(m);
        const c = decodeConfig(req, p);
        const cfg = this.model.config;
        if (c.offset + c.size > cfg.size) this.fail(req, `config write of ${c.size} bytes at ${c.offset} beyond the ${cfg.size}-byte config space`);
        for (let i = 0; i < c.size; i++) cfg.write(c.offset + i, 1, c.data[i]!);
        return undefined;
      }
      case Req.GET_MAX_MEM_SLOTS:
        this.noFds(m);
        return encodeU64(VHOST_USER_MAX_REGIONS);
      default:
        this.fail(req, `not supported by this back-end (${m.fds.length} fds closed)`);
    }
  }

  // ----------------------------------------------------------------------------------------------
  // features and memory

  private setFeatures(mask: Mask64): void {
    const off = this.be.offered;
    const extra = maskBits(mask).filter((b) => !maskHas(off, b));
    // basic.feature-bits.driver.1: only offered bits may be accepted.
    if (extra.length > 0) this.fail(Req.SET_FEATURES, `features ${extra.join(', ')} were not offered (offered ${maskHex(off)}, got ${maskHex(mask)})`);
    if (maskHas(mask, VIRTIO_F_ACCESS_PLATFORM)) {
      this.fail(Req.SET_FEATURES, 'VIRTIO_F_ACCESS_PLATFORM acked: the front-end has a vIOMMU and would send IOVAs, but this back-end has no IOTLB support (run the guest without a vIOMMU; iommu_platform=on alone works)');
    }
    const set = new FeatureSet([mask.lo, mask.hi]);
    set.clear(VHOST_USER_F_PROTOCOL_FEATURES);
    const res = negotiate(set, new FeatureSet([off.lo, off.hi]), { deviceType: this.model.deviceId, modern: false, ...(this.model.featureRules !== undefined ? { rules: this.model.featureRules } : {}) });
    if (!res.ok) this.fail(Req.SET_FEATURES, `${res.message ?? 'refused'}${res.clause !== undefined ? ` [${res.clause}]` : ''}`);
    this.acked = set.freeze();
    log('features acked: %s', maskHex(mask));
  }

  private async replaceMemory(table: MemTable): Promise<void> {
    const old = this.mem;
    this.mem = table;
    await this.rebuild();
    old?.close();
  }

  // ----------------------------------------------------------------------------------------------
  // rings

  private placement(r: Ring): RingPlacement | string {
    const mem = this.mem;
    if (mem === null) return 'no memory table';
    if (r.addr === null) return 'no ring addresses (SET_VRING_ADDR)';
    if (r.num === 0) return 'no ring size (SET_VRING_NUM)';
    const packed = this.acked?.has(VIRTIO_F_RING_PACKED) ?? false;
    const n = r.num;
    const descBytes = 16 * n;
    const driverBytes = packed ? 4 : 6 + 2 * n;
    const deviceBytes = packed ? 4 : 6 + 8 * n;
    const desc = mem.userToGpa(r.addr.desc, descBytes);
    const driver = mem.userToGpa(r.addr.avail, driverBytes);
    const device = mem.userToGpa(r.addr.used, deviceBytes);
    if (desc < 0 || driver < 0 || device < 0) {
      const which = desc < 0 ? `descriptor area (0x${r.addr.desc.toString(16)}, ${descBytes} bytes)` : driver < 0 ? `driver area (0x${r.addr.avail.toString(16)}, ${driverBytes} bytes)` : `device area (0x${r.addr.used.toString(16)}, ${deviceBytes} bytes)`;
      return `${which} is not inside one region of the memory table`;
    }
    return { desc, driver, device, descBytes, driverBytes, deviceBytes };
  }

  private ranges(): GpaRange[] | null {
    const restrict = this.be.restrict;
    if (restrict === undefined) return null;
    const out: GpaRange[] = restrict.map((r) => ({ start: r.start, end: r.end }));
    for (const r of this.rings) {
      if (!r.started) continue;
      const pl = this.placement(r);
      if (typeof pl === 'string') continue;
      out.push({ start: pl.desc, end: pl.desc + pl.descBytes }, { start: pl.driver, end: pl.driver + pl.driverBytes }, { start: pl.device, end: pl.device + pl.deviceBytes });
    }
    return out;
  }

  private covers(space: AddressSpace, pl: RingPlacement): boolean {
    return space.check(pl.desc, pl.descBytes, false) && space.check(pl.driver, pl.driverBytes, false) && space.check(pl.device, pl.deviceBytes, true);
  }

  private async startRing(r: Ring): Promise<void> {
    r.started = true;
    r.parked = false;
    const pl = this.placement(r);
    if (typeof pl === 'string') this.fail(Req.SET_VRING_KICK, `ring ${r.index} cannot start: ${pl}`);
    this.be.emit({ kind: 'ring-start', message: `ring ${r.index}: num ${r.num}, desc 0x${pl.desc.toString(16)}, driver 0x${pl.driver.toString(16)}, device 0x${pl.device.toString(16)}, base 0x${r.base.toString(16)}` });
    if (this.mapped !== null && this.covers(this.mapped.space, pl)) {
      this.createAndAttach(r, this.mapped.space);
    } else {
      await this.rebuild();
    }
  }

  private async restartRing(r: Ring): Promise<void> {
    const kick = r.kickFd;
    r.kickFd = -1; // keep the kick fd across the stop
    const call = r.callFd;
    r.callFd = -1;
    await this.stopRing(r, false);
    r.kickFd = kick;
    r.callFd = call;
    await this.startRing(r);
  }

  private queueConfig(r: Ring, pl: RingPlacement): QueueConfig {
    const f = this.acked ?? new FeatureSet();
    const cfg: QueueConfig = {
      index: r.index,
      size: r.num,
      maxSize: this.model.maxQueueSize(r.index),
      desc: pl.desc,
      driver: pl.driver,
      device: pl.device,
      eventIdx: f.has(VIRTIO_F_EVENT_IDX),
      indirect: f.has(VIRTIO_F_INDIRECT_DESC),
      inOrder: f.has(VIRTIO_F_IN_ORDER),
    };
    const seg = this.model.maxChainSegments?.(r.index);
    if (seg !== undefined) cfg.maxChainSegments = seg;
    return cfg;
  }

  /** Create ring r's device queue on `space` and hand it to the model. */
  private createAndAttach(r: Ring, space: AddressSpace): void {
    const pl = this.placement(r);
    if (typeof pl === 'string') return;
    const packed = this.acked?.has(VIRTIO_F_RING_PACKED) ?? false;
    const factory = packed ? createPackedDeviceQueue : createSplitDeviceQueue;
    const queue = factory(space, this.queueConfig(r, pl), this.choke); // null: reported to the choke point
    if (queue === null) return;
    queue.setBase(r.base);
    r.queue = queue;
    this.live[r.index] = queue;
    try {
      if (!this.active) this.activate();
      else this.model.queueStarted?.(r.index, queue);
    } catch (e) {
      this.modelThrew(r.index, 'activate', e);
    }
    this.startKickPoll(r);
    this.kick(r.index, false); // buffers made available before the ring started
  }

  private activate(): void {
    const feats = (this.acked ?? new FeatureSet()).clone().freeze();
    const session = this;
    const ctx: DeviceContext = {
      features: feats,
      queues: this.live,
      get space(): AddressSpace {
        return session.mapped!.space;
      },
      interrupt: (q: number) => this.interrupt(q),
      configChanged: () => this.configChanged(),
      sink: this.choke,
    };
    this.choke.reset();
    this.active = true;
    this.model.activate(ctx);
  }

  /** Wait for the model's in-flight requests (bounded); true when it went idle. */
  private async quiesce(): Promise<boolean> {
    const m = this.model;
    if (!isIdleAware(m)) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((res) => (timer = setTimeout(() => res(false), this.be.idleTimeoutMs)));
    const idle = await Promise.race([m.whenIdle().then(() => true), timeout]);
    clearTimeout(timer);
    if (!idle) log('%s: requests still in flight after %d ms; dropping their completions', m.name, this.be.idleTimeoutMs);
    return idle;
  }

  /** Stop ring r (GET_VRING_BASE when `closeFds`): returns its position. */
  private async stopRing(r: Ring, closeFds: boolean): Promise<number> {
    this.stopKickPoll(r);
    const q = r.queue;
    if (q !== null) {
      await this.quiesce();
      r.base = q.getBase();
      try {
        this.model.queueReset?.(r.index);
      } catch (e) {
        log('%s: queueReset(%d) threw: %O', this.model.name, r.index, e);
      }
      r.queue = null;
      this.live[r.index] = null;
    }
    r.started = false;
    r.parked = false;
    if (closeFds) {
      if (r.kickFd >= 0) this.safeClose(r.kickFd);
      if (r.callFd >= 0) this.safeClose(r.callFd);
      r.kickFd = -1;
      r.callFd = -1;
    }
    if (this.active && this.live.every((x) => x === null)) this.deactivate();
    this.be.emit({ kind: 'ring-stop', message: `ring ${r.index} stopped at base 0x${r.base.toString(16)}` });
    return r.base;
  }

  private deactivate(): void {
    this.active = false;
    try {
      this.model.reset();
    } catch (e) {
      log('%s: reset threw: %O', this.model.name, e);
    }
  }

  private async stopAll(): Promise<void> {
    for (const r of this.rings) if (r.started || r.queue !== null) await this.stopRing(r, true);
  }

  /** Quiesce everything, rebuild the address space, re-create the started rings at their positions. */
  private async rebuild(): Promise<void> {
    let idle = true;
    if (this.active) {
      for (const r of this.rings) this.stopKickPoll(r);
      idle = await this.quiesce();
      for (const r of this.rings) {
        if (r.queue === null) continue;
        r.base = r.queue.getBase();
        r.queue = null;
        this.live[r.index] = null;
      }
      this.deactivate();
    }
    const old = this.mapped;
    this.mapped = null;
    if (this.mem !== null) {
      const ranges = this.ranges();
      this.mapped = ranges === null ? this.mem.mapAll() : this.mem.mapRanges(ranges);
      this.be.stats.spaceBuilds++;
      this.be.emit({ kind: 'space', message: `address space: ${this.mapped.space.describe()}` });
      for (const r of this.rings) if (r.started) this.createAndAttach(r, this.mapped.space);
    }
    // In-flight requests that outlived the timeout may still hold the old views: leave those
    // mappings to the garbage collector instead of unmapping under them.
    if (idle) old?.unmap();
  }

  // ----------------------------------------------------------------------------------------------
  // notifications

  private startKickPoll(r: Ring): void {
    if (r.poll !== undefined || r.kickFd < 0) return;
    const idx = r.index;
    try {
      r.poll = this.nat.poll(r.kickFd, POLL_READABLE, (_ev, errno) => {
        if (errno !== 0) {
          log('ring %d: kick fd poll error %d', idx, errno);
          this.stopKickPoll(r);
          return;
        }
        this.kick(idx, true);
      });
    } catch (e) {
      log('ring %d: cannot poll kick fd %d: %O', idx, r.kickFd, e);
    }
  }

  private stopKickPoll(r: Ring): void {
    r.poll?.stop();
    r.poll = undefined;
  }

  /** A kick (or a start): drain the eventfd and let the model process the ring. */
  private kick(q: number, drain: boolean): void {
    const r = this.rings[q]!;
    if (drain && r.kickFd >= 0) {
      try {
        this.nat.eventfdRead(r.kickFd);
      } catch (e) {
        log('ring %d: kick fd read failed: %O', q, e);
        this.stopKickPoll(r);
        return;
      }
      this.be.stats.kicks++;
    }
    const queue = this.live[q];
    if (!this.active || queue === null || queue === undefined || r.parked || queue.parked) return;
    try {
      this.model.notify(q);
    } catch (e) {
      this.modelThrew(q, 'notify', e);
    }
  }

  /** The model completed something on ring q: signal it at the end of this event-loop turn. */
  private interrupt(q: number): void {
    if (q < 0 || q >= this.irqPending.length || this.live[q] === null || !this.active) return;
    this.irqPending[q] = 1;
    if (!this.irqScheduled) {
      this.irqScheduled = true;
      setImmediate(this.flushInterruptsBound);
    }
  }

  /** Write the call eventfd of every pending ring that wants a used-buffer notification. */
  private flushInterrupts(): void {
    this.irqScheduled = false;
    const pending = this.irqPending;
    for (let q = 0; q < pending.length; q++) {
      if (pending[q] === 0) continue;
      pending[q] = 0;
      const r = this.rings[q];
      const queue = this.live[q];
      if (r === undefined || queue === null || queue === undefined || !this.active) continue;
      if (queue.needsInterrupt() && r.callFd >= 0) {
        this.be.stats.calls++;
        this.signal(r.callFd);
      }
    }
  }

  private signal(fd: number): void {
    try {
      this.nat.eventfdWrite(fd, 1);
    } catch (e) {
      log('eventfd write to %d failed: %O', fd, e);
    }
  }

  private configChanged(): void {
    if (this.backendReqFd < 0 || !maskHas(this.ackedProto, VHOST_USER_PROTOCOL_F_CONFIG)) return;
    const msg = new Uint8Array(12);
    const d = new DataView(msg.buffer);
    d.setUint32(0, BackendReq.CONFIG_CHANGE_MSG, true);
    d.setUint32(4, VHOST_USER_VERSION, true);
    try {
      this.nat.sendmsg(this.backendReqFd, msg);
    } catch (e) {
      log('config-change message failed: %O', e);
    }
  }

  private modelThrew(q: number, what: string, e: unknown): void {
    log('%s: %s threw: %O', this.model.name, what, e);
    const err: GuestError = isVirtioError(e)
      ? { code: e.code, clause: e.clause, message: `${this.model.name}: ${what}: ${e.message}`, queue: q }
      : { code: 'INTERNAL', clause: undefined, message: `${this.model.name}: ${what} threw: ${e instanceof Error ? e.message : String(e)}`, queue: q };
    this.choke.guestError(err);
  }

  // ----------------------------------------------------------------------------------------------
  // teardown

  private closeFds(fds: number[]): void {
    for (const fd of fds.splice(0)) this.safeClose(fd);
  }

  private safeClose(fd: number): void {
    try {
      this.nat.close(fd);
    } catch {
      // already closed
    }
  }

  private onClose(why: VirtioError | undefined): void {
    if (why !== undefined) this.be.emit({ kind: 'request-failed', message: `connection closed: ${why.message}` });
    if (!this.pumping && !this.ended) void this.teardown();
  }

  private async teardown(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      for (const r of this.rings) {
        if (r.started || r.queue !== null) await this.stopRing(r, true);
        for (const fd of [r.kickFd, r.callFd, r.errFd]) if (fd >= 0) this.safeClose(fd);
        r.kickFd = r.callFd = r.errFd = -1;
      }
      if (this.active) this.deactivate();
      const idle = await this.quiesce();
      if (idle) this.mapped?.unmap();
      this.mapped = null;
      this.mem?.close();
      this.mem = null;
      if (this.backendReqFd >= 0) this.safeClose(this.backendReqFd);
      this.backendReqFd = -1;
      log('session ended (owner %s)', this.owner);
    } finally {
      this.resolveDone();
    }
  }
}
