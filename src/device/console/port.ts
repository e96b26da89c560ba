/**
 * One console port: a receiveq / transmitq pair connected to a {@link PortBackend}.
 *
 * Input (host → guest)
 *  - Backend chunks are kept (not copied) in a FIFO until the guest posts receive buffers; the
 *    FIFO is bounded (`inputBufferBytes`, default 64 KiB): reaching the bound pauses the backend
 *    (`stats.pauses`), and it resumes when the guest has taken the FIFO below half the bound.
 *    A source that ignores pause can overshoot the bound by at most one more bound's worth;
 *    anything beyond that is dropped and counted (`stats.inputDropped`) — never silently.
 *  - Each receive chain gets as many bytes as its writable part holds; used len = bytes written.
 *
 * Output (guest → host)
 *  - Each transmit chain's device-readable bytes are copied out of guest memory (the stream keeps
 *    the buffer, so this copy is required) in pieces of at most 64 KiB and written to the backend;
 *    used len is 0 (the device writes nothing into a transmit buffer).
 *  - When a write returns false the port stops: a chain not yet fully written is held (its used
 *    element waits) and no further chains are popped until the backend reports `drain`. The guest
 *    sees its transmit buffers stay outstanding — flow control.
 *
 * Buffers in the wrong direction (`console.dev-op.driver.1` readable parts in a receiveq,
 * `console.dev-op.driver.2` writable parts in a transmitq) are ignored — never read, never
 * written — and counted.
 */
import { logger } from '../../log.js';
import type { AddressSpace } from '../../memory/space.js';
import { readFromChain, writeToChain } from '../../queue/chain-io.js';
import { DescChain, type DeviceQueue } from '../../queue/types.js';
import type { PortBackend } from './backends.js';

const log = logger('console');

/** Largest piece of a transmit chain written to the backend at once. */
export const TX_PIECE_BYTES = 64 * 1024;
/** Default bound of a port's input FIFO. */
export const DEFAULT_INPUT_BUFFER_BYTES = 64 * 1024;

/** Per-port counters. */
export interface PortStats {
  /** Bytes delivered to the guest. */
  rxBytes: number;
  /** Receive chains used. */
  rxChains: number;
  /** Bytes taken from the guest and written to the backend. */
  txBytes: number;
  /** Transmit chains used. */
  txChains: number;
  /** Times the backend was paused because the input FIFO was full. */
  pauses: number;
  /** Input bytes dropped because the source ignored pause (beyond twice the bound). */
  inputDropped: number;
  /** Times a backend write returned false (transmit held until drain). */
  txBlocked: number;
  /** Receive chains with device-readable segments (`console.dev-op.driver.1`). */
  readableInRx: number;
  /** Transmit chains with device-writable segments (`console.dev-op.driver.2`). */
  writableInTx: number;
}

/** What a port tells its device. */
export interface PortHost {
  /** New input is buffered: deliver if the guest can take it. */
  inputReady(port: ConsolePort): void;
  /** The backend drained: transmit can go on. */
  drained(port: ConsolePort): void;
  /** The host peer connected / went away. */
  connection(port: ConsolePort, open: boolean): void;
}

/** Receive queue index of port `id` (0 → 0; n ≥ 1 → 2 + 2n). */
export function rxQueueOf(id: number): number {
  return id === 0 ? 0 : 2 + 2 * id;
}
/** Transmit queue index of port `id`. */
export function txQueueOf(id: number): number {
  return rxQueueOf(id) + 1;
}

/** Options of a port. */
export interface ConsolePortOptions {
  /** Host side (default: a NullBackend). */
  backend?: PortBackend;
  /** Name announced with PORT_NAME (multiport only). */
  name?: string;
  /** Announce as a console with CONSOLE_PORT (multiport; default: true for port 0 only). */
  console?: boolean;
}

/** One port. The device drives the control protocol state; the port moves the bytes. */
export class ConsolePort {
  readonly id: number;
  readonly name: string | undefined;
  readonly isConsole: boolean;
  readonly backend: PortBackend;
  readonly rxQueue: number;
  readonly txQueue: number;
  readonly stats: PortStats = { rxBytes: 0, rxChains: 0, txBytes: 0, txChains: 0, pauses: 0, inputDropped: 0, txBlocked: 0, readableInRx: 0, writableInTx: 0 };

  // --- control protocol state (multiport; the device sets these)
  /** DEVICE_ADD sent since the last reset. */
  added = false;
  /** The driver answered PORT_READY with value 1. */
  ready = false;
  /** The guest has the port open (PORT_OPEN from the driver, or implied without multiport). */
  guestOpen = false;

  private readonly bound: number;
  private readonly chunks: Uint8Array[] = [];
  private headOff = 0;
  private buffered = 0;
  private paused = false;
  private readonly rxChain: DescChain;
  private readonly txChain: DescChain;
  /** txChain holds a popped chain written up to txOff. */
  private txHeld = false;
  private txOff = 0;
  /** A backend write returned false; waiting for drain. */
  private txWaiting = false;
  private attached = false;
  private detached = false;

  constructor(id: number, opts: ConsolePortOptions, backend: PortBackend, inputBufferBytes: number, chainCapacity: number) {
    this.id = id;
    this.name = opts.name;
    this.isConsole = opts.console ?? id === 0;
    this.backend = backend;
    this.rxQueue = rxQueueOf(id);
    this.txQueue = txQueueOf(id);
    this.bound = inputBufferBytes;
    this.rxChain = new DescChain(chainCapacity);
    this.txChain = new DescChain(chainCapacity);
  }

  /** Connect to the backend's events (once). */
  attach(host: PortHost): void {
    if (this.attached) return;
    this.attached = true;
    this.backend.attach({
      data: (chunk) => {
        if (this.detached) return;
        this.onInput(chunk);
        host.inputReady(this);
      },
      drain: () => {
        this.txWaiting = false;
        if (!this.detached) host.drained(this);
      },
      connection: (open) => {
        if (!this.detached) host.connection(this, open);
      },
    });
  }

  /** Stop passing backend events on (port removed). The backend stays open: its owner closes it. */
  detach(): void {
    this.detached = true;
  }

  /** Input bytes waiting for receive buffers. */
  get inputBuffered(): number {
    return this.buffered;
  }
  /** True while the backend is paused by this port. */
  get inputPaused(): boolean {
    return this.paused;
  }
  /** True while transmit waits for the backend to drain. */
  get transmitBlocked(): boolean {
    return this.txWaiting;
  }

  private onInput(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.buffered + chunk.length > 2 * this.bound) {
      // The source ignored pause(): refuse to grow without limit, and say so.
      this.stats.inputDropped += chunk.length;
      log('port %d: input FIFO over twice its bound (%d bytes): dropped %d bytes', this.id, this.bound, chunk.length);
      return;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered >= this.bound && !this.paused) {
      this.paused = true;
      this.stats.pauses++;
      this.backend.pause();
    }
  }

  /**
   * Move buffered input into receive chains of `queue`.
   * @returns the number of chains pushed used (the caller raises the interrupt)
   */
  deliver(queue: DeviceQueue, space: AddressSpace): number {
    const chain = this.rxChain;
    let pushed = 0;
    for (;;) {
      while (this.buffered > 0) {
        if (!queue.pop(chain)) break;
        const n = this.fill(space, chain);
        queue.pushUsed(chain.head, n);
        pushed++;
      }
      // Out of buffers with data left: ask for a kick; re-check if buffers arrived meanwhile.
      // A parked queue pops nothing: leave rather than spin.
      if (this.buffered === 0 || queue.parked || !queue.enableNotifications()) break;
    }
    if (this.paused && this.buffered <= this.bound >>> 1) {
      this.paused = false;
      this.backend.resume();
    }
    return pushed;
  }

  private fill(space: AddressSpace, chain: DescChain): number {
    if (chain.readable > 0) {
      // console.dev-op.driver.1: no device-readable buffer in a receiveq. Ignored (never read).
      if (this.stats.readableInRx++ === 0) log('port %d: receive chain with device-readable segments: ignored [console.dev-op.driver.1]', this.id);
    }
    const cap = chain.writableBytes;
    const chunks = this.chunks;
    let off = 0;
    let head = this.headOff;
    while (off < cap && chunks.length > 0) {
      const c = chunks[0]!;
      const left = c.length - head;
      const n = writeToChain(space, chain, c, head, left < cap - off ? left : cap - off, off);
      off += n;
      head += n;
      if (head === c.length) {
        chunks.shift();
        head = 0;
      }
      if (n === 0) break;
    }
    this.headOff = head;
    this.buffered -= off;
    this.stats.rxBytes += off;
    this.stats.rxChains++;
    return off;
  }

  /**
   * Take transmit chains from `queue` and write them to the backend until the queue is empty or
   * the backend asks to wait.
   * @returns the number of chains pushed used
   */
  transmit(queue: DeviceQueue, space: AddressSpace): number {
    const chain = this.txChain;
    const backend = this.backend;
    let pushed = 0;
    for (;;) {
      queue.disableNotifications();
      while (!this.txWaiting) {
        if (!this.txHeld) {
          if (!queue.pop(chain)) break;
          this.txHeld = true;
          this.txOff = 0;
          if (chain.count > chain.readable) {
            // console.dev-op.driver.2: no device-writable buffer in a transmitq. Ignored (never written).
            if (this.stats.writableInTx++ === 0) log('port %d: transmit chain with device-writable segments: ignored [console.dev-op.driver.2]', this.id);
          }
        }
        const total = chain.readableBytes;
        let off = this.txOff;
        while (off < total) {
          const n = total - off < TX_PIECE_BYTES ? total - off : TX_PIECE_BYTES;
          const buf = Buffer.allocUnsafe(n);
          readFromChain(space, chain, buf, 0, n, off);
          off += n;
          this.stats.txBytes += n;
          if (!backend.write(buf)) {
            this.txWaiting = true;
            this.stats.txBlocked++;
            break;
          }
        }
        this.txOff = off;
        if (off < total) break; // held: finish this chain after drain
        this.txHeld = false;
        queue.pushUsed(chain.head, 0); // nothing written into a transmit buffer
        this.stats.txChains++;
        pushed++;
      }
      // Waiting for drain: notifications stay off; the drain event resumes the queue.
      if (this.txWaiting || queue.parked || !queue.enableNotifications()) break;
    }
    return pushed;
  }

  /**
   * Return a transmit chain held for drain (port removal) so the driver does not lose it.
   * @returns true when a chain was pushed used
   */
  releaseHeld(queue: DeviceQueue): boolean {
    if (!this.txHeld) return false;
    this.txHeld = false;
    this.txOff = 0;
    queue.pushUsed(this.txChain.head, 0);
    return true;
  }

  /** Forget per-driver queue state (device reset or a reset of one of this port's queues). */
  resetQueues(): void {
    this.txHeld = false;
    this.txOff = 0;
  }

  /** Forget the control protocol state (device reset). Buffered host input is kept. */
  resetProtocol(): void {
    this.added = false;
    this.ready = false;
    this.guestOpen = false;
    this.resetQueues();
  }

  /** Drop buffered input (port removed) and let the backend produce again. */
  dropInput(): void {
    this.chunks.length = 0;
    this.headOff = 0;
    this.buffered = 0;
    if (this.paused) {
      this.paused = false;
      this.backend.resume();
    }
  }
}
