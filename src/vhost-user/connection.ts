/**
 * vhost-user message framing over a connected UNIX stream socket (a native fd from the addon),
 * polled by libuv: never blocks the event loop, never spins.
 *
 * File descriptors (SCM_RIGHTS) travel with the segment of the sendmsg that carried them. Linux
 * ends a stream recvmsg right after the segment whose fds it delivered, so the fds of one read
 * belong to the message holding the last byte of that read (a vhost-user message goes out in one
 * sendmsg). A message takes the fds attached inside its byte range; two batches in one message,
 * more than {@link VHOST_USER_MAX_FDS} fds, a bad header or an oversize payload are protocol
 * errors: the connection closes (a byte stream cannot be resynchronised) and every received fd is
 * closed.
 */
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';
import { native as defaultNative } from '../native/index.js';
import { POLL_READABLE, POLL_WRITABLE, type NativeApi, type PollHandle } from '../native/types.js';
import { decodeHeader, encodeMessage, type VhostMessage } from './codec.js';
import { VHOST_USER_HDR_SIZE, VHOST_USER_MAX_FDS, VHOST_USER_MAX_PAYLOAD, reqName } from './protocol.js';

const log = logger('vhost-user');

/** Callbacks of a {@link VhostConnection}. */
export interface ConnectionHandlers {
  /** One complete message; the handler owns `msg.fds`. Called in stream order. */
  onMessage(msg: VhostMessage): void;
  /** The connection closed (peer hung up, protocol error, or {@link VhostConnection.close}). Called once. */
  onClose(reason: VirtioError | undefined): void;
}

/** Options of {@link VhostConnection}. */
export interface ConnectionOptions {
  /** Reading replies / back-end messages (REPLY flag allowed) rather than front-end requests. */
  fromBackend?: boolean;
  /** Largest payload accepted (default {@link VHOST_USER_MAX_PAYLOAD}). */
  maxPayload?: number;
  /** Native API (default: the loaded addon). */
  native?: NativeApi;
  /** Name for logs. */
  name?: string;
}

/** A framed vhost-user connection over a socket fd (owned: closed by {@link close}). */
export class VhostConnection {
  readonly fd: number;
  readonly name: string;
  private readonly nat: NativeApi;
  private readonly handlers: ConnectionHandlers;
  private readonly fromBackend: boolean;
  private readonly maxPayload: number;
  private readonly chunk = new Uint8Array(65536);
  /** Bytes received and not yet framed. */
  private acc = new Uint8Array(0);
  /** Stream offset of acc[0]. */
  private accPos = 0;
  /** Stream offset of the last byte of a read → the fds that read delivered. */
  private readonly fdsAt = new Map<number, number[]>();
  private readPoll: PollHandle | undefined;
  private writePoll: PollHandle | undefined;
  private readonly outQ: Array<{ data: Uint8Array; fds: number[] | undefined }> = [];
  private isClosed = false;

  constructor(fd: number, handlers: ConnectionHandlers, opts: ConnectionOptions = {}) {
    this.fd = fd;
    this.nat = opts.native ?? defaultNative;
    this.handlers = handlers;
    this.fromBackend = opts.fromBackend ?? false;
    this.maxPayload = opts.maxPayload ?? VHOST_USER_MAX_PAYLOAD;
    this.name = opts.name ?? `fd${fd}`;
    this.readPoll = this.nat.poll(fd, POLL_READABLE, (ev, errno) => this.onReadable(ev, errno));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Do not keep the process alive for this connection alone. */
  unref(): void {
    this.readPoll?.unref();
  }

  /** Send one message (fds ride on its first byte). Queued and sent when writable on EAGAIN. */
  send(request: number, flags: number, payload?: Uint8Array, fds?: number[]): void {
    if (this.isClosed) throw new VirtioError('CLOSED', `vhost-user ${this.name}: cannot send ${reqName(request)} on a closed connection`);
    const data = encodeMessage(request, flags, payload);
    this.outQ.push({ data, fds: fds !== undefined && fds.length > 0 ? fds : undefined });
    this.flush();
  }

  private flush(): void {
    while (this.outQ.length > 0 && !this.isClosed) {
      const m = this.outQ[0]!;
      let n: number;
      try {
        n = this.nat.sendmsg(this.fd, m.data, m.fds);
      } catch (e) {
        this.fail(new VirtioError('CLOSED', `vhost-user ${this.name}: send failed: ${e instanceof Error ? e.message : String(e)}`));
        return;
      }
      if (n < 0) {
        this.writePoll ??= this.nat.poll(this.fd, POLL_WRITABLE, () => {
          this.writePoll?.stop();
          this.writePoll = undefined;
          this.flush();
        });
        return;
      }
      if (n < m.data.byteLength) {
        m.data = m.data.subarray(n);
        m.fds = undefined; // already delivered with the first byte
      } else {
        this.outQ.shift();
      }
    }
  }

  private onReadable(_ev: number, errno: number): void {
    if (this.isClosed) return;
    if (errno !== 0) {
      this.fail(new VirtioError('CLOSED', `vhost-user ${this.name}: poll error (errno ${errno})`));
      return;
    }
    for (;;) {
      let r;
      try {
        r = this.nat.recvmsg(this.fd, this.chunk, VHOST_USER_MAX_FDS);
      } catch (e) {
        this.fail(new VirtioError('PROTOCOL', `vhost-user ${this.name}: receive failed: ${e instanceof Error ? e.message : String(e)}`));
        return;
      }
      if (r === null) break;
      if (r.bytes === 0) {
        for (const fd of r.fds) this.nat.close(fd);
        this.fail(undefined);
        return;
      }
      const start = this.accPos + this.acc.byteLength;
      if (r.fds.length > 0) this.fdsAt.set(start + r.bytes - 1, r.fds);
      const next = new Uint8Array(this.acc.byteLength + r.bytes);
      next.set(this.acc, 0);
      next.set(this.chunk.subarray(0, r.bytes), this.acc.byteLength);
      this.acc = next;
      if (!this.frame()) return;
    }
  }

  /** Deliver every complete message; false when the connection failed. */
  private frame(): boolean {
    let off = 0;
    const acc = this.acc;
    while (acc.byteLength - off >= VHOST_USER_HDR_SIZE) {
      let hdr;
      try {
        hdr = decodeHeader(acc, off, this.fromBackend, this.maxPayload);
      } catch (e) {
        this.fail(e as VirtioError);
        return false;
      }
      const total = VHOST_USER_HDR_SIZE + hdr.size;
      if (acc.byteLength - off < total) break;
      const pos = this.accPos + off;
      let fds: number[] = [];
      let batches = 0;
      for (const [k, v] of this.fdsAt) {
        if (k >= pos && k < pos + total) {
          batches++;
          fds = fds.concat(v);
          this.fdsAt.delete(k);
        }
      }
      if (batches > 1 || fds.length > VHOST_USER_MAX_FDS) {
        for (const fd of fds) this.nat.close(fd);
        this.fail(new VirtioError('PROTOCOL', `vhost-user ${this.name}: ${reqName(hdr.request)} came with ${fds.length} fds in ${batches} batches (at most ${VHOST_USER_MAX_FDS}, in one sendmsg)`));
        return false;
      }
      const msg: VhostMessage = { request: hdr.request, flags: hdr.flags, size: hdr.size, payload: acc.slice(off + VHOST_USER_HDR_SIZE, off + total), fds };
      off += total;
      try {
        this.handlers.onMessage(msg);
      } catch (e) {
        log('%s: message handler threw: %O', this.name, e);
      }
      if (this.isClosed) return false;
    }
    if (off > 0) {
      this.acc = acc.slice(off);
      this.accPos += off;
    }
    return true;
  }

  private fail(reason: VirtioError | undefined): void {
    if (this.isClosed) return;
    if (reason !== undefined) log('%s: closing: %s', this.name, reason.message);
    this.shutdown();
    try {
      this.handlers.onClose(reason);
    } catch (e) {
      log('%s: close handler threw: %O', this.name, e);
    }
  }

  private shutdown(): void {
    this.isClosed = true;
    this.readPoll?.stop();
    this.writePoll?.stop();
    this.readPoll = undefined;
    this.writePoll = undefined;
    for (const fds of this.fdsAt.values()) for (const fd of fds) this.nat.close(fd);
    this.fdsAt.clear();
    this.outQ.length = 0;
    try {
      this.nat.close(this.fd);
    } catch {
      // already closed
    }
  }

  /** Close the connection (idempotent); onClose runs with reason undefined. */
  close(): void {
    this.fail(undefined);
  }
}
