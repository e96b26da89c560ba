/**
 * Message framing for vfio-user over a native AF_UNIX stream socket watched by libuv
 * ({@link NativeApi.poll}): partial reads and writes, file descriptors arriving with a message
 * (SCM_RIGHTS ride on the first byte of the message that carries them), 16-bit message ids,
 * replies matched to requests, a maximum message size and a maximum number of fds.
 *
 * Incoming problems never throw out of the event loop:
 * - a header whose size is below 16 cannot be framed: an error reply (EINVAL) goes out and the
 *   connection is closed;
 * - a message larger than the maximum gets an error reply (E2BIG) and its body is skipped;
 * - too many fds, or a reply to an id with no request waiting, get an error reply (the fds are
 *   closed);
 * - everything else is handed to the owner (`onRequest`), whose handler must not throw (a throw is
 *   caught, logged and answered with EINVAL).
 */
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';
import { native as defaultNative } from '../native/index.js';
import { POLL_READABLE, POLL_WRITABLE, type NativeApi, type PollHandle } from '../native/types.js';
import { errorReply, protoError } from './codec.js';
import { cmdName, Errno, FLAG_ERROR, FLAG_NO_REPLY, FLAG_TYPE_COMMAND, FLAG_TYPE_MASK, FLAG_TYPE_REPLY, HEADER_SIZE } from './protocol.js';

const log = logger('vfio-user:conn');

/** A received message. */
export interface IncomingMessage {
  id: number;
  command: number;
  flags: number;
  error: number;
  /** Payload bytes after the header. For requests: valid only during the handler call (copy what you keep). */
  payload: Uint8Array;
  /** Fds received with the message; the receiver owns them (close what you do not keep). */
  fds: number[];
}

/** Counters of one connection. */
export interface ConnectionStats {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Error replies we sent because a message was malformed. */
  protocolErrors: number;
}

/** Options of {@link VfioUserConnection}. */
export interface ConnectionOptions {
  /** Largest incoming message (header included) accepted. */
  maxMessageSize: number;
  /** Most fds accepted with one message. */
  maxFds: number;
  /** A request (command) arrived. Reply with {@link VfioUserConnection.reply} unless it has NO_REPLY. */
  onRequest(msg: IncomingMessage): void;
  /** The connection closed (peer hung up, framing lost, or {@link VfioUserConnection.close}). */
  onClose?(reason: string): void;
  /** Default reply timeout for {@link VfioUserConnection.request} in ms (0 = none; default 5000). */
  timeoutMs?: number;
  /** Close the fd when the connection closes (default true). */
  ownsFd?: boolean;
  /** Name for logs. */
  name?: string;
  native?: NativeApi;
}

interface Pending {
  command: number;
  resolve(m: IncomingMessage): void;
  reject(e: unknown): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface OutItem {
  data: Uint8Array;
  off: number;
  fds: number[] | undefined;
}

const INITIAL_BUFFER = 64 * 1024;
/** Skip (rather than drop the connection for) oversized bodies up to this size. */
const MAX_SKIP = 256 * 1024 * 1024;

/** One vfio-user connection. */
export class VfioUserConnection {
  readonly fd: number;
  readonly name: string;
  readonly stats: ConnectionStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, protocolErrors: 0 };
  /** Largest incoming message accepted (may be raised after VERSION). */
  maxMessageSize: number;
  /** Most fds accepted per message. */
  maxFds: number;
  private readonly o: ConnectionOptions;
  private readonly nat: NativeApi;
  private buf: Uint8Array;
  private len = 0;
  /** fds received, with the buffer position of the first byte that came with them. */
  /**
   * fds received by one recvmsg, with the byte range [pos, end) that recvmsg returned. On a UNIX
   * stream socket, fd-less data before an fd-carrying send is glued into the same recvmsg and the
   * kernel stops after the skb carrying the fds, so the fds belong to the message containing the
   * chunk's *last* byte (QEMU 11: a posted DMA_UNMAP followed by a DMA_MAP with the RAM fd).
   */
  private fdMarks: Array<{ pos: number; end: number; fds: number[] }> = [];
  private skip = 0;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private readonly out: OutItem[] = [];
  private poller: PollHandle | undefined;
  private pollEvents = 0;
  private closedReason: string | undefined;
  private dispatching = false;

  constructor(fd: number, opts: ConnectionOptions) {
    this.fd = fd;
    this.o = opts;
    this.nat = opts.native ?? defaultNative;
    this.name = opts.name ?? `vfio-user fd ${fd}`;
    this.maxMessageSize = opts.maxMessageSize;
    this.maxFds = opts.maxFds;
    this.buf = new Uint8Array(Math.min(INITIAL_BUFFER, Math.max(opts.maxMessageSize, HEADER_SIZE)));
    this.watch(POLL_READABLE);
  }

  /** True once closed. */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Requests waiting for a reply. */
  get outstanding(): number {
    return this.pending.size;
  }

  /** Let the socket alone not keep the event loop alive (callbacks still run). */
  unref(): void {
    this.poller?.unref();
  }

  // ------------------------------------------------------------------ sending

  /** Queue `msg` (a whole message) for sending, with fds on its first byte. */
  send(msg: Uint8Array, fds?: number[]): void {
    if (this.closedReason !== undefined) throw new VirtioError('CLOSED', `${this.name}: connection closed (${this.closedReason})`);
    this.stats.messagesOut++;
    this.stats.bytesOut += msg.length;
    const item: OutItem = { data: msg, off: 0, fds: fds !== undefined && fds.length > 0 ? fds : undefined };
    if (this.out.length === 0 && this.trySend(item)) return;
    this.out.push(item);
    this.watch(POLL_READABLE | POLL_WRITABLE);
  }

  /** Send a reply (same id and command) to `req`. */
  reply(msg: Uint8Array, fds?: number[]): void {
    this.send(msg, fds);
  }

  /** Send an error reply to request `id`/`command`. Never throws. */
  replyError(id: number, command: number, errno: number): void {
    if (this.closed) return;
    try {
      this.send(errorReply(id, command, errno));
    } catch (e) {
      log('%s: error reply failed: %s', this.name, (e as Error).message);
    }
  }

  /** A free 16-bit message id (not waiting for a reply). */
  allocId(): number {
    for (let k = 0; k < 0x10000; k++) {
      const id = this.nextId;
      this.nextId = (this.nextId + 1) & 0xffff;
      if (!this.pending.has(id)) return id;
    }
    throw new VirtioError('PROTOCOL', `${this.name}: 65536 requests outstanding`);
  }

  /**
   * Send a request built by `build(id)` and resolve with the reply. An error reply rejects with a
   * PROTOCOL VirtioError carrying the peer's errno; a missing reply rejects with TIMEOUT.
   */
  request(build: (id: number) => Uint8Array, fds?: number[], timeoutMs = this.o.timeoutMs ?? 5000): Promise<IncomingMessage> {
    if (this.closedReason !== undefined) return Promise.reject(new VirtioError('CLOSED', `${this.name}: connection closed (${this.closedReason})`));
    const id = this.allocId();
    const msg = build(id);
    const command = msg[2]! | (msg[3]! << 8);
    return new Promise<IncomingMessage>((resolve, reject) => {
      const p: Pending = { command, resolve, reject, timer: undefined };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          if (this.pending.get(id) === p) {
            this.pending.delete(id);
            reject(new VirtioError('TIMEOUT', `${this.name}: no reply to ${cmdName(command)} (id ${id}) within ${timeoutMs} ms`));
          }
        }, timeoutMs);
        p.timer.unref?.();
      }
      this.pending.set(id, p);
      try {
        this.send(msg, fds);
      } catch (e) {
        this.pending.delete(id);
        if (p.timer !== undefined) clearTimeout(p.timer);
        reject(e);
      }
    });
  }

  private trySend(item: OutItem): boolean {
    const nat = this.nat;
    for (;;) {
      const chunk = item.off === 0 ? item.data : item.data.subarray(item.off);
      let n: number;
      try {
        n = item.fds !== undefined ? nat.sendmsg(this.fd, chunk, item.fds) : nat.sendmsg(this.fd, chunk);
      } catch (e) {
        this.close(`send failed: ${(e as Error).message}`);
        return true;
      }
      if (n < 0) return false;
      item.fds = undefined; // fds go with the first byte only
      item.off += n;
      if (item.off >= item.data.length) return true;
    }
  }

  private flush(): void {
    while (this.out.length > 0) {
      if (!this.trySend(this.out[0]!)) return;
      this.out.shift();
      if (this.closed) return;
    }
    this.watch(POLL_READABLE);
  }

  // ------------------------------------------------------------------ receiving

  private watch(events: number): void {
    if (this.closedReason !== undefined || events === this.pollEvents) return;
    this.poller?.stop();
    this.pollEvents = events;
    this.poller = this.nat.poll(this.fd, events, (ev, errno) => this.onPoll(ev, errno));
  }

  private onPoll(ev: number, errno: number): void {
    if (this.closedReason !== undefined) return;
    if (errno !== 0) {
      this.close(`poll error ${errno}`);
      return;
    }
    if ((ev & POLL_WRITABLE) !== 0) this.flush();
    if ((ev & POLL_READABLE) !== 0) this.readAll();
  }

  private readAll(): void {
    const nat = this.nat;
    const maxFds = Math.min(253, this.maxFds + 1);
    for (let rounds = 0; rounds < 64 && this.closedReason === undefined; rounds++) {
      if (this.len === this.buf.length) this.grow();
      let r;
      try {
        r = nat.recvmsg(this.fd, this.len === 0 ? this.buf : this.buf.subarray(this.len), maxFds);
      } catch (e) {
        this.close(`receive failed: ${(e as Error).message}`);
        return;
      }
      if (r === null) return;
      if (r.bytes === 0) {
        for (const fd of r.fds) this.safeClose(fd);
        this.close('peer closed the connection');
        return;
      }
      if (r.fds.length > 0) this.fdMarks.push({ pos: this.len, end: this.len + r.bytes, fds: r.fds });
      this.len += r.bytes;
      this.stats.bytesIn += r.bytes;
      this.parse();
    }
  }

  private grow(): void {
    const cap = Math.max(this.maxMessageSize, HEADER_SIZE);
    const n = Math.min(cap, this.buf.length * 2);
    if (n <= this.buf.length) return;
    const b = new Uint8Array(n);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  private parse(): void {
    let pos = 0;
    const buf = this.buf;
    while (this.closedReason === undefined) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, this.len - pos);
        this.skip -= k;
        pos += k;
        if (this.skip > 0) break;
        continue;
      }
      if (this.len - pos < HEADER_SIZE) break;
      const dv = new DataView(buf.buffer, buf.byteOffset + pos, HEADER_SIZE);
      const id = dv.getUint16(0, true);
      const command = dv.getUint16(2, true);
      const size = dv.getUint32(4, true);
      if (size < HEADER_SIZE) {
        this.stats.protocolErrors++;
        this.replyError(id, command, Errno.EINVAL);
        this.close(`message ${id} declares size ${size} < ${HEADER_SIZE}; framing lost`);
        return;
      }
      if (size > this.maxMessageSize) {
        this.stats.protocolErrors++;
        log('%s: %s id %d of %d bytes exceeds the %d-byte maximum', this.name, cmdName(command), id, size, this.maxMessageSize);
        this.closeFdsIn(pos, pos + Math.min(size, this.len - pos));
        if (size > MAX_SKIP) {
          this.replyError(id, command, Errno.E2BIG);
          this.close(`message of ${size} bytes; framing abandoned`);
          return;
        }
        if ((dv.getUint32(8, true) & FLAG_TYPE_MASK) === FLAG_TYPE_COMMAND) this.replyError(id, command, Errno.E2BIG);
        this.skip = size;
        continue;
      }
      if (this.len - pos < size) {
        if (size > buf.length) {
          // Make room: compact first, then grow.
          this.compact(pos);
          pos = 0;
          this.grow();
        }
        break;
      }
      const fds = this.takeFds(pos, pos + size);
      const flags = dv.getUint32(8, true);
      const error = dv.getUint32(12, true);
      this.stats.messagesIn++;
      this.dispatch({ id, command, flags, error, payload: buf.subarray(pos + HEADER_SIZE, pos + size), fds });
      pos += size;
      if (this.buf !== buf) return; // closed and reset meanwhile
    }
    this.compact(pos);
  }

  private compact(pos: number): void {
    if (pos === 0) return;
    if (pos < this.len) this.buf.copyWithin(0, pos, this.len);
    this.len -= pos;
    for (const m of this.fdMarks) {
      m.pos -= pos;
      m.end -= pos;
    }
  }

  private takeFds(start: number, end: number): number[] {
    if (this.fdMarks.length === 0) return [];
    const out: number[] = [];
    const keep: Array<{ pos: number; end: number; fds: number[] }> = [];
    for (const m of this.fdMarks) {
      // The chunk's last byte lies in this message: its fds are this message's.
      if (m.end > start && m.end <= end) out.push(...m.fds);
      else if (m.end <= start) for (const fd of m.fds) this.safeClose(fd);
      else keep.push(m);
    }
    this.fdMarks = keep;
    return out;
  }

  private closeFdsIn(start: number, end: number): void {
    for (const fd of this.takeFds(start, end)) this.safeClose(fd);
  }

  private dispatch(m: IncomingMessage): void {
    const type = m.flags & FLAG_TYPE_MASK;
    if (m.fds.length > this.maxFds) {
      this.stats.protocolErrors++;
      for (const fd of m.fds) this.safeClose(fd);
      if (type === FLAG_TYPE_COMMAND && (m.flags & FLAG_NO_REPLY) === 0) this.replyError(m.id, m.command, Errno.EINVAL);
      log('%s: %s id %d carried %d fds (max %d)', this.name, cmdName(m.command), m.id, m.fds.length, this.maxFds);
      return;
    }
    if (type === FLAG_TYPE_REPLY) {
      const p = this.pending.get(m.id);
      if (p === undefined || p.command !== m.command) {
        this.stats.protocolErrors++;
        for (const fd of m.fds) this.safeClose(fd);
        log('%s: reply %s id %d matches no request', this.name, cmdName(m.command), m.id);
        this.replyError(m.id, m.command, Errno.EINVAL);
        return;
      }
      this.pending.delete(m.id);
      if (p.timer !== undefined) clearTimeout(p.timer);
      if ((m.flags & FLAG_ERROR) !== 0) {
        for (const fd of m.fds) this.safeClose(fd);
        p.reject(protoError(m.error, `${this.name}: ${cmdName(m.command)} failed: errno ${m.error}`));
      } else {
        p.resolve({ ...m, payload: m.payload.slice() });
      }
      return;
    }
    if (type !== FLAG_TYPE_COMMAND) {
      this.stats.protocolErrors++;
      for (const fd of m.fds) this.safeClose(fd);
      this.replyError(m.id, m.command, Errno.EINVAL);
      return;
    }
    if (this.dispatching) log('%s: nested dispatch', this.name);
    this.dispatching = true;
    try {
      this.o.onRequest(m);
    } catch (e) {
      this.stats.protocolErrors++;
      log('%s: handler for %s threw: %O', this.name, cmdName(m.command), e);
      if ((m.flags & FLAG_NO_REPLY) === 0) this.replyError(m.id, m.command, Errno.EINVAL);
    } finally {
      this.dispatching = false;
    }
  }

  private safeClose(fd: number): void {
    try {
      this.nat.close(fd);
    } catch {
      /* already closed */
    }
  }

  // ------------------------------------------------------------------ closing

  /** Close the connection: stop watching, fail pending requests, close the fd. Idempotent. */
  close(reason = 'closed'): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    log('%s: closed: %s', this.name, reason);
    this.poller?.stop();
    this.poller = undefined;
    const err = new VirtioError('CLOSED', `${this.name}: connection closed (${reason})`);
    for (const p of this.pending.values()) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const o of this.out) if (o.fds !== undefined) o.fds.length = 0;
    this.out.length = 0;
    for (const m of this.fdMarks) for (const fd of m.fds) this.safeClose(fd);
    this.fdMarks = [];
    this.buf = new Uint8Array(0);
    this.len = 0;
    if (this.o.ownsFd ?? true) this.safeClose(this.fd);
    try {
      this.o.onClose?.(reason);
    } catch (e) {
      log('%s: onClose threw: %O', this.name, e);
    }
  }
}

/** True when a request asks for no reply. */
export function isNoReply(flags: number): boolean {
  return (flags & FLAG_NO_REPLY) !== 0;
}
