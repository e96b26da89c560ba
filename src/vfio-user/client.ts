/**
 * A vfio-user client that plays the VMM for the simulated guest driver (`src/driver/`).
 *
 * - Guest RAM is the caller's {@link GuestRam} (memfd-backed). Depending on the DMA model the client
 *   sends DMA_MAP with the memfd (**direct**), DMA_MAP without fds (**message**: the device then
 *   asks for every byte with DMA_READ / DMA_WRITE, which the client validates), or nothing at all
 *   (**swiotlb**: the device only has its bounce window, which the client maps from the region fd
 *   the device exports, and the driver bounces into it).
 * - It implements the driver's synchronous {@link PciFunctionAccess}: configuration and BAR accesses
 *   become REGION_READ / REGION_WRITE messages. The socket lives in a worker thread (the pump,
 *   `client-pump.ts`); the main thread blocks on a shared-memory mailbox for each reply while the
 *   pump keeps serving the device's DMA requests. Writes to the notify region are posted (NO_REPLY).
 * - Like QEMU, it emulates the BAR address decoding and the MSI-X table itself; MSI-X vectors and
 *   INTx arrive on eventfds (polled through libuv on the main thread) and are delivered to
 *   `onMsi` / `onIntx` subscribers. INTx is automasked and unmasked after the handlers ran.
 */
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { VirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import type { BarMemory, PciFunctionAccess } from '../driver/access.js';
import type { GuestRam } from '../memory/ram.js';
import { native as defaultNative } from '../native/index.js';
import { POLL_READABLE, type NativeApi, type PollHandle } from '../native/types.js';
import { siblingModule, startWorker } from '../bench/launch.js';
import {
  decodeDeviceInfo,
  decodeIrqInfo,
  decodeRegionAccess,
  decodeRegionInfoReply,
  decodeVersion,
  encodeDeviceInfoRequest,
  encodeDmaMap,
  encodeIrqInfo,
  encodeRegionAccess,
  encodeRegionInfoRequest,
  encodeSetIrqs,
  encodeVersion,
  buildMessage,
  type RegionInfoMsg,
  type VersionMsg,
} from './codec.js';
import {
  allocMailbox,
  G_CLOSED,
  readPumpCounts,
  readReply,
  SLOT_BYTES,
  SLOT_FDS,
  SLOTS,
  slotState,
  ST_DONE,
  ST_FREE,
  ST_READY,
  writeRequest,
  type MailboxBuffers,
  type PumpData,
} from './client-shared.js';
import {
  Cmd,
  DMA_FLAG_READ,
  DMA_FLAG_WRITE,
  FLAG_NO_REPLY,
  IRQ_SET_ACTION_TRIGGER,
  IRQ_SET_ACTION_UNMASK,
  IRQ_SET_DATA_EVENTFD,
  IRQ_SET_DATA_NONE,
  PCI_CONFIG_REGION_INDEX,
  PCI_INTX_IRQ_INDEX,
  PCI_MSIX_IRQ_INDEX,
  REGION_INFO_FLAG_MMAP,
  SIZES,
  type VfioUserCaps,
} from './protocol.js';

const log = logger('vfio-user:client');
const TWO32 = 4294967296;

/** How the device reaches guest memory. */
export type ClientDmaModel = 'direct' | 'message' | 'swiotlb';

/** Options of {@link VfioUserClient.connect}. */
export interface VfioUserClientOptions {
  /** The device process's socket. */
  socketPath: string;
  /** Guest RAM (memfd-backed: the pump maps the same memfds). */
  guestRam: GuestRam;
  /** DMA model (see the module doc). */
  dma: ClientDmaModel;
  /** max_data_xfer_size we advertise (default 1 MiB). */
  maxDataXferSize?: number;
  /** Reply timeout (default 10 s). */
  timeoutMs?: number;
  /** DMA_MAP guest RAM read-only (device writes are refused; for tests of the validation). */
  readOnlyDma?: boolean;
  native?: NativeApi;
}

/** Counters of a client. */
export interface ClientStats {
  /** DMA_READ / DMA_WRITE the device sent, and their data bytes. */
  dmaReads: number;
  dmaWrites: number;
  dmaBytesRead: number;
  dmaBytesWritten: number;
  /** DMA requests refused by validation. */
  dmaRefused: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** REGION_READ / REGION_WRITE sent (posted included). */
  regionReads: number;
  regionWrites: number;
  msi: number;
  intx: number;
}

interface BarDecode {
  index: number;
  size: number;
  is64: boolean;
  address: number;
}

interface MsixCap {
  cap: number;
  vectors: number;
  tableBar: number;
  tableOffset: number;
  pbaBar: number;
  pbaOffset: number;
}

/** The VMM side of a vfio-user connection. */
export class VfioUserClient implements PciFunctionAccess {
  readonly socketPath: string;
  readonly dmaModel: ClientDmaModel;
  readonly guestRam: GuestRam;
  /** Region infos by index (from DEVICE_GET_REGION_INFO). */
  readonly regions: RegionInfoMsg[] = [];
  /** The server's VERSION reply. */
  serverVersion: VersionMsg | undefined;
  readonly stats: ClientStats = { dmaReads: 0, dmaWrites: 0, dmaBytesRead: 0, dmaBytesWritten: 0, dmaRefused: 0, messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, regionReads: 0, regionWrites: 0, msi: 0, intx: 0 };

  private readonly nat: NativeApi;
  private readonly worker: Worker;
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly counters: Float64Array;
  private readonly doorbell: number;
  private readonly timeoutMs: number;
  private slot = 0;
  private bars: BarDecode[] = [];
  private barsDirty = true;
  private msix: MsixCap | undefined;
  private msixTable: Uint8Array = new Uint8Array(0);
  private msixPending: Uint8Array = new Uint8Array(0);
  private msixEnabled = false;
  private msixMaskAll = false;
  private vectorFds: number[] = [];
  private intxFd = -1;
  private polls: PollHandle[] = [];
  private readonly msiListeners: Array<(address: number, data: number, vector: number) => void> = [];
  private readonly intxListeners: Array<(level: boolean) => void> = [];
  private readonly windowMaps = new Map<number, BarMemory>();
  private notifySpan: { bar: number; start: number; end: number } | undefined;
  private closed = false;

  private constructor(o: VfioUserClientOptions, worker: Worker, mb: MailboxBuffers, doorbell: number) {
    this.socketPath = o.socketPath;
    this.dmaModel = o.dma;
    this.guestRam = o.guestRam;
    this.nat = o.native ?? defaultNative;
    this.worker = worker;
    this.ctl = new Int32Array(mb.ctl);
    this.data = new Uint8Array(mb.data);
    this.counters = new Float64Array(mb.counters);
    this.doorbell = doorbell;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.readOnlyDma = o.readOnlyDma === true;
    this.exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  }

  private readonly exited: Promise<void>;
  private readonly readOnlyDma: boolean;

  /**
   * Connect to a device process, negotiate, map guest RAM per the DMA model, read the device
   * layout and wire interrupts.
   */
  static async connect(o: VfioUserClientOptions): Promise<VfioUserClient> {
    const nat = o.native ?? defaultNative;
    if (!nat.available) throw new VirtioError('NATIVE_UNAVAILABLE', `vfio-user needs the native addon (${nat.unavailableReason ?? 'not loaded'}); build it with \`npm rebuild\``);
    requireArg(o.dma === 'direct' || o.dma === 'message' || o.dma === 'swiotlb', `dma must be 'direct', 'message' or 'swiotlb' (got ${String(o.dma)})`);
    const ramParts = o.guestRam.regions.map((r) => {
      if (r.fd === undefined) throw new VirtioError('INVALID_ARGUMENT', `guest RAM region ${r.name} is not memfd-backed; create it with createGuestRam(..., { backing: 'memfd' })`);
      return { base: r.base, size: r.size, fd: r.fd };
    });
    const sock = nat.connectUnix(o.socketPath);
    const doorbell = nat.eventfdCreate(0);
    const mb = allocMailbox();
    const maxXfer = o.maxDataXferSize ?? 1024 * 1024;
    const pd: PumpData = { mailbox: mb, socketFd: sock, doorbellFd: doorbell, ram: ramParts, maxDataXferSize: maxXfer, timeoutMs: o.timeoutMs ?? 10_000 };
    const worker = startWorker(siblingModule('client-pump', import.meta.url), { workerData: pd });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
      worker.once('exit', (c) => reject(new VirtioError('INTERNAL', `vfio-user client pump exited (${c}) before it was ready`)));
    });
    worker.removeAllListeners('exit');
    worker.removeAllListeners('error');
    worker.on('error', (e) => log('pump error: %O', e));
    const c = new VfioUserClient(o, worker, mb, doorbell);
    try {
      c.setup(maxXfer);
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  // ------------------------------------------------------------------ mailbox

  /**
   * Send `msg` (id patched by the pump) and wait for the reply payload. `posted` = NO_REPLY,
   * returns at once. Throws PROTOCOL (errno) for an error reply, TIMEOUT, CLOSED.
   */
  transact(msg: Uint8Array, fds: number[] = [], posted = false): { payload: Uint8Array; fds: number[] } {
    if (this.closed) throw new VirtioError('CLOSED', 'vfio-user client is closed');
    if (msg.length > SLOT_BYTES) throw new VirtioError('INVALID_ARGUMENT', `message of ${msg.length} bytes exceeds the ${SLOT_BYTES}-byte mailbox slot`);
    if (fds.length > SLOT_FDS) throw new VirtioError('INVALID_ARGUMENT', `${fds.length} fds (at most ${SLOT_FDS})`);
    const ctl = this.ctl;
    const s = this.slot;
    const st0 = slotState(s);
    const deadline = Date.now() + this.timeoutMs;
    while (Atomics.load(ctl, st0) !== ST_FREE) {
      if (Atomics.load(ctl, G_CLOSED) !== 0 && Atomics.load(ctl, st0) === ST_DONE) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new VirtioError('TIMEOUT', 'vfio-user client: mailbox slot still busy');
      Atomics.wait(ctl, st0, Atomics.load(ctl, st0), Math.min(left, 50));
    }
    if (Atomics.load(ctl, G_CLOSED) !== 0) throw new VirtioError('CLOSED', 'vfio-user connection closed (the device process went away?)');
    this.slot = (s + 1) % SLOTS;
    writeRequest(ctl, this.data, s, msg, fds, !posted);
    Atomics.store(ctl, st0, ST_READY);
    this.nat.eventfdWrite(this.doorbell, 1);
    if (posted) return { payload: new Uint8Array(0), fds: [] };
    for (;;) {
      const st = Atomics.load(ctl, st0);
      if (st === ST_DONE) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new VirtioError('TIMEOUT', `vfio-user client: no reply within ${this.timeoutMs} ms`);
      Atomics.wait(ctl, st0, st, left);
    }
    const { err, payload, fds: rfds } = readReply(ctl, this.data, s);
    const out = { payload, fds: rfds };
    Atomics.store(ctl, st0, ST_FREE);
    if (err === -1) throw new VirtioError('CLOSED', 'vfio-user connection closed (the device process went away?)');
    if (err === -2) throw new VirtioError('TIMEOUT', `vfio-user client: no reply within ${this.timeoutMs} ms`);
    if (err === -3) throw new VirtioError('PROTOCOL', 'vfio-user reply too large for the mailbox');
    if (err > 0) throw new VirtioError('PROTOCOL', `vfio-user request refused by the device: errno ${err}`, { errno: err });
    return out;
  }

  // ------------------------------------------------------------------ setup

  private setup(maxXfer: number): void {
    const caps: Partial<VfioUserCaps> = { maxMsgFds: SLOT_FDS, maxDataXferSize: maxXfer, pgsizes: 4096, maxDmaMaps: 65535 };
    const v = this.transact(encodeVersion(0, false, 0, 0, caps));
    this.serverVersion = decodeVersion(v.payload);
    if (this.dmaModel !== 'swiotlb') {
      for (const r of this.guestRam.regions) {
        const flags = this.readOnlyDma ? DMA_FLAG_READ : DMA_FLAG_READ | DMA_FLAG_WRITE;
        this.transact(encodeDmaMap(0, { flags, offset: 0, addr: r.base, size: r.size }), this.dmaModel === 'direct' ? [r.fd!] : []);
      }
    }
    const info = decodeDeviceInfo(this.transact(encodeDeviceInfoRequest(0)).payload);
    if (info.numRegions <= PCI_CONFIG_REGION_INDEX) throw new VirtioError('PROTOCOL', `device reports ${info.numRegions} regions; a PCI device needs the config region (index 7)`);
    for (let i = 0; i < Math.min(info.numRegions, 9); i++) {
      const r = this.transact(encodeRegionInfoRequest(0, i, 256));
      const ri = decodeRegionInfoReply(r.payload);
      this.regions[i] = ri;
      if (r.fds.length > 0) {
        if ((ri.flags & REGION_INFO_FLAG_MMAP) !== 0 && ri.size > 0) this.mapRegion(i, ri, r.fds[0]!);
        for (const fd of r.fds) this.nat.close(fd);
      }
    }
    // BAR types (64-bit?) from the registers as reset.
    for (let i = 0; i < 6; i++) {
      const size = this.regions[i]?.size ?? 0;
      if (size === 0) continue;
      const lo = this.regionRead(PCI_CONFIG_REGION_INDEX, 0x10 + 4 * i, 4);
      const is64 = ((lo >>> 1) & 3) === 2;
      this.bars.push({ index: i, size, is64, address: 0 });
      if (is64) i++;
    }
    this.findMsix();
    // INTx eventfd.
    const intxInfo = decodeIrqInfo(this.transact(encodeIrqInfo(0, false, { flags: 0, index: PCI_INTX_IRQ_INDEX, count: 0 })).payload);
    if (intxInfo.count > 0) {
      this.intxFd = this.nat.eventfdCreate(0);
      this.transact(encodeSetIrqs(0, { flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: PCI_INTX_IRQ_INDEX, start: 0, count: 1 }), [this.intxFd]);
      const fd = this.intxFd;
      this.polls.push(this.nat.poll(fd, POLL_READABLE, () => this.intxFired()));
    }
    if (this.msix !== undefined) {
      const mi = decodeIrqInfo(this.transact(encodeIrqInfo(0, false, { flags: 0, index: PCI_MSIX_IRQ_INDEX, count: 0 })).payload);
      const n = Math.min(mi.count, this.msix.vectors);
      for (let v = 0; v < n; v++) {
        const fd = this.nat.eventfdCreate(0);
        this.vectorFds.push(fd);
        this.polls.push(this.nat.poll(fd, POLL_READABLE, () => this.vectorFired(v)));
      }
    }
    for (const p of this.polls) p.unref();
    log('connected to %s: %d regions, dma %s, msix %s', this.socketPath, info.numRegions, this.dmaModel, this.msix?.vectors ?? 0);
  }

  private mapRegion(index: number, ri: RegionInfoMsg, fd: number): void {
    const areas = ri.sparse ?? [{ offset: 0, size: ri.size }];
    const a = areas[0]!;
    const fdOffset = ri.offset + a.offset;
    const buffer = this.nat.mmap(fd, fdOffset, a.size, true);
    this.windowMaps.set(index, { bar: index, barOffset: a.offset, size: a.size, buffer, bufferOffset: 0, fd: undefined, fdOffset });
  }

  private findMsix(): void {
    const status = this.regionRead(PCI_CONFIG_REGION_INDEX, 0x06, 2);
    if ((status & 0x10) === 0) return;
    let ptr = this.regionRead(PCI_CONFIG_REGION_INDEX, 0x34, 1) & 0xfc;
    for (let guard = 0; ptr !== 0 && guard < 48; guard++) {
      const id = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr, 1);
      if (id === 0x11) {
        const ctlw = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 2, 2);
        const t = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 4, 4);
        const p = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 8, 4);
        const vectors = (ctlw & 0x7ff) + 1;
        this.msix = { cap: ptr, vectors, tableBar: t & 7, tableOffset: t & ~7, pbaBar: p & 7, pbaOffset: p & ~7 };
        this.msixTable = new Uint8Array(16 * vectors);
        for (let v = 0; v < vectors; v++) this.msixTable[16 * v + 12] = 1; // every vector starts masked
        this.msixPending = new Uint8Array(vectors);
        return;
      }
      ptr = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 1, 1) & 0xfc;
    }
  }

  // ------------------------------------------------------------------ raw region access

  /** REGION_READ of 1, 2, 4 or 8 bytes (8 as a Number < 2^53). */
  regionRead(region: number, offset: number, size: number): number {
    this.stats.regionReads++;
    const r = this.transact(encodeRegionAccess(0, Cmd.REGION_READ, offset, region, size));
    const a = decodeRegionAccess(r.payload, true, SLOT_BYTES, 'REGION_READ reply');
    if (a.count !== size) throw new VirtioError('PROTOCOL', `REGION_READ reply with ${a.count} bytes, asked ${size}`);
    const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    return size === 1 ? dv.getUint8(0) : size === 2 ? dv.getUint16(0, true) : size === 4 ? dv.getUint32(0, true) : dv.getUint32(4, true) * TWO32 + dv.getUint32(0, true);
  }

  /** REGION_WRITE of 1, 2, 4 or 8 bytes; `posted` sends it with NO_REPLY. */
  regionWrite(region: number, offset: number, size: number, value: number, posted = false): void {
    this.stats.regionWrites++;
    const d = new Uint8Array(size);
    const dv = new DataView(d.buffer);
    if (size === 1) dv.setUint8(0, value & 0xff);
    else if (size === 2) dv.setUint16(0, value & 0xffff, true);
    else if (size === 4) dv.setUint32(0, value >>> 0, true);
    else {
      dv.setUint32(0, value % TWO32, true);
      dv.setUint32(4, Math.floor(value / TWO32), true);
    }
    this.transact(encodeRegionAccess(0, Cmd.REGION_WRITE, offset, region, size, d, posted ? FLAG_NO_REPLY : 0), [], posted);
  }

  // ------------------------------------------------------------------ PciFunctionAccess

  configRead(off: number, size: number): number {
    return this.regionRead(PCI_CONFIG_REGION_INDEX, off, size);
  }

  configWrite(off: number, size: number, value: number): void {
    this.regionWrite(PCI_CONFIG_REGION_INDEX, off, size, value);
    if (off < 0x28 && off + size > 0x10) this.barsDirty = true;
    const m = this.msix;
    if (m !== undefined && off <= m.cap + 3 && off + size > m.cap + 2) this.msixControlChanged();
  }

  private refreshBars(): void {
    this.barsDirty = false;
    for (const b of this.bars) {
      const lo = this.regionRead(PCI_CONFIG_REGION_INDEX, 0x10 + 4 * b.index, 4);
      const hi = b.is64 ? this.regionRead(PCI_CONFIG_REGION_INDEX, 0x14 + 4 * b.index, 4) : 0;
      b.address = hi * TWO32 + ((lo & ~0xf) >>> 0);
    }
  }

  private decode(addr: number, size: number): BarDecode | undefined {
    if (this.barsDirty) this.refreshBars();
    for (const b of this.bars) if (b.address !== 0 && addr >= b.address && addr + size <= b.address + b.size) return b;
    return undefined;
  }

  mmioRead(addr: number, size: number): number {
    const b = this.decode(addr, size);
    if (b === undefined) return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
    const off = addr - b.address;
    const m = this.msix;
    if (m !== undefined && b.index === m.tableBar && off >= m.tableOffset && off + size <= m.tableOffset + 16 * m.vectors) {
      const dv = new DataView(this.msixTable.buffer);
      const o = off - m.tableOffset;
      return size === 4 ? dv.getUint32(o, true) : size === 2 ? dv.getUint16(o, true) : dv.getUint8(o);
    }
    if (m !== undefined && b.index === m.pbaBar && off >= m.pbaOffset && off + size <= m.pbaOffset + Math.ceil(m.vectors / 64) * 8) {
      let v = 0;
      for (let k = 0; k < size * 8; k++) {
        const vec = (off - m.pbaOffset) * 8 + k;
        if (vec < m.vectors && this.msixPending[vec] !== 0) v |= 1 << k;
      }
      return v >>> 0;
    }
    return this.regionRead(b.index, off, size);
  }

  mmioWrite(addr: number, size: number, value: number): void {
    const b = this.decode(addr, size);
    if (b === undefined) return;
    const off = addr - b.address;
    const m = this.msix;
    if (m !== undefined && b.index === m.tableBar && off >= m.tableOffset && off + size <= m.tableOffset + 16 * m.vectors) {
      const dv = new DataView(this.msixTable.buffer);
      const o = off - m.tableOffset;
      if (size === 4) dv.setUint32(o, value >>> 0, true);
      else if (size === 2) dv.setUint16(o, value & 0xffff, true);
      else dv.setUint8(o, value & 0xff);
      this.msixTable[(o & ~15) + 12]! &= 1; // only the mask bit of vector control is writable
      this.deliverPending();
      return;
    }
    // Notify writes are posted (as QEMU sends MMIO writes); everything else waits for the reply.
    this.regionWrite(b.index, off, size, value, this.isNotify(b.index, off));
  }

  /** Bus-master writes to the notify region are posted; the rest of BAR 0 is synchronous. */
  private isNotify(bar: number, off: number): boolean {
    const n = (this.notifySpan ??= this.findNotify());
    return n !== undefined && bar === n.bar && off >= n.start && off < n.end;
  }

  private findNotify(): { bar: number; start: number; end: number } | undefined {
    let ptr = this.regionRead(PCI_CONFIG_REGION_INDEX, 0x34, 1) & 0xfc;
    for (let guard = 0; ptr !== 0 && guard < 48; guard++) {
      if (this.regionRead(PCI_CONFIG_REGION_INDEX, ptr, 1) === 0x09 && this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 3, 1) === 2) {
        const bar = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 4, 1);
        const start = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 8, 4);
        const len = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 12, 4);
        return { bar, start, end: start + len };
      }
      ptr = this.regionRead(PCI_CONFIG_REGION_INDEX, ptr + 1, 1) & 0xfc;
    }
    return undefined;
  }

  barMapping(bar: number): BarMemory | undefined {
    return this.windowMaps.get(bar);
  }

  onMsi(fn: (address: number, data: number, vector: number) => void): () => void {
    this.msiListeners.push(fn);
    return () => {
      const i = this.msiListeners.indexOf(fn);
      if (i >= 0) this.msiListeners.splice(i, 1);
    };
  }

  onIntx(fn: (level: boolean) => void): () => void {
    this.intxListeners.push(fn);
    return () => {
      const i = this.intxListeners.indexOf(fn);
      if (i >= 0) this.intxListeners.splice(i, 1);
    };
  }

  // ------------------------------------------------------------------ interrupts

  private msixControlChanged(): void {
    const m = this.msix!;
    const ctlw = this.regionRead(PCI_CONFIG_REGION_INDEX, m.cap + 2, 2);
    const en = (ctlw & 0x8000) !== 0;
    this.msixMaskAll = (ctlw & 0x4000) !== 0;
    if (en !== this.msixEnabled) {
      this.msixEnabled = en;
      if (en && this.vectorFds.length > 0) {
        this.transact(encodeSetIrqs(0, { flags: IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, index: PCI_MSIX_IRQ_INDEX, start: 0, count: this.vectorFds.length }), [...this.vectorFds]);
      } else if (!en) {
        this.transact(encodeSetIrqs(0, { flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, index: PCI_MSIX_IRQ_INDEX, start: 0, count: 0 }));
      }
    }
    this.deliverPending();
  }

  private vectorFired(v: number): void {
    if (this.closed) return;
    if (this.nat.eventfdRead(this.vectorFds[v]!) === 0) return;
    this.msixPending[v] = 1;
    this.deliverPending();
  }

  private deliverPending(): void {
    if (!this.msixEnabled || this.msixMaskAll) return;
    const dv = new DataView(this.msixTable.buffer);
    for (let v = 0; v < this.msixPending.length; v++) {
      if (this.msixPending[v] === 0 || (this.msixTable[16 * v + 12]! & 1) !== 0) continue;
      this.msixPending[v] = 0;
      const address = dv.getUint32(16 * v + 4, true) * TWO32 + dv.getUint32(16 * v, true);
      const data = dv.getUint32(16 * v + 8, true);
      this.stats.msi++;
      for (const l of [...this.msiListeners]) {
        try {
          l(address, data, v);
        } catch (e) {
          log('MSI listener threw: %O', e);
        }
      }
    }
  }

  private intxFired(): void {
    if (this.closed) return;
    if (this.nat.eventfdRead(this.intxFd) === 0) return;
    this.stats.intx++;
    for (const l of [...this.intxListeners]) {
      try {
        l(true);
      } catch (e) {
        log('INTx listener threw: %O', e);
      }
    }
    for (const l of [...this.intxListeners]) l(false);
    // The line automasked when it fired; unmask now that the handlers ran (QEMU does this after the
    // guest's next BAR access).
    try {
      this.transact(encodeSetIrqs(0, { flags: IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK, index: PCI_INTX_IRQ_INDEX, start: 0, count: 1 }));
    } catch (e) {
      log('INTx unmask failed: %s', (e as Error).message);
    }
  }

  // ------------------------------------------------------------------ misc

  /** DEVICE_RESET. */
  resetDevice(): void {
    this.transact(buildMessage(0, Cmd.DEVICE_RESET, 0, 0));
  }

  /** Counters, including what the pump served. */
  snapshot(): ClientStats {
    readPumpCounts(this.counters, this.stats);
    return { ...this.stats };
  }

  /** True when the connection is gone (device process exited). */
  get disconnected(): boolean {
    return Atomics.load(this.ctl, G_CLOSED) !== 0;
  }

  /**
   * Close the connection (the pump closes the socket and exits), the eventfds and the window
   * mappings. Guest RAM stays the caller's. Resolves when the pump thread has exited.
   */
  close(): Promise<void> {
    if (this.closed) return this.exited;
    this.closed = true;
    for (const p of this.polls) p.stop();
    this.polls = [];
    this.worker.postMessage('stop');
    for (const fd of this.vectorFds) this.safeClose(fd);
    if (this.intxFd >= 0) this.safeClose(this.intxFd);
    this.safeClose(this.doorbell);
    for (const m of this.windowMaps.values()) if (m.buffer instanceof ArrayBuffer) this.nat.munmap(m.buffer);
    this.windowMaps.clear();
    return this.exited;
  }

  private safeClose(fd: number): void {
    try {
      this.nat.close(fd);
    } catch {
      /* ignore */
    }
  }
}

/** Where the device-process entry lives (for spawning). */
export function deviceMainPath(): string {
  return fileURLToPath(siblingModule('device-main', import.meta.url));
}

export { SIZES as VFIO_USER_SIZES };
