/**
 * A {@link NetBackend} that carries frames over a UNIX stream socket, one frame per record with a
 * 4-byte big-endian length prefix — the framing of QEMU's `-netdev stream` / `-netdev socket`
 * (so two virtiokit device processes can be cabled together, or one to a QEMU stream netdev).
 *
 * Wire format: plain Ethernet frames, no virtio_net_hdr. A stream netdev has no room for offload
 * metadata, so (like QEMU, which does not offer offloads when its peer has no vnet header) the
 * device in front of this backend should be built with `offloads: false`. Frames that still arrive
 * with metadata are handled defensively: NEEDS_CSUM → the checksum is completed in the wire copy;
 * GSO → dropped and counted (`txGsoDropped`; this backend does not segment).
 *
 * Modes:
 *  - {@link SocketNetBackend.listen}: listen on PATH and serve one peer at a time (further peers are
 *    refused and counted); when the peer goes, the next one may connect.
 *  - {@link SocketNetBackend.connect}: connect to PATH, retrying every `retryMs` until the listener
 *    exists, at most `connectTimeoutMs`; when an established connection drops it reconnects the
 *    same way.
 *
 * Transmit never blocks the event loop: frames are copied into one of two preallocated staging
 * buffers; while the other is being written to the kernel, the next batch fills up, and a frame
 * that does not fit is dropped and counted (`txDropped`) — bounded memory, backpressure by drop.
 * No peer → dropped and counted (`txNoPeer`). Receive parses the stream incrementally without
 * allocating per frame (a frame inside one chunk is delivered as a view of the chunk; a frame split
 * across chunks is assembled in a preallocated buffer). A length prefix above `maxFrameLen` means
 * the stream cannot be resynchronised: that connection is closed and counted (`rxBadLength`); the
 * process carries on. Frames shorter than an Ethernet header are skipped (`rxRunts`).
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import type { FrameReceiver, NetBackend } from './backend.js';
import { completeChecksum } from './checksum.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, type NetHdr } from './header.js';
import { ETH_HLEN, MAX_FRAME_LEN } from './stats.js';

const log = logger('net:socket');

/** Bytes of the length prefix in front of every frame. */
export const STREAM_PREFIX_LEN = 4;

/** Options of {@link SocketNetBackend}. */
export interface SocketNetBackendOptions {
  /** Size of each of the two transmit staging buffers (bytes, default 512 KiB; at least maxFrameLen + 4). */
  stagingBytes?: number;
  /** Largest frame accepted in either direction (default {@link MAX_FRAME_LEN}). */
  maxFrameLen?: number;
  /** connect: give up after this long without a listener (default 10000 ms). */
  connectTimeoutMs?: number;
  /** connect: delay between attempts (default 50 ms). */
  retryMs?: number;
  /** connect: reconnect after an established connection drops (default true). */
  reconnect?: boolean;
  /** listen: remove a stale socket file at the path first (only if it is a socket; default true). */
  unlinkStale?: boolean;
}

/** Counters of a {@link SocketNetBackend}. */
export interface SocketNetStats {
  txFrames: number;
  txBytes: number;
  /** Frames dropped because the staging buffer was full (peer or kernel not keeping up). */
  txDropped: number;
  /** Frames dropped because no peer was connected. */
  txNoPeer: number;
  /** GSO frames dropped (no segmentation here). */
  txGsoDropped: number;
  /** Partial checksums completed before the frame went on the wire. */
  txCsumCompleted: number;
  /** Frames with offload metadata that does not fit the frame (dropped). */
  txBadMeta: number;
  /** Batches handed to socket.write. */
  txWrites: number;
  rxFrames: number;
  rxBytes: number;
  /** Length prefixes above maxFrameLen (each closed its connection). */
  rxBadLength: number;
  /** Frames shorter than an Ethernet header (skipped). */
  rxRunts: number;
  /** Connections established. */
  connections: number;
  /** Connections that ended. */
  disconnects: number;
  /** listen: peers refused because one was already connected. */
  refused: number;
  /** connect: failed connection attempts. */
  connectFailures: number;
}

interface Staging {
  buf: Buffer;
  used: number;
}

/** The socket backend. Build it with {@link SocketNetBackend.listen} or {@link SocketNetBackend.connect}. */
export class SocketNetBackend implements NetBackend {
  readonly mode: 'listen' | 'connect';
  readonly path: string;
  readonly stats: SocketNetStats = {
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    txNoPeer: 0,
    txGsoDropped: 0,
    txCsumCompleted: 0,
    txBadMeta: 0,
    txWrites: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxBadLength: 0,
    rxRunts: 0,
    connections: 0,
    disconnects: 0,
    refused: 0,
    connectFailures: 0,
  };

  private rx: FrameReceiver | null = null;
  private sock: Socket | null = null;
  private server: Server | null = null;
  private closed = false;
  private readonly maxFrame: number;
  private readonly connectTimeoutMs: number;
  private readonly retryMs: number;
  private readonly reconnect: boolean;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly connWaiters: Array<() => void> = [];
  // transmit: `fill` takes new frames while `other` may be in flight
  private fill: Staging;
  private other: Staging;
  private inFlight = false;
  private flushScheduled = false;
  // receive state machine
  private readonly hdr = Buffer.alloc(STREAM_PREFIX_LEN);
  private hdrHave = 0;
  private frameLen = -1;
  private frameHave = 0;
  private readonly asm: Buffer;

  private constructor(mode: 'listen' | 'connect', path: string, o: SocketNetBackendOptions) {
    this.mode = mode;
    this.path = path;
    this.maxFrame = o.maxFrameLen ?? MAX_FRAME_LEN;
    requireArg(Number.isInteger(this.maxFrame) && this.maxFrame >= ETH_HLEN && this.maxFrame <= 0x7fff_ffff, `SocketNetBackend: maxFrameLen must be an integer ${ETH_HLEN}..2^31-1 (got ${this.maxFrame})`);
    const staging = o.stagingBytes ?? 512 * 1024;
    requireArg(Number.isInteger(staging) && staging >= this.maxFrame + STREAM_PREFIX_LEN, `SocketNetBackend: stagingBytes must hold one largest frame plus its prefix (>= ${this.maxFrame + STREAM_PREFIX_LEN}, got ${staging})`);
    this.fill = { buf: Buffer.allocUnsafe(staging), used: 0 };
    this.other = { buf: Buffer.allocUnsafe(staging), used: 0 };
    this.asm = Buffer.allocUnsafe(this.maxFrame);
    this.connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
    this.retryMs = o.retryMs ?? 50;
    this.reconnect = o.reconnect ?? true;
  }

  /**
   * Listen on `path` (a UNIX socket) and serve one peer at a time.
   * @throws VirtioError INVALID_ARGUMENT when the path exists and is not a socket, or cannot be listened on
   */
  static listen(path: string, opts: SocketNetBackendOptions = {}): Promise<SocketNetBackend> {
    requireArg(typeof path === 'string' && path.length > 0, 'SocketNetBackend.listen: path must be a non-empty string');
    if ((opts.unlinkStale ?? true) && existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new VirtioError('INVALID_ARGUMENT', `SocketNetBackend: ${path} exists and is not a socket; pick another path`);
      unlinkSync(path);
    }
    const b = new SocketNetBackend('listen', path, opts);
    const server = createServer((s) => b.accept(s));
    b.server = server;
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(new VirtioError('INVALID_ARGUMENT', `SocketNetBackend: cannot listen on ${path}: ${e.message}`));
      server.once('error', onErr);
      server.listen(path, () => {
        server.off('error', onErr);
        server.on('error', (e) => log('%s: server error: %s', path, e.message));
        resolve(b);
      });
    });
  }

  /**
   * Connect to a listener at `path`, retrying until it exists (bounded by `connectTimeoutMs`).
   * Resolves once connected.
   * @throws VirtioError TIMEOUT when no listener accepted within the timeout
   */
  static async connect(path: string, opts: SocketNetBackendOptions = {}): Promise<SocketNetBackend> {
    requireArg(typeof path === 'string' && path.length > 0, 'SocketNetBackend.connect: path must be a non-empty string');
    const b = new SocketNetBackend('connect', path, opts);
    try {
      await b.dial();
    } catch (e) {
      b.close();
      throw e;
    }
    return b;
  }

  /** True while a peer is connected. */
  get connected(): boolean {
    return this.sock !== null;
  }

  /** Resolves when a peer is connected (at once if one is). */
  whenConnected(): Promise<void> {
    if (this.sock !== null) return Promise.resolve();
    return new Promise((resolve) => this.connWaiters.push(resolve));
  }

  onFrame(cb: FrameReceiver): void {
    this.rx = cb;
  }

  send(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    if (this.sock === null) {
      this.stats.txNoPeer++;
      return;
    }
    if (len > this.maxFrame) {
      this.stats.txDropped++;
      return;
    }
    let patchAt = -1;
    let csumStart = 0;
    if (meta !== null) {
      if (meta.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
        this.stats.txGsoDropped++;
        return;
      }
      if ((meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
        csumStart = meta.csumStart;
        patchAt = csumStart + meta.csumOffset;
        if (patchAt + 2 > len) {
          this.stats.txBadMeta++;
          return;
        }
      }
    }
    const st = this.fill;
    const b = st.buf;
    const at = st.used;
    if (at + STREAM_PREFIX_LEN + len > b.length) {
      this.stats.txDropped++;
      return;
    }
    b.writeUInt32BE(len, at);
    b.set(buf.subarray(off, off + len), at + STREAM_PREFIX_LEN);
    if (patchAt >= 0) {
      const f = at + STREAM_PREFIX_LEN;
      const c = completeChecksum(b, f, len, csumStart);
      b[f + patchAt] = c >>> 8;
      b[f + patchAt + 1] = c & 0xff;
      this.stats.txCsumCompleted++;
    }
    st.used = at + STREAM_PREFIX_LEN + len;
    this.stats.txFrames++;
    this.stats.txBytes += len;
    if (!this.inFlight && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Stop listening / connecting and drop the connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.sock?.destroy();
    this.server?.close();
    this.server = null;
  }

  // ------------------------------------------------------------------ connection handling

  private accept(s: Socket): void {
    if (this.closed || this.sock !== null) {
      this.stats.refused++;
      log('%s: refusing a second peer', this.path);
      s.destroy();
      return;
    }
    this.adopt(s);
  }

  private adopt(s: Socket): void {
    this.sock = s;
    this.stats.connections++;
    this.hdrHave = 0;
    this.frameLen = -1;
    this.frameHave = 0;
    this.fill.used = 0;
    this.other.used = 0;
    this.inFlight = false;
    s.on('data', (chunk: Buffer) => {
      if (this.sock === s) this.parse(s, chunk);
    });
    s.on('error', (e) => log('%s: socket error: %s', this.path, e.message));
    s.on('close', () => this.lost(s));
    log('%s: peer connected (%s)', this.path, this.mode);
    const w = this.connWaiters.splice(0);
    for (const f of w) f();
  }

  private lost(s: Socket): void {
    if (this.sock !== s) return;
    this.sock = null;
    this.stats.disconnects++;
    this.inFlight = false;
    this.fill.used = 0;
    this.other.used = 0;
    log('%s: peer gone', this.path);
    if (this.mode === 'connect' && this.reconnect && !this.closed) {
      this.dial().catch((e: unknown) => log('%s: reconnect gave up: %s', this.path, e instanceof Error ? e.message : String(e)));
    }
  }

  /** Connect with bounded retries. */
  private dial(): Promise<void> {
    const deadline = Date.now() + this.connectTimeoutMs;
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        this.retryTimer = null;
        if (this.closed) {
          reject(new VirtioError('CLOSED', `SocketNetBackend: closed while connecting to ${this.path}`));
          return;
        }
        const s = createConnection(this.path);
        const onErr = (e: Error): void => {
          s.destroy();
          this.stats.connectFailures++;
          if (this.closed || Date.now() + this.retryMs > deadline) {
            reject(new VirtioError('TIMEOUT', `SocketNetBackend: no listener accepted at ${this.path} within ${this.connectTimeoutMs} ms (last error: ${e.message}); start the listening side first`));
            return;
          }
          this.retryTimer = setTimeout(attempt, this.retryMs);
        };
        s.once('error', onErr);
        s.once('connect', () => {
          s.off('error', onErr);
          if (this.closed) {
            s.destroy();
            reject(new VirtioError('CLOSED', `SocketNetBackend: closed while connecting to ${this.path}`));
            return;
          }
          this.adopt(s);
          resolve();
        });
      };
      attempt();
    });
  }

  // ------------------------------------------------------------------ transmit

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const s = this.sock;
    if (s === null || this.inFlight || this.fill.used === 0) return;
    const st = this.fill;
    this.fill = this.other;
    this.other = st;
    this.inFlight = true;
    this.stats.txWrites++;
    s.write(st.buf.subarray(0, st.used), () => {
      if (this.sock !== s) return; // the connection is gone; its state was reset
      st.used = 0;
      this.inFlight = false;
      if (this.fill.used > 0) this.flush();
    });
  };

  // ------------------------------------------------------------------ receive

  private parse(s: Socket, chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    const hdr = this.hdr;
    while (i < n) {
      if (this.frameLen < 0) {
        // Fast path: a whole prefix + frame in this chunk → deliver a view, no copy.
        if (this.hdrHave === 0 && n - i >= STREAM_PREFIX_LEN) {
          const len = chunk.readUInt32BE(i);
          if (!this.checkLen(s, len)) return;
          if (n - i - STREAM_PREFIX_LEN >= len) {
            this.deliver(chunk, i + STREAM_PREFIX_LEN, len);
            i += STREAM_PREFIX_LEN + len;
            continue;
          }
          this.frameLen = len;
          this.frameHave = 0;
          i += STREAM_PREFIX_LEN;
          continue;
        }
        const take = Math.min(STREAM_PREFIX_LEN - this.hdrHave, n - i);
        chunk.copy(hdr, this.hdrHave, i, i + take);
        this.hdrHave += take;
        i += take;
        if (this.hdrHave < STREAM_PREFIX_LEN) return;
        this.hdrHave = 0;
        const len = hdr.readUInt32BE(0);
        if (!this.checkLen(s, len)) return;
        this.frameLen = len;
        this.frameHave = 0;
        if (len === 0) {
          this.deliver(this.asm, 0, 0);
          this.frameLen = -1;
        }
        continue;
      }
      const take = Math.min(this.frameLen - this.frameHave, n - i);
      chunk.copy(this.asm, this.frameHave, i, i + take);
      this.frameHave += take;
      i += take;
      if (this.frameHave === this.frameLen) {
        const len = this.frameLen;
        this.frameLen = -1;
        this.deliver(this.asm, 0, len);
      }
    }
  }

  /** A length prefix the stream cannot carry: close this connection (count it). */
  private checkLen(s: Socket, len: number): boolean {
    if (len <= this.maxFrame) return true;
    this.stats.rxBadLength++;
    log('%s: length prefix %d above %d; closing the connection', this.path, len, this.maxFrame);
    this.frameLen = -1;
    this.hdrHave = 0;
    s.destroy();
    this.lost(s);
    return false;
  }

  private deliver(buf: Uint8Array, off: number, len: number): void {
    if (len < ETH_HLEN) {
      this.stats.rxRunts++;
      return;
    }
    this.stats.rxFrames++;
    this.stats.rxBytes += len;
    const rx = this.rx;
    if (rx === null) return;
    try {
      rx(buf, off, len, null);
    } catch (e) {
      log('%s: receiver threw: %O', this.path, e);
    }
  }
}
