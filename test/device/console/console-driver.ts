/**
 * Driver side of virtio-console for tests: receive/transmit buffers per port, control messages,
 * on top of the shared device rig (test/device/blk/harness.ts).
 */
import { CONSOLE_CONTROL_RXQ, CONSOLE_CONTROL_TXQ, ConsoleDevice, rxQueueOf, txQueueOf } from '../../../src/device/console/index.js';
import { SgList } from '../../../src/queue/types.js';
import { startDevice, type DeviceRig, type RigOptions } from '../blk/harness.js';

/** A control message as the driver sees it. */
export interface CtrlMsg {
  id: number;
  event: number;
  value: number;
  payload: Uint8Array;
}

interface Buf {
  addr: number;
  len: number;
}

/** Wait (without asserting on time) until `cond()` holds; yields to the event loop between checks. */
export async function until(cond: () => boolean, what: string, maxTicks = 2000): Promise<void> {
  for (let i = 0; i < maxTicks; i++) {
    if (cond()) return;
    await new Promise<void>((r) => setTimeout(r, i < 50 ? 0 : 5));
  }
  throw new Error(`gave up waiting for: ${what}`);
}

export class ConsoleDriver {
  readonly rig: DeviceRig;
  readonly model: ConsoleDevice;
  private readonly sg = new SgList(16);
  private next = 1;
  private readonly bufs = new Map<number, Buf>();
  private readonly dv: DataView;

  constructor(model: ConsoleDevice, opts: RigOptions = {}) {
    this.model = model;
    this.rig = startDevice(model, opts);
    this.dv = new DataView(this.rig.ram.buffer);
  }

  private add(q: number, sg: SgList, buf: Buf): number {
    const token = this.next++;
    const dq = this.rig.drivers[q];
    if (dq === undefined) throw new Error(`queue ${q} not set up`);
    if (dq.add(sg, token) < 0) throw new Error(`queue ${q} full`);
    dq.publish();
    this.bufs.set(token, buf);
    return token;
  }

  /** Post `n` receive buffers of `len` bytes on queue `q` and kick. `readableFirst` adds a device-readable segment first (a driver bug). */
  postRx(q: number, n: number, len: number, readableFirst = 0): void {
    for (let i = 0; i < n; i++) {
      const sg = this.sg.clear();
      if (readableFirst > 0) sg.out(this.rig.alloc(readableFirst), readableFirst);
      const a = this.rig.alloc(len);
      this.rig.ram.fill(0xee, a, a + len);
      sg.in(a, len);
      this.add(q, sg, { addr: a, len });
    }
    this.rig.core.notify(q);
  }

  /** Send bytes on transmit queue `q` (one chain, split into `segs` readable segments) and kick. */
  send(q: number, data: Uint8Array | string, opts: { segs?: number; writableTail?: number; kick?: boolean } = {}): number {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const sg = this.sg.clear();
    const a = this.rig.alloc(Math.max(1, bytes.length));
    this.rig.ram.set(bytes, a);
    const k = Math.max(1, Math.min(opts.segs ?? 1, bytes.length));
    let done = 0;
    for (let i = 0; i < k; i++) {
      const l = i === k - 1 ? bytes.length - done : Math.floor(bytes.length / k);
      sg.out(a + done, l);
      done += l;
    }
    if ((opts.writableTail ?? 0) > 0) sg.in(this.rig.alloc(opts.writableTail!), opts.writableTail!);
    const t = this.add(q, sg, { addr: a, len: 0 });
    if (opts.kick ?? true) this.rig.core.notify(q);
    return t;
  }

  /** Collect used receive buffers on `q`: their data in order. */
  collectRx(q: number): Uint8Array[] {
    const dq = this.rig.drivers[q]!;
    const out: Uint8Array[] = [];
    while (dq.getUsed()) {
      const b = this.bufs.get(dq.lastToken)!;
      this.bufs.delete(dq.lastToken);
      out.push(this.rig.ram.slice(b.addr, b.addr + dq.lastLen));
    }
    return out;
  }

  /** Collect used transmit buffers on `q`: [token, used len]. */
  collectTx(q: number): Array<[number, number]> {
    const dq = this.rig.drivers[q]!;
    const out: Array<[number, number]> = [];
    while (dq.getUsed()) {
      this.bufs.delete(dq.lastToken);
      out.push([dq.lastToken, dq.lastLen]);
    }
    return out;
  }

  /** Port helpers. */
  rxq(port: number): number {
    return rxQueueOf(port);
  }
  txq(port: number): number {
    return txQueueOf(port);
  }

  /** Post control receive buffers. */
  postCtrlRx(n = 8, len = 128): void {
    this.postRx(CONSOLE_CONTROL_RXQ, n, len);
  }

  /** Send a control message (driver → device) and kick. `short` truncates it. */
  sendCtrl(id: number, event: number, value: number, short?: number): void {
    const m = new Uint8Array(8);
    const dv = new DataView(m.buffer);
    dv.setUint32(0, id, true);
    dv.setUint16(4, event, true);
    dv.setUint16(6, value, true);
    this.send(CONSOLE_CONTROL_TXQ, short === undefined ? m : m.subarray(0, short));
    this.collectTx(CONSOLE_CONTROL_TXQ);
  }

  /** Control messages the device sent so far. */
  readCtrl(): CtrlMsg[] {
    return this.collectRx(CONSOLE_CONTROL_RXQ).map((b) => {
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      return { id: dv.getUint32(0, true), event: dv.getUint16(4, true), value: dv.getUint16(6, true), payload: b.slice(8) };
    });
  }

  /** Read a u16/u32 from config through the core. */
  cfg(off: number, width: 2 | 4): number {
    return this.rig.core.readConfig(off, width);
  }

  get ram(): DataView {
    return this.dv;
  }
}

/** Concatenate byte arrays. */
export function cat(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts.map((p) => Buffer.from(p)));
}
