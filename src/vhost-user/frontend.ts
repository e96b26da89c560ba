/**
 * A vhost-user front-end (the QEMU side) as a library: connects to a back-end socket, negotiates,
 * sends the memory table and ring setup, and waits for replies. Tests drive virtiokit's own
 * back-end with it; the conformance suite can point it at any back-end (e.g.
 * `qemu-storage-daemon --export type=vhost-user-blk,...`).
 *
 * Requests with a reply body (GET_*) always wait for it. Other requests set NEED_REPLY and wait
 * for the u64 ack when REPLY_ACK was negotiated (through {@link setProtocolFeatures}); a non-zero
 * ack rejects with a VirtioError PROTOCOL. Replies are matched in order (the protocol is strictly
 * request/response on the main channel) and time out after `timeoutMs`.
 */
import { VirtioError } from '../errors.js';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import {
  decodeConfig,
  decodeU64,
  decodeU64Mask,
  decodeVringState,
  encodeConfig,
  encodeMemTable,
  encodeU64,
  encodeU64Mask,
  encodeVringAddr,
  encodeVringState,
  type MemRegionDesc,
  type VhostMessage,
  type VringAddr,
} from './codec.js';
import { VhostConnection } from './connection.js';
import {
  type Mask64,
  Req,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_VERSION,
  VHOST_USER_VRING_NOFD_MASK,
  maskHas,
  reqHasReply,
  reqName,
} from './protocol.js';

/** Options of {@link VhostUserFrontend}. */
export interface FrontendOptions {
  /** Reply timeout (default 10 s). */
  timeoutMs?: number;
  native?: NativeApi;
}

/** A memory region to announce, with the fd the back-end maps. */
export interface FrontendRegion extends MemRegionDesc {
  fd: number;
}

interface Waiter {
  req: number;
  resolve(m: VhostMessage): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** The front-end side of a vhost-user connection. */
export class VhostUserFrontend {
  private readonly conn: VhostConnection;
  private readonly nat: NativeApi;
  private readonly timeoutMs: number;
  private readonly waiters: Waiter[] = [];
  private proto: Mask64 = { lo: 0, hi: 0 };
  private closeReason: VirtioError | undefined;
  private isClosed = false;
  /** Resolves when the connection closed (by either side). */
  readonly closed: Promise<VirtioError | undefined>;
  private resolveClosed!: (r: VirtioError | undefined) => void;

  private constructor(fd: number, opts: FrontendOptions) {
    this.nat = opts.native ?? defaultNative;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.conn = new VhostConnection(
      fd,
      {
        onMessage: (m) => this.onReply(m),
        onClose: (why) => {
          this.isClosed = true;
          this.closeReason = why;
          for (const w of this.waiters.splice(0)) {
            clearTimeout(w.timer);
            w.reject(new VirtioError('CLOSED', `vhost-user front-end: connection closed while waiting for the reply to ${reqName(w.req)}${why !== undefined ? `: ${why.message}` : ''}`));
          }
          this.resolveClosed(why);
        },
      },
      { fromBackend: true, native: this.nat, name: 'front-end' },
    );
  }

  /** Connect to a back-end listening on `path`. */
  static connect(path: string, opts: FrontendOptions = {}): VhostUserFrontend {
    const nat = opts.native ?? defaultNative;
    return new VhostUserFrontend(nat.connectUnix(path), opts);
  }

  /** Use an already connected socket fd (e.g. one end of a socketpair); the front-end owns it. */
  static fromFd(fd: number, opts: FrontendOptions = {}): VhostUserFrontend {
    return new VhostUserFrontend(fd, opts);
  }

  /** True once the connection is closed. */
  get isClosedNow(): boolean {
    return this.isClosed;
  }

  /** Why the connection closed, when the back-end closed it on an error we saw. */
  get closeError(): VirtioError | undefined {
    return this.closeReason;
  }

  close(): void {
    this.conn.close();
  }

  private onReply(m: VhostMessage): void {
    for (const fd of m.fds) this.nat.close(fd);
    const w = this.waiters.shift();
    if (w === undefined) return; // unsolicited: ignore
    clearTimeout(w.timer);
    if (m.request !== w.req || (m.flags & 0x4) === 0) {
      w.reject(new VirtioError('PROTOCOL', `vhost-user front-end: expected the reply to ${reqName(w.req)}, got ${reqName(m.request)} flags 0x${m.flags.toString(16)}`));
      return;
    }
    w.resolve(m);
  }

  private wait(req: number): Promise<VhostMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.timer === timer);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new VirtioError('TIMEOUT', `vhost-user front-end: no reply to ${reqName(req)} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiters.push({ req, resolve, reject, timer });
    });
  }

  /**
   * Send a request. Resolves with the reply for requests that have one (or when an ack was
   * requested), else undefined once sent.
   * @param needReply request an ack (default: when REPLY_ACK is negotiated)
   */
  async request(req: number, payload?: Uint8Array, fds?: number[], needReply?: boolean): Promise<VhostMessage | undefined> {
    if (this.isClosed) throw new VirtioError('CLOSED', `vhost-user front-end: ${reqName(req)} on a closed connection`);
    const hasReply = reqHasReply(req);
    const ack = !hasReply && (needReply ?? maskHas(this.proto, VHOST_USER_PROTOCOL_F_REPLY_ACK));
    const p = hasReply || ack ? this.wait(req) : undefined;
    this.conn.send(req, VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), payload, fds);
    if (p === undefined) return undefined;
    const m = await p;
    if (ack) {
      const v = m.payload.byteLength === 8 ? decodeU64(req, m.payload) : -1;
      if (v !== 0) throw new VirtioError('PROTOCOL', `vhost-user back-end refused ${reqName(req)} (ack ${v})`);
    }
    return m;
  }

  /** Send raw bytes (tests of malformed input). */
  sendRaw(bytes: Uint8Array, fds?: number[]): void {
    const n = this.nat.sendmsg(this.conn.fd, bytes, fds);
    if (n !== bytes.byteLength) throw new VirtioError('PROTOCOL', `vhost-user front-end: raw send wrote ${n} of ${bytes.byteLength} bytes`);
  }

  private async reply(req: number, payload?: Uint8Array): Promise<VhostMessage> {
    const m = await this.request(req, payload);
    return m!;
  }

  async getFeatures(): Promise<Mask64> {
    return decodeU64Mask(Req.GET_FEATURES, (await this.reply(Req.GET_FEATURES)).payload);
  }
  async setFeatures(m: Mask64): Promise<void> {
    await this.request(Req.SET_FEATURES, encodeU64Mask(m));
  }
  async getProtocolFeatures(): Promise<Mask64> {
    return decodeU64Mask(Req.GET_PROTOCOL_FEATURES, (await this.reply(Req.GET_PROTOCOL_FEATURES)).payload);
  }
  /** Set protocol features; REPLY_ACK in `m` makes later requests wait for acks. */
  async setProtocolFeatures(m: Mask64): Promise<void> {
    await this.request(Req.SET_PROTOCOL_FEATURES, encodeU64Mask(m), undefined, false);
    this.proto = { lo: m.lo >>> 0, hi: m.hi >>> 0 };
  }
  async setOwner(): Promise<void> {
    await this.request(Req.SET_OWNER);
  }
  async getQueueNum(): Promise<number> {
    return decodeU64(Req.GET_QUEUE_NUM, (await this.reply(Req.GET_QUEUE_NUM)).payload);
  }
  /** SET_MEM_TABLE: one fd per region (the fds stay owned by the caller). */
  async setMemTable(regions: readonly FrontendRegion[]): Promise<void> {
    await this.request(Req.SET_MEM_TABLE, encodeMemTable(regions), regions.map((r) => r.fd));
  }
  async setVringNum(index: number, num: number): Promise<void> {
    await this.request(Req.SET_VRING_NUM, encodeVringState({ index, num }));
  }
  async setVringAddr(a: VringAddr): Promise<void> {
    await this.request(Req.SET_VRING_ADDR, encodeVringAddr(a));
  }
  async setVringBase(index: number, base: number): Promise<void> {
    await this.request(Req.SET_VRING_BASE, encodeVringState({ index, num: base }));
  }
  /** Stop ring `index` and return its position. */
  async getVringBase(index: number): Promise<number> {
    const m = await this.reply(Req.GET_VRING_BASE, encodeVringState({ index, num: 0 }));
    return decodeVringState(Req.GET_VRING_BASE, m.payload).num;
  }
  private async vringFile(req: number, index: number, fd: number): Promise<void> {
    await this.request(req, encodeU64(index | (fd < 0 ? VHOST_USER_VRING_NOFD_MASK : 0)), fd < 0 ? undefined : [fd]);
  }
  /** Kick eventfd (-1 = none). The fd stays owned by the caller. */
  async setVringKick(index: number, fd: number): Promise<void> {
    await this.vringFile(Req.SET_VRING_KICK, index, fd);
  }
  async setVringCall(index: number, fd: number): Promise<void> {
    await this.vringFile(Req.SET_VRING_CALL, index, fd);
  }
  async setVringErr(index: number, fd: number): Promise<void> {
    await this.vringFile(Req.SET_VRING_ERR, index, fd);
  }
  async setVringEnable(index: number, enable: boolean): Promise<void> {
    await this.request(Req.SET_VRING_ENABLE, encodeVringState({ index, num: enable ? 1 : 0 }));
  }
  async setBackendReqFd(fd: number): Promise<void> {
    await this.request(Req.SET_BACKEND_REQ_FD, undefined, [fd]);
  }
  /** Read `size` bytes of the device config at `offset` (rejects on the back-end's empty error reply). */
  async getConfig(offset: number, size: number): Promise<Uint8Array> {
    const m = await this.reply(Req.GET_CONFIG, encodeConfig(offset, 0, new Uint8Array(size)));
    if (m.payload.byteLength === 0) throw new VirtioError('PROTOCOL', `vhost-user back-end refused GET_CONFIG of ${size} bytes at ${offset}`);
    const c = decodeConfig(Req.GET_CONFIG, m.payload);
    if (c.size !== size || c.offset !== offset) throw new VirtioError('PROTOCOL', `vhost-user GET_CONFIG reply is ${c.size} bytes at ${c.offset}, asked ${size} at ${offset}`);
    return c.data;
  }
  async setConfig(offset: number, data: Uint8Array, flags = 0): Promise<void> {
    await this.request(Req.SET_CONFIG, encodeConfig(offset, flags, data));
  }
}
