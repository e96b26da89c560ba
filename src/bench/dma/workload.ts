/**
 * The request loop of one measurement point: a closed loop of virtio-blk reads or writes, `depth`
 * requests in flight on each driven queue, posted with the driver's allocation-free API
 * (`add` / `kick` / `poll`). Each completion is checked (status byte VIRTIO_BLK_S_OK), timed and
 * re-posted at once; with notification batching the queue is kicked once per refill round,
 * without it once per request.
 *
 * Completion: with the device in this thread a kick completes the requests before it returns
 * (the MSI reaches the driver synchronously). With a device process the loop polls the used ring
 * and, when nothing is there, re-arms interrupts, polls once more (the usual race check) and
 * sleeps until the next MSI arrives through the event loop — a guest that waits for interrupts.
 *
 * Phases: warm-up (untimed), measure (≥ `ms` and ≥ `minRequests` completions), drain (in-flight
 * requests finish, not counted). Hot path: per-slot state in prebuilt typed arrays, no allocation
 * per request (latencies go into a preallocated Float64Array).
 */
import { performance } from 'node:perf_hooks';
import { VirtioError } from '../../errors.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../device/blk/constants.js';
import type { GuestRamAllocator } from '../../driver/ram-alloc.js';
import type { AddressSpace } from '../../memory/space.js';
import { SgList } from '../../queue/types.js';
import { procCpuNs, procPeakRss, resetPeakRss } from './proc-stats.js';
import type { PointMeasure, PointSpec } from './scenario.js';

/** Most latencies kept per point (later completions are counted, not kept). */
export const LATENCY_CAPACITY = 1 << 18;

/** Per-slot guest buffers of one driver configuration. */
export class SlotBuffers {
  readonly queues: number;
  readonly maxDepth: number;
  readonly maxSize: number;
  /** Header (16 B) at +0, status byte at +16, per slot `q * maxDepth + k`. */
  readonly ctl: Float64Array;
  readonly data: Float64Array;
  private readonly ram: GuestRamAllocator;

  constructor(ram: GuestRamAllocator, queues: number, maxDepth: number, maxSize: number) {
    this.ram = ram;
    this.queues = queues;
    this.maxDepth = maxDepth;
    this.maxSize = maxSize;
    const n = queues * maxDepth;
    this.ctl = new Float64Array(n);
    this.data = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.ctl[i] = ram.alloc(64, 64);
      this.data[i] = ram.alloc(maxSize, 4096);
    }
  }

  release(): void {
    for (let i = 0; i < this.ctl.length; i++) {
      this.ram.release(this.ctl[i]!);
      this.ram.release(this.data[i]!);
    }
  }
}

/** Raw figures of one point (per-request values divide by `requests`). */
export interface PointRaw {
  requests: number;
  wallMs: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  /** CPU of this process (driver, VMM, and the device when in-process), µs per request. */
  cpuVmmUs: number;
  /** CPU of the device process (all threads), µs per request; NaN without a device process. */
  cpuDeviceUs: number;
  /** Bounce-pool bytes copied (to + from device) per request. */
  bounceBytes: number;
  /** DMA_READ / DMA_WRITE data bytes per request, and messages per request. */
  messageBytes: number;
  messages: number;
  kicksPerReq: number;
  /** MSI messages the driver took per request. */
  interruptsPerReq: number;
  /** Peak RSS during the timed part (bytes; NaN when unknown). */
  peakRssVmm: number;
  peakRssDevice: number;
  /** True when the peak could be reset before the point (else: process lifetime peak). */
  peakRssReset: boolean;
  /** Bounce-pool high-water mark (bytes of slots in use, since the driver configuration started). */
  poolHighWaterBytes: number;
}

/**
 * The queue API the loop drives: the allocation-free part of `VirtqueueDriver` (src/driver), which
 * the vhost-user models' own driver (`vhost-driver.ts`) implements as well.
 */
export interface LoopQueue {
  /** Post `sg` with `token`; false when the ring (or bounce pool) is full. Does not notify. */
  add(sg: SgList, token: number): boolean;
  /** Publish and notify the device if it wants it. */
  kick(): boolean;
  /** Collect one completion into {@link lastToken}; false when none is pending. */
  poll(): boolean;
  readonly lastToken: number;
  /** Ask for used-buffer notifications. */
  enableInterrupts(): void;
  readonly stats: { readonly kicks: number };
}

/** The driver API the loop uses (`VirtioPciDriver` and the vhost-user bench driver have it). */
export interface LoopDriver {
  queue(q: number): LoopQueue;
  /** Interrupts taken (MSI messages, or call-eventfd wake-ups). */
  readonly stats: { readonly msi: number };
  /** Bounce pool (SWIOTLB mode), else undefined. */
  readonly pool: { stats(): { bytesToDevice: number; bytesFromDevice: number; highWaterSlots: number } } | undefined;
}

/** What the loop needs from the session. */
export interface LoopTarget {
  driver: LoopDriver;
  guestRam: AddressSpace;
  synchronous: boolean;
  devicePid: number | undefined;
  /** Resolves at the next MSI of this driver (installed by the caller). */
  waitInterrupt(timeoutMs: number): Promise<void>;
  messageStats(): { messages: number; bytes: number } | undefined;
}

interface Snapshot {
  t: number;
  cpu: number;
  dev: number;
  bounce: number;
  msgs: number;
  msgBytes: number;
  kicks: number;
  msi: number;
}

function snapshot(tg: LoopTarget, vqs: LoopQueue[]): Snapshot {
  const cu = process.cpuUsage();
  const pool = tg.driver.pool?.stats();
  const m = tg.messageStats();
  let kicks = 0;
  for (const v of vqs) kicks += v.stats.kicks;
  return {
    t: performance.now(),
    cpu: cu.user + cu.system,
    dev: tg.devicePid !== undefined ? procCpuNs(tg.devicePid) / 1000 : Number.NaN,
    bounce: pool !== undefined ? pool.bytesToDevice + pool.bytesFromDevice : 0,
    msgs: m?.messages ?? 0,
    msgBytes: m?.bytes ?? 0,
    kicks,
    msi: tg.driver.stats.msi,
  };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * Run one point. `lat` is scratch of at least {@link LATENCY_CAPACITY} entries.
 * @throws VirtioError TIMEOUT when the device stops completing, DEVICE_IO when a request fails
 */
export async function runPoint(tg: LoopTarget, bufs: SlotBuffers, p: PointSpec, m: PointMeasure, lat: Float64Array): Promise<PointRaw> {
  const drv = tg.driver;
  const Q = bufs.queues;
  const D = p.depth;
  if (D > bufs.maxDepth || p.size > bufs.maxSize) throw new VirtioError('INVALID_ARGUMENT', `point depth ${D} / size ${p.size} exceeds the slot buffers (${bufs.maxDepth} / ${bufs.maxSize})`);
  const vqs: LoopQueue[] = [];
  for (let q = 0; q < Q; q++) vqs.push(drv.queue(q));
  const space = tg.guestRam;
  const n = Q * D;
  const sgs: SgList[] = [];
  const stU8: Uint8Array[] = [];
  const stOff = new Float64Array(n);
  const start = new Float64Array(n);
  const sectorsPerSlot = bufs.maxSize / 512;
  for (let q = 0; q < Q; q++) {
    for (let k = 0; k < D; k++) {
      const i = q * D + k;
      const b = q * bufs.maxDepth + k;
      const ctl = bufs.ctl[b]!;
      const data = bufs.data[b]!;
      const ri = space.resolve(ctl, 64, true);
      if (ri < 0) throw new VirtioError('INTERNAL', `slot buffer ${ctl} is not in guest RAM`);
      const r = space.regions[ri]!;
      const off = space.off;
      r.dv.setUint32(off, p.op === 'read' ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, true);
      r.dv.setUint32(off + 4, 0, true);
      r.dv.setUint32(off + 8, b * sectorsPerSlot, true); // disjoint disk range per slot
      r.dv.setUint32(off + 12, 0, true);
      stU8.push(r.u8);
      stOff[i] = off + 16;
      const sg = new SgList(3);
      sg.out(ctl, 16);
      if (p.op === 'write') sg.out(data, p.size);
      else sg.in(data, p.size);
      sg.in(ctl + 16, 1);
      sgs.push(sg);
    }
  }
  const batch = p.batch;
  const sync = tg.synchronous;
  let phase = 0;
  let count = 0;
  let errors = 0;
  let outstanding = 0;
  let armed = false;
  let t = performance.now();
  let phaseEnd = t + m.warmupMs;
  let s0: Snapshot | undefined;
  let s1: Snapshot | undefined;
  let peakReset = false;

  // Fill every slot.
  for (let q = 0; q < Q; q++) {
    const vq = vqs[q]!;
    for (let k = 0; k < D; k++) {
      const i = q * D + k;
      stU8[i]![stOff[i]!] = 0xff;
      start[i] = performance.now();
      if (!vq.add(sgs[i]!, k)) throw new VirtioError('QUEUE_FULL', `queue ${q}: could not post ${D} requests of ${p.size} bytes (ring or bounce window full)`);
      outstanding++;
      if (!batch) vq.kick();
    }
    if (batch) vq.kick();
  }
  if (m.warmupMs <= 0) {
    peakReset = resetPeakRss('self') && (tg.devicePid === undefined || resetPeakRss(tg.devicePid));
    s0 = snapshot(tg, vqs);
    phase = 1;
    phaseEnd = s0.t + m.ms;
  }

  for (;;) {
    let progress = 0;
    for (let q = 0; q < Q; q++) {
      const vq = vqs[q]!;
      const base = q * D;
      let added = 0;
      for (let c = 0; c < D && vq.poll(); c++) {
        const k = vq.lastToken;
        const i = base + k;
        const now = performance.now();
        progress++;
        outstanding--;
        if (stU8[i]![stOff[i]!] !== 0) errors++;
        if (phase === 1) {
          if (count < LATENCY_CAPACITY) lat[count] = now - start[i]!;
          count++;
        }
        if (phase !== 2) {
          stU8[i]![stOff[i]!] = 0xff;
          start[i] = now;
          if (!vq.add(sgs[i]!, k)) throw new VirtioError('QUEUE_FULL', `queue ${q}: re-posting a ${p.size}-byte request failed (ring or bounce window full)`);
          outstanding++;
          if (batch) added++;
          else vq.kick();
        }
      }
      if (added > 0) vq.kick();
    }
    t = performance.now();
    if (phase === 0 && t >= phaseEnd) {
      peakReset = resetPeakRss('self') && (tg.devicePid === undefined || resetPeakRss(tg.devicePid));
      s0 = snapshot(tg, vqs);
      count = 0;
      phase = 1;
      phaseEnd = s0.t + m.ms;
    } else if (phase === 1 && t >= phaseEnd && count >= m.minRequests) {
      s1 = snapshot(tg, vqs);
      phase = 2;
    }
    if (phase === 2 && outstanding === 0) break;
    if (progress > 0) {
      armed = false;
      continue;
    }
    if (sync) {
      throw new VirtioError('INTERNAL', `${outstanding} requests in flight but the in-process device completed none (driver stats ${JSON.stringify(drv.stats)})`);
    }
    if (!armed) {
      for (const vq of vqs) vq.enableInterrupts();
      armed = true;
      continue;
    }
    await tg.waitInterrupt(m.stallMs);
  }
  if (errors > 0) throw new VirtioError('DEVICE_IO', `${errors} virtio-blk requests did not complete with VIRTIO_BLK_S_OK (${p.op} ${p.size} bytes)`);
  const a = s0!;
  const b = s1!;
  const reqs = count;
  const kept = lat.subarray(0, Math.min(count, LATENCY_CAPACITY)).sort();
  let sum = 0;
  for (let i = 0; i < kept.length; i++) sum += kept[i]!;
  const pool = drv.pool?.stats();
  return {
    requests: reqs,
    wallMs: b.t - a.t,
    p50Us: percentile(kept, 0.5) * 1000,
    p99Us: percentile(kept, 0.99) * 1000,
    meanUs: (sum / kept.length) * 1000,
    cpuVmmUs: (b.cpu - a.cpu) / reqs,
    cpuDeviceUs: (b.dev - a.dev) / reqs,
    bounceBytes: (b.bounce - a.bounce) / reqs,
    messageBytes: (b.msgBytes - a.msgBytes) / reqs,
    messages: (b.msgs - a.msgs) / reqs,
    kicksPerReq: (b.kicks - a.kicks) / reqs,
    interruptsPerReq: (b.msi - a.msi) / reqs,
    peakRssVmm: procPeakRss('self'),
    peakRssDevice: tg.devicePid !== undefined ? procPeakRss(tg.devicePid) : Number.NaN,
    peakRssReset: peakReset,
    poolHighWaterBytes: pool !== undefined ? pool.highWaterSlots * 2048 : 0,
  };
}
