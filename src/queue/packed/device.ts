/**
 * Device side of the packed virtqueue (virtio 1.4 packed-ring.tex).
 *
 * One ring of 16-byte descriptors is shared by both sides. The device keeps two positions, each an
 * offset into the ring plus a one-bit wrap counter starting at 1:
 * - next avail: where the next driver descriptor will appear. A descriptor is available when its
 *   AVAIL flag equals the device's avail wrap counter and its USED flag does not.
 * - next used: where the next used descriptor is written. A used descriptor has AVAIL = USED =
 *   the used wrap counter; the device then skips as many slots as the buffer occupied.
 *
 * Validation is eager: {@link PackedDeviceQueue.pop} checks a whole buffer (all NEXT-linked
 * descriptors or one indirect table) before handing it out; any violation goes to the
 * {@link GuestErrorSink} with its clause id, and the queue parks (pop returns false without touching
 * memory until {@link PackedDeviceQueue.reset}). Nothing throws; no loop runs longer than the queue
 * size (or the indirect table length).
 *
 * Memory ordering: flags are always read before the rest of a descriptor and written after it.
 * When the ring is shared with another agent (`cfg.concurrent`, default: SharedArrayBuffer or
 * fd-backed region), {@link PackedDeviceQueue.pop} reads the flags of a buffer's first descriptor
 * with `Atomics.load`; {@link PackedDeviceQueue.popBatch} scans the flags of the available run with
 * plain loads and does ONE `Atomics.load` on the last available head before reading any descriptor
 * body (the driver exposes heads in ring order, each after its list; Atomics.load is not inlined by
 * Node 20's V8 and costs ~120 instructions, so once per batch). Used descriptors are written with the
 * flags of a batch's first one stored last with `Atomics.store`. Event suppression areas always use
 * Atomics (once per batch). Without `concurrent`, plain typed-array accesses are used.
 *
 * Code shape (perf-limits.md §6; measured with callgrind): popBatch and pushUsedBatch have fast paths
 * with no calls inside their loops and their scalars read from an Int32Array (V8 keeps them untagged),
 * which take regular buffers only — direct descriptors, buffers in the cached region, nothing to
 * report — and stop, consuming nothing, at anything else; the complete walker (the code behind
 * {@link PackedDeviceQueue.pop}) then takes that buffer with every check and is the one place that
 * reports. test/queue/packed/fast-paths.test.ts compares both paths on random corrupt rings, and
 * via-slow.test.ts runs every packed suite with the fast paths off.
 *
 * In-order (VIRTIO_F_IN_ORDER): {@link PackedDeviceQueue.pushUsedBatch} writes a single used
 * descriptor for a batch (the last buffer's id; the driver skips the others and treats them as fully
 * used) when the batch is exactly the oldest buffers in pop order and every buffer but the last is
 * returned with its full writable length. Otherwise, and for single {@link PackedDeviceQueue.pushUsed}
 * calls, one used descriptor per buffer is written, which is always correct.
 */
import { fixedF64, fixedI32, fixedU32 } from '../fixed-arrays.js';
import { specialize } from '../specialize.js';
import { VirtioError, type VirtioErrorCode } from '../../errors.js';
import { resolveErrorCode, type AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../../device/choke.js';
import { logger } from '../../log.js';
import { packedNeedEvent } from '../event-idx.js';
import {
  type ChainBatch,
  type ChainVisitor,
  DescChain,
  type DeviceQueue,
  type DeviceQueueFactory,
  type QueueConfig,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from '../types.js';
import {
  isPackedSetupError,
  resolvePackedRings,
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  type PackedRingViews,
} from './layout.js';

const log = logger('queue');

const TWO_POW_32 = 4294967296;
const USED_AND_AVAIL = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
/** Marks an id already seen in the batch being checked by pushUsedBatch (above any slot count). */
const BATCH_MARK = 0x10000;
// Module-local copies of the flag bits: V8 folds these into the fast loops (imported bindings are
// re-loaded and hole-checked on every use).
const F_NEXT = VIRTQ_DESC_F_NEXT;
const F_WRITE = VIRTQ_DESC_F_WRITE;
const F_INDIRECT = VIRTQ_DESC_F_INDIRECT;
const F_AVAIL = VIRTQ_DESC_F_AVAIL;
const F_USED = VIRTQ_DESC_F_USED;
const AVAIL_USED = USED_AND_AVAIL;
/** Slots of PackedDeviceQueue.fs (fast-path scalars in and out). */
const FS_SIZE = 0;
const FS_MAXDIRECT = 1;
const FS_ATOMIC = 2;
const FS_OFF = 3;
const FS_WRAP = 4;
const FS_N = 5;
const FS_SEG = 6;
const FS_MAX = 7;
const FS_SEGCAP = 8;
const FS_DIF = 9;
const FS_REGION = 10;
const FS_STOP = 11;
const FS_USED_OFF = 12;
const FS_USED_WRAP = 13;
/** popEach: ring slot whose used flags are held back until the end of the call (-1: none), and those flags. */
const FS_PUB = 14;
const FS_PUB_FLAGS = 15;
/** visitFast out: chains left in flight, ring slots the used position passed. */
const FS_KEPT = 16;
const FS_DONE = 17;
const FS_SLOTS = 18;
/** popFast stopped: nothing more available (or the batch is full). */
const STOP_EMPTY = 0;
/** popFast stopped at a buffer the complete walker must handle. */
const STOP_SLOW = 1;

/** Device side of a packed virtqueue. Build it with {@link createPackedDeviceQueue}. */
export class PackedDeviceQueue implements DeviceQueue {
  readonly kind = 'packed' as const;
  readonly index: number;
  readonly size: number;

  private readonly space: AddressSpace;
  private readonly sink: GuestErrorSink;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  /** Driver event suppression (read by the device: may it interrupt?). */
  private readonly drvEvent: Uint16Array;
  /** Device event suppression (written by the device: should the driver kick?). */
  private readonly devEvent: Uint16Array;
  private readonly eventIdx: boolean;
  private readonly indirectOk: boolean;
  private readonly inOrder: boolean;
  /** Order flags accesses with Atomics (another agent shares the ring). */
  private readonly atomic: boolean;
  /** Most segments a buffer may have (cfg.maxChainSegments, default the queue size). */
  private readonly maxSeg: number;
  /** min(maxSeg, size): most descriptors of a NEXT-linked list. */
  private readonly maxDirect: number;

  private availOff = 0;
  private availWrap = 1;
  private usedOff = 0;
  private usedWrap = 1;
  /**
   * Per buffer id: ring slots the buffer occupies (how far pushUsed skips) while it is in flight,
   * 0 when it is not; {@link BATCH_MARK} is or-ed in transiently inside pushUsedBatch.
   */
  private readonly idDescs: Uint32Array;
  /** Per buffer id: writable bytes (in-order batch coalescing). */
  private readonly idWritable: Float64Array;
  /** Per buffer id: pop sequence number (in-order batch coalescing). */
  private readonly idSeq: Float64Array;
  private popSeq = 0;
  /** Sequence number of the oldest buffer not yet returned, while returns come in pop order. */
  private doneSeq = 0;
  private nInFlight = 0;
  private descsInFlight = 0;
  /** Ring slots passed by the used position since the last needsInterrupt(). */
  private sinceSignal = 0;
  /** Used position (offset | wrap << 15) at the last needsInterrupt(). */
  private signalPos = 1 << 15;
  private isParked = false;
  private scratch: DescChain | undefined;
  /** True while a popEach visitor runs (re-entrant pop / completion calls throw). */
  private visiting = false;

  /** Use {@link createPackedDeviceQueue}, which validates the configuration first. */
  constructor(space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink, views: PackedRingViews) {
    this.space = space;
    this.sink = sink;
    this.index = cfg.index;
    this.size = cfg.size;
    this.desc32 = views.desc32;
    this.desc16 = views.desc16;
    this.drvEvent = views.driverEvent;
    this.devEvent = views.deviceEvent;
    this.eventIdx = cfg.eventIdx;
    this.indirectOk = cfg.indirect;
    this.inOrder = cfg.inOrder;
    this.atomic = cfg.concurrent ?? views.shareable;
    const m = cfg.maxChainSegments ?? cfg.size;
    this.maxSeg = Number.isInteger(m) && m > 0 ? m : cfg.size;
    this.maxDirect = Math.min(this.maxSeg, cfg.size);
    this.idDescs = fixedU32(cfg.size);
    this.idWritable = fixedF64(cfg.size);
    this.idSeq = fixedF64(cfg.size);
    this.fastOk = !cfg.inOrder;
    this.fs[FS_SIZE] = cfg.size;
    this.fs[FS_MAXDIRECT] = this.maxDirect;
    this.fs[FS_ATOMIC] = this.atomic ? 1 : 0;
  }

  get parked(): boolean {
    return this.isParked;
  }

  park(): void {
    this.isParked = true;
  }

  get inFlight(): number {
    return this.nInFlight;
  }

  /**
   * Pop the next available buffer into `chain` (segments in ring order, readable first).
   * `chain.head` is the buffer id (read from the last descriptor of the list, packed-ring.tex
   * "Next Flag"); `chain.descCount` the ring slots it occupies. When false is returned the contents of
   * `chain` are unspecified. A list whose later descriptors are not available yet is left alone
   * (false, no error); call again after the next notification.
   */
  pop(chain: DescChain): boolean {
    if (this.visiting) this.reentrant('pop');
    if (this.isParked) return false;
    return this.walk(chain, chain.region.length, false) === 1;
  }

  /**
   * The complete walker behind {@link pop} and {@link popBatch}, and the one place that reports
   * guest errors about available buffers: pops the buffer at the avail position into `chain` with
   * every check, taking at most `limit` segments.
   * @param canDefer a list longer than `limit` (or an indirect table with more entries) that could
   *   still fit an empty batch is left in the ring (returns 0) instead of being an error.
   * @returns 1 popped; 0 nothing available, the rest of the list not available yet, or deferred;
   *   -1 guest error (reported, queue parked).
   */
  private walk(chain: DescChain, limit: number, canDefer: boolean): number {
    const d16 = this.desc16;
    const d32 = this.desc32;
    const size = this.size;
    let off = this.availOff;
    let wrap = this.availWrap;
    // basic.packed-vq.vq-desc-table.device.2: read flags first; use the descriptor only when AVAIL
    // matches our wrap counter and USED does not.
    let flags = this.atomic ? Atomics.load(d16, off * 8 + 7) : d16[off * 8 + 7]!;
    if (((flags >>> 7) & 1) !== wrap || flags >>> 15 === wrap) return 0;

    const space = this.space;
    const cRegion = chain.region;
    const cOff = chain.offset;
    const cAddr = chain.addr;
    const cLen = chain.len;
    let maxSeg = this.maxDirect;
    if (limit < maxSeg) maxSeg = limit;
    let count = 0;
    let readable = 0;
    let rBytes = 0;
    let wBytes = 0;
    let descs = 0;
    let id = 0;
    // basic.packed-vq.vq.device.1 / scatter-gather-support.device.1: walk the list in ring order.
    for (;;) {
      const b = off * 4;
      const lo = d32[b]!;
      const hi = d32[b + 1]!;
      const len = d32[b + 2]!;
      id = d16[off * 8 + 6]!; // the last descriptor's id is the buffer id
      descs++;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // An indirect table that does not fit the batch room left but may fit an empty batch: next call.
        if (canDefer && descs === 1 && len !== 0 && (len & 15) === 0 && len >>> 4 > limit) return 0;
        return this.popIndirect(chain, limit, flags, lo, hi, len, id, descs, off, wrap) ? 1 : -1;
      }
      if (count >= maxSeg) {
        if (canDefer && count < this.maxDirect) return 0; // may fit an empty batch: next call
        // basic.packed-vq.scatter-gather-support.driver.1 (device limit; scatter-gather-support.device.2)
        this.fail('CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1', `descriptor list at offset ${this.availOff} has more than ${maxSeg} descriptors (the device's limit)`);
        return -1;
      }
      const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!write && readable !== count) {
        // basic.packed-vq.scatter-gather-support.driver.3
        this.fail('READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', `descriptor at offset ${off} is device-readable but follows a device-writable one`);
        return -1;
      }
      // basic.packed-vq.vq-desc-table.device.1: buffers must lie inside the device's space.
      const r = space.resolveHiLo(lo, hi, len, write);
      if (r < 0) {
        this.failAddress(r, lo, hi, len, write, off);
        return -1;
      }
      cRegion[count] = r;
      cOff[count] = space.off;
      cAddr[count] = hi * TWO_POW_32 + lo;
      cLen[count] = len;
      count++;
      if (write) {
        wBytes += len;
      } else {
        rBytes += len;
        readable++;
      }
      off++;
      if (off === size) {
        off = 0;
        wrap ^= 1;
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (descs >= size) {
        // basic.packed-vq.scatter-gather-support.driver.2 (loops are forbidden)
        this.fail('CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.2', `descriptor list at offset ${this.availOff} is longer than the queue size ${size}`);
        return -1;
      }
      flags = d16[off * 8 + 7]!; // ordered by the head's acquire (the driver wrote the head last)
      // Rest of the list not available yet: leave it for later (scatter-gather-support.driver.6 says
      // the head is exposed last, so a conforming driver never shows a partial list).
      if (((flags >>> 7) & 1) !== wrap || flags >>> 15 === wrap) return 0;
    }
    if (rBytes + wBytes > TWO_POW_32) {
      // The 2^32 total-length rule is stated for split rings (basic.split-vq.vq-desc-table.driver.1); applied here too.
      this.fail('CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `buffer at offset ${this.availOff} totals ${rBytes + wBytes} bytes (more than 2^32)`);
      return -1;
    }
    return this.commit(chain, id, descs, off, wrap, count, readable, rBytes, wBytes) ? 1 : -1;
  }

  /**
   * Batch form of {@link pop}: pop up to `min(max, batch.maxChains)` buffers into `batch` with the
   * same validation. Stops at the first buffer that is not (completely) available, or that does not
   * fit in the batch's remaining segment room (left for the next call), or that is invalid (reported,
   * queue parked; the buffers before it are returned and in flight).
   *
   * {@link popFast} takes the regular buffers (direct descriptors, buffers in the cached region,
   * nothing to report) with no calls in its loop; it stops — consuming nothing — at anything else,
   * which {@link walk} then pops (or reports) alone.
   */
  popBatch(batch: ChainBatch, max: number): number {
    if (this.visiting) this.reentrant('popBatch');
    batch.count = 0;
    if (this.isParked) return 0;
    const m = max < batch.head.length ? max : batch.head.length;
    const segCap = batch.seg.length >>> 1;
    let n = 0;
    let s = 0;
    // Refresh the region cache from the live region (it may have moved since the last call).
    this.setRegionCache(this.lastRegion);
    while (n < m) {
      if (this.fastOk) {
        const fs = this.fs;
        fs[FS_OFF] = this.availOff;
        fs[FS_WRAP] = this.availWrap;
        fs[FS_N] = n;
        fs[FS_SEG] = s;
        fs[FS_MAX] = m;
        fs[FS_SEGCAP] = segCap;
        fs[FS_DIF] = this.descsInFlight;
        fs[FS_REGION] = this.lastRegion;
        const n1 = this.popFast(batch);
        this.nInFlight += n1 - n;
        n = n1;
        s = fs[FS_SEG]!;
        this.availOff = fs[FS_OFF]!;
        this.availWrap = fs[FS_WRAP]!;
        this.descsInFlight = fs[FS_DIF]!;
        if (n === m || fs[FS_STOP] === STOP_EMPTY) break;
      }
      // The next buffer needs the complete walker (or is invalid, or does not fit).
      const sc = this.scratchChain();
      if (this.walk(sc, segCap - s, n > 0) !== 1) break;
      const k = sc.count;
      const seg = batch.seg;
      const pos = batch.pos;
      for (let i = 0; i < k; i++) {
        const q = 2 * (s + i);
        seg[q] = sc.region[i]!;
        seg[q + 1] = sc.len[i]!;
        pos[q] = sc.offset[i]!;
        pos[q + 1] = sc.addr[i]!;
      }
      batch.head[n] = sc.head;
      const co = 4 * n;
      batch.chain[co] = s;
      batch.chain[co + 1] = k;
      batch.chain[co + 2] = sc.readable;
      batch.chain[co + 3] = sc.descCount;
      batch.bytes[2 * n] = sc.readableBytes;
      batch.bytes[2 * n + 1] = sc.writableBytes;
      s += k;
      n++;
      if (k > 0 && sc.region[k - 1] !== this.lastRegion) this.setRegionCache(sc.region[k - 1]!);
    }
    batch.count = n;
    return n;
  }

  /** Throw for a queue call made from inside this queue's own popEach visitor. */
  private reentrant(what: string): never {
    throw new VirtioError('REENTRANT_CALL', `packed queue ${this.index}: ${what}() called from inside a popEach visitor of the same queue; return the length from visit() instead, or complete the buffer after popEach returns`);
  }

  /**
   * Visitor form of popping (see {@link DeviceQueue.popEach}): validate, hand over and complete up
   * to `max` buffers in one pass. Regular buffers go through {@link visitFast} (one loop, no batch
   * arrays); anything else — an indirect table, a region miss, IN_ORDER, any error — through the
   * complete walker ({@link walk}) exactly as {@link pop}, one buffer at a time ({@link visitSlow}).
   *
   * Used descriptors are written in completion order (basic.packed-vq.vq.device.2); the flags of
   * the first one written in this call are stored last, in `finally` (with `Atomics.store` when the
   * ring is shared), so the driver sees every buffer completed in the call at once, as with
   * {@link pushUsedBatch}. After a buffer that filled the whole ring (its used descriptor lands on
   * the next avail slot) the call ends, as pop() would find that slot used.
   */
  popEach(visitor: ChainVisitor, max: number): number {
    if (this.visiting) this.reentrant('popEach');
    if (this.isParked) return 0;
    this.visiting = true;
    const fs = this.fs;
    fs[FS_PUB] = -1;
    let n = 0;
    try {
      this.setRegionCache(this.lastRegion);
      while (n < max && !this.isParked) {
        if (this.fastOk) {
          fs[FS_OFF] = this.availOff;
          fs[FS_WRAP] = this.availWrap;
          fs[FS_USED_OFF] = this.usedOff;
          fs[FS_USED_WRAP] = this.usedWrap;
          fs[FS_N] = n;
          fs[FS_MAX] = max < 0x7fffffff ? max : 0x7fffffff;
          fs[FS_DIF] = this.descsInFlight;
          fs[FS_REGION] = this.lastRegion;
          n = (this.visitFastFn ?? this.make_visitFastFn())(visitor);
          this.availOff = fs[FS_OFF]!;
          this.availWrap = fs[FS_WRAP]!;
          this.usedOff = fs[FS_USED_OFF]!;
          this.usedWrap = fs[FS_USED_WRAP]!;
          this.descsInFlight = fs[FS_DIF]!;
          this.nInFlight += fs[FS_KEPT]!;
          this.sinceSignal += fs[FS_DONE]!;
          if (n >= max || this.isParked || fs[FS_STOP] === STOP_EMPTY) break;
        }
        const r = this.visitSlow(visitor);
        if (r === 0) break;
        n++;
        if (r === 2) break;
      }
    } catch (e) {
      // A visitor that throws is a device-model bug: the ring state of that pass is lost, so the
      // queue parks through the choke point (the device needs a reset) — nothing is thrown out of
      // the caller's notify handler.
      this.fail('INTERNAL', undefined, `popEach visitor threw: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.visiting = false;
      const p = fs[FS_PUB]!;
      if (p >= 0) {
        fs[FS_PUB] = -1;
        // basic.packed-vq.vq-desc-table.device.3: the first used descriptor's flags publish the call's used descriptors.
        if (this.atomic) Atomics.store(this.desc16, (p << 3) | 7, fs[FS_PUB_FLAGS]!);
        else this.desc16[(p << 3) | 7] = fs[FS_PUB_FLAGS]!;
      }
    }
    return n;
  }

  /** visitFast, specialised per queue (see specialize.ts); made on first use. */
  private visitFastFn: ((v: ChainVisitor) => number) | null = null;
  /** Compile (once) this queue's own copy of visitFast (see specialize.ts). */
  private make_visitFastFn(): (v: ChainVisitor) => number {
    return (this.visitFastFn = specialize(PackedDeviceQueue.make_visitFast, { AVAIL_USED, FS_ATOMIC, FS_DIF, FS_DONE, FS_KEPT, FS_MAX, FS_MAXDIRECT, FS_N, FS_OFF, FS_PUB, FS_PUB_FLAGS, FS_REGION, FS_SIZE, FS_STOP, FS_USED_OFF, FS_USED_WRAP, FS_WRAP, F_AVAIL, F_INDIRECT, F_NEXT, F_USED, F_WRITE, STOP_EMPTY, STOP_SLOW, TWO_POW_32 }, this));
  }

  /**
   * Factory of popEach's loop over regular buffers for one queue (compiled once per queue by
   * specialize()); the acceptance rules of {@link popFast}, the same scan and single acquire, lists
   * of up to three descriptors (longer ones are left to the complete walker). It walks into the
   * scratch chain, calls the visitor, then writes the used descriptor (the call's first one without
   * its flags: fs[FS_PUB]) or marks the buffer in flight. Stops — consuming nothing — at the first
   * buffer it does not take (fs[FS_STOP] as popFast), and after a completion whose used descriptor
   * landed on the next avail slot (STOP_EMPTY). No calls in the loop but the visitor. The returned
   * function gives the buffers visited so far in this popEach call.
   */
  private static make_visitFast(q: PackedDeviceQueue): (v: ChainVisitor) => number {
    const fs = q.fs;
    const size = fs[FS_SIZE]!;
    const maxDirect = fs[FS_MAXDIRECT]!;
    const d32 = q.desc32;
    const d16 = q.desc16;
    const rgc = q.rgc;
    const idDescs = q.idDescs;
    const cur = q.scratchChain();
    const cRegion = cur.region;
    const cOff = cur.offset;
    const cAddr = cur.addr;
    const cLen = cur.len;
    return (v: ChainVisitor): number => {
      const m = fs[FS_MAX]!;
      const ri = fs[FS_REGION]!;
      let off = fs[FS_OFF]!;
      let n = fs[FS_N]!;
      let dif = fs[FS_DIF]!;
      // (flags & 0x8080) of an available descriptor: AVAIL = wrap, USED = !wrap.
      let av = fs[FS_WRAP] !== 0 ? F_AVAIL : F_USED;
      // Scan the available run (at most one lap), stopping before the head of buffer m.
      let o = off;
      let a = av;
      let k = 0;
      let heads = n;
      let lastHead = -1;
      let prevNext = 0;
      while (k < size) {
        const fl = d32[(o << 2) | 3]! >>> 16;
        if ((fl & AVAIL_USED) !== a) break;
        if (prevNext === 0) {
          if (heads === m) break;
          heads++;
          lastHead = o;
        }
        prevNext = fl & F_NEXT;
        k++;
        o++;
        if (o === size) {
          o = 0;
          a ^= AVAIL_USED;
        }
      }
      fs[FS_KEPT] = 0;
      fs[FS_DONE] = 0;
      if (lastHead < 0) {
        fs[FS_STOP] = STOP_EMPTY;
        return n;
      }
      // basic.packed-vq.vq-desc-table.device.2: acquire before reading descriptor bodies.
      if (fs[FS_ATOMIC] !== 0) Atomics.load(q.desc16, (lastHead << 3) | 7);
      let rem = k;
      let uo = fs[FS_USED_OFF]!;
      // (flags & 0x8080) of a used descriptor: AVAIL = USED = used wrap counter.
      let ub = fs[FS_USED_WRAP] !== 0 ? AVAIL_USED : 0;
      let pub = fs[FS_PUB]!;
      let pubFlags = fs[FS_PUB_FLAGS]!;
      let kept = 0;
      let done = 0;
      const rgBase = rgc[0]!;
      const rgEnd = rgc[1]!;
      const rgOff = rgc[2]!;
      const rgWritable = rgc[3]!;
      let stop = STOP_SLOW;
      chains: while (n < m) {
        const b0 = off << 2;
        const word0 = d32[b0 | 3]!;
        const fl0 = word0 >>> 16;
        if ((fl0 & AVAIL_USED) !== av) {
          stop = STOP_EMPTY;
          break;
        }
        if (rem === 0) break;
        let id: number;
        let count: number;
        let readable: number;
        let rBytes: number;
        let wBytes: number;
        if ((fl0 & (F_NEXT | F_INDIRECT)) === 0) {
          // One descriptor: straight-line code (the common single-buffer request).
          const lo = d32[b0]!;
          const hi = d32[b0 | 1]!;
          const len = d32[b0 | 2]!;
          const addr = hi * TWO_POW_32 + lo;
          if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break;
          id = word0 & 0xffff;
          if (id >= size || idDescs[id] !== 0 || dif >= size) break;
          if ((fl0 & F_WRITE) !== 0) {
            if (rgWritable === 0) break;
            readable = 0;
            rBytes = 0;
            wBytes = len;
          } else {
            readable = 1;
            rBytes = len;
            wBytes = 0;
          }
          cRegion[0] = ri;
          cOff[0] = rgOff + (addr - rgBase);
          cAddr[0] = addr;
          cLen[0] = len;
          count = 1;
          off = (off + 1) | 0;
          if (off === size) {
            off = 0;
            av ^= AVAIL_USED;
          }
        } else {
          // A NEXT-linked list of direct descriptors.
          let o2 = off;
          let a2 = av;
          let word = word0;
          let fl = fl0;
          count = 0;
          readable = 0;
          rBytes = 0;
          wBytes = 0;
          // Up to three descriptors in straight-line code (a loop nested in the buffer loop makes V8
          // re-check every typed array on each pass); a longer list goes to the complete walker.
          let b: number;
          let lo: number;
          let hi: number;
          let len: number;
          let addr: number;
          list: {
            // Descriptor 0 of the list.
            if ((fl & F_INDIRECT) !== 0) break chains;
            b = o2 << 2;
            lo = d32[b]!;
            hi = d32[b | 1]!;
            len = d32[b | 2]!;
            addr = hi * TWO_POW_32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fl & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
            o2++;
            if (o2 === size) {
              o2 = 0;
              a2 ^= AVAIL_USED;
            }
            if ((fl & F_NEXT) === 0) break list;
            // Limits first (walk decides: defer or report), then availability of the rest.
            if (count === maxDirect || count === rem) break chains;
            word = d32[(o2 << 2) | 3]!;
            fl = word >>> 16;
            if ((fl & AVAIL_USED) !== a2) {
              stop = STOP_EMPTY; // the rest of the list is not available yet
              break chains;
            }
            // Descriptor 1 of the list.
            if ((fl & F_INDIRECT) !== 0) break chains;
            b = o2 << 2;
            lo = d32[b]!;
            hi = d32[b | 1]!;
            len = d32[b | 2]!;
            addr = hi * TWO_POW_32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fl & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
            o2++;
            if (o2 === size) {
              o2 = 0;
              a2 ^= AVAIL_USED;
            }
            if ((fl & F_NEXT) === 0) break list;
            // Limits first (walk decides: defer or report), then availability of the rest.
            if (count === maxDirect || count === rem) break chains;
            word = d32[(o2 << 2) | 3]!;
            fl = word >>> 16;
            if ((fl & AVAIL_USED) !== a2) {
              stop = STOP_EMPTY; // the rest of the list is not available yet
              break chains;
            }
            // Descriptor 2 of the list.
            if ((fl & F_INDIRECT) !== 0) break chains;
            b = o2 << 2;
            lo = d32[b]!;
            hi = d32[b | 1]!;
            len = d32[b | 2]!;
            addr = hi * TWO_POW_32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fl & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
            o2++;
            if (o2 === size) {
              o2 = 0;
              a2 ^= AVAIL_USED;
            }
            if ((fl & F_NEXT) !== 0) break chains;
          }
          id = word & 0xffff;
          if (rBytes + wBytes > TWO_POW_32 || id >= size || idDescs[id] !== 0 || dif + count > size) break;
          off = o2;
          av = a2;
        }
        rem -= count;
        n++;
        cur.head = id;
        cur.count = count;
        cur.readable = readable;
        cur.readableBytes = rBytes;
        cur.writableBytes = wBytes;
        cur.descCount = count;
        const r = v.visit(cur);
        if (r >= 0) {
          // basic.packed-vq.vq.device.2: used descriptors in completion order, at the used position.
          const b = uo << 2;
          d32[b | 2] = r;
          const f = ub | (r > 0 ? F_WRITE : 0);
          if (pub < 0) {
            // The call's first used descriptor: id now, flags at the end of popEach.
            d16[(uo << 3) | 6] = id;
            pub = uo;
            pubFlags = f;
          } else {
            d32[b | 3] = id | (f << 16); // ordered by the first descriptor's release
          }
          // The buffer filled the ring: its used descriptor is on the next avail slot; stop there.
          const full = dif + count === size;
          done += count;
          uo += count;
          if (uo >= size) {
            uo -= size;
            ub ^= AVAIL_USED;
          }
          if (full) {
            stop = STOP_EMPTY;
            break;
          }
        } else {
          idDescs[id] = count;
          dif += count;
          kept++;
        }
        if (q.isParked) break;
      }
      fs[FS_STOP] = n >= m ? STOP_EMPTY : stop;
      fs[FS_OFF] = off;
      fs[FS_WRAP] = av === F_AVAIL ? 1 : 0;
      fs[FS_USED_OFF] = uo;
      fs[FS_USED_WRAP] = ub !== 0 ? 1 : 0;
      fs[FS_DIF] = dif;
      fs[FS_PUB] = pub;
      fs[FS_PUB_FLAGS] = pubFlags;
      fs[FS_KEPT] = kept;
      fs[FS_DONE] = done;
      return n;
    };
  }

  /**
   * popEach for one buffer the fast loop did not take: the complete walker (reports and parks on a
   * guest error, leaves an incomplete list alone), then the visitor, then the used descriptor as
   * {@link pushUsed} writes it (IN_ORDER bookkeeping included; the call's first one without flags).
   * @returns 0 nothing visited (nothing available, or a guest error); 1 visited; 2 visited and the
   *   call must end (its used descriptor landed on the next avail slot)
   */
  private visitSlow(v: ChainVisitor): number {
    const cur = this.scratchChain();
    if (this.walk(cur, cur.region.length, false) !== 1) return 0;
    const k = cur.count;
    if (k > 0 && cur.region[k - 1] !== this.lastRegion) this.setRegionCache(cur.region[k - 1]!);
    // walk put the buffer in flight: a length from the visitor completes it at once.
    const r = v.visit(cur);
    if (!(r >= 0)) return 1;
    const id = cur.head;
    const idDescs = this.idDescs;
    const nd = idDescs[id]!;
    if (nd === 0) return 1; // (the visitor cannot complete it itself: pushUsed throws; defensive)
    if (this.outOfOrder(id, 'popEach completion of')) return 1; // stays in flight
    const size = this.size;
    const fs = this.fs;
    let uo = this.usedOff;
    const full = uo === this.availOff && this.descsInFlight === size;
    this.desc32[(uo << 2) | 2] = r;
    this.desc16[(uo << 3) | 6] = id;
    const f = (this.usedWrap !== 0 ? USED_AND_AVAIL : 0) | (r > 0 ? VIRTQ_DESC_F_WRITE : 0);
    if (fs[FS_PUB]! < 0) {
      fs[FS_PUB] = uo;
      fs[FS_PUB_FLAGS] = f;
    } else {
      this.desc16[(uo << 3) | 7] = f; // ordered by the first descriptor's release
    }
    uo += nd;
    if (uo >= size) {
      uo -= size;
      this.usedWrap ^= 1;
    }
    this.usedOff = uo;
    idDescs[id] = 0;
    this.descsInFlight -= nd;
    this.sinceSignal += nd;
    this.nInFlight--;
    if (this.inOrder) {
      if (this.idSeq[id] === this.doneSeq) this.doneSeq++;
      if (this.nInFlight === 0) this.doneSeq = this.popSeq;
    }
    return full ? 2 : 1;
  }

  /** popFast's inputs and outputs (FS_* slots; an Int32Array so V8 keeps them untagged). */
  private readonly fs = fixedI32(FS_SLOTS);
  /** Region cache (from {@link lastRegion}): base, end, buffer offset, writable (1/0). */
  private readonly rgc = fixedF64(4);
  /** Index of the region the last buffer resolved into (fast-path cache). */
  private lastRegion = 0;
  /** popFast / pushFast are used unless IN_ORDER (whose bookkeeping the complete paths do); tests may turn them off. */
  private fastOk: boolean;

  private setRegionCache(r: number): void {
    this.lastRegion = r;
    const rg = this.space.regions[r];
    const c = this.rgc;
    if (rg === undefined) {
      // An empty space: nothing can hit.
      c[0] = 1;
      c[1] = 0;
      c[2] = 0;
      c[3] = 0;
      return;
    }
    c[0] = rg.base;
    c[1] = rg.base + rg.size;
    c[2] = rg.offset;
    c[3] = rg.readOnly ? 0 : 1;
  }

  /**
   * Pop regular buffers into `batch` from chain fs[FS_N] / segment fs[FS_SEG] on: direct
   * descriptors only, every buffer inside the cached region (writable ones in a writable region),
   * readable before writable, at most maxDirect descriptors, within the batch room, 2^32 bytes, an
   * id below the queue size and not in flight, no more than `size` descriptors in flight.
   *
   * Ordering: first the flags words of the available run are scanned with plain loads (up to the
   * batch's chain and segment room), then ONE `Atomics.load` (when the ring is shared) reads the
   * flags of the last available head — the driver exposes heads in ring order, each after its list —
   * and only then are descriptor bodies read, never beyond the scanned run.
   *
   * Stops without consuming at the first buffer it does not take: fs[FS_STOP] = STOP_EMPTY when
   * nothing more is available, STOP_SLOW when {@link walk} must decide (pop, defer or report).
   * No calls inside the loop.
   * @returns chains in the batch so far
   */
  private popFast(batch: ChainBatch): number {
    const fs = this.fs;
    const size = fs[FS_SIZE]!;
    const maxDirect = fs[FS_MAXDIRECT]!;
    const m = fs[FS_MAX]!;
    const ri = fs[FS_REGION]!;
    let off = fs[FS_OFF]!;
    let n = fs[FS_N]!;
    let s = fs[FS_SEG]!;
    let dif = fs[FS_DIF]!;
    // (flags & 0x8080) of an available descriptor: AVAIL = wrap, USED = !wrap.
    let av = fs[FS_WRAP] !== 0 ? F_AVAIL : F_USED;
    const d32 = this.desc32;
    // Scan: consecutive available slots, at most the segment room (and the ring), stopping before
    // the head of chain m (prevNext: the previous slot continues a list).
    let room = fs[FS_SEGCAP]! - s;
    if (room > size) room = size;
    let o = off;
    let a = av;
    let k = 0;
    let heads = n;
    let lastHead = -1;
    let prevNext = 0;
    while (k < room) {
      const fl = d32[(o << 2) | 3]! >>> 16;
      if ((fl & AVAIL_USED) !== a) break;
      if (prevNext === 0) {
        if (heads === m) break;
        heads++;
        lastHead = o;
      }
      prevNext = fl & F_NEXT;
      k++;
      o++;
      if (o === size) {
        o = 0;
        a ^= AVAIL_USED;
      }
    }
    if (lastHead < 0) {
      fs[FS_STOP] = STOP_EMPTY;
      return n;
    }
    // basic.packed-vq.vq-desc-table.device.2: acquire before reading descriptor bodies.
    if (fs[FS_ATOMIC] !== 0) Atomics.load(this.desc16, (lastHead << 3) | 7);
    const sEnd = s + k;
    const rgc = this.rgc;
    const rgBase = rgc[0]!;
    const rgEnd = rgc[1]!;
    const rgOff = rgc[2]!;
    const rgWritable = rgc[3]!;
    const idDescs = this.idDescs;
    const bHead = batch.head;
    const bChain = batch.chain;
    const bBytes = batch.bytes;
    const bSeg = batch.seg;
    const bPos = batch.pos;
    let stop = STOP_SLOW;
    chains: while (n < m) {
      const b0 = off << 2;
      const word0 = d32[b0 | 3]!;
      const fl0 = word0 >>> 16;
      if ((fl0 & AVAIL_USED) !== av) {
        stop = STOP_EMPTY;
        break;
      }
      if (s === sEnd) break;
      if ((fl0 & (F_NEXT | F_INDIRECT)) === 0) {
        // One descriptor: straight-line code (the common single-buffer request).
        const lo = d32[b0]!;
        const hi = d32[b0 | 1]!;
        const len = d32[b0 | 2]!;
        const addr = hi * TWO_POW_32 + lo;
        if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break;
        const id = word0 & 0xffff;
        if (id >= size || idDescs[id] !== 0 || dif >= size) break;
        const c = n << 2;
        const nb = n << 1;
        if ((fl0 & F_WRITE) !== 0) {
          if (rgWritable === 0) break;
          bChain[c | 2] = 0;
          bBytes[nb] = 0;
          bBytes[nb | 1] = len;
        } else {
          bChain[c | 2] = 1;
          bBytes[nb] = len;
          bBytes[nb | 1] = 0;
        }
        const q = s << 1;
        bSeg[q] = ri;
        bSeg[q | 1] = len;
        bPos[q] = rgOff + (addr - rgBase);
        bPos[q | 1] = addr;
        bHead[n] = id;
        bChain[c] = s;
        bChain[c | 1] = 1;
        bChain[c | 3] = 1;
        idDescs[id] = 1;
        dif = (dif + 1) | 0;
        s = (s + 1) | 0;
        n = (n + 1) | 0;
        off = (off + 1) | 0;
        if (off === size) {
          off = 0;
          av ^= AVAIL_USED;
        }
        continue;
      }
      // A NEXT-linked list of direct descriptors.
      let o2 = off;
      let a2 = av;
      let word = word0;
      let fl = fl0;
      let count = 0;
      let readable = 0;
      let rBytes = 0;
      let wBytes = 0;
      for (;;) {
        if ((fl & F_INDIRECT) !== 0) break chains;
        const b = o2 << 2;
        const lo = d32[b]!;
        const hi = d32[b | 1]!;
        const len = d32[b | 2]!;
        const addr = hi * TWO_POW_32 + lo;
        if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
        if ((fl & F_WRITE) !== 0) {
          if (rgWritable === 0) break chains;
          wBytes += len;
        } else {
          if (count !== readable) break chains;
          readable++;
          rBytes += len;
        }
        const q = (s + count) << 1;
        bSeg[q] = ri;
        bSeg[q | 1] = len;
        bPos[q] = rgOff + (addr - rgBase);
        bPos[q | 1] = addr;
        count++;
        o2++;
        if (o2 === size) {
          o2 = 0;
          a2 ^= AVAIL_USED;
        }
        if ((fl & F_NEXT) === 0) break;
        // Limits first (walk decides: defer or report), then availability of the rest.
        if (count === maxDirect || s + count === sEnd) break chains;
        word = d32[(o2 << 2) | 3]!;
        fl = word >>> 16;
        if ((fl & AVAIL_USED) !== a2) {
          stop = STOP_EMPTY; // the rest of the list is not available yet
          break chains;
        }
      }
      const id = word & 0xffff;
      if (rBytes + wBytes > TWO_POW_32 || id >= size || idDescs[id] !== 0 || dif + count > size) break;
      bHead[n] = id;
      const c = n << 2;
      bChain[c] = s;
      bChain[c | 1] = count;
      bChain[c | 2] = readable;
      bChain[c | 3] = count;
      bBytes[n << 1] = rBytes;
      bBytes[(n << 1) | 1] = wBytes;
      idDescs[id] = count;
      dif = (dif + count) | 0;
      s = (s + count) | 0;
      n = (n + 1) | 0;
      off = o2;
      av = a2;
    }
    fs[FS_STOP] = n === m ? STOP_EMPTY : stop;
    fs[FS_OFF] = off;
    fs[FS_WRAP] = av === F_AVAIL ? 1 : 0;
    fs[FS_SEG] = s;
    fs[FS_DIF] = dif;
    return n;
  }

  /** A DescChain for popBatch's complete walker (allocated on first use, maxSeg segments). */
  private scratchChain(): DescChain {
    let sc = this.scratch;
    if (sc === undefined) {
      sc = new DescChain(this.maxSeg);
      this.scratch = sc;
    }
    return sc;
  }
  /** The list's last (and only) descriptor refers to an indirect table; at most `limit` segments fit in `chain`. */
  private popIndirect(chain: DescChain, limit: number, flags: number, lo: number, hi: number, len: number, id: number, descs: number, off: number, wrap: number): boolean {
    if (!this.indirectOk) {
      // basic.packed-vq.indirect-desc.driver.1
      return this.fail('INDIRECT_NOT_NEGOTIATED', 'basic.packed-vq.indirect-desc.driver.1', `descriptor at offset ${off} has INDIRECT set but VIRTIO_F_INDIRECT_DESC was not negotiated`);
    }
    if ((flags & VIRTQ_DESC_F_NEXT) !== 0 || descs !== 1) {
      // basic.packed-vq.indirect-desc.driver.4: no INDIRECT descriptor inside a NEXT-linked list.
      return this.fail('INDIRECT_WITH_NEXT', 'basic.packed-vq.indirect-desc.driver.4', `descriptor at offset ${off} has INDIRECT set inside a NEXT-linked list (list position ${descs}, flags 0x${flags.toString(16)})`);
    }
    const space = this.space;
    let maxSeg = this.maxSeg;
    const cRegion = chain.region;
    if (limit < maxSeg) maxSeg = limit;
    if (len === 0 || len % 16 !== 0) {
      return this.fail('INDIRECT_BAD_LENGTH', undefined, `indirect table at offset ${off} has length ${len}; it must be a non-zero multiple of 16`);
    }
    const n = len / 16;
    if (n > maxSeg) {
      // basic.packed-vq.indirect-desc.driver.3
      return this.fail('INDIRECT_BAD_LENGTH', 'basic.packed-vq.indirect-desc.driver.3', `indirect table at offset ${off} has ${n} entries; the device accepts at most ${maxSeg}`);
    }
    // The table itself is read by the device (its WRITE flag is reserved and ignored).
    const tr = space.resolveHiLo(lo, hi, len, false);
    if (tr < 0) return this.failAddress(tr, lo, hi, len, false, off);
    const dv = space.regions[tr]!.dv;
    let t = space.off;
    const cOff = chain.offset;
    const cAddr = chain.addr;
    const cLen = chain.len;
    let readable = 0;
    let rBytes = 0;
    let wBytes = 0;
    for (let i = 0; i < n; i++, t += 16) {
      const ef = dv.getUint16(t + 14, true);
      if ((ef & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // basic.packed-vq.indirect-desc.driver.2: only WRITE is valid in an indirect table. A nested
        // table is refused (it would change the meaning of the buffer); NEXT, AVAIL, USED and the
        // other reserved bits and the buffer id are ignored, as packed-ring.tex says for the device.
        return this.fail('NESTED_INDIRECT', 'basic.packed-vq.indirect-desc.driver.2', `indirect table entry ${i} (table at offset ${off}) has INDIRECT set`);
      }
      const write = (ef & VIRTQ_DESC_F_WRITE) !== 0;
      if (!write && readable !== i) {
        return this.fail('READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', `indirect table entry ${i} (table at offset ${off}) is device-readable but follows a device-writable one`);
      }
      const elo = dv.getUint32(t, true);
      const ehi = dv.getUint32(t + 4, true);
      const elen = dv.getUint32(t + 8, true);
      const r = space.resolveHiLo(elo, ehi, elen, write);
      if (r < 0) return this.failAddress(r, elo, ehi, elen, write, off);
      cRegion[i] = r;
      cOff[i] = space.off;
      cAddr[i] = ehi * TWO_POW_32 + elo;
      cLen[i] = elen;
      if (write) {
        wBytes += elen;
      } else {
        rBytes += elen;
        readable++;
      }
    }
    if (rBytes + wBytes > TWO_POW_32) {
      return this.fail('CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `indirect buffer at offset ${off} totals ${rBytes + wBytes} bytes (more than 2^32)`);
    }
    off++;
    if (off === this.size) {
      off = 0;
      wrap ^= 1;
    }
    return this.commit(chain, id, 1, off, wrap, n, readable, rBytes, wBytes);
  }

  /** Check the buffer id and in-flight bounds, then consume the buffer. */
  private commit(chain: DescChain, id: number, descs: number, off: number, wrap: number, count: number, readable: number, rBytes: number, wBytes: number): boolean {
    const size = this.size;
    if (id >= size) {
      return this.fail('PACKED_BAD_ID', undefined, `buffer at offset ${this.availOff} has id ${id}, not below the queue size ${size}`);
    }
    const idDescs = this.idDescs;
    if (idDescs[id] !== 0) {
      return this.fail('HEAD_IN_FLIGHT', undefined, `buffer at offset ${this.availOff} reuses id ${id}, which is still in flight`);
    }
    if (this.descsInFlight + descs > size) {
      // basic.packed-vq.vq-desc-table.driver.1: the driver re-offered slots the device has not used yet.
      return this.fail('HEAD_IN_FLIGHT', 'basic.packed-vq.vq-desc-table.driver.1', `buffer at offset ${this.availOff} would put ${this.descsInFlight + descs} descriptors in flight, more than the queue size ${size}`);
    }
    idDescs[id] = descs;
    if (this.inOrder) {
      this.idWritable[id] = wBytes;
      this.idSeq[id] = this.popSeq++;
    }
    this.nInFlight++;
    this.descsInFlight += descs;
    this.availOff = off;
    this.availWrap = wrap;
    chain.head = id;
    chain.count = count;
    chain.readable = readable;
    chain.readableBytes = rBytes;
    chain.writableBytes = wBytes;
    chain.descCount = descs;
    return true;
  }

  /**
   * Return buffer `id` with `len` bytes written. Writes the used descriptor at the used position
   * (id and len first, then the flags word with AVAIL = USED = used wrap counter, and WRITE when
   * len > 0), then skips the slots the buffer occupied. basic.packed-vq.vq.device.2: call in
   * completion order. An id that is not in flight goes to the sink (USED_BAD_ID) and parks the queue.
   */
  /**
   * IN_ORDER: the device must use buffers in the order they were made available
   * (reserved.reserved-feature-bits.device.5). Reports USED_BAD_ID and returns true when `id` is
   * not the oldest buffer in flight (the completion is then ignored, as on split rings).
   */
  private outOfOrder(id: number, what: string): boolean {
    if (!this.inOrder || this.idSeq[id] === this.doneSeq) return false;
    this.reportOnly('USED_BAD_ID', 'reserved.reserved-feature-bits.device.5', `${what} id ${id} ignored: VIRTIO_F_IN_ORDER requires completing the oldest buffer in flight first`);
    return true;
  }

  pushUsed(id: number, len: number): void {
    if (this.visiting) this.reentrant('pushUsed');
    const size = this.size;
    const idDescs = this.idDescs;
    const n = id >= 0 && id < size && (id | 0) === id ? idDescs[id]! : 0;
    if (n === 0) {
      this.fail('USED_BAD_ID', undefined, `device returned id ${id}, which is not in flight`);
      return;
    }
    if (this.outOfOrder(id, 'pushUsed')) return;
    const d16 = this.desc16;
    let uo = this.usedOff;
    let uw = this.usedWrap;
    this.desc32[uo * 4 + 2] = len;
    d16[uo * 8 + 6] = id;
    // basic.packed-vq.vq-desc-table.device.3: the flags store publishes the descriptor; nothing after it.
    const f = (uw !== 0 ? USED_AND_AVAIL : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0);
    if (this.atomic) Atomics.store(d16, uo * 8 + 7, f);
    else d16[uo * 8 + 7] = f;
    uo += n;
    if (uo >= size) {
      uo -= size;
      uw ^= 1;
    }
    this.usedOff = uo;
    this.usedWrap = uw;
    idDescs[id] = 0;
    this.descsInFlight -= n;
    this.sinceSignal += n;
    this.nInFlight--;
    if (this.inOrder) {
      if (this.idSeq[id] === this.doneSeq) this.doneSeq++;
      if (this.nInFlight === 0) this.doneSeq = this.popSeq;
    }
  }

  /**
   * Return `n` buffers at once. All ids are checked first (all or nothing). The used descriptors are
   * written in order, the first one's flags word last, so the driver sees the whole batch at once
   * (packed-ring.tex "Multi-buffer requests": a device may publish several used descriptors by
   * marking the first one used after the rest). With IN_ORDER, see the module comment.
   */
  pushUsedBatch(heads: ArrayLike<number>, lens: ArrayLike<number>, n: number): void {
    if (this.visiting) this.reentrant('pushUsedBatch');
    if (n <= 0) return;
    if (n === 1) {
      this.pushUsed(heads[0]!, lens[0]!);
      return;
    }
    if (this.fastOk) {
      const fs = this.fs;
      fs[FS_USED_OFF] = this.usedOff;
      fs[FS_USED_WRAP] = this.usedWrap;
      fs[FS_N] = n;
      const crossed = this.pushFast(heads, lens);
      if (crossed > 0) {
        this.usedOff = fs[FS_USED_OFF]!;
        this.usedWrap = fs[FS_USED_WRAP]!;
        this.descsInFlight -= crossed;
        this.sinceSignal += crossed;
        this.nInFlight -= n;
        return;
      }
      // Some id is not in flight (or repeats): the complete code below reports it.
    }
    const size = this.size;
    const idDescs = this.idDescs;
    for (let k = 0; k < n; k++) {
      const id = heads[k]!;
      const v = id >= 0 && id < size && (id | 0) === id ? idDescs[id]! : 0;
      if (v === 0 || v >= BATCH_MARK) {
        for (let j = 0; j < k; j++) idDescs[heads[j]!]! &= ~BATCH_MARK;
        this.fail('USED_BAD_ID', undefined, `device returned id ${id} (batch entry ${k}), which is not in flight${v >= BATCH_MARK ? ' (duplicate in batch)' : ''}`);
        return;
      }
      idDescs[id] = v | BATCH_MARK;
    }
    if (this.inOrder) {
      for (let k = 0; k < n; k++) {
        if (this.idSeq[heads[k]!] !== this.doneSeq + k) {
          for (let j = 0; j < n; j++) idDescs[heads[j]!]! &= ~BATCH_MARK;
          this.reportOnly('USED_BAD_ID', 'reserved.reserved-feature-bits.device.5', `pushUsedBatch ignored: entry ${k} (id ${heads[k]!}) is not the next oldest buffer in flight; VIRTIO_F_IN_ORDER requires the oldest buffers, in pop order`);
          return;
        }
      }
    }
    const d16 = this.desc16;
    const d32 = this.desc32;
    let uo = this.usedOff;
    let uw = this.usedWrap;
    let crossed = 0;
    if (this.inOrder && this.canCoalesce(heads, lens, n)) {
      // One used descriptor for the batch: id of the last buffer, written at the first one's slot.
      const last = heads[n - 1]!;
      const len = lens[n - 1]!;
      for (let k = 0; k < n; k++) {
        const id = heads[k]!;
        crossed += idDescs[id]! & ~BATCH_MARK;
        idDescs[id] = 0;
      }
      d32[uo * 4 + 2] = len;
      d16[uo * 8 + 6] = last;
      const f = (uw !== 0 ? USED_AND_AVAIL : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0);
      if (this.atomic) Atomics.store(d16, uo * 8 + 7, f);
      else d16[uo * 8 + 7] = f;
      this.doneSeq += n;
      uo += crossed;
      while (uo >= size) {
        uo -= size;
        uw ^= 1;
      }
    } else {
      const firstSlot = uo;
      let firstFlags = 0;
      for (let k = 0; k < n; k++) {
        const id = heads[k]!;
        const len = lens[k]!;
        d32[uo * 4 + 2] = len;
        d16[uo * 8 + 6] = id;
        const f = (uw !== 0 ? USED_AND_AVAIL : 0) | (len > 0 ? VIRTQ_DESC_F_WRITE : 0);
        if (k === 0) firstFlags = f;
        else d16[uo * 8 + 7] = f; // ordered by the first descriptor's release below
        const dn = idDescs[id]! & ~BATCH_MARK;
        crossed += dn;
        uo += dn;
        if (uo >= size) {
          uo -= size;
          uw ^= 1;
        }
        idDescs[id] = 0;
        if (this.inOrder && this.idSeq[id] === this.doneSeq) this.doneSeq++;
      }
      if (this.atomic) Atomics.store(d16, firstSlot * 8 + 7, firstFlags);
      else d16[firstSlot * 8 + 7] = firstFlags;
    }
    this.usedOff = uo;
    this.usedWrap = uw;
    this.descsInFlight -= crossed;
    this.sinceSignal += crossed;
    this.nInFlight -= n;
    if (this.nInFlight === 0) this.doneSeq = this.popSeq;
  }

  /**
   * {@link pushUsedBatch} without IN_ORDER, for `fs[FS_N]` (≥ 2) entries: checks every id (in flight,
   * not repeated) first, then writes the used descriptors in order with the first one's flags last
   * (one `Atomics.store` when the ring is shared). No calls inside the loops.
   * @returns the ring slots passed, or 0 (nothing written) when some id is invalid
   */
  private pushFast(heads: ArrayLike<number>, lens: ArrayLike<number>): number {
    const fs = this.fs;
    const n = fs[FS_N]!;
    const size = fs[FS_SIZE]!;
    const idDescs = this.idDescs;
    let k = 0;
    for (; k < n; k++) {
      const id = heads[k]!;
      const v = idDescs[id]!;
      // (undefined for an id that is not an index below the queue size)
      if (!(v > 0 && v < BATCH_MARK)) break;
      idDescs[id] = v | BATCH_MARK;
    }
    if (k < n) {
      for (let j = 0; j < k; j++) idDescs[heads[j]!] = idDescs[heads[j]!]! & ~BATCH_MARK;
      return 0;
    }
    const d32 = this.desc32;
    let uo = fs[FS_USED_OFF]!;
    // (flags & 0x8080) of a used descriptor: AVAIL = USED = used wrap counter.
    let ub = fs[FS_USED_WRAP] !== 0 ? AVAIL_USED : 0;
    const first = uo;
    const id0 = heads[0]!;
    const len0 = lens[0]!;
    d32[(uo << 2) | 2] = len0;
    this.desc16[(uo << 3) | 6] = id0;
    const f0 = ub | (len0 > 0 ? F_WRITE : 0);
    let crossed = idDescs[id0]! & 0xffff;
    idDescs[id0] = 0;
    uo += crossed;
    if (uo >= size) {
      uo -= size;
      ub ^= AVAIL_USED;
    }
    for (k = 1; k < n; k++) {
      const id = heads[k]!;
      const len = lens[k]!;
      const b = uo << 2;
      d32[b | 2] = len;
      // id and flags in one store; ordered by the first descriptor's release below
      d32[b | 3] = id | ((ub | (len > 0 ? F_WRITE : 0)) << 16);
      const dn = idDescs[id]! & 0xffff;
      idDescs[id] = 0;
      crossed += dn;
      uo += dn;
      if (uo >= size) {
        uo -= size;
        ub ^= AVAIL_USED;
      }
    }
    // basic.packed-vq.vq-desc-table.device.3: the first descriptor's flags publish the batch.
    if (fs[FS_ATOMIC] !== 0) Atomics.store(this.desc16, (first << 3) | 7, f0);
    else this.desc16[(first << 3) | 7] = f0;
    fs[FS_USED_OFF] = uo;
    fs[FS_USED_WRAP] = ub !== 0 ? 1 : 0;
    return crossed;
  }

  /** In-order batch: the oldest buffers, consecutive in pop order, all but the last fully used. */
  private canCoalesce(heads: ArrayLike<number>, lens: ArrayLike<number>, n: number): boolean {
    const seq = this.idSeq;
    const base = this.doneSeq;
    for (let k = 0; k < n; k++) {
      const id = heads[k]!;
      if (seq[id] !== base + k) return false;
      if (k < n - 1 && lens[k] !== this.idWritable[id]) return false;
    }
    return true;
  }

  /**
   * Should the device send a used-buffer notification for what it pushed since the last call?
   * Reads the DRIVER event suppression area: DISABLE → no; DESC (with VIRTIO_F_RING_EVENT_IDX) → yes
   * when the used position passed desc_event_off/wrap; ENABLE → yes. DESC without EVENT_IDX and the
   * reserved value 3 are treated as ENABLE (a spurious notification is harmless; a lost one hangs).
   */
  needsInterrupt(): boolean {
    const crossed = this.sinceSignal;
    if (crossed === 0) return false;
    const now = this.usedOff | (this.usedWrap << 15);
    const old = this.signalPos;
    this.sinceSignal = 0;
    this.signalPos = now;
    const ev = this.drvEvent;
    const flags = Atomics.load(ev, 1) & 3;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags !== RING_EVENT_FLAGS_DESC || !this.eventIdx) return true;
    if (crossed >= this.size) return true;
    return packedNeedEvent(Atomics.load(ev, 0), now, old, this.size);
  }

  /**
   * Ask the driver for available-buffer notifications (device event suppression area: ENABLE, or
   * DESC at the next avail position with EVENT_IDX). Returns true when a buffer is already available
   * (process it: its notification may have been suppressed).
   */
  enableNotifications(): boolean {
    const ev = this.devEvent;
    if (this.eventIdx) {
      ev[0] = this.availOff | (this.availWrap << 15);
      Atomics.store(ev, 1, RING_EVENT_FLAGS_DESC);
    } else {
      Atomics.store(ev, 1, RING_EVENT_FLAGS_ENABLE);
    }
    return this.hasAvailable();
  }

  /** Ask the driver not to notify (device event suppression area: DISABLE). */
  disableNotifications(): void {
    Atomics.store(this.devEvent, 1, RING_EVENT_FLAGS_DISABLE);
  }

  /** True when the descriptor at the avail position is available (not validated). */
  hasAvailable(): boolean {
    if (this.isParked) return false;
    const i = this.availOff * 8 + 7;
    const flags = this.atomic ? Atomics.load(this.desc16, i) : this.desc16[i]!;
    return ((flags >>> 7) & 1) === this.availWrap && flags >>> 15 !== this.availWrap;
  }

  /** Back to the initial state (offsets 0, wrap counters 1, nothing in flight, not parked). */
  reset(): void {
    this.availOff = 0;
    this.availWrap = 1;
    this.usedOff = 0;
    this.usedWrap = 1;
    this.idDescs.fill(0);
    this.popSeq = 0;
    this.doneSeq = 0;
    this.nInFlight = 0;
    this.descsInFlight = 0;
    this.sinceSignal = 0;
    this.signalPos = 1 << 15;
    this.isParked = false;
    this.lastRegion = 0;
  }

  /** Low 16 bits: avail offset | avail wrap << 15; high 16 bits: used offset | used wrap << 15. */
  getBase(): number {
    return ((this.availOff | (this.availWrap << 15)) | ((this.usedOff | (this.usedWrap << 15)) << 16)) >>> 0;
  }

  /**
   * Restore positions from {@link getBase}'s format (vhost-user SET_VRING_BASE). Forgets in-flight
   * buffers. Offsets at or above the queue size are refused by parking the queue with an error.
   */
  setBase(base: number): void {
    const a = base & 0x7fff;
    const u = (base >>> 16) & 0x7fff;
    if (a >= this.size || u >= this.size) {
      this.fail('INVALID_ARGUMENT', undefined, `ring base 0x${(base >>> 0).toString(16)} has offsets avail ${a} / used ${u}, not below the queue size ${this.size}`);
      return;
    }
    this.reset();
    this.availOff = a;
    this.availWrap = (base >>> 15) & 1;
    this.usedOff = u;
    this.usedWrap = (base >>> 31) & 1;
    this.signalPos = this.usedOff | (this.usedWrap << 15);
  }

  private failAddress(r: number, lo: number, hi: number, len: number, write: boolean, off: number): false {
    const addr = hi * TWO_POW_32 + lo;
    return this.fail(resolveErrorCode(r), undefined, `descriptor at offset ${off}: ${write ? 'writable' : 'readable'} buffer [0x${addr.toString(16)}, +${len}) is not inside the device's address space ${this.space.name} (${this.space.describe()})`);
  }

  /** Report a guest error, park the queue. Cold path. */
  /** Report a device-model error to the sink without parking (the call is ignored). */
  private reportOnly(code: VirtioErrorCode, clause: string | undefined, message: string): void {
    try {
      this.sink.guestError({ code, clause, message: `packed queue ${this.index}: ${message}`, queue: this.index });
    } catch (e) {
      log('guest error sink threw: %O', e);
    }
  }

  private fail(code: VirtioErrorCode, clause: string | undefined, message: string): false {
    this.isParked = true;
    const msg = `packed queue ${this.index}: ${message}`;
    log('%s: %s', code, msg);
    try {
      this.sink.guestError({ code, clause, message: msg, queue: this.index });
    } catch (e) {
      log('guest error sink threw: %O', e);
    }
    return false;
  }
}

/**
 * Build a packed device queue after validating its configuration: size 1..min(maxSize, 32768)
 * (not necessarily a power of 2), descriptor ring 16-aligned, event suppression areas 4-aligned,
 * each area inside one region of `space`, the device area writable. On a violation the error goes
 * to `sink` and null is returned.
 */
export const createPackedDeviceQueue: DeviceQueueFactory = (space, cfg, sink) => {
  const v = resolvePackedRings(space, cfg, 'device');
  if (isPackedSetupError(v)) {
    try {
      sink.guestError({ code: v.code, clause: v.clause, message: v.message, queue: cfg.index });
    } catch (e) {
      log('guest error sink threw: %O', e);
    }
    return null;
  }
  return new PackedDeviceQueue(space, cfg, sink, v);
};
