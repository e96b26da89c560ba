/**
 * Console port backends: where a port's bytes go on the host.
 *
 *  - {@link StreamBackend}: a Node stream pair (a Duplex, or a Readable + Writable such as
 *    `process.stdin` / `process.stdout`).
 *  - {@link UnixSocketBackend}: a UNIX socket path the device listens on; one client at a time
 *    (further clients are refused and counted). A plain `net.Server` (no fd passing is needed).
 *  - {@link NullBackend}: output discarded, no input.
 *
 * Flow control in both directions is explicit: the port calls {@link PortBackend.pause} when its
 * input buffer is full and {@link PortBackend.resume} when the guest has drained it, and
 * {@link PortBackend.write} returns false when the host side is not keeping up — then the port
 * stops taking transmit buffers until the backend reports `drain`.
 */
import { EventEmitter } from 'node:events';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';

const log = logger('console');

/** What a backend tells its port. */
export interface PortBackendEvents {
  /** Host input for the guest. The chunk is owned by the port afterwards. */
  data(chunk: Uint8Array): void;
  /** A write that returned false has been flushed: writes may go on. */
  drain(): void;
  /** The host side connected (true) or went away (false). */
  connection(open: boolean): void;
}

/** A port's host side. */
export interface PortBackend {
  /** 'stream', 'unix-socket', 'null'. */
  readonly kind: string;
  /** Whether a host-side peer is there to read output / produce input. */
  readonly connected: boolean;
  /** Start delivering events (called once by the port). */
  attach(events: PortBackendEvents): void;
  /**
   * Send guest output to the host. The backend keeps `data` (it must not be reused).
   * @returns false when the caller should wait for `drain` before writing more
   */
  write(data: Uint8Array): boolean;
  /** Stop producing input (the port's buffer is full). */
  pause(): void;
  /** Produce input again. */
  resume(): void;
  /** Stop and release host resources. */
  close(): Promise<void>;
}

/** Counters common to the backends. */
export interface BackendStats {
  /** Output bytes discarded because no host peer was connected. */
  droppedNoPeer: number;
  /** Output bytes written to the host. */
  written: number;
  /** Input bytes read from the host. */
  read: number;
}

/** Output discarded, no input. */
export class NullBackend implements PortBackend {
  readonly kind = 'null';
  readonly connected = false;
  readonly stats: BackendStats = { droppedNoPeer: 0, written: 0, read: 0 };
  attach(_events: PortBackendEvents): void {}
  write(data: Uint8Array): boolean {
    this.stats.droppedNoPeer += data.length;
    return true;
  }
  pause(): void {}
  resume(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Options of {@link StreamBackend}. */
export interface StreamBackendOptions {
  /** End the writable on close (default false: `process.stdout` must stay open). */
  endOnClose?: boolean;
}

/** A port on a Node stream pair. */
export class StreamBackend implements PortBackend {
  readonly kind = 'stream';
  readonly stats: BackendStats = { droppedNoPeer: 0, written: 0, read: 0 };
  private readonly input: Readable | null;
  private readonly output: Writable | null;
  private readonly endOnClose: boolean;
  private events: PortBackendEvents | null = null;
  private inputOpen: boolean;
  private outputOpen: boolean;
  private waitingDrain = false;
  private closed = false;
  private readonly onData = (chunk: Buffer | string): void => {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.stats.read += b.length;
    this.events?.data(b);
  };
  private readonly onDrain = (): void => {
    if (!this.waitingDrain) return;
    this.waitingDrain = false;
    this.events?.drain();
  };

  /**
   * @param input where host input comes from (null: none)
   * @param output where guest output goes (null: discarded)
   */
  constructor(input: Readable | null, output: Writable | null, opts: StreamBackendOptions = {}) {
    requireArg(input !== null || output !== null, 'StreamBackend: give at least an input or an output stream');
    this.input = input;
    this.output = output;
    this.endOnClose = opts.endOnClose ?? false;
    this.inputOpen = input !== null && !input.readableEnded;
    this.outputOpen = output !== null && output.writable;
  }

  /** A port on one Duplex (both directions). */
  static fromDuplex(d: Duplex, opts: StreamBackendOptions = {}): StreamBackend {
    return new StreamBackend(d, d, opts);
  }

  get connected(): boolean {
    return !this.closed && (this.inputOpen || this.outputOpen);
  }

  attach(events: PortBackendEvents): void {
    requireArg(this.events === null, 'StreamBackend: already attached to a port');
    this.events = events;
    const input = this.input;
    const output = this.output;
    if (input !== null) {
      input.on('data', this.onData);
      input.once('end', () => this.lost('input', 'ended'));
      input.on('error', (e: Error) => {
        log('stream backend input error: %s', e.message);
        this.lost('input', 'error');
      });
    }
    if (output !== null) {
      output.on('drain', this.onDrain);
      output.on('error', (e: Error) => {
        log('stream backend output error: %s', e.message);
        this.lost('output', 'error');
      });
      output.once('close', () => this.lost('output', 'closed'));
    }
  }

  write(data: Uint8Array): boolean {
    const out = this.output;
    if (out === null || !this.outputOpen || this.closed) {
      this.stats.droppedNoPeer += data.length;
      return true;
    }
    this.stats.written += data.length;
    const ok = out.write(data);
    if (!ok) this.waitingDrain = true;
    return ok;
  }

  pause(): void {
    this.input?.pause();
  }

  resume(): void {
    if (!this.closed) this.input?.resume();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.input?.off('data', this.onData);
    this.input?.pause();
    this.output?.off('drain', this.onDrain);
    this.releaseDrain();
    if (this.endOnClose && this.output !== null && this.output.writable) {
      const out = this.output;
      return new Promise<void>((resolve) => out.end(() => resolve()));
    }
    return Promise.resolve();
  }

  private lost(side: 'input' | 'output', why: string): void {
    const was = this.connected;
    if (side === 'input') this.inputOpen = false;
    else {
      this.outputOpen = false;
      this.releaseDrain(); // nothing will drain a dead stream: let the port go on (and drop)
    }
    log('stream backend %s %s', side, why);
    if (was && !this.connected) this.events?.connection(false);
  }

  private releaseDrain(): void {
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.events?.drain();
    }
  }
}

/** Counters of {@link UnixSocketBackend}. */
export interface UnixSocketStats extends BackendStats {
  /** Clients accepted. */
  accepted: number;
  /** Clients refused because one was already connected. */
  refused: number;
}

/** Options of {@link UnixSocketBackend.listen}. */
export interface UnixSocketBackendOptions {
  /** Remove a stale socket file at `path` first (only if it is a socket; default true). */
  unlinkStale?: boolean;
}

/**
 * A port on a UNIX socket: the device listens on `path` and serves one client at a time. Output
 * while no client is connected is discarded and counted (`stats.droppedNoPeer`); input waits in
 * the port's buffer.
 */
export class UnixSocketBackend extends EventEmitter implements PortBackend {
  readonly kind = 'unix-socket';
  readonly path: string;
  readonly stats: UnixSocketStats = { droppedNoPeer: 0, written: 0, read: 0, accepted: 0, refused: 0 };
  private readonly server: Server;
  private client: Socket | null = null;
  private events: PortBackendEvents | null = null;
  private paused = false;
  private waitingDrain = false;
  private closed = false;

  private constructor(path: string, server: Server) {
    super();
    this.path = path;
    this.server = server;
    server.on('connection', (s) => this.accept(s));
    server.on('error', (e) => log('unix socket %s: server error: %s', path, e.message));
  }

  /**
   * Listen on `path`. Resolves once the socket accepts connections.
   * @throws VirtioError INVALID_ARGUMENT when the path cannot be listened on
   */
  static listen(path: string, opts: UnixSocketBackendOptions = {}): Promise<UnixSocketBackend> {
    requireArg(typeof path === 'string' && path.length > 0, 'UnixSocketBackend: path must be a non-empty string');
    if ((opts.unlinkStale ?? true) && existsSync(path)) {
      const st = lstatSync(path);
      if (!st.isSocket()) throw new VirtioError('INVALID_ARGUMENT', `UnixSocketBackend: ${path} exists and is not a socket; pick another path`);
      unlinkSync(path);
    }
    const server = createServer({ pauseOnConnect: true });
    const b = new UnixSocketBackend(path, server);
    return new Promise<UnixSocketBackend>((resolve, reject) => {
      const onErr = (e: Error): void => reject(new VirtioError('INVALID_ARGUMENT', `UnixSocketBackend: cannot listen on ${path}: ${e.message}`));
      server.once('error', onErr);
      server.listen(path, () => {
        server.off('error', onErr);
        resolve(b);
      });
    });
  }

  get connected(): boolean {
    return this.client !== null;
  }

  attach(events: PortBackendEvents): void {
    requireArg(this.events === null, 'UnixSocketBackend: already attached to a port');
    this.events = events;
    if (this.client !== null) {
      events.connection(true);
      if (!this.paused) this.client.resume();
    }
  }

  write(data: Uint8Array): boolean {
    const c = this.client;
    if (c === null || this.closed) {
      this.stats.droppedNoPeer += data.length;
      return true;
    }
    this.stats.written += data.length;
    const ok = c.write(data);
    if (!ok) this.waitingDrain = true;
    return ok;
  }

  pause(): void {
    this.paused = true;
    this.client?.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.events !== null) this.client?.resume();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.client?.destroy();
    return new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(s: Socket): void {
    if (this.client !== null || this.closed) {
      this.stats.refused++;
      log('unix socket %s: refused a second client', this.path);
      s.destroy();
      return;
    }
    this.stats.accepted++;
    this.client = s;
    s.on('data', (chunk: Buffer) => {
      this.stats.read += chunk.length;
      this.events?.data(chunk);
    });
    s.on('drain', () => this.releaseDrain());
    s.on('error', (e) => log('unix socket %s: client error: %s', this.path, e.message));
    s.once('close', () => {
      if (this.client !== s) return;
      this.client = null;
      this.releaseDrain();
      this.events?.connection(false);
      this.emit('disconnect');
    });
    this.events?.connection(true);
    this.emit('connect');
    // pauseOnConnect: data flows only once attached and while the port has room.
    if (this.events !== null && !this.paused) s.resume();
  }

  private releaseDrain(): void {
    if (this.waitingDrain) {
      this.waitingDrain = false;
      this.events?.drain();
    }
  }
}
