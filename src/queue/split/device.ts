/**
 * Split virtqueue, device side: pops and validates descriptor chains, returns used buffers,
 * decides notifications.
 *
 * Validation is eager and complete per chain (every check carries its clause id). Any guest error
 * goes to the {@link GuestErrorSink} once, the queue parks, and every later {@link pop} returns
 * false without touching guest memory until {@link SplitDeviceQueue.reset}. Nothing throws and
 * nothing loops beyond the queue size.
 *
 * Decisions worth knowing:
 * - Zero-length descriptors: no normative clause forbids them in a split ring (QEMU rejects them,
 *   crosvm skips them). We accept and skip them: they count against the walk limit but are not
 *   recorded as segments, their address is not resolved, and their WRITE flag does not take part
 *   in the readable-before-writable check.
 * - Chains with more segments than `min(chain.capacity, cfg.maxChainSegments ?? size)` are refused
 *   with CHAIN_LOOP (basic.split-vq.message-framing.device.2: the device MAY limit the chain).
 * - Indirect tables hold at most `cfg.maxChainSegments ?? size` entries (INDIRECT_BAD_LENGTH
 *   otherwise) and need no particular alignment; they are read through the region's DataView.
 * - IN_ORDER (reserved.reserved-feature-bits.device.5): with it negotiated, {@link pushUsed} and
 *   {@link pushUsedBatch} must complete the oldest chain first (USED_BAD_ID otherwise), and
 *   {@link SplitDeviceQueue.pushUsedInOrder} completes the `n` oldest chains with ONE used element
 *   (id of the last chain, its len) and advances used idx by `n` — the spec's batched form. Drivers
 *   then assume the earlier chains were fully written, so use it only where that is true.
 * - Code shape (perf-limits.md §6; measured with callgrind): {@link SplitDeviceQueue.popBatch}
 *   fills a flat {@link ChainBatch}. Each entry point has a fast path with no calls inside its loop
 *   and its scalars read from typed arrays (V8 then keeps them untagged), which takes regular
 *   chains only — direct descriptors, buffers in the cached region, nothing to report — and stops,
 *   consuming nothing, at anything else; the complete walker (popSlow / retire) then re-walks that
 *   chain with every check and reports. So no check is skipped: the fast path only decides which
 *   chains need no report, and the test suites run on every path (test/queue/split/via-*.test.ts,
 *   plus a differential property test of fast against complete).
 * - Ordering: used elements are written before used idx, which is published with `Atomics.store`
 *   once per call (per batch for {@link pushUsedBatch}); avail idx is read with `Atomics.load`.
 *   Atomics work on non-shared buffers too, so the same code serves a SharedArrayBuffer, a memfd
 *   mapping shared with another process, or a plain ArrayBuffer.
 */
import { fixedF64, fixedI32, fixedU16, fixedU8 } from '../fixed-arrays.js';
import type { AddressSpace } from '../../memory/space.js';
import { resolveErrorCode } from '../../memory/space.js';
import type { GuestErrorSink } from '../../device/choke.js';
import type { VirtioErrorCode } from '../../errors.js';
import { logger } from '../../log.js';
import { VirtioError } from '../../errors.js';
import {
  ChainBatch,
  type ChainVisitor,
  DescChain,
  type DeviceQueue,
  type DeviceQueueFactory,
  type QueueConfig,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../types.js';
import { vringNeedEvent } from '../event-idx.js';
import { specialize } from '../specialize.js';
import { isSplitSetupError, resolveSplitRings, type SplitRingViews, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from './layout.js';

// Module-local copies of the flag bits: V8 folds these into the fast loops (imported bindings are
// re-loaded and hole-checked on every use).
const F_INDIRECT = VIRTQ_DESC_F_INDIRECT;
const F_NEXT = VIRTQ_DESC_F_NEXT;
const F_WRITE = VIRTQ_DESC_F_WRITE;

const log = logger('queue');

/** 2^32: chain byte-length limit (basic.split-vq.vq-desc-table.driver.1). */
const MAX_CHAIN_BYTES = 4294967296;
const TWO32 = 4294967296;
/** Slots of SplitDeviceQueue.fs (popFast's scalar inputs and outputs). */
const FS_SIZE = 0;
const FS_MASK = 1;
const FS_LAST = 2;
const FS_AVAIL = 3;
const FS_SEG = 4;
const FS_REGION = 5;
const FS_SEGCAP = 6;
const FS_CAPALL = 7;
const FS_MAX = 8;
const FS_N = 9;
const FS_USED = 10;
const FS_SLOTS = 11;

/**
 * Create a split device queue, validating the configuration (size, alignment, rings inside one
 * region each, used ring writable). On a bad configuration the error goes to `sink` and the
 * result is null.
 */
export const createSplitDeviceQueue: DeviceQueueFactory = (space, cfg, sink) => {
  const v = resolveSplitRings(space, cfg);
  if (isSplitSetupError(v)) {
    report(sink, v.code, v.clause, `queue ${cfg.index}: ${v.message}`, cfg.index);
    return null;
  }
  return new SplitDeviceQueue(space, cfg, sink, v);
};

function report(sink: GuestErrorSink, code: VirtioErrorCode, clause: string | undefined, message: string, queue: number): void {
  try {
    sink.guestError({ code, clause, message, queue });
  } catch (e) {
    log('guest error sink threw: %O', e);
  }
}

/** Device side of a split virtqueue. Create with {@link createSplitDeviceQueue}. */
export class SplitDeviceQueue implements DeviceQueue {
  readonly kind = 'split' as const;
  readonly index: number;
  readonly size: number;

  private readonly space: AddressSpace;
  private readonly sink: GuestErrorSink;
  private readonly mask: number;
  private readonly eventIdx: boolean;
  private readonly indirectOk: boolean;
  private readonly inOrder: boolean;
  /** Most segments per chain / entries per indirect table. */
  private readonly maxSeg: number;
  private readonly desc: Uint32Array;
  private readonly avail: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly used16: Uint16Array;
  /** avail ring index of used_event. */
  private readonly usedEventAt: number;
  /** used16 index of avail_event. */
  private readonly availEventAt: number;
  /** 1 for each head popped and not yet pushed used. */
  private readonly inFlightMap: Uint8Array;
  /** IN_ORDER: heads in pop order (ring of `size`). */
  private readonly order: Uint16Array;

  /** Next avail ring index to pop (16 bits). */
  private lastAvail = 0;
  /** Driver's avail idx as last read and validated. */
  private cachedAvail = 0;
  /** Next used ring index (16 bits), the value published in used idx. */
  private usedIdx = 0;
  /** used idx at the last needsInterrupt(). */
  private signalledUsed = 0;
  private inFlightCount = 0;
  private orderHead = 0;
  private isParked = false;
  /** Index of the region the last buffer resolved into (fast-path cache). */
  private lastRegion = 0;
  /** Per-chain results of {@link pop} (segments go straight into the caller's DescChain). */
  private one = new ChainBatch(1, 0);
  /** The chain {@link popEach} hands to visitors (capacity: the device's segment limit). */
  private readonly cur: DescChain;
  /** True while a popEach visitor runs (re-entrant completion calls throw). */
  private visiting = false;

  /** Use {@link createSplitDeviceQueue}; `views` come from resolveSplitRings. */
  constructor(space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink, views: SplitRingViews) {
    this.space = space;
    this.sink = sink;
    this.index = cfg.index;
    this.size = cfg.size;
    this.mask = cfg.size - 1;
    this.eventIdx = cfg.eventIdx;
    this.indirectOk = cfg.indirect;
    this.inOrder = cfg.inOrder;
    this.maxSeg = cfg.maxChainSegments !== undefined && cfg.maxChainSegments > 0 ? cfg.maxChainSegments : cfg.size;
    this.desc = views.desc;
    this.avail = views.avail;
    this.used32 = views.used32;
    this.used16 = views.used16;
    this.usedEventAt = 2 + cfg.size;
    this.availEventAt = 2 + 4 * cfg.size;
    this.inFlightMap = fixedU8(cfg.size);
    this.order = fixedU16(cfg.inOrder ? cfg.size : 0);
    this.fastOk = !cfg.inOrder;
    this.cur = new DescChain(this.maxSeg);
    this.fs[FS_SIZE] = cfg.size;
    this.fs[FS_MASK] = cfg.size - 1;
  }

  get parked(): boolean {
    return this.isParked;
  }

  park(): void {
    this.isParked = true;
  }
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Report a guest error, park, return false. */
  private fail(code: VirtioErrorCode, clause: string | undefined, message: string): false {
    this.isParked = true;
    report(this.sink, code, clause, `queue ${this.index}: ${message}`, this.index);
    return false;
  }

  private failResolve(r: number, what: string, lo: number, hi: number, len: number, write: boolean): false {
    const code = resolveErrorCode(r);
    const addr = `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`;
    const why = code === 'ADDRESS_OVERFLOW' ? 'overflows' : code === 'ADDRESS_READ_ONLY' ? 'is writable but lies in a read-only region of' : 'is not inside';
    return this.fail(code, 'basic.split-vq.vq-desc-table.device.1', `${what} [${addr}, +${len}) ${write ? '(device-writable) ' : ''}${why} ${this.space.name} (${this.space.describe()})`);
  }

  pop(chain: DescChain): boolean {
    if (this.visiting) this.reentrant('pop');
    if (this.isParked) return false;
    if (this.lastAvail === this.cachedAvail && !this.refreshAvail()) return false;
    if (this.fastOk && this.popOneFast(chain)) return true;
    // Irregular (or invalid) chain: the complete walker, through a one-chain batch.
    const cap = chain.len.length < this.maxSeg ? chain.len.length : this.maxSeg;
    let one = this.one;
    if (one.segCapacity < cap) one = this.one = new ChainBatch(1, cap);
    this.bSeg = 0;
    if (!this.popSlow(one, cap, cap, 0)) return false;
    one.copyChain(0, chain);
    return true;
  }

  /**
   * Read avail idx (when everything seen so far was consumed) and validate it.
   * @returns true when new entries are available; false when none, or after AVAIL_IDX_AHEAD (parked).
   */
  private refreshAvail(): boolean {
    const last = this.lastAvail;
    const a = Atomics.load(this.avail, 1);
    if (a === last) return false;
    const pending = (a - last) & 0xffff;
    if (pending > this.size) {
      // basic.split-vq.vq-available-ring.driver.1 (no way to unexpose; at most size buffers outstanding)
      return this.fail('AVAIL_IDX_AHEAD', 'basic.split-vq.vq-available-ring.driver.1', `avail idx ${a} is ${pending} entries ahead of the next entry ${last} to process, more than the queue size ${this.size}`);
    }
    this.cachedAvail = a;
    return true;
  }

  /**
   * {@link pop}'s fast path: the same acceptance rules as {@link popFast} for one chain, written
   * straight into `chain` (the region read live from the space). Returns false — consuming
   * nothing — for anything it does not take; {@link popSlow} then re-walks with every check.
   */
  private popOneFast(chain: DescChain): boolean {
    const size = this.size;
    const last = this.lastAvail;
    const head = this.avail[2 + (last & this.mask)]!;
    const inFlightMap = this.inFlightMap;
    if (head >= size || inFlightMap[head] !== 0) return false;
    const ri = this.lastRegion;
    const rg = this.space.regions[ri];
    if (rg === undefined) return false;
    const rgBase = rg.base;
    const rgEnd = rgBase + rg.size;
    const rgOff = rg.offset;
    const rgWritable = !rg.readOnly;
    const desc = this.desc;
    const cRegion = chain.region;
    const cOff = chain.offset;
    const cAddr = chain.addr;
    const cLen = chain.len;
    const cap = cLen.length < this.maxSeg ? cLen.length : this.maxSeg;
    let idx = head;
    let walked = 0;
    let count = 0;
    let readable = 0;
    let rBytes = 0;
    let wBytes = 0;
    for (;;) {
      if (walked === size) return false;
      walked++;
      const w = idx << 2;
      const lo = desc[w]!;
      const hi = desc[w | 1]!;
      const len = desc[w | 2]!;
      const fn = desc[w | 3]!;
      if ((fn & F_INDIRECT) !== 0) return false;
      if (len !== 0) {
        if (count === cap) return false;
        const addr = hi * TWO32 + lo;
        if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) return false;
        if ((fn & F_WRITE) !== 0) {
          if (!rgWritable) return false;
          wBytes += len;
        } else {
          if (count !== readable) return false;
          readable++;
          rBytes += len;
        }
        if (rBytes + wBytes > MAX_CHAIN_BYTES) return false;
        cRegion[count] = ri;
        cOff[count] = rgOff + (addr - rgBase);
        cAddr[count] = addr;
        cLen[count] = len;
        count++;
      }
      if ((fn & F_NEXT) === 0) break;
      idx = fn >>> 16;
      if (idx >= size) return false;
    }
    chain.head = head;
    chain.count = count;
    chain.readable = readable;
    chain.readableBytes = rBytes;
    chain.writableBytes = wBytes;
    chain.descCount = walked;
    inFlightMap[head] = 1;
    this.inFlightCount++;
    this.lastAvail = (last + 1) & 0xffff;
    return true;
  }

  /** Throw for a queue call made from inside this queue's own popEach visitor. */
  private reentrant(what: string): never {
    throw new VirtioError('REENTRANT_CALL', `queue ${this.index}: ${what}() called from inside a popEach visitor of the same queue; return the length from visit() instead, or complete the chain after popEach returns`);
  }

  /**
   * Visitor form of popping (see {@link DeviceQueue.popEach}): validate, hand over and complete
   * up to `max` chains in one pass. Regular chains go through {@link visitFast} (one loop, no
   * batch arrays); anything else — a region miss, an indirect table, IN_ORDER, any error — through
   * the complete walker ({@link popSlow}) exactly as {@link pop}. Used idx is published once.
   */
  popEach(visitor: ChainVisitor, max: number): number {
    if (this.visiting) this.reentrant('popEach');
    if (this.isParked) return 0;
    this.visiting = true;
    const u0 = this.usedIdx;
    let n = 0;
    try {
      this.setRegionCache(this.lastRegion);
      while (n < max && !this.isParked) {
        if (this.lastAvail === this.cachedAvail && !this.refreshAvail()) break;
        if (this.fastOk) {
          const fs = this.fs;
          fs[FS_LAST] = this.lastAvail;
          fs[FS_AVAIL] = this.cachedAvail;
          fs[FS_USED] = this.usedIdx;
          fs[FS_MAX] = max;
          fs[FS_N] = n;
          n = (this.visitFastFn ?? this.make_visitFastFn())(visitor);
          if (n === max || this.isParked || this.lastAvail === this.cachedAvail) continue;
        }
        if (!this.visitSlow(visitor)) break;
        n++;
      }
    } catch (e) {
      // A visitor that throws is a device-model bug: the queue state of that pass is lost, so the
      // queue parks through the choke point (the device needs a reset) — nothing is thrown out of
      // the caller's notify handler.
      this.fail('INTERNAL', undefined, `popEach visitor threw: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.visiting = false;
      // basic.split-vq.vq-used-ring.device.1: used elements are written before used idx.
      if (this.usedIdx !== u0) Atomics.store(this.used16, 1, this.usedIdx);
    }
    return n;
  }

  /** visitFast, specialised per queue (see specialize.ts); made on first use. */
  private visitFastFn: ((v: ChainVisitor) => number) | null = null;
  /** Compile (once) this queue's own copy of visitFast (see specialize.ts). */
  private make_visitFastFn(): (v: ChainVisitor) => number {
    return (this.visitFastFn = specialize(SplitDeviceQueue.make_visitFast, { FS_AVAIL, FS_LAST, FS_MASK, FS_MAX, FS_N, FS_SIZE, FS_USED, F_INDIRECT, F_NEXT, F_WRITE, MAX_CHAIN_BYTES, TWO32 }, this));
  }

  /**
   * Factory of popEach's loop for one queue (compiled once per queue by specialize()): walk regular
   * chains of up to three descriptors into {@link cur} (the acceptance rules of {@link popFast}),
   * call the visitor, write the used element or mark the chain in flight. Stops — consuming
   * nothing — at the first chain it does not take. No calls in the loop but the visitor.
   * The returned function gives the chains visited so far in this popEach call.
   */
  private static make_visitFast(q: SplitDeviceQueue): (v: ChainVisitor) => number {
    const fs = q.fs;
    const size = fs[FS_SIZE]!;
    const mask = fs[FS_MASK]!;
    const avail = q.avail;
    const desc = q.desc;
    const used32 = q.used32;
    const inFlightMap = q.inFlightMap;
    const cur = q.cur;
    const cRegion = cur.region;
    const cOff = cur.offset;
    const cAddr = cur.addr;
    const cLen = cur.len;
    const cap = cLen.length;
    const rgc = q.rgc;
    return (v: ChainVisitor): number => {
      const max = fs[FS_MAX]!;
      const availIdx = fs[FS_AVAIL]!;
      let last = fs[FS_LAST]!;
      let u = fs[FS_USED]!;
      let n = fs[FS_N]!;
      const ri = q.lastRegion;
      const rgBase = rgc[0]!;
      const rgEnd = rgc[1]!;
      const rgOff = rgc[2]!;
      const rgWritable = rgc[3]!;
      // Chains of up to three descriptors in straight-line code (a loop nested in the chain loop
      // makes V8 re-check every typed array on each pass); longer ones go to the complete walker.
      let w: number;
      let lo: number;
      let hi: number;
      let len: number;
      let fn: number;
      let addr: number;
      chains: while (n < max && last !== availIdx) {
        const head = avail[2 + (last & mask)]!;
        if (head >= size || inFlightMap[head] !== 0) break;
        let idx = head;
        let walked = 0;
        let count = 0;
        let readable = 0;
        let rBytes = 0;
        let wBytes = 0;
        walk: {
          // Descriptor 0 of the chain.
          if (walked === size) break chains;
          walked++;
          w = idx << 2;
          lo = desc[w]!;
          hi = desc[w | 1]!;
          len = desc[w | 2]!;
          fn = desc[w | 3]!;
          if ((fn & F_INDIRECT) !== 0) break chains;
          if (len !== 0) {
            if (count === cap) break chains;
            addr = hi * TWO32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fn & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            if (rBytes + wBytes > MAX_CHAIN_BYTES) break chains;
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
          }
          if ((fn & F_NEXT) === 0) break walk;
          idx = fn >>> 16;
          if (idx >= size) break chains;
          // Descriptor 1 of the chain.
          if (walked === size) break chains;
          walked++;
          w = idx << 2;
          lo = desc[w]!;
          hi = desc[w | 1]!;
          len = desc[w | 2]!;
          fn = desc[w | 3]!;
          if ((fn & F_INDIRECT) !== 0) break chains;
          if (len !== 0) {
            if (count === cap) break chains;
            addr = hi * TWO32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fn & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            if (rBytes + wBytes > MAX_CHAIN_BYTES) break chains;
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
          }
          if ((fn & F_NEXT) === 0) break walk;
          idx = fn >>> 16;
          if (idx >= size) break chains;
          // Descriptor 2 of the chain.
          if (walked === size) break chains;
          walked++;
          w = idx << 2;
          lo = desc[w]!;
          hi = desc[w | 1]!;
          len = desc[w | 2]!;
          fn = desc[w | 3]!;
          if ((fn & F_INDIRECT) !== 0) break chains;
          if (len !== 0) {
            if (count === cap) break chains;
            addr = hi * TWO32 + lo;
            if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
            if ((fn & F_WRITE) !== 0) {
              if (rgWritable === 0) break chains;
              wBytes += len;
            } else {
              if (count !== readable) break chains;
              readable++;
              rBytes += len;
            }
            if (rBytes + wBytes > MAX_CHAIN_BYTES) break chains;
            cRegion[count] = ri;
            cOff[count] = rgOff + (addr - rgBase);
            cAddr[count] = addr;
            cLen[count] = len;
            count++;
          }
          if ((fn & F_NEXT) !== 0) break chains;
        }
        cur.head = head;
        cur.count = count;
        cur.readable = readable;
        cur.readableBytes = rBytes;
        cur.writableBytes = wBytes;
        cur.descCount = walked;
        last = (last + 1) & 0xffff;
        n++;
        const r = v.visit(cur);
        if (r >= 0) {
          const slot = 1 + ((u & mask) << 1);
          used32[slot] = head;
          used32[slot + 1] = r;
          u = (u + 1) & 0xffff;
        } else {
          inFlightMap[head] = 1;
          q.inFlightCount++;
        }
        if (q.isParked) break;
      }
      q.lastAvail = last;
      q.usedIdx = u;
      return n;
    };
  }

  /**
   * popEach for one chain the fast loop did not take: the complete walker (reports and parks on
   * a guest error), then the visitor, then completion through {@link retire} (IN_ORDER rules).
   * @returns false after a guest error (nothing visited)
   */
  private visitSlow(v: ChainVisitor): boolean {
    const cap = this.maxSeg;
    let one = this.one;
    if (one.segCapacity < cap) one = this.one = new ChainBatch(1, cap);
    this.bSeg = 0;
    if (!this.popSlow(one, cap, cap, 0)) return false;
    const cur = this.cur;
    one.copyChain(0, cur);
    // popSlow put the chain in flight: a length from the visitor retires it at once.
    const r = v.visit(cur);
    if (r >= 0 && this.retire(cur.head)) {
      const u = this.usedIdx;
      const slot = 1 + ((u & this.mask) << 1);
      this.used32[slot] = cur.head;
      this.used32[slot + 1] = r;
      this.usedIdx = (u + 1) & 0xffff;
    }
    return true;
  }

  /**
   * Pop up to `min(max, batch.maxChains)` chains into `batch` (see {@link DeviceQueue.popBatch}):
   * the same walk and checks as {@link pop} (both run {@link popMany}).
   */
  popBatch(batch: ChainBatch, max: number): number {
    if (this.visiting) this.reentrant('popBatch');
    const m = max < batch.head.length ? max : batch.head.length;
    return this.popMany(batch, batch.seg.length >>> 1, m);
  }

  /**
   * The one chain popper behind {@link pop} and {@link popBatch}: pops up to `max` chains into `pc`
   * using at most `segCap` segments. {@link popFast} takes every chain it can (direct descriptors,
   * buffers in the cached region, nothing irregular) with no calls in its loop; anything else —
   * re-reading avail idx, a region miss, an indirect table, any error — goes through
   * {@link popSlow}, the complete walker that reports guest errors.
   * @returns chains popped; on a guest error the chains before it are returned and the queue parks.
   */
  private popMany(pc: ChainBatch, segCap: number, max: number): number {
    pc.count = 0;
    if (this.isParked) return 0;
    let n = 0;
    this.bSeg = 0;
    // Refresh the region cache from the live region (it may have moved since the last call).
    this.setRegionCache(this.lastRegion);
    const capAll = segCap < this.maxSeg ? segCap : this.maxSeg;
    while (n < max) {
      if (this.lastAvail === this.cachedAvail && !this.refreshAvail()) break;
      if (this.fastOk) {
        const fs = this.fs;
        fs[FS_LAST] = this.lastAvail;
        fs[FS_AVAIL] = this.cachedAvail;
        fs[FS_SEG] = this.bSeg;
        fs[FS_REGION] = this.lastRegion;
        fs[FS_SEGCAP] = segCap;
        fs[FS_CAPALL] = capAll;
        fs[FS_MAX] = max;
        fs[FS_N] = n;
        const n1 = this.popFast(pc);
        this.inFlightCount += n1 - n;
        n = n1;
        this.lastAvail = fs[FS_LAST]!;
        this.bSeg = fs[FS_SEG]!;
        if (n === max || this.lastAvail === this.cachedAvail) continue;
      }
      // The next chain needs the complete walker (or it is invalid).
      if (!this.popSlow(pc, segCap, capAll, n)) break;
      n++;
    }
    pc.count = n;
    return n;
  }

  /** popFast's inputs and outputs (FS_* slots). */
  private readonly fs = fixedI32(FS_SLOTS);
  /** Segments used so far by the batch being popped (popFast / popSlow state). */
  private bSeg = 0;
  /**
   * Region cache as float64 numbers (from {@link lastRegion}): base, end, buffer offset, writable
   * (1/0). A Float64Array so popFast gets untagged doubles without per-use conversions.
   */
  private readonly rgc = fixedF64(4);
  /** popFast is used unless IN_ORDER (whose bookkeeping popSlow does); tests may turn it off. */
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
   * Pop chains while they are regular: avail entries already known (cachedAvail), head in range
   * and not in flight, direct descriptors only, every non-empty buffer inside the cached region
   * (writable ones in a writable region), readable before writable, within the segment limits and
   * 2^32 bytes, no loop. Stops — without consuming — at the first chain that is not, leaving it to
   * {@link popSlow}, which re-walks it with every check and reports. No calls inside the loop.
   * @returns chains in the batch so far
   */
  private popFast(pc: ChainBatch): number {
    // Scalars come from an Int32Array (and the region from a Float64Array) so they are untagged
    // int32 / float64 values from the start: V8 then keeps no per-use conversions in the loop.
    const fs = this.fs;
    const segCap = fs[FS_SEGCAP]!;
    const capAll = fs[FS_CAPALL]!;
    const max = fs[FS_MAX]!;
    const size = fs[FS_SIZE]!;
    const mask = fs[FS_MASK]!;
    const ri = fs[FS_REGION]!;
    const availIdx = fs[FS_AVAIL]!;
    let last = fs[FS_LAST]!;
    let seg = fs[FS_SEG]!;
    let n = fs[FS_N]!;
    const avail = this.avail;
    const desc = this.desc;
    const inFlightMap = this.inFlightMap;
    const pHead = pc.head;
    const pChain = pc.chain;
    const pBytes = pc.bytes;
    const pSeg = pc.seg;
    const pPos = pc.pos;
    const rgc = this.rgc;
    const rgBase = rgc[0]!;
    const rgEnd = rgc[1]!;
    const rgOff = rgc[2]!;
    const rgWritable = rgc[3]!;
    chains: while (n < max && last !== availIdx) {
      const head = avail[2 + (last & mask)]!;
      if (head >= size || inFlightMap[head] !== 0) break;
      const room = segCap - seg;
      const cap = room < capAll ? room : capAll;
      let idx = head;
      let walked = 0;
      let count = 0;
      let readable = 0;
      let rBytes = 0;
      let wBytes = 0;
      for (;;) {
        if (walked === size) break chains;
        walked++;
        const w = idx << 2;
        const lo = desc[w]!;
        const hi = desc[w | 1]!;
        const len = desc[w | 2]!;
        const fn = desc[w | 3]!;
        if ((fn & F_INDIRECT) !== 0) break chains;
        if (len !== 0) {
          if (count === cap) break chains;
          const addr = hi * TWO32 + lo;
          if (!(hi < 0x200000 && addr >= rgBase && addr + len <= rgEnd)) break chains;
          const s = (seg + count) << 1;
          if ((fn & F_WRITE) !== 0) {
            if (rgWritable === 0) break chains;
            wBytes += len;
          } else {
            if (count !== readable) break chains;
            readable++;
            rBytes += len;
          }
          if (rBytes + wBytes > MAX_CHAIN_BYTES) break chains;
          // (`s | 1` = s + 1 for even s, without an overflow check)
          pSeg[s] = ri;
          pSeg[s | 1] = len;
          pPos[s] = rgOff + (addr - rgBase);
          pPos[s | 1] = addr;
          count++;
        }
        if ((fn & F_NEXT) === 0) break;
        idx = fn >>> 16;
        if (idx >= size) break chains;
      }
      pHead[n] = head;
      const c = n << 2;
      pChain[c] = seg;
      pChain[c | 1] = count;
      pChain[c | 2] = readable;
      pChain[c | 3] = walked;
      pBytes[n << 1] = rBytes;
      pBytes[(n << 1) | 1] = wBytes;
      seg = (seg + count) | 0;
      n = (n + 1) | 0;
      inFlightMap[head] = 1;
      last = (last + 1) & 0xffff;
    }
    fs[FS_LAST] = last;
    fs[FS_SEG] = seg;
    return n;
  }

  /**
   * Pop the chain at lastAvail (avail idx already read and validated) with every check, as chain
   * `n` of `pc`. Handles indirect tables and region misses; reports guest errors (and parks).
   * @returns true when the chain was popped; false after a guest error, or when the chain does not
   * fit in the segment room left in this batch (then it stays in the ring).
   */
  private popSlow(pc: ChainBatch, segCap: number, capAll: number, n: number): boolean {
    const size = this.size;
    const last = this.lastAvail;
    const head = this.avail[2 + (last & this.mask)]!;
    if (head >= size) {
      // No normative clause: the descriptor table has exactly queue-size entries.
      return this.fail('DESC_INDEX_OUT_OF_RANGE', undefined, `avail ring entry ${last} offers head ${head}, outside the descriptor table of ${size} entries`);
    }
    if (this.inFlightMap[head] !== 0) {
      // No normative clause: a driver only offers heads of chains in free descriptors.
      return this.fail('HEAD_IN_FLIGHT', undefined, `avail ring entry ${last} offers head ${head}, which the device already holds (popped, not yet used)`);
    }
    const desc = this.desc;
    const space = this.space;
    const pSeg = pc.seg;
    const pPos = pc.pos;
    const seg = this.bSeg;
    const room = segCap - seg;
    const cap = room < capAll ? room : capAll;
    let idx = head;
    let walked = 0;
    let count = 0;
    let readable = 0;
    let rBytes = 0;
    let wBytes = 0;
    for (;;) {
      if (walked === size) {
        // basic.split-vq.vq-desc-table.driver.1: loops are forbidden; a chain cannot exceed the table.
        return this.fail('CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1', `chain from head ${head} walked ${size} descriptors without ending (loop)`);
      }
      walked++;
      const w = idx << 2;
      const lo = desc[w]!;
      const hi = desc[w + 1]!;
      const len = desc[w + 2]!;
      const fn = desc[w + 3]!;
      if ((fn & F_INDIRECT) !== 0) {
        const r = this.walkIndirect(head, idx, lo, hi, len, fn, seg, count, readable, rBytes, wBytes, cap, capAll, pSeg, pPos);
        // -2: does not fit in this batch; -1: guest error (reported, parked).
        if (r < 0) return false;
        count = r;
        readable = this.wReadable;
        rBytes = this.wRBytes;
        wBytes = this.wWBytes;
        walked += this.wSteps;
        break;
      }
      if (len !== 0) {
        const write = (fn & F_WRITE) !== 0;
        if (write) {
          wBytes += len;
        } else {
          if (count !== readable) {
            // basic.split-vq.message-framing.driver.1
            return this.fail('READABLE_AFTER_WRITABLE', 'basic.split-vq.message-framing.driver.1', `descriptor ${idx} of chain ${head} is device-readable but follows a device-writable one`);
          }
          readable++;
          rBytes += len;
        }
        // basic.split-vq.vq-desc-table.device.1: every buffer must lie inside the device's space
        // (writable ones in a writable region).
        const r = space.resolveHiLo(lo, hi, len, write);
        if (r < 0) return this.failResolve(r, `descriptor ${idx} buffer`, lo, hi, len, write);
        const off = space.off;
        if (r !== this.lastRegion) this.setRegionCache(r);
        if (count === cap) {
          // Not enough room left in this batch: leave the chain in the ring for the next call.
          if (cap < capAll) return false;
          // basic.split-vq.message-framing.device.2: the device limits segments per chain.
          return this.fail('CHAIN_LOOP', 'basic.split-vq.message-framing.device.2', `chain from head ${head} has more than ${cap} segments (device limit)`);
        }
        if (rBytes + wBytes > MAX_CHAIN_BYTES) {
          // basic.split-vq.vq-desc-table.driver.1
          return this.fail('CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `chain from head ${head} is longer than 2^32 bytes (${rBytes + wBytes})`);
        }
        const s = (seg + count) << 1;
        pSeg[s] = r;
        pSeg[s + 1] = len;
        pPos[s] = off;
        pPos[s + 1] = hi * TWO32 + lo;
        count++;
      }
      if ((fn & F_NEXT) === 0) break;
      idx = fn >>> 16;
      if (idx >= size) {
        return this.fail('DESC_INDEX_OUT_OF_RANGE', undefined, `descriptor of chain ${head} links to next ${idx}, outside the table of ${size} entries`);
      }
    }
    // The chain is valid: commit it.
    pc.head[n] = head;
    const c = n << 2;
    pc.chain[c] = seg;
    pc.chain[c + 1] = count;
    pc.chain[c + 2] = readable;
    pc.chain[c + 3] = walked;
    pc.bytes[n << 1] = rBytes;
    pc.bytes[(n << 1) + 1] = wBytes;
    this.bSeg = seg + count;
    this.inFlightMap[head] = 1;
    this.inFlightCount++;
    if (this.inOrder) this.order[(this.orderHead + this.inFlightCount - 1) & this.mask] = head;
    this.lastAvail = (last + 1) & 0xffff;
    return true;
  }

  /** Results of {@link walkIndirect} besides the segment count. */
  private wReadable = 0;
  private wRBytes = 0;
  private wWBytes = 0;
  private wSteps = 0;

  /**
   * Walk an indirect table referenced by descriptor `idx` (flags|next in `fn`), appending segments
   * at `seg + count` after the `count` the chain already has.
   * @returns the chain's segment count (readable/bytes/steps in the w* fields), -1 after a guest
   * error (reported, parked), or -2 when the chain does not fit in the batch room (`cap < capAll`).
   */
  private walkIndirect(head: number, idx: number, lo: number, hi: number, len: number, fn: number, seg: number, count: number, readable: number, rBytes: number, wBytes: number, cap: number, capAll: number, pSeg: Uint32Array, pPos: Float64Array): number {
    if (!this.indirectOk) {
      // basic.split-vq.indirect-desc.driver.1
      this.fail('INDIRECT_NOT_NEGOTIATED', 'basic.split-vq.indirect-desc.driver.1', `descriptor ${idx} of chain ${head} sets INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated`);
      return -1;
    }
    if ((fn & F_NEXT) !== 0) {
      // basic.split-vq.indirect-desc.driver.4
      this.fail('INDIRECT_WITH_NEXT', 'basic.split-vq.indirect-desc.driver.4', `descriptor ${idx} of chain ${head} sets both INDIRECT and NEXT`);
      return -1;
    }
    const maxEntries = this.maxSeg;
    if (len === 0 || (len & 15) !== 0 || len / 16 > maxEntries) {
      // basic.split-vq.indirect-desc.driver.3 (table holds len/16 descriptors, chain ≤ the device limit)
      this.fail('INDIRECT_BAD_LENGTH', 'basic.split-vq.indirect-desc.driver.3', `indirect table of descriptor ${idx} (chain ${head}) has length ${len}; it must be a non-zero multiple of 16 holding at most ${maxEntries} entries`);
      return -1;
    }
    const space = this.space;
    const rt = space.resolveHiLo(lo, hi, len, false);
    if (rt < 0) {
      this.failResolve(rt, `indirect table of descriptor ${idx}`, lo, hi, len, false);
      return -1;
    }
    const dv = space.regions[rt]!.dv;
    const tbase = space.off;
    const n = len >>> 4;
    let i = 0;
    let steps = 0;
    // basic.split-vq.indirect-desc.device.1: the WRITE flag of the descriptor pointing at the table is ignored.
    for (;;) {
      if (steps === n) {
        this.fail('CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1', `indirect table of chain ${head} (${n} entries) loops`);
        return -1;
      }
      steps++;
      const o = tbase + (i << 4);
      const elo = dv.getUint32(o, true);
      const ehi = dv.getUint32(o + 4, true);
      const elen = dv.getUint32(o + 8, true);
      const eflags = dv.getUint16(o + 12, true);
      if ((eflags & F_INDIRECT) !== 0) {
        // basic.split-vq.indirect-desc.driver.2
        this.fail('NESTED_INDIRECT', 'basic.split-vq.indirect-desc.driver.2', `entry ${i} of the indirect table of chain ${head} sets INDIRECT (nested tables are forbidden)`);
        return -1;
      }
      if (elen !== 0) {
        let r: number;
        if ((eflags & F_WRITE) !== 0) {
          r = space.resolveHiLo(elo, ehi, elen, true);
          if (r < 0) {
            this.failResolve(r, `indirect entry ${i} buffer`, elo, ehi, elen, true);
            return -1;
          }
          wBytes += elen;
        } else {
          if (count !== readable) {
            this.fail('READABLE_AFTER_WRITABLE', 'basic.split-vq.message-framing.driver.1', `indirect entry ${i} of chain ${head} is device-readable but follows a device-writable one`);
            return -1;
          }
          r = space.resolveHiLo(elo, ehi, elen, false);
          if (r < 0) {
            this.failResolve(r, `indirect entry ${i} buffer`, elo, ehi, elen, false);
            return -1;
          }
          readable++;
          rBytes += elen;
        }
        if (count === cap) {
          if (cap < capAll) return -2;
          this.fail('CHAIN_LOOP', 'basic.split-vq.message-framing.device.2', `chain from head ${head} has more than ${cap} segments (device limit)`);
          return -1;
        }
        if (rBytes + wBytes > MAX_CHAIN_BYTES) {
          this.fail('CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `chain from head ${head} is longer than 2^32 bytes (${rBytes + wBytes})`);
          return -1;
        }
        const s = (seg + count) << 1;
        pSeg[s] = r;
        pSeg[s + 1] = elen;
        pPos[s] = space.off;
        pPos[s + 1] = ehi * TWO32 + elo;
        count++;
      }
      if ((eflags & F_NEXT) === 0) break;
      i = dv.getUint16(o + 14, true);
      if (i >= n) {
        // An indirect table holds len/16 entries (no normative clause for the index itself).
        this.fail('DESC_INDEX_OUT_OF_RANGE', undefined, `entry of the indirect table of chain ${head} links to next ${i}, outside the table of ${n} entries`);
        return -1;
      }
    }
    this.wReadable = readable;
    this.wRBytes = rBytes;
    this.wWBytes = wBytes;
    this.wSteps = steps;
    return count;
  }

  private badUsed(head: number, why: string): void {
    report(this.sink, 'USED_BAD_ID', undefined, `queue ${this.index}: pushUsed(${head}) ignored: ${why}`, this.index);
  }

  /** Validate one head for completion and drop it from the in-flight set; false (reported) when invalid. */
  private retire(head: number): boolean {
    if (!(head >= 0 && head < this.size) || this.inFlightMap[head] !== 1) {
      this.badUsed(head, 'that head is not in flight');
      return false;
    }
    if (this.inOrder) {
      const oldest = this.order[this.orderHead]!;
      if (oldest !== head) {
        // reserved.reserved-feature-bits.device.5
        this.badUsed(head, `VIRTIO_F_IN_ORDER requires completing head ${oldest} first (reserved.reserved-feature-bits.device.5)`);
        return false;
      }
      this.orderHead = (this.orderHead + 1) & this.mask;
    }
    this.inFlightMap[head] = 0;
    this.inFlightCount--;
    return true;
  }

  pushUsed(head: number, len: number): void {
    if (this.visiting) this.reentrant('pushUsed');
    if (!this.retire(head)) return;
    const u = this.usedIdx;
    const slot = 1 + ((u & this.mask) << 1);
    const used32 = this.used32;
    used32[slot] = head;
    // basic.split-vq.vq-used-ring.device.1: len is set before used idx.
    used32[slot + 1] = len;
    const nu = (u + 1) & 0xffff;
    this.usedIdx = nu;
    Atomics.store(this.used16, 1, nu);
  }

  pushUsedBatch(heads: ArrayLike<number>, lens: ArrayLike<number>, n: number): void {
    if (this.visiting) this.reentrant('pushUsedBatch');
    let i = 0;
    const u0 = this.usedIdx;
    while (i < n) {
      if (this.fastOk) {
        // Plain completions (head in range and in flight, no IN_ORDER) without calls in the loop.
        const fs = this.fs;
        fs[FS_USED] = this.usedIdx;
        fs[FS_N] = i;
        fs[FS_MAX] = n;
        const i1 = this.pushFast(heads, lens);
        this.inFlightCount -= i1 - i;
        i = i1;
        this.usedIdx = fs[FS_USED]!;
        if (i === n) break;
      }
      const head = heads[i]!;
      if (this.retire(head)) {
        const u = this.usedIdx;
        const slot = 1 + ((u & this.mask) << 1);
        this.used32[slot] = head;
        this.used32[slot + 1] = lens[i]!;
        this.usedIdx = (u + 1) & 0xffff;
      }
      i++;
    }
    // basic.split-vq.vq-used-ring.device.1: elements (id, len) are written before used idx,
    // which is published once per batch.
    if (this.usedIdx !== u0) Atomics.store(this.used16, 1, this.usedIdx);
  }

  /**
   * Write used elements for heads[fs[FS_N] .. fs[FS_MAX]) while each head is in range and in
   * flight; returns the index of the first entry it did not handle (for retire() to check and
   * report). Updates fs[FS_USED], not the ring's idx.
   */
  private pushFast(heads: ArrayLike<number>, lens: ArrayLike<number>): number {
    const fs = this.fs;
    const mask = fs[FS_MASK]!;
    const size = fs[FS_SIZE]!;
    const n = fs[FS_MAX]!;
    let k = fs[FS_N]!;
    let u = fs[FS_USED]!;
    const used32 = this.used32;
    const map = this.inFlightMap;
    for (; k < n; k++) {
      const head = heads[k]!;
      if (!(head < size) || map[head] !== 1) break;
      map[head] = 0;
      const slot = 1 + ((u & mask) << 1);
      used32[slot] = head;
      used32[slot + 1] = lens[k]!;
      u = (u + 1) & 0xffff;
    }
    fs[FS_USED] = u;
    return k;
  }

  /**
   * IN_ORDER batched completion: retire the `n` oldest chains and write ONE used element (id of the
   * newest of them, `lastLen`), then advance used idx by `n`. Requires VIRTIO_F_IN_ORDER.
   * Drivers treat the earlier chains as completely written.
   */
  pushUsedInOrder(n: number, lastLen: number): void {
    if (!this.inOrder || !(n >= 1 && n <= this.inFlightCount)) {
      report(this.sink, 'USED_BAD_ID', undefined, `queue ${this.index}: pushUsedInOrder(${n}) ignored: needs VIRTIO_F_IN_ORDER and 1..${this.inFlightCount} chains in flight`, this.index);
      return;
    }
    const mask = this.mask;
    const order = this.order;
    const map = this.inFlightMap;
    let oh = this.orderHead;
    let head = 0;
    for (let i = 0; i < n; i++) {
      head = order[oh]!;
      map[head] = 0;
      oh = (oh + 1) & mask;
    }
    this.orderHead = oh;
    this.inFlightCount -= n;
    const u = this.usedIdx;
    const slot = 1 + ((u & mask) << 1);
    this.used32[slot] = head;
    this.used32[slot + 1] = lastLen;
    const nu = (u + n) & 0xffff;
    this.usedIdx = nu;
    Atomics.store(this.used16, 1, nu);
  }

  needsInterrupt(): boolean {
    const nu = this.usedIdx;
    const old = this.signalledUsed;
    this.signalledUsed = nu;
    if (nu === old) return false;
    if (this.eventIdx) {
      // basic.split-vq.used-buffer-notif-suppression.device.2: used_event lives at the tail of the AVAIL ring.
      return vringNeedEvent(Atomics.load(this.avail, this.usedEventAt), nu, old);
    }
    // basic.split-vq.used-buffer-notif-suppression.device.1: flags bit 0 = NO_INTERRUPT.
    return (Atomics.load(this.avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  enableNotifications(): boolean {
    if (this.isParked) return false;
    if (this.eventIdx) {
      // basic.split-vq.available-buffer-notif-suppression.device.2: flags stay 0; avail_event at the USED ring's tail.
      Atomics.store(this.used16, this.availEventAt, this.cachedAvail);
    } else {
      Atomics.store(this.used16, 0, 0);
    }
    // Re-check after enabling so a buffer published in between is not missed.
    return Atomics.load(this.avail, 1) !== this.lastAvail;
  }

  disableNotifications(): void {
    if (this.isParked) return;
    // With EVENT_IDX the device leaves flags at 0 and simply stops moving avail_event forward.
    if (!this.eventIdx) Atomics.store(this.used16, 0, VIRTQ_USED_F_NO_NOTIFY);
  }

  hasAvailable(): boolean {
    if (this.isParked) return false;
    return this.cachedAvail !== this.lastAvail || Atomics.load(this.avail, 1) !== this.lastAvail;
  }

  reset(): void {
    this.lastAvail = 0;
    this.cachedAvail = 0;
    this.usedIdx = 0;
    this.signalledUsed = 0;
    this.inFlightCount = 0;
    this.orderHead = 0;
    this.inFlightMap.fill(0);
    this.isParked = false;
    this.lastRegion = 0;
  }

  /** Next avail index to process (vhost-user GET_VRING_BASE). */
  getBase(): number {
    return this.lastAvail;
  }

  /**
   * Resume at avail index `base` (vhost-user SET_VRING_BASE). The used index is taken from the
   * used ring (as vhost back-ends do). Chains in flight at the previous owner are not known here.
   */
  setBase(base: number): void {
    this.lastAvail = base & 0xffff;
    this.cachedAvail = this.lastAvail;
    const u = Atomics.load(this.used16, 1);
    this.usedIdx = u;
    this.signalledUsed = u;
  }

  /** Next used index the device will write (for tests and diagnostics). */
  get nextUsedIndex(): number {
    return this.usedIdx;
  }
}
