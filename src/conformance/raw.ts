/**
 * A raw, deliberately low-level driver for conformance checks: register accesses through a
 * transport-neutral {@link TransportRegs} (virtio-pci common cfg or virtio-mmio registers), rings
 * allocated and written by hand in guest memory (or in the SWIOTLB window / restricted pool when
 * VIRTIO_F_SWIOTLB is negotiated), descriptors valid or broken on purpose, and everything the
 * device answers recorded: status, interrupts (MSI-X config/queue vectors, ISR, MMIO
 * InterruptStatus), used-ring contents.
 *
 * Unlike the simulated driver (`src/driver/`), nothing here protects the device from the check:
 * that is the point. Nothing here spins either — waits poll with `setImmediate` and give up at a
 * deadline (the check's verdict is then WEDGED).
 */
import { VirtioError } from '../errors.js';
import { GuestRamAllocator, type RamRange } from '../driver/ram-alloc.js';
import { probeVirtioPci, type VirtioPciProbe } from '../driver/probe.js';
import { CC, PciConfigIo, VirtioPciRegs } from '../driver/pci-regs.js';
import { MR } from '../driver/mmio/regs.js';
import type { MmioDeviceAccess } from '../driver/mmio/access.js';
import {
  DEFAULT_SWIOTLB_BIT,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_SUSPEND,
  VIRTIO_F_VERSION_1,
} from '../features/bits.js';
import { FeatureSet } from '../features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../features/status.js';
import type { AddressSpace } from '../memory/space.js';
import { SwiotlbWindow } from '../swiotlb/window.js';
import { VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE } from '../queue/types.js';
import type { CheckContext, Dut } from './check.js';

const TWO32 = 4294967296;
const MSI_ADDR = 0xfee0_0000;
const MSI_DATA = 0x40;
const NO_VECTOR = 0xffff;
/** queue_reset in struct virtio_pci_common_cfg (after queue_notif_config_data). */
const CC_QUEUE_RESET = 58;

// ================================================================================================
// Waiting

/** Resolve after one turn of the event loop. */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * Poll `pred` (once per event-loop turn) until it is true or `ms` passed / `signal` aborted.
 * @returns whether the predicate became true
 */
export async function waitFor(pred: () => boolean, ms: number, signal?: AbortSignal): Promise<boolean> {
  const end = performance.now() + ms;
  for (;;) {
    if (pred()) return true;
    if (performance.now() >= end || signal?.aborted === true) return pred();
    await tick();
  }
}

/** Let pending device work (async backends, microtasks) run for a few turns. */
export async function settle(turns = 4): Promise<void> {
  for (let i = 0; i < turns; i++) await tick();
}

// ================================================================================================
// Registers

/** Transport-neutral register view of one virtio device (modern interface). */
export interface TransportRegs {
  readonly transport: 'pci' | 'mmio' | 'vhost-user';
  status(): number;
  setStatus(v: number): void;
  deviceFeatures(word: number): number;
  setDriverFeatures(word: number, v: number): void;
  /** PCI only (MMIO DriverFeatures is write-only): read back the driver feature window. */
  driverFeatures?(word: number): number;
  selectQueue(q: number): void;
  /** Largest size of the selected queue, 0 when unavailable. PCI: queue_size read right after reset. */
  queueMax(): number;
  setQueueSize(n: number): void;
  /** PCI only: queue_size read. */
  queueSize?(): number;
  setQueueAddrs(desc: number, driver: number, device: number): void;
  setQueueEnable(v: number): void;
  queueEnable(): number;
  setQueueReset(v: number): void;
  queueReset(): number;
  /** PCI num_queues; undefined on MMIO (no such register). */
  numQueues(): number | undefined;
  /** Available-buffer notification for queue `q` (32-bit `data` with NOTIFICATION_DATA). */
  notify(q: number, data?: number): void;
  readConfig(off: number, width: 1 | 2 | 4): number;
  writeConfig(off: number, width: 1 | 2 | 4, v: number): void;
  generation(): number;
}

/** virtio-pci: the common cfg, notify, device cfg structures found by the probe. */
export class PciTransportRegs implements TransportRegs {
  readonly transport = 'pci' as const;
  readonly regs: VirtioPciRegs;
  private readonly notifyAddr = new Map<number, number>();
  constructor(readonly probe: VirtioPciProbe, readonly access: import('../driver/access.js').PciFunctionAccess) {
    const at = (bar: number, off: number): number => {
      const b = probe.bars.find((x) => x.index === bar);
      if (b === undefined) throw new VirtioError('PROTOCOL', `BAR ${bar} is not implemented`);
      return b.address + off;
    };
    this.regs = new VirtioPciRegs(access, {
      common: at(probe.common.bar, probe.common.offset),
      isr: at(probe.isr.bar, probe.isr.offset),
      device: probe.device !== undefined ? at(probe.device.bar, probe.device.offset) : undefined,
      deviceLength: probe.device?.length ?? 0,
      notify: at(probe.notify.bar, probe.notify.offset),
      msixTable: probe.msix !== undefined ? at(probe.msix.tableBar, probe.msix.tableOffset) : undefined,
    });
  }
  status(): number {
    return this.regs.cc8(CC.DEVICE_STATUS);
  }
  setStatus(v: number): void {
    this.regs.ccW8(CC.DEVICE_STATUS, v);
  }
  deviceFeatures(word: number): number {
    return this.regs.deviceFeatureWord(word);
  }
  setDriverFeatures(word: number, v: number): void {
    this.regs.writeDriverFeatureWord(word, v);
  }
  driverFeatures(word: number): number {
    this.regs.ccW32(CC.DRIVER_FEATURE_SELECT, word);
    return this.regs.cc32(CC.DRIVER_FEATURE);
  }
  selectQueue(q: number): void {
    this.regs.ccW16(CC.QUEUE_SELECT, q);
  }
  queueMax(): number {
    return this.regs.cc16(CC.QUEUE_SIZE);
  }
  queueSize(): number {
    return this.regs.cc16(CC.QUEUE_SIZE);
  }
  setQueueSize(n: number): void {
    this.regs.ccW16(CC.QUEUE_SIZE, n);
  }
  setQueueAddrs(desc: number, driver: number, device: number): void {
    this.regs.ccW64(CC.QUEUE_DESC, desc);
    this.regs.ccW64(CC.QUEUE_DRIVER, driver);
    this.regs.ccW64(CC.QUEUE_DEVICE, device);
  }
  setQueueEnable(v: number): void {
    this.regs.ccW16(CC.QUEUE_ENABLE, v);
  }
  queueEnable(): number {
    return this.regs.cc16(CC.QUEUE_ENABLE);
  }
  setQueueReset(v: number): void {
    this.regs.ccW16(CC_QUEUE_RESET, v);
  }
  queueReset(): number {
    return this.regs.cc16(CC_QUEUE_RESET);
  }
  numQueues(): number {
    return this.regs.cc16(CC.NUM_QUEUES);
  }
  /** Notify address of queue `q` (cap offset + queue_notify_off × multiplier). Selects `q`. */
  notifyAddress(q: number): number {
    let a = this.notifyAddr.get(q);
    if (a === undefined) {
      this.selectQueue(q);
      a = this.regs.addrs.notify + this.regs.cc16(CC.QUEUE_NOTIFY_OFF) * this.probe.notify.multiplier;
      this.notifyAddr.set(q, a);
    }
    return a;
  }
  notify(q: number, data?: number): void {
    const a = this.notifyAddress(q);
    if (data === undefined) this.regs.notify16(a, q);
    else this.regs.notify32(a, data);
  }
  readConfig(off: number, width: 1 | 2 | 4): number {
    return this.regs.readDeviceConfig(off, width);
  }
  writeConfig(off: number, width: 1 | 2 | 4, v: number): void {
    this.regs.writeDeviceConfig(off, width, v);
  }
  generation(): number {
    return this.regs.cc8(CC.CONFIG_GENERATION);
  }
}

/** virtio-mmio registers. */
export class MmioTransportRegs implements TransportRegs {
  readonly transport = 'mmio' as const;
  constructor(readonly access: MmioDeviceAccess) {}
  r(off: number): number {
    return this.access.read(off, 4) >>> 0;
  }
  w(off: number, v: number): void {
    this.access.write(off, 4, v >>> 0);
  }
  status(): number {
    return this.r(MR.STATUS);
  }
  setStatus(v: number): void {
    this.w(MR.STATUS, v);
  }
  deviceFeatures(word: number): number {
    this.w(MR.DEVICE_FEATURES_SEL, word);
    return this.r(MR.DEVICE_FEATURES);
  }
  setDriverFeatures(word: number, v: number): void {
    this.w(MR.DRIVER_FEATURES_SEL, word);
    this.w(MR.DRIVER_FEATURES, v);
  }
  selectQueue(q: number): void {
    this.w(MR.QUEUE_SEL, q);
  }
  queueMax(): number {
    return this.r(MR.QUEUE_SIZE_MAX);
  }
  setQueueSize(n: number): void {
    this.w(MR.QUEUE_SIZE, n);
  }
  setQueueAddrs(desc: number, driver: number, device: number): void {
    for (const [off, v] of [
      [MR.QUEUE_DESC, desc],
      [MR.QUEUE_DRIVER, driver],
      [MR.QUEUE_DEVICE, device],
    ] as const) {
      this.w(off, v >>> 0);
      this.w(off + 4, Math.floor(v / TWO32) >>> 0);
    }
  }
  setQueueEnable(v: number): void {
    this.w(MR.QUEUE_READY, v);
  }
  queueEnable(): number {
    return this.r(MR.QUEUE_READY);
  }
  setQueueReset(v: number): void {
    this.w(MR.QUEUE_RESET, v);
  }
  queueReset(): number {
    return this.r(MR.QUEUE_RESET);
  }
  numQueues(): undefined {
    return undefined;
  }
  notify(q: number, data?: number): void {
    this.w(MR.QUEUE_NOTIFY, data ?? q);
  }
  readConfig(off: number, width: 1 | 2 | 4): number {
    const v = this.access.read(MR.CONFIG + off, width);
    return width === 4 ? v >>> 0 : width === 2 ? v & 0xffff : v & 0xff;
  }
  writeConfig(off: number, width: 1 | 2 | 4, v: number): void {
    this.access.write(MR.CONFIG + off, width, v);
  }
  generation(): number {
    return this.r(MR.CONFIG_GENERATION);
  }
}

// ================================================================================================
// DMA memory

/** Memory the raw driver hands to the device: guest RAM, or the SWIOTLB window / pool. */
export interface RawMemory {
  /** Driver (CPU) view of the memory the addresses refer to. */
  readonly space: AddressSpace;
  /** Allocate `bytes` zeroed, aligned; returns the bus address. */
  alloc(bytes: number, align?: number): number;
  write(addr: number, data: Uint8Array): void;
  read(addr: number, len: number): Uint8Array;
}

function memoryOver(space: AddressSpace, ranges?: RamRange[]): RawMemory {
  const a = new GuestRamAllocator(space, ranges);
  return {
    space,
    alloc: (bytes, align = 16) => a.allocZeroed(Math.max(1, bytes), Math.max(16, align)),
    write: (addr, data) => space.write(addr, data),
    read: (addr, len) => {
      const b = new Uint8Array(len);
      space.read(addr, b);
      return b;
    },
  };
}

/** Guest RAM minus an optional reserved range. */
function ramRanges(space: AddressSpace, hole: { base: number; size: number } | undefined): RamRange[] | undefined {
  if (hole === undefined) return undefined;
  const out: RamRange[] = [];
  for (const r of space.regions) {
    const s = r.base;
    const e = r.base + r.size;
    const hs = hole.base;
    const he = hole.base + hole.size;
    if (he <= s || hs >= e) out.push({ start: s, end: e });
    else {
      if (hs > s) out.push({ start: s, end: hs });
      if (he < e) out.push({ start: he, end: e });
    }
  }
  return out;
}

// ================================================================================================
// Rings

/** One buffer of a chain posted by {@link RawQueue.post}. */
export interface RawBuf {
  addr: number;
  len: number;
  /** Device-writable. */
  write?: boolean;
}

/** A used element. */
export interface UsedElem {
  id: number;
  len: number;
}

/** Options of {@link RawQueue.post}. */
export interface PostOptions {
  /** Put the buffers into an indirect table (one ring descriptor). */
  indirect?: boolean;
  /** Extra flags on the indirect ring descriptor (e.g. WRITE, which the device must ignore). */
  indirectFlags?: number;
  /** Split: number of direct descriptors before the indirect one (basic.split-vq.indirect-desc.device.2). */
  directPrefix?: number;
  /** Do not publish (avail idx / packed flags stay as they are). */
  noPublish?: boolean;
}

/** A queue set up by hand. */
export interface RawQueue {
  readonly q: number;
  readonly size: number;
  readonly packed: boolean;
  readonly desc: number;
  readonly driverArea: number;
  readonly deviceArea: number;
  readonly mem: RawMemory;
  /** Post a chain; returns its head (split) or buffer id (packed). */
  post(bufs: readonly RawBuf[], opts?: PostOptions): number;
  /** Notify the device. */
  kick(): void;
  /** Used elements that appeared since the last call. */
  collect(): UsedElem[];
  /** Used entries seen so far (total). */
  readonly usedSeen: number;
}

const u16 = (mem: RawMemory, a: number): number => mem.space.readU16(a);
const w16 = (mem: RawMemory, a: number, v: number): void => mem.space.writeU16(a, v & 0xffff);

/** What both hand-written rings share: where they live, how to notify, the 16-byte descriptor write. */
abstract class RawRingBase {
  constructor(
    readonly q: number,
    readonly size: number,
    readonly desc: number,
    readonly driverArea: number,
    readonly deviceArea: number,
    readonly mem: RawMemory,
    protected readonly regs: TransportRegs,
    protected readonly notifData: boolean,
  ) {}
  /** Write the 16 bytes of descriptor slot `i`: addr le64, len le32, then the two le16 words (w14 last). */
  protected writeDescWords(i: number, addr: number, len: number, w12: number, w14: number): void {
    const a = this.desc + 16 * (i % this.size);
    const s = this.mem.space;
    s.writeU32(a, addr >>> 0);
    s.writeU32(a + 4, Math.floor(addr / TWO32) >>> 0);
    s.writeU32(a + 8, len >>> 0);
    s.writeU16(a + 12, w12 & 0xffff);
    s.writeU16(a + 14, w14 & 0xffff);
  }
}

/** Split ring written by hand. */
export class RawSplitQueue extends RawRingBase implements RawQueue {
  readonly packed = false;
  nextDesc = 0;
  availIdx = 0;
  lastUsed = 0;
  usedSeen = 0;
  /** Write descriptor `i` of the table. */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number): void {
    this.writeDescWords(i, addr, len, flags, next);
  }
  /** Put `head` in the next avail ring slot (not published). */
  pushAvail(head: number): void {
    w16(this.mem, this.driverArea + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }
  /** Store avail idx (optionally a chosen value). */
  publish(idx = this.availIdx): void {
    w16(this.mem, this.driverArea + 2, idx);
  }
  setAvailFlags(v: number): void {
    w16(this.mem, this.driverArea, v);
  }
  /** used_event (at the tail of the avail ring). */
  setUsedEvent(v: number): void {
    w16(this.mem, this.driverArea + 4 + 2 * this.size, v);
  }
  usedFlags(): number {
    return u16(this.mem, this.deviceArea);
  }
  usedIdx(): number {
    return u16(this.mem, this.deviceArea + 2);
  }
  /** avail_event (at the tail of the used ring). */
  availEvent(): number {
    return u16(this.mem, this.deviceArea + 4 + 8 * this.size);
  }
  usedElem(i: number): UsedElem {
    const a = this.deviceArea + 4 + 8 * (i % this.size);
    return { id: this.mem.space.readU32(a), len: this.mem.space.readU32(a + 4) };
  }
  post(bufs: readonly RawBuf[], opts: PostOptions = {}): number {
    const head = this.nextDesc % this.size;
    if (opts.indirect === true) {
      const prefix = Math.min(opts.directPrefix ?? 0, bufs.length - 1);
      const direct = bufs.slice(0, prefix);
      const rest = bufs.slice(prefix);
      const table = this.mem.alloc(16 * rest.length, 16);
      rest.forEach((b, i) => {
        const a = table + 16 * i;
        const s = this.mem.space;
        s.writeU32(a, b.addr >>> 0);
        s.writeU32(a + 4, Math.floor(b.addr / TWO32) >>> 0);
        s.writeU32(a + 8, b.len >>> 0);
        s.writeU16(a + 12, (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | (i < rest.length - 1 ? VIRTQ_DESC_F_NEXT : 0));
        s.writeU16(a + 14, i < rest.length - 1 ? i + 1 : 0);
      });
      let d = head;
      for (const b of direct) {
        this.writeDesc(d, b.addr, b.len, (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | VIRTQ_DESC_F_NEXT, (d + 1) % this.size);
        d = (d + 1) % this.size;
      }
      this.writeDesc(d, table, 16 * rest.length, VIRTQ_DESC_F_INDIRECT | (opts.indirectFlags ?? 0), 0);
      this.nextDesc = (d + 1) % this.size;
    } else {
      let d = head;
      bufs.forEach((b, i) => {
        const last = i === bufs.length - 1;
        this.writeDesc(d, b.addr, b.len, (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : (d + 1) % this.size);
        d = (d + 1) % this.size;
      });
      this.nextDesc = d;
    }
    this.pushAvail(head);
    if (opts.noPublish !== true) this.publish();
    return head;
  }
  kick(): void {
    this.regs.notify(this.q, this.notifData ? (this.q | (this.availIdx << 16)) >>> 0 : undefined);
  }
  collect(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx();
    let n = 0;
    while (this.lastUsed !== idx && n++ < this.size) {
      out.push(this.usedElem(this.lastUsed));
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    this.usedSeen += out.length;
    return out;
  }
}

/** Packed ring written by hand. */
export class RawPackedQueue extends RawRingBase implements RawQueue {
  readonly packed = true;
  /** Next descriptor slot the driver fills, and its wrap counter. */
  nextAvail = 0;
  availWrap = 1;
  /** Next slot the driver reads a used descriptor from, and the used wrap counter. */
  nextUsed = 0;
  usedWrap = 1;
  nextId = 0;
  usedSeen = 0;
  /** Descriptors per buffer id (to skip on collect). */
  private readonly idDescs = new Map<number, number>();
  /** Write packed descriptor slot `i` (flags written last). */
  writeDesc(i: number, addr: number, len: number, id: number, flags: number): void {
    this.writeDescWords(i, addr, len, id, flags);
  }
  readDesc(i: number): { addr: number; len: number; id: number; flags: number } {
    const a = this.desc + 16 * (i % this.size);
    const s = this.mem.space;
    return { addr: s.readU32(a) + s.readU32(a + 4) * TWO32, len: s.readU32(a + 8), id: s.readU16(a + 12), flags: s.readU16(a + 14) };
  }
  /** AVAIL/USED bits marking a descriptor available in the current driver wrap. */
  availBits(wrap = this.availWrap): number {
    return wrap === 1 ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
  }
  post(bufs: readonly RawBuf[], opts: PostOptions = {}): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) % this.size;
    const entries: Array<[number, number, number]> = []; // addr, len, flags
    if (opts.indirect === true) {
      const table = this.mem.alloc(16 * bufs.length, 16);
      bufs.forEach((b, i) => {
        const a = table + 16 * i;
        const s = this.mem.space;
        s.writeU32(a, b.addr >>> 0);
        s.writeU32(a + 4, Math.floor(b.addr / TWO32) >>> 0);
        s.writeU32(a + 8, b.len >>> 0);
        s.writeU16(a + 12, 0);
        s.writeU16(a + 14, b.write === true ? VIRTQ_DESC_F_WRITE : 0);
      });
      entries.push([table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT | (opts.indirectFlags ?? 0)]);
    } else {
      bufs.forEach((b, i) => entries.push([b.addr, b.len, (b.write === true ? VIRTQ_DESC_F_WRITE : 0) | (i < bufs.length - 1 ? VIRTQ_DESC_F_NEXT : 0)]));
    }
    const first = this.nextAvail;
    const firstFlags = entries[0]![2] | this.availBits();
    const slots: Array<[number, number]> = [];
    for (const [addr, len, flags] of entries) {
      slots.push([this.nextAvail, flags | this.availBits()]);
      this.writeDesc(this.nextAvail, addr, len, id, 0);
      this.nextAvail++;
      if (this.nextAvail === this.size) {
        this.nextAvail = 0;
        this.availWrap ^= 1;
      }
    }
    // Flags of every descriptor after the first, then the first (publishes the chain).
    const s = this.mem.space;
    for (let i = 1; i < slots.length; i++) s.writeU16(this.desc + 16 * slots[i]![0] + 14, slots[i]![1]);
    if (opts.noPublish !== true) s.writeU16(this.desc + 16 * first + 14, firstFlags);
    this.idDescs.set(id, entries.length);
    return id;
  }
  /** Publish a chain posted with noPublish (its first slot). */
  publishAt(slot: number, flags: number): void {
    this.mem.space.writeU16(this.desc + 16 * slot + 14, flags);
  }
  kick(): void {
    this.regs.notify(this.q, this.notifData ? (this.q | (this.nextAvail << 16) | (this.availWrap << 31)) >>> 0 : undefined);
  }
  collect(): UsedElem[] {
    const out: UsedElem[] = [];
    for (let n = 0; n < this.size; n++) {
      const d = this.readDesc(this.nextUsed);
      const avail = (d.flags & VIRTQ_DESC_F_AVAIL) !== 0 ? 1 : 0;
      const used = (d.flags & VIRTQ_DESC_F_USED) !== 0 ? 1 : 0;
      if (avail !== used || used !== this.usedWrap) break;
      out.push({ id: d.id, len: d.len });
      const skip = this.idDescs.get(d.id) ?? 1;
      this.idDescs.delete(d.id);
      this.nextUsed += skip;
      if (this.nextUsed >= this.size) {
        this.nextUsed -= this.size;
        this.usedWrap ^= 1;
      }
    }
    this.usedSeen += out.length;
    return out;
  }
  /** Driver event suppression (flags at +2). */
  setDriverEventFlags(v: number): void {
    w16(this.mem, this.driverArea + 2, v);
  }
  deviceEventFlags(): number {
    return u16(this.mem, this.deviceArea + 2);
  }
}

// ================================================================================================
// The raw driver

/** Options of {@link RawDriver.open}. */
export interface RawDriverOptions {
  /** PCI interrupt delivery: MSI-X (vector 0 config, 1 queues; default) or INTx with ISR reads. */
  interrupts?: 'msix' | 'intx';
}

/** Options of {@link RawDriver.init}. */
export interface RawInitOptions {
  /** Accepted features from the offer (default {@link defaultAccept}). */
  accept?: (offered: FeatureSet) => FeatureSet;
  /** Queues to set up (default all the device has). */
  queues?: readonly number[];
  /** Queue size (default min(max, 16); rounded down to a power of 2 for split rings). */
  queueSize?: number;
  /** Set DRIVER_OK (default true). */
  driverOk?: boolean;
}

/** Device-independent bits the raw driver understands (and accepts when offered). */
const KNOWN = [VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_RESET, VIRTIO_F_SUSPEND, DEFAULT_SWIOTLB_BIT];

/** Default acceptance: every offered device-specific bit (0–23 and 50+) plus the device-independent bits above. */
export function defaultAccept(offered: FeatureSet): FeatureSet {
  const f = new FeatureSet();
  for (const b of offered.toBits()) if (b < 24 || b >= 50 || KNOWN.includes(b)) f.set(b);
  return f;
}

/** Interrupts seen by the raw driver. */
export interface RawIrqLog {
  /** Configuration-change interrupts (MSI-X vector 0, ISR bit 1, MMIO InterruptStatus bit 1). */
  config: number;
  /** Queue interrupts (MSI-X vector 1, ISR bit 0, MMIO InterruptStatus bit 0). */
  queue: number;
  /** Raw ISR / InterruptStatus values read. */
  statusReads: number[];
  /** MSI-X messages (vector numbers). */
  msi: number[];
}

/** A hand-driven driver bound to a DUT. */
export class RawDriver {
  readonly regs: TransportRegs;
  readonly irq: RawIrqLog = { config: 0, queue: 0, statusReads: [], msi: [] };
  /** Memory outside any SWIOTLB window / pool (guest RAM the device must not touch when SWIOTLB is on). */
  readonly ramMem: RawMemory;
  /** DMA memory in use (the window when SWIOTLB is negotiated). */
  mem: RawMemory;
  offered = new FeatureSet();
  features = new FeatureSet();
  readonly queues: RawQueue[] = [];
  /** PCI probe result. */
  readonly probe: VirtioPciProbe | undefined;
  private windowMem: RawMemory | undefined;
  private readonly unsub: Array<() => void> = [];
  private readonly mode: 'msix' | 'intx';
  /** Set false to leave MMIO InterruptStatus unacknowledged. */
  ackInterrupts = true;

  private constructor(readonly dut: Dut, opts: RawDriverOptions) {
    this.mode = opts.interrupts ?? 'msix';
    if (dut.pci !== undefined) {
      this.probe = probeVirtioPci(dut.pci);
      this.regs = new PciTransportRegs(this.probe, dut.pci);
      this.ramMem = memoryOver(dut.ram);
      if (dut.pci.onMsi !== undefined) this.unsub.push(dut.pci.onMsi((_a, data) => this.onMsi(data)));
      if (dut.pci.onIntx !== undefined) this.unsub.push(dut.pci.onIntx((l) => this.onIntx(l)));
    } else if (dut.mmio !== undefined) {
      this.probe = undefined;
      this.regs = new MmioTransportRegs(dut.mmio.access);
      this.ramMem = memoryOver(dut.ram, ramRanges(dut.ram, dut.mmio.platform.pool));
      if (dut.mmio.access.onIrq !== undefined) this.unsub.push(dut.mmio.access.onIrq((l) => this.onMmioIrq(l)));
    } else if (dut.vhostUser !== undefined) {
      // vhost-user: no registers of its own; the adapter turns register writes into requests.
      this.probe = undefined;
      this.regs = dut.vhostUser.regs;
      this.ramMem = memoryOver(dut.ram);
      this.unsub.push(
        dut.vhostUser.onSignal((kind) => {
          if (kind === 'queue') this.irq.queue++;
        }),
      );
    } else {
      throw new VirtioError('INVALID_ARGUMENT', 'DUT has neither a PCI function, an MMIO window nor a vhost-user link');
    }
    this.mem = this.ramMem;
  }

  /** Bind to the DUT of `ctx` (probe on PCI). Closed with the check (unsubscribes interrupts). */
  static open(ctx: CheckContext | Dut, opts: RawDriverOptions = {}): RawDriver {
    const dut = 'dut' in ctx ? ctx.dut : ctx;
    return new RawDriver(dut, opts);
  }

  /** Stop listening to interrupts. */
  close(): void {
    for (const u of this.unsub.splice(0)) u();
  }

  private onMsi(data: number): void {
    const v = data - MSI_DATA;
    this.irq.msi.push(v);
    if (v === 0) this.irq.config++;
    else this.irq.queue++;
  }
  private onIntx(level: boolean): void {
    if (!level || this.mode !== 'intx' || !(this.regs instanceof PciTransportRegs)) return;
    const isr = this.regs.regs.readIsr();
    this.irq.statusReads.push(isr);
    if ((isr & 1) !== 0) this.irq.queue++;
    if ((isr & 2) !== 0) this.irq.config++;
  }
  private onMmioIrq(level: boolean): void {
    if (!level || !(this.regs instanceof MmioTransportRegs)) return;
    const st = this.regs.r(MR.INTERRUPT_STATUS);
    this.irq.statusReads.push(st);
    if ((st & 1) !== 0) this.irq.queue++;
    if ((st & 2) !== 0) this.irq.config++;
    if (this.ackInterrupts && (st & 3) !== 0) this.regs.w(MR.INTERRUPT_ACK, st & 3);
  }

  get pciRegs(): PciTransportRegs | undefined {
    return this.regs instanceof PciTransportRegs ? this.regs : undefined;
  }
  get mmioRegs(): MmioTransportRegs | undefined {
    return this.regs instanceof MmioTransportRegs ? this.regs : undefined;
  }

  /** Write 0 to status and poll (bounded) for 0. */
  reset(): boolean {
    this.regs.setStatus(0);
    for (let i = 0; i < 16; i++) if (this.regs.status() === 0) return true;
    return false;
  }

  /** Read `words` feature windows. */
  readOffered(words = 4): FeatureSet {
    const f = new FeatureSet();
    for (let i = 0; i < words; i++) f.setWord(i, this.regs.deviceFeatures(i));
    return f;
  }

  /**
   * Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
   * @returns whether FEATURES_OK read back set
   */
  negotiate(accept: (offered: FeatureSet) => FeatureSet = defaultAccept): boolean {
    this.reset();
    this.regs.setStatus(STATUS_ACKNOWLEDGE);
    this.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    this.offered = this.readOffered();
    const acc = accept(this.offered);
    for (let i = 0; i < 4; i++) this.regs.setDriverFeatures(i, acc.word(i));
    this.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    const ok = (this.regs.status() & STATUS_FEATURES_OK) !== 0;
    this.features = acc;
    this.mem = acc.has(DEFAULT_SWIOTLB_BIT) ? this.swiotlbMem() : this.ramMem;
    return ok;
  }

  /** The window (PCI) or restricted pool (MMIO) as DMA memory. */
  swiotlbMem(): RawMemory {
    if (this.windowMem !== undefined) return this.windowMem;
    const dut = this.dut;
    if (dut.mmio !== undefined) {
      const pool = dut.mmio.platform.pool;
      if (pool === undefined) throw new VirtioError('PROTOCOL', 'VIRTIO_F_SWIOTLB negotiated but the platform describes no restricted pool');
      this.windowMem = memoryOver(dut.ram, [{ start: pool.base, end: pool.base + pool.size }]);
    } else {
      const cap = this.probe?.swiotlb;
      const m = cap !== undefined ? dut.pci?.barMapping?.(cap.bar) : undefined;
      if (cap === undefined || m === undefined) throw new VirtioError('PROTOCOL', 'VIRTIO_F_SWIOTLB negotiated but no mappable SWIOTLB capability');
      const bar = this.probe!.bars.find((b) => b.index === cap.bar)!;
      const w = new SwiotlbWindow(m.buffer, { offset: m.bufferOffset + (cap.offset - m.barOffset), size: cap.length, base: bar.address + cap.offset, name: 'raw-window' });
      this.windowMem = memoryOver(w.asAddressSpace());
    }
    return this.windowMem;
  }

  /** Queue indices the device has (PCI num_queues, MMIO scan). */
  queueCount(): number {
    const n = this.regs.numQueues();
    if (n !== undefined) return n;
    let q = 0;
    for (; q < 64; q++) {
      this.regs.selectQueue(q);
      if (this.regs.queueMax() === 0) break;
    }
    return q;
  }

  /** Program the MSI-X table (2 vectors) and enable it; config vector 0. PCI only. */
  setupMsix(): boolean {
    const p = this.probe;
    const r = this.pciRegs;
    if (p?.msix === undefined || r === undefined || this.mode !== 'msix') return false;
    const cfg = new PciConfigIo(this.dut.pci!);
    const n = Math.min(2, p.msix.tableSize);
    for (let v = 0; v < n; v++) r.regs.writeMsixEntry(v, MSI_ADDR, MSI_DATA + v, false);
    cfg.w16(p.msix.capOffset + 2, (cfg.r16(p.msix.capOffset + 2) | 0x8000) & ~0x4000);
    r.regs.ccW16(CC.CONFIG_MSIX_VECTOR, 0);
    return r.regs.cc16(CC.CONFIG_MSIX_VECTOR) === 0;
  }

  /** Queue vector for queue interrupts (1, or 0 when the table has one entry). */
  private queueVector(): number {
    if (this.mode !== 'msix' || this.probe?.msix === undefined) return NO_VECTOR;
    return this.probe.msix.tableSize >= 2 ? 1 : 0;
  }

  /**
   * Configure queue `q` (after FEATURES_OK): size, rings in DMA memory, vector, enable.
   * @returns the queue, or undefined when the device has no such queue
   */
  setupQueue(q: number, size?: number, opts: { enable?: boolean } = {}): RawQueue | undefined {
    const regs = this.regs;
    regs.selectQueue(q);
    const max = regs.queueMax();
    if (max === 0) return undefined;
    const packed = this.features.has(VIRTIO_F_RING_PACKED);
    let s = Math.min(max, size ?? 16);
    if (!packed) s = 2 ** Math.floor(Math.log2(s));
    regs.setQueueSize(s);
    const mem = this.mem;
    const desc = mem.alloc(16 * s, 16);
    const drv = packed ? mem.alloc(4, 4) : mem.alloc(6 + 2 * s, 4);
    const dev = packed ? mem.alloc(4, 4) : mem.alloc(6 + 8 * s, 4);
    regs.setQueueAddrs(desc, drv, dev);
    const pr = this.pciRegs;
    if (pr !== undefined) pr.regs.ccW16(CC.QUEUE_MSIX_VECTOR, this.queueVector());
    if (opts.enable ?? true) regs.setQueueEnable(1);
    const nd = this.features.has(VIRTIO_F_NOTIFICATION_DATA);
    const rq: RawQueue = packed ? new RawPackedQueue(q, s, desc, drv, dev, mem, regs, nd) : new RawSplitQueue(q, s, desc, drv, dev, mem, regs, nd);
    this.queues[q] = rq;
    if (pr !== undefined) pr.notifyAddress(q);
    return rq;
  }

  /** Set DRIVER_OK. */
  driverOk(): void {
    this.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  }

  /**
   * Full initialization: negotiate, MSI-X, queues, DRIVER_OK.
   * @throws VirtioError FEATURE_REQUIRED when FEATURES_OK is refused
   */
  init(o: RawInitOptions = {}): this {
    if (!this.negotiate(o.accept)) throw new VirtioError('FEATURE_REQUIRED', `the device refused FEATURES_OK for [${this.features.toBits().join(', ')}]`);
    this.setupMsix();
    const qs = o.queues ?? Array.from({ length: this.queueCount() }, (_, i) => i);
    for (const q of qs) this.setupQueue(q, o.queueSize);
    if (o.driverOk ?? true) this.driverOk();
    return this;
  }

  /** Queue `q` as set up. */
  queue(q: number): RawQueue {
    const rq = this.queues[q];
    if (rq === undefined) throw new VirtioError('INVALID_ARGUMENT', `raw driver: queue ${q} was not set up`);
    return rq;
  }

  /** Allocate `data` in DMA memory; returns the address. */
  put(data: Uint8Array): number {
    const a = this.mem.alloc(data.length, 16);
    this.mem.write(a, data);
    return a;
  }

  /**
   * Send `out` buffers and `inLens` writable buffers on queue `q`, kick, wait for the used element.
   * @returns the used element and what the device wrote (per writable buffer), or undefined on timeout
   */
  async transact(q: number, out: readonly Uint8Array[], inLens: readonly number[], ms: number, opts: PostOptions & { signal?: AbortSignal } = {}): Promise<{ id: number; len: number; data: Uint8Array[] } | undefined> {
    const rq = this.queue(q);
    const bufs: RawBuf[] = [];
    for (const o of out) bufs.push({ addr: this.put(o), len: o.length });
    const ins: number[] = [];
    for (const l of inLens) {
      const a = this.mem.alloc(l, 16);
      ins.push(a);
      bufs.push({ addr: a, len: l, write: true });
    }
    const id = rq.post(bufs, opts);
    rq.kick();
    let got: UsedElem | undefined;
    const pending: UsedElem[] = [];
    const ok = await waitFor(
      () => {
        for (const u of rq.collect()) pending.push(u);
        got = pending.find((u) => u.id === id);
        return got !== undefined;
      },
      ms,
      opts.signal,
    );
    if (!ok || got === undefined) return undefined;
    const data = ins.map((a, i) => this.mem.read(a, inLens[i]!));
    return { id, len: got.len, data };
  }

  /** True when the device set DEVICE_NEEDS_RESET. */
  needsReset(): boolean {
    return (this.regs.status() & 0x40) !== 0;
  }
}
