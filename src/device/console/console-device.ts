/**
 * virtio-console (virtio 1.4 §5.3): ports connected to host backends, the multiport control
 * protocol, console size and emergency write.
 *
 * Queues: 0 receiveq(port 0), 1 transmitq(port 0), 2 control receiveq, 3 control transmitq,
 * 4/5 port 1, … (2 + 2n / 3 + 2n for port n ≥ 1). Queues past 1 exist only when
 * VIRTIO_CONSOLE_F_MULTIPORT is offered (`multiport` or `maxNrPorts > 1`).
 *
 * Single port (MULTIPORT not negotiated): port 0 carries data as soon as the driver is up.
 * Console size changes (`resize()`) update cols / rows in the configuration and raise a
 * configuration change (only when VIRTIO_CONSOLE_F_SIZE is offered).
 *
 * Multiport: the device says nothing on the control queue until the driver sent DEVICE_READY
 * (`console.multiport-dev-op.driver.1`). Then:
 *   device DEVICE_ADD(id) for every port →  driver PORT_READY(id, 1)  →  device CONSOLE_PORT(id, 1)
 *   for console ports, PORT_NAME(id) + name for named ports, PORT_OPEN(id, 1) when the host side is
 *   connected  →  driver PORT_OPEN(id, 1) once the guest opened it (for a console port the driver
 *   must do so right away, `console.multiport-dev-op.driver.2`).
 * DEVICE_ADD is never sent for a port already added or for an id ≥ max_nr_ports
 * (`console.multiport-dev-op.device.1`); DEVICE_REMOVE only for an added port
 * (`console.multiport-dev-op.device.2`). Host input reaches a port only while the guest has it
 * open (the Linux driver discards data for ports nobody opened); until then it waits in the
 * port's bounded FIFO. Resizes go out as RESIZE(id) + {cols, rows}; PORT_OPEN follows the host
 * peer connecting / leaving. Control messages wait in a FIFO until the driver posts control
 * receive buffers (a newer RESIZE or PORT_OPEN for a port replaces a pending one).
 *
 * Control messages from the driver that are short, name an unknown port or carry a device→driver
 * event are ignored and counted (`stats.controlMalformed` / `stats.controlIgnored`): they cannot
 * hurt the device, and a guest error would take the whole console down.
 *
 * Emergency write: a write to emerg_wr sends its lower byte to port 0's backend, in every device
 * state (`console.dev-init.device.1`, `.2`).
 */
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import { FeatureSet } from '../../features/set.js';
import { readFromChain, writeToChain } from '../../queue/chain-io.js';
import { DescChain } from '../../queue/types.js';
import type { DeviceContext, ModelHost, VirtioDeviceModel } from '../types.js';
import { NullBackend, type PortBackend } from './backends.js';
import { ConsoleConfig } from './config.js';
import {
  CONTROL_HEADER_BYTES,
  VIRTIO_CONSOLE_CONSOLE_PORT,
  VIRTIO_CONSOLE_DEVICE_ADD,
  VIRTIO_CONSOLE_DEVICE_READY,
  VIRTIO_CONSOLE_DEVICE_REMOVE,
  VIRTIO_CONSOLE_PORT_NAME,
  VIRTIO_CONSOLE_PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY,
  VIRTIO_CONSOLE_RESIZE,
  controlEventName,
  decodeControlHeader,
  encodeControlHeader,
  resizePayload,
  type ControlMessage,
} from './control.js';
import { ConsolePort, DEFAULT_INPUT_BUFFER_BYTES, type ConsolePortOptions, type PortHost } from './port.js';

const log = logger('console');

/** Virtio device ID of the console. */
export const VIRTIO_ID_CONSOLE = 3;
/** Feature bits (device-types/console). */
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;
/** Control queue indices. */
export const CONSOLE_CONTROL_RXQ = 2;
export const CONSOLE_CONTROL_TXQ = 3;

/** Options of {@link ConsoleDevice}. */
export interface ConsoleDeviceOptions {
  /** Ports by id (index = port number; holes allowed). Default: one port 0 with no backend. */
  ports?: Array<ConsolePortOptions | null | undefined>;
  /** Offer VIRTIO_CONSOLE_F_MULTIPORT (default: maxNrPorts > 1 or more than one port given). */
  multiport?: boolean;
  /** max_nr_ports (default: the number of port slots given, at least 1; 1 without multiport). */
  maxNrPorts?: number;
  /** Offer VIRTIO_CONSOLE_F_SIZE with this initial size. */
  size?: { cols: number; rows: number };
  /** Offer VIRTIO_CONSOLE_F_EMERG_WRITE and honour emerg_wr (default true). */
  emergWrite?: boolean;
  /** Largest queue size offered (power of two, default 256). */
  queueSize?: number;
  /** Bound of each port's input FIFO (default 64 KiB). */
  inputBufferBytes?: number;
  /**
   * Field order of the RESIZE payload: 'cols-rows' (the spec, Linux ≥ 6.15 and stable backports)
   * or 'rows-cols' (older Linux drivers, which read rows first). Default 'cols-rows'.
   */
  resizeOrder?: 'cols-rows' | 'rows-cols';
}

/** Device-level counters. */
export interface ConsoleStats {
  /** Control messages received from the driver / sent to it. */
  controlReceived: number;
  controlSent: number;
  /** Control transmit chains shorter than a header. */
  controlMalformed: number;
  /** Well-formed control messages ignored (unknown port, wrong direction, unknown event). */
  controlIgnored: number;
  /** Control receive buffers too small for a header (returned with used len 0). */
  controlShortBuffers: number;
  /** Bytes passed on from emerg_wr. */
  emergWrites: number;
}

/** The console device model. */
export class ConsoleDevice implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly name = 'virtio-console';
  readonly numQueues: number;
  readonly config: ConsoleConfig;
  readonly stats: ConsoleStats = { controlReceived: 0, controlSent: 0, controlMalformed: 0, controlIgnored: 0, controlShortBuffers: 0, emergWrites: 0 };
  /** max_nr_ports. */
  readonly maxNrPorts: number;

  private readonly multiportOffered: boolean;
  private readonly sizeOffered: boolean;
  private readonly emergOffered: boolean;
  private readonly queueSize: number;
  private readonly inputBound: number;
  private readonly colsFirst: boolean;
  private readonly ports: Array<ConsolePort | null>;
  /** Latest size per port set through {@link resize}. */
  private readonly sizes = new Map<number, { cols: number; rows: number }>();
  private readonly portHost: PortHost;
  /** Control receiveq (device → driver) chain and header scratch. */
  private readonly ctrlChain: DescChain;
  private readonly ctrlHdr = new Uint8Array(CONTROL_HEADER_BYTES);
  /** Control transmitq (driver → device) chain and header scratch. */
  private readonly ctrlInChain: DescChain;
  private readonly ctrlInHdr = new Uint8Array(CONTROL_HEADER_BYTES);
  private readonly ctrlOut: ControlMessage[] = [];
  private host: ModelHost | null = null;
  private ctx: DeviceContext | null = null;
  private multiport = false;
  private deviceReadyFlag = false;
  private suspended = false;
  /** A port 0 resize arrived while suspended. */
  private sizePending = false;

  constructor(opts: ConsoleDeviceOptions = {}) {
    const slots = opts.ports ?? [{}];
    const multi = opts.multiport ?? ((opts.maxNrPorts ?? 1) > 1 || slots.length > 1);
    const maxNr = opts.maxNrPorts ?? (multi ? Math.max(1, slots.length) : 1);
    requireArg(Number.isInteger(maxNr) && maxNr >= 1 && maxNr <= 32766, `virtio-console: maxNrPorts must be an integer 1..32766 (got ${maxNr})`);
    requireArg(multi || maxNr === 1, 'virtio-console: maxNrPorts > 1 needs multiport (VIRTIO_CONSOLE_F_MULTIPORT)');
    requireArg(slots.length <= maxNr, `virtio-console: ${slots.length} port slots given but maxNrPorts is ${maxNr}`);
    const qs = opts.queueSize ?? 256;
    requireArg(Number.isInteger(qs) && qs >= 1 && qs <= 32768 && (qs & (qs - 1)) === 0, `virtio-console: queueSize must be a power of two 1..32768 (got ${qs})`);
    const bound = opts.inputBufferBytes ?? DEFAULT_INPUT_BUFFER_BYTES;
    requireArg(Number.isInteger(bound) && bound >= 1, `virtio-console: inputBufferBytes must be a positive integer (got ${bound})`);
    if (opts.size !== undefined) checkSize(opts.size.cols, opts.size.rows);

    this.multiportOffered = multi;
    this.sizeOffered = opts.size !== undefined;
    this.emergOffered = opts.emergWrite ?? true;
    this.queueSize = qs;
    this.inputBound = bound;
    this.colsFirst = (opts.resizeOrder ?? 'cols-rows') === 'cols-rows';
    this.maxNrPorts = maxNr;
    this.numQueues = multi ? 2 * (maxNr + 1) : 2;
    this.ctrlChain = new DescChain(qs);
    this.ctrlInChain = new DescChain(qs);
    this.config = new ConsoleConfig(
      { cols: opts.size?.cols ?? 0, rows: opts.size?.rows ?? 0, maxNrPorts: multi ? maxNr : 0 },
      this.emergOffered ? (b) => this.emergencyWrite(b) : null,
    );
    this.portHost = {
      inputReady: (p) => this.deliverPort(p),
      drained: (p) => this.transmitPort(p),
      connection: (p, open) => this.hostConnection(p, open),
    };
    this.ports = new Array<ConsolePort | null>(maxNr).fill(null);
    slots.forEach((s, id) => {
      if (s !== null && s !== undefined) this.createPort(id, s);
    });
  }

  // ============================================================================================
  // Host-side API

  /** Port `id`, or null. */
  port(id: number): ConsolePort | null {
    return this.ports[id] ?? null;
  }

  /** True once the driver sent DEVICE_READY (multiport). */
  get deviceReady(): boolean {
    return this.deviceReadyFlag;
  }

  /** True when MULTIPORT was negotiated (valid after DRIVER_OK). */
  get multiportActive(): boolean {
    return this.ctx !== null && this.multiport;
  }

  /**
   * Hot-plug a port (multiport). Announced with DEVICE_ADD at once when the driver is ready.
   * @throws VirtioError INVALID_ARGUMENT when multiport is not offered, `id` ≥ max_nr_ports or the
   * port exists (`console.multiport-dev-op.device.1`)
   */
  addPort(id: number, opts: ConsolePortOptions = {}): ConsolePort {
    requireArg(this.multiportOffered, 'virtio-console: addPort needs multiport (VIRTIO_CONSOLE_F_MULTIPORT offered)');
    // console.multiport-dev-op.device.1: never a port that exists, never id >= max_nr_ports.
    requireArg(Number.isInteger(id) && id >= 0 && id < this.maxNrPorts, `virtio-console: port id ${id} out of range 0..${this.maxNrPorts - 1} (max_nr_ports)`);
    requireArg(this.ports[id] === null, `virtio-console: port ${id} already exists`);
    const p = this.createPort(id, opts);
    if (this.multiportActive && this.deviceReadyFlag) this.announce(p);
    return p;
  }

  /**
   * Hot-unplug a port: DEVICE_REMOVE when the driver knew it, buffered input dropped. The caller
   * owns the backend afterwards (close it).
   * @throws VirtioError INVALID_ARGUMENT when the port does not exist (`console.multiport-dev-op.device.2`)
   */
  removePort(id: number): ConsolePort {
    const p = this.ports[id] ?? null;
    requireArg(p !== null, `virtio-console: port ${id} does not exist`);
    const ctx = this.ctx;
    if (ctx !== null && !this.suspended) {
      const q = ctx.queues[p.txQueue];
      if (q !== null && q !== undefined && p.releaseHeld(q)) ctx.interrupt(p.txQueue);
    }
    // console.multiport-dev-op.device.2: DEVICE_REMOVE only for a port added with DEVICE_ADD.
    if (p.added && this.multiportActive) this.sendControl(id, VIRTIO_CONSOLE_DEVICE_REMOVE, 1);
    p.resetProtocol();
    p.dropInput();
    p.detach();
    this.ports[id] = null;
    this.sizes.delete(id);
    return p;
  }

  /**
   * The console size of port `id` changed. Without multiport (port 0): cols / rows in the
   * configuration and a configuration change (VIRTIO_CONSOLE_F_SIZE offered). With multiport
   * active: a RESIZE control message for a console port the driver has set up.
   */
  resize(cols: number, rows: number, id = 0): void {
    checkSize(cols, rows);
    requireArg(this.ports[id] !== null && this.ports[id] !== undefined, `virtio-console: port ${id} does not exist`);
    this.sizes.set(id, { cols, rows });
    if (this.multiportActive) {
      const p = this.ports[id]!;
      if (p.ready && p.isConsole) this.sendResize(p, cols, rows);
      return;
    }
    if (id !== 0) return; // only port 0 has a size in the configuration
    if (this.suspended) {
      // init.dev-suspend.device.3: no configuration change while suspended; applied on resume.
      this.sizePending = true;
      return;
    }
    this.applySize0();
  }

  private applySize0(): void {
    const s = this.sizes.get(0);
    if (s === undefined) return;
    this.config.setSize(s.cols, s.rows);
    if (this.sizeOffered) this.host?.configChanged();
  }

  /** Close every port's backend. */
  async close(): Promise<void> {
    await Promise.all(this.ports.map((p) => p?.backend.close()));
  }

  // ============================================================================================
  // VirtioDeviceModel

  maxQueueSize(q: number): number {
    return q >= 0 && q < this.numQueues ? this.queueSize : 0;
  }

  offeredFeatures(): FeatureSet {
    const f = new FeatureSet();
    if (this.sizeOffered) f.set(VIRTIO_CONSOLE_F_SIZE);
    if (this.multiportOffered) f.set(VIRTIO_CONSOLE_F_MULTIPORT);
    if (this.emergOffered) f.set(VIRTIO_CONSOLE_F_EMERG_WRITE);
    return f;
  }

  bind(host: ModelHost): void {
    this.host = host;
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.suspended = false;
    this.multiport = ctx.features.has(VIRTIO_CONSOLE_F_MULTIPORT);
    this.deviceReadyFlag = false;
    if (!this.multiport) {
      // Single port: port 0 is there and open as soon as the driver is up.
      const p0 = this.ports[0];
      if (p0 !== null && p0 !== undefined) {
        p0.ready = true;
        p0.guestOpen = true;
        this.deliverPort(p0);
        this.transmitPort(p0);
      }
    }
    // Multiport: wait for DEVICE_READY (console.multiport-dev-op.driver.1).
  }

  notify(q: number): void {
    if (this.ctx === null || this.suspended) return;
    if (q === CONSOLE_CONTROL_RXQ || q === CONSOLE_CONTROL_TXQ) {
      if (!this.multiport) return;
      if (q === CONSOLE_CONTROL_RXQ) this.flushControl();
      else this.handleControl();
      return;
    }
    const p = this.portForQueue(q);
    if (p === null) return;
    if (q === p.rxQueue) this.deliverPort(p);
    else this.transmitPort(p);
  }

  reset(): void {
    this.ctx = null;
    this.multiport = false;
    this.deviceReadyFlag = false;
    this.suspended = false;
    this.sizePending = false;
    this.ctrlOut.length = 0;
    for (const p of this.ports) p?.resetProtocol();
    // Configuration back to the device's current state (cols / rows of port 0).
    const s0 = this.sizes.get(0);
    if (s0 !== undefined) this.config.setSize(s0.cols, s0.rows);
  }

  queueReset(q: number): void {
    const p = this.portForQueue(q);
    if (p !== null && q === p.txQueue) p.resetQueues();
  }

  queueStarted(q: number): void {
    this.notify(q);
  }

  suspend(): void {
    // init.dev-suspend.device.6: nothing is in flight except a transmit chain waiting for the
    // backend to drain; it completes after resume.
    this.suspended = true;
  }

  resume(): void {
    this.suspended = false;
    if (this.sizePending) {
      this.sizePending = false;
      this.applySize0();
    }
    if (this.ctx === null) return;
    if (this.multiport) this.flushControl();
    for (const p of this.ports) {
      if (p === null) continue;
      this.deliverPort(p);
      this.transmitPort(p);
    }
  }

  // ============================================================================================
  // Data

  private createPort(id: number, opts: ConsolePortOptions): ConsolePort {
    requireArg(id < this.maxNrPorts, `virtio-console: port id ${id} ≥ max_nr_ports ${this.maxNrPorts}`);
    if (opts.name !== undefined) requireArg(this.multiportOffered, `virtio-console: port ${id} has a name, which needs multiport`);
    const backend: PortBackend = opts.backend ?? new NullBackend();
    const p = new ConsolePort(id, opts, backend, this.inputBound, this.queueSize);
    this.ports[id] = p;
    p.attach(this.portHost);
    return p;
  }

  private portForQueue(q: number): ConsolePort | null {
    if (q < 0 || q >= this.numQueues) return null;
    const id = q < 2 ? 0 : (q >> 1) - 1;
    if (id > 0 && !this.multiport) return null;
    return this.ports[id] ?? null;
  }

  /** Input may flow to the guest on this port now. */
  private canDeliver(p: ConsolePort): boolean {
    if (this.ctx === null || this.suspended) return false;
    if (!this.multiport) return p.id === 0;
    return p.added && p.ready && p.guestOpen;
  }

  private deliverPort(p: ConsolePort): void {
    const ctx = this.ctx;
    if (ctx === null || !this.canDeliver(p)) return;
    const q = ctx.queues[p.rxQueue];
    if (q === null || q === undefined) return;
    if (p.deliver(q, ctx.space) > 0) ctx.interrupt(p.rxQueue);
  }

  private transmitPort(p: ConsolePort): void {
    const ctx = this.ctx;
    if (ctx === null || this.suspended) return;
    if (p.id > 0 && !this.multiport) return;
    const q = ctx.queues[p.txQueue];
    if (q === null || q === undefined) return;
    if (p.transmit(q, ctx.space) > 0) ctx.interrupt(p.txQueue);
  }

  private emergencyWrite(byte: number): void {
    // console.dev-init.device.1/.2: any state, lower byte to port 0's output.
    this.stats.emergWrites++;
    const p0 = this.ports[0];
    if (p0 === null || p0 === undefined) {
      log('emerg_wr 0x%s: no port 0 backend; dropped', byte.toString(16));
      return;
    }
    p0.backend.write(Buffer.of(byte));
  }

  private hostConnection(p: ConsolePort, open: boolean): void {
    log('port %d: host side %s', p.id, open ? 'connected' : 'disconnected');
    if (this.multiportActive && p.ready) this.sendControl(p.id, VIRTIO_CONSOLE_PORT_OPEN, open ? 1 : 0);
  }

  // ============================================================================================
  // Control queue

  /** Announce a port (DEVICE_ADD). */
  private announce(p: ConsolePort): void {
    // console.multiport-dev-op.device.1: never for a port already added; ids are < max_nr_ports
    // by construction (createPort / addPort).
    if (p.added) return;
    p.added = true;
    this.sendControl(p.id, VIRTIO_CONSOLE_DEVICE_ADD, 1);
  }

  private sendResize(p: ConsolePort, cols: number, rows: number): void {
    this.sendControl(p.id, VIRTIO_CONSOLE_RESIZE, 0, resizePayload(cols, rows, this.colsFirst));
  }

  /** Queue a device → driver message and try to send it. */
  private sendControl(id: number, event: number, value: number, payload?: Uint8Array): void {
    // Port messages only after DEVICE_READY (the driver's signal that it takes them).
    if (!this.deviceReadyFlag) return;
    if (event === VIRTIO_CONSOLE_RESIZE || event === VIRTIO_CONSOLE_PORT_OPEN) {
      // A newer state replaces a pending one (keeps the FIFO bounded under host churn).
      const i = this.ctrlOut.findIndex((m) => m.id === id && m.event === event);
      if (i >= 0) this.ctrlOut.splice(i, 1);
    }
    this.ctrlOut.push(payload === undefined ? { id, event, value } : { id, event, value, payload });
    log('control → driver: %s port %d value %d', controlEventName(event), id, value);
    this.flushControl();
  }

  /** Put pending messages into control receive buffers. */
  private flushControl(): void {
    const ctx = this.ctx;
    if (ctx === null || this.suspended || !this.multiport || this.ctrlOut.length === 0) return;
    const q = ctx.queues[CONSOLE_CONTROL_RXQ];
    if (q === null || q === undefined) return;
    const chain = this.ctrlChain;
    const hdr = this.ctrlHdr;
    const space = ctx.space;
    let pushed = 0;
    for (;;) {
      while (this.ctrlOut.length > 0) {
        if (!q.pop(chain)) break;
        if (chain.writableBytes < CONTROL_HEADER_BYTES) {
          // Cannot hold a message: return it unused and keep the message for the next buffer.
          this.stats.controlShortBuffers++;
          q.pushUsed(chain.head, 0);
          pushed++;
          continue;
        }
        const m = this.ctrlOut.shift()!;
        encodeControlHeader(hdr, m.id, m.event, m.value);
        let n = writeToChain(space, chain, hdr);
        if (m.payload !== undefined) n += writeToChain(space, chain, m.payload, 0, m.payload.length, n);
        q.pushUsed(chain.head, n);
        this.stats.controlSent++;
        pushed++;
      }
      if (this.ctrlOut.length === 0 || q.parked || !q.enableNotifications()) break;
    }
    if (pushed > 0) ctx.interrupt(CONSOLE_CONTROL_RXQ);
  }

  /** Read driver → device messages from the control transmitq. */
  private handleControl(): void {
    const ctx = this.ctx;
    if (ctx === null) return;
    const q = ctx.queues[CONSOLE_CONTROL_TXQ];
    if (q === null || q === undefined) return;
    const chain = this.ctrlInChain;
    const hdr = this.ctrlInHdr;
    let pushed = 0;
    for (;;) {
      q.disableNotifications();
      while (q.pop(chain)) {
        const got = readFromChain(ctx.space, chain, hdr);
        // Read everything first, then return the buffer: handling may queue replies.
        q.pushUsed(chain.head, 0);
        pushed++;
        if (got < CONTROL_HEADER_BYTES) {
          this.stats.controlMalformed++;
          log('control message of %d bytes (a header is %d): ignored', got, CONTROL_HEADER_BYTES);
          continue;
        }
        this.stats.controlReceived++;
        const m = decodeControlHeader(hdr);
        this.onControl(m.id, m.event, m.value);
        if (this.ctx === null) break; // a handler must not reset the device, but be safe
      }
      if (q.parked || !q.enableNotifications()) break;
    }
    if (pushed > 0) ctx.interrupt(CONSOLE_CONTROL_TXQ);
  }

  private onControl(id: number, event: number, value: number): void {
    log('control ← driver: %s port %d value %d', controlEventName(event), id, value);
    if (event === VIRTIO_CONSOLE_DEVICE_READY) {
      if (value !== 1) {
        log('driver reports that its port setup failed (DEVICE_READY value %d)', value);
        return;
      }
      // console.multiport-dev-op.driver.1 received: announce every port (DEVICE_ADD once each).
      this.deviceReadyFlag = true;
      for (const p of this.ports) if (p !== null) this.announce(p);
      return;
    }
    const p = id < this.ports.length ? this.ports[id] ?? null : null;
    if (p === null || !p.added) {
      this.stats.controlIgnored++;
      log('control %s for port %d, which the device has not added: ignored', controlEventName(event), id);
      return;
    }
    switch (event) {
      case VIRTIO_CONSOLE_PORT_READY:
        if (value !== 1) {
          p.ready = false;
          log('port %d: driver failed to set it up (PORT_READY 0)', id);
          return;
        }
        if (p.ready) return;
        p.ready = true;
        if (p.isConsole) {
          this.sendControl(id, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
          const s = this.sizes.get(id);
          if (s !== undefined) this.sendResize(p, s.cols, s.rows);
        }
        if (p.name !== undefined) this.sendControl(id, VIRTIO_CONSOLE_PORT_NAME, 1, Buffer.from(p.name, 'utf8'));
        if (p.backend.connected) this.sendControl(id, VIRTIO_CONSOLE_PORT_OPEN, 1);
        return;
      case VIRTIO_CONSOLE_PORT_OPEN:
        p.guestOpen = value !== 0;
        if (p.isConsole && !p.guestOpen) log('port %d: console port closed by the driver [console.multiport-dev-op.driver.2 expects PORT_OPEN 1]', id);
        if (p.guestOpen) this.deliverPort(p);
        return;
      default:
        // DEVICE_ADD / DEVICE_REMOVE / CONSOLE_PORT / RESIZE / PORT_NAME travel device → driver only.
        this.stats.controlIgnored++;
        log('control %s from the driver: not a driver → device message; ignored', controlEventName(event));
    }
  }
}

function checkSize(cols: number, rows: number): void {
  if (!(Number.isInteger(cols) && cols >= 0 && cols <= 0xffff && Number.isInteger(rows) && rows >= 0 && rows <= 0xffff)) {
    throw new VirtioError('INVALID_ARGUMENT', `virtio-console: console size must be two integers 0..65535 (got cols ${cols}, rows ${rows})`);
  }
}
