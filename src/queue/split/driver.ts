/**
 * Split virtqueue, driver side (a simulated guest driver): posts buffers, decides kicks, and
 * validates what the device hands back before trusting it.
 *
 * Bookkeeping lives in private typed arrays (free list; per head: token, writable bytes, descriptor
 * count, tail — one Float64Array so hot loops touch one view), never in
 * the shared descriptor table, so a misbehaving device cannot corrupt it. A device error (used idx
 * running ahead, unknown id, len beyond the writable part) goes to the sink once and the queue
 * stops returning buffers.
 *
 * Batch forms {@link SplitDriverQueue.addBatch} / {@link SplitDriverQueue.getUsedBatch} and the
 * per-chain add / getUsed share their code: plain chains take a fast path without calls in its loop;
 * indirect tables, IN_ORDER and every device error take the general path (addSlow / collectSlow),
 * which also does all reporting.
 *
 * IN_ORDER: descriptors are allocated in ring order (`next = x + 1`, wrapping to 0;
 * basic.split-vq.vq-desc-table.driver.2, indirect entries 0,1,2… per indirect-desc.driver.5), and
 * {@link getUsed} accepts the batched form where one used element (id of the last chain of a batch)
 * stands for several chains; the earlier chains of the batch are reported with their full writable
 * length, as Linux does.
 */
import { fixedF64, fixedI32, fixedU16, fixedU32 } from '../fixed-arrays.js';
import type { AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../../device/choke.js';
import { VirtioError, type VirtioErrorCode } from '../../errors.js';
import { logger } from '../../log.js';
import {
  type DriverQueue,
  type DriverQueueOptions,
  type QueueConfig,
  SgBatch,
  type SgList,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  type ChainFiller,
  type UsedVisitor,
} from '../types.js';
import { vringNeedEvent } from '../event-idx.js';
import { specialize } from '../specialize.js';
import { isSplitSetupError, resolveSplitRings, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from './layout.js';

// Module-local copies of the flag bits: V8 folds these into the fast loops (imported bindings are
// re-loaded and hole-checked on every use).
const F_INDIRECT = VIRTQ_DESC_F_INDIRECT;
const F_NEXT = VIRTQ_DESC_F_NEXT;
const F_WRITE = VIRTQ_DESC_F_WRITE;

const log = logger('queue');
const TWO32 = 4294967296;
/** Fields of a per-head record in SplitDriverQueue.rec. */
const REC_TOKEN = 0;
const REC_WRITABLE = 1;
const REC_DESCS = 2;
const REC_TAIL = 3;
/** Free-list link of descriptor i (driver-private; Linux keeps the same in a shadow array). */
const REC_NEXT = 4;
/** Stride of SplitDriverQueue.rec (a power of two: records are addressed with `i << 3`). */
const REC_STRIDE = 8;
/** Slots of SplitDriverQueue.ds (fast-path scalars, kept in an Int32Array so V8 sees untagged int32). */
const DS_MASK = 0;
const DS_FREE_HEAD = 1;
const DS_NUM_FREE = 2;
const DS_AVAIL = 3;
const DS_K = 4;
const DS_N = 5;
const DS_SEG = 6;
const DS_LAST_USED = 7;
const DS_USED = 8;
const DS_SIZE = 9;
const DS_SLOTS = 10;

/** Driver side of a split virtqueue. */
export class SplitDriverQueue implements DriverQueue {
  readonly kind = 'split' as const;
  readonly size: number;
  readonly index: number;

  private readonly space: AddressSpace;
  private readonly sink: GuestErrorSink;
  private readonly mask: number;
  private readonly eventIdx: boolean;
  private readonly inOrder: boolean;
  private readonly indirectThreshold: number;
  private readonly allocIndirect: ((bytes: number) => number) | undefined;
  private readonly freeIndirect: ((addr: number) => void) | undefined;
  private readonly desc: Uint32Array;
  private readonly avail: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly used16: Uint16Array;
  private readonly usedEventAt: number;
  private readonly availEventAt: number;

  /**
   * Per descriptor index, stride {@link REC_STRIDE} (one array, so the hot loops touch one view).
   * For a chain head: caller token, writable bytes as uint32 bits (max accepted used len; chains
   * are below 2^32 bytes), ring descriptors used (0 = not in flight), last ring descriptor. For
   * every descriptor: its free-list link (REC_NEXT).
   */
  private readonly rec: Int32Array;
  /** Per head: indirect table bus address, or -1. */
  private readonly chainIndirect: Float64Array;
  /** IN_ORDER: heads in submission order. */
  private readonly order: Uint16Array;

  private freeHead = 0;
  private numFree: number;
  /** IN_ORDER: next descriptor to allocate. */
  private nextDesc = 0;
  private orderHead = 0;
  /** Next avail ring index to fill (shadow of avail idx). */
  private availShadow = 0;
  /** avail idx as last published. */
  private availPublished = 0;
  /** Next used ring index to consume. */
  private lastUsed = 0;
  /** Device's used idx as last read and validated. */
  private cachedUsed = 0;
  private inFlightCount = 0;
  /** IN_ORDER batch in progress: id of its last chain (or -1) and that chain's len. */
  private batchLast = -1;
  private batchLastLen = 0;
  private stopped = false;

  lastToken = -1;
  lastLen = 0;

  /** Scratch segment arrays handed to {@link addEach} fillers (queue-size capacity). */
  private readonly fillAddr: Float64Array;
  private readonly fillLen: Uint32Array;
  /** One-chain scratch for {@link add} / {@link getUsed} (they run the batch code with n = 1). */
  private oneSg = new SgBatch(1, 4);
  /**
   * collectFast handles plain completions; IN_ORDER and indirect tables always take collectSlow.
   * Tests may turn it off to compare it with the complete path.
   */
  private fastOk: boolean;
  /** Fast-path scalar slots (DS_*). */
  private readonly ds = fixedI32(DS_SLOTS);
  private readonly oneTok = fixedI32(1);
  private readonly oneLen = fixedU32(1);

  /**
   * @param space the driver's view of memory (rings and buffers must lie inside it)
   * @param cfg queue configuration (the same values the device gets)
   * @param sink where device misbehaviour is reported
   * @throws VirtioError when the configuration is invalid (host-side programming error)
   */
  constructor(space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink, opts: DriverQueueOptions = {}) {
    const v = resolveSplitRings(space, cfg);
    if (isSplitSetupError(v)) throw new VirtioError(v.code, `split driver queue ${cfg.index}: ${v.message}`, v.clause === undefined ? {} : { clause: v.clause });
    const threshold = opts.indirectThreshold ?? 0;
    if (threshold > 0 && (!cfg.indirect || opts.allocIndirect === undefined)) {
      throw new VirtioError('INVALID_ARGUMENT', `split driver queue ${cfg.index}: indirectThreshold needs VIRTIO_F_INDIRECT_DESC negotiated and an allocIndirect function`);
    }
    this.space = space;
    this.sink = sink;
    this.size = cfg.size;
    this.index = cfg.index;
    this.mask = cfg.size - 1;
    this.eventIdx = cfg.eventIdx;
    this.inOrder = cfg.inOrder;
    this.indirectThreshold = threshold;
    this.allocIndirect = opts.allocIndirect;
    this.freeIndirect = opts.freeIndirect;
    this.desc = v.desc;
    this.avail = v.avail;
    this.used32 = v.used32;
    this.used16 = v.used16;
    this.usedEventAt = 2 + cfg.size;
    this.availEventAt = 2 + 4 * cfg.size;
    const size = cfg.size;
    this.numFree = size;
    this.fillAddr = fixedF64(size);
    this.fillLen = fixedU32(size);
    this.rec = fixedI32(REC_STRIDE * size);
    for (let i = 0; i < size; i++) this.rec[REC_STRIDE * i + REC_NEXT] = (i + 1) & this.mask;
    this.fastOk = !cfg.inOrder && threshold === 0;
    this.ds[DS_MASK] = cfg.size - 1;
    this.ds[DS_SIZE] = cfg.size;
    this.chainIndirect = fixedF64(size).fill(-1);
    this.order = fixedU16(size);
    // The driver allocates the rings: start them zeroed
    // (basic.split-vq.available-buffer-notif-suppression.driver.1: used flags start at 0).
    this.desc.fill(0);
    this.avail.fill(0);
    this.used16.fill(0);
  }

  get freeCount(): number {
    return this.numFree;
  }
  get inFlight(): number {
    return this.inFlightCount;
  }
  /** True after the device returned something invalid; getUsed then returns false. */
  get parked(): boolean {
    return this.stopped;
  }

  private fail(code: VirtioErrorCode, clause: string | undefined, message: string): false {
    this.stopped = true;
    try {
      this.sink.guestError({ code, clause, message: `queue ${this.index} (driver): ${message}`, queue: this.index });
    } catch (e) {
      log('sink threw: %O', e);
    }
    return false;
  }

  add(sg: SgList, token: number): number {
    if (this.filling) this.reentrant('add');
    const n = sg.count;
    if (n === 0) throw new VirtioError('INVALID_ARGUMENT', 'SplitDriverQueue.add: empty SgList');
    if (this.fastOk) return this.addOneFast(sg, token);
    // IN_ORDER or indirect tables: the general writer, through a one-chain batch.
    let one = this.oneSg;
    if (one.seg.length < 2 * n) one = this.oneSg = new SgBatch(1, n);
    const seg = one.seg;
    for (let i = 0; i < n; i++) {
      seg[2 * i] = sg.addr[i]!;
      seg[2 * i + 1] = sg.len[i]!;
    }
    const c = one.chain;
    c[0] = token;
    c[1] = n;
    c[2] = sg.readable;
    return this.addSlow(one, 0, 0, n) ? c[3]! : -1;
  }

  /** {@link add} for a plain chain ({@link fastOk}): the same writes as {@link addFast}, from an SgList. */
  private addOneFast(sg: SgList, token: number): number {
    const n = sg.count;
    if (this.numFree < n) return -1;
    const sAddr = sg.addr;
    const sLen = sg.len;
    const readableN = sg.readable;
    const desc = this.desc;
    const rec = this.rec;
    const head = this.freeHead;
    let d = head;
    let tail = head;
    let wBytes = 0;
    for (let i = 0; i < n; i++) {
      const ad = sAddr[i]!;
      const l = sLen[i]!;
      const w = d << 2;
      const nx = rec[(d << 3) | REC_NEXT]!;
      desc[w] = ad >>> 0;
      desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
      desc[w | 2] = l;
      let f = 0;
      if (i >= readableN) {
        f = F_WRITE;
        wBytes += l;
      }
      if (i < n - 1) f |= F_NEXT | (nx << 16);
      desc[w | 3] = f;
      tail = d;
      d = nx;
    }
    this.freeHead = rec[(tail << 3) | REC_NEXT]!;
    this.numFree -= n;
    const r = head << 3;
    rec[r] = token; // REC_TOKEN
    rec[r | REC_WRITABLE] = wBytes > 0xffffffff ? -1 : wBytes; // saturated: used len is a u32
    rec[r | REC_DESCS] = n;
    rec[r | REC_TAIL] = tail;
    this.inFlightCount++;
    const a = this.availShadow;
    this.avail[2 + (a & this.mask)] = head;
    this.availShadow = (a + 1) & 0xffff;
    return head;
  }

  /** Add chains 0, 1, … of `batch` until one does not fit (see {@link DriverQueue.addBatch}); returns how many. */
  addBatch(batch: SgBatch): number {
    if (this.filling) this.reentrant('addBatch');
    return this.addMany(batch, batch.count);
  }

  /** True while an addEach filler or a collectEach visitor runs (the ring state is in locals then). */
  private filling = false;
  /** Set when addEach refuses a malformed description (state consistent: the queue keeps going). */
  private badFill = false;

  /** Throw for an add call made from inside this queue's own addEach filler. */
  private reentrant(what: string): never {
    throw new VirtioError('REENTRANT_CALL', `SplitDriverQueue.${what}() called from inside an addEach filler or collectEach visitor of the same queue; do it after the call returns`);
  }

  /**
   * The one descriptor writer behind {@link add} and {@link addBatch}: adds chains 0..n-1 of `b`
   * in order until one does not fit; heads go to `b.chain[4k+3]`. Plain chains go through
   * {@link addFast} (no calls in its loop); indirect tables, IN_ORDER and the end of room through
   * {@link addSlow}.
   * @throws VirtioError for an empty chain (the chains before it are added)
   */
  private addMany(b: SgBatch, n: number): number {
    const bChain = b.chain;
    let k = 0;
    let s0 = 0;
    while (k < n) {
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_NUM_FREE] = this.numFree;
        ds[DS_AVAIL] = this.availShadow;
        ds[DS_K] = k;
        ds[DS_N] = n;
        ds[DS_SEG] = s0;
        const k1 = this.addFast(b);
        this.inFlightCount += k1 - k;
        k = k1;
        this.freeHead = ds[DS_FREE_HEAD]!;
        this.numFree = ds[DS_NUM_FREE]!;
        this.availShadow = ds[DS_AVAIL]!;
        s0 = ds[DS_SEG]!;
        if (k === n) break;
      }
      const cnt = bChain[(k << 2) + 1]!;
      if (cnt <= 0) throw new VirtioError('INVALID_ARGUMENT', `SplitDriverQueue.addBatch: chain ${k} has no segments`);
      if (!this.addSlow(b, k, s0, cnt)) break;
      s0 += cnt;
      k++;
    }
    return k;
  }

  /**
   * Write direct chains from `ds[DS_K]` on while they have segments and fit (no IN_ORDER, no
   * indirect tables: {@link fastOk}); stops at the first other one. No calls inside the loop; scalars
   * come from the Int32Array `ds` so V8 keeps them untagged.
   * @returns the index of the first chain not added
   */
  private addFast(b: SgBatch): number {
    const ds = this.ds;
    const mask = ds[DS_MASK]!;
    const n = ds[DS_N]!;
    let k = ds[DS_K]!;
    let s0 = ds[DS_SEG]!;
    let freeHead = ds[DS_FREE_HEAD]!;
    let numFree = ds[DS_NUM_FREE]!;
    let a = ds[DS_AVAIL]!;
    const bChain = b.chain;
    const bSeg = b.seg;
    const desc = this.desc;
    const avail = this.avail;
    const rec = this.rec;
    while (k < n) {
      const o = k << 2;
      const cnt = bChain[o | 1]!;
      if (cnt <= 0 || numFree < cnt) break;
      const head = freeHead;
      let tail = head;
      let wBytes = 0;
      const sEnd = s0 + cnt;
      if (cnt === 1) {
        // One segment: straight-line code (the common single-buffer request).
        const si = s0 << 1;
        const ad = bSeg[si]!;
        const l = bSeg[si | 1]!;
        const w = head << 2;
        desc[w] = ad >>> 0;
        desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
        desc[w | 2] = l;
        if (bChain[o | 2]! <= 0) {
          desc[w | 3] = F_WRITE;
          wBytes = l;
        } else {
          desc[w | 3] = 0;
        }
      } else {
        const readableEnd = s0 + bChain[o | 2]!;
        let d = head;
        for (let i = s0; i < sEnd; i++) {
          const si = i << 1;
          const ad = bSeg[si]!;
          const l = bSeg[si | 1]!;
          const w = d << 2;
          const nx = rec[(d << 3) | REC_NEXT]!;
          // Addresses are below 2^53: `>>> 0` takes the low 32 bits exactly, `/ 2^32 >>> 0` the high ones.
          desc[w] = ad >>> 0;
          desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
          desc[w | 2] = l;
          let f = 0;
          if (i >= readableEnd) {
            f = F_WRITE;
            wBytes += l;
          }
          if (i < sEnd - 1) f |= F_NEXT | (nx << 16);
          desc[w | 3] = f;
          tail = d;
          d = nx;
        }
      }
      freeHead = rec[(tail << 3) | REC_NEXT]!;
      numFree -= cnt;
      const r = head << 3;
      rec[r] = bChain[o]!; // REC_TOKEN
      rec[r | REC_WRITABLE] = wBytes > 0xffffffff ? -1 : wBytes; // saturated: used len is a u32
      rec[r | REC_DESCS] = cnt;
      rec[r | REC_TAIL] = tail;
      bChain[o | 3] = head;
      avail[2 + (a & mask)] = head;
      a = (a + 1) & 0xffff;
      s0 = sEnd;
      k++;
    }
    ds[DS_FREE_HEAD] = freeHead;
    ds[DS_NUM_FREE] = numFree;
    ds[DS_AVAIL] = a;
    ds[DS_SEG] = s0;
    return k;
  }

  /**
   * Add chain `k` of `b` (segments from `s0`, `cnt` > 0 of them) with the general code: indirect
   * table when the threshold says so, IN_ORDER allocation. Returns false when it does not fit.
   */
  private addSlow(b: SgBatch, k: number, s0: number, cnt: number): boolean {
    const bChain = b.chain;
    const bSeg = b.seg;
    const o = k << 2;
    const readableN = bChain[o + 2]!;
    const mask = this.mask;
    const inOrder = this.inOrder;
    const rec = this.rec;
    let head: number;
    if (this.indirectThreshold > 0 && cnt >= this.indirectThreshold) {
      if (this.numFree < 1) return false;
      head = inOrder ? this.nextDesc : this.freeHead;
      this.writeIndirect(head, bSeg, s0, cnt, readableN);
      if (inOrder) this.nextDesc = (head + 1) & mask;
      else this.freeHead = rec[(head << 3) | REC_NEXT]!;
      this.numFree -= 1;
    } else {
      if (this.numFree < cnt) return false;
      const desc = this.desc;
      const readableEnd = s0 + readableN;
      const sEnd = s0 + cnt;
      head = inOrder ? this.nextDesc : this.freeHead;
      let d = head;
      let tail = head;
      let wBytes = 0;
      for (let i = s0; i < sEnd; i++) {
        const ad = bSeg[2 * i]!;
        const l = bSeg[2 * i + 1]!;
        const w = d << 2;
        // basic.split-vq.vq-desc-table.driver.2 (IN_ORDER: next = this + 1, wrapping)
        const nx = inOrder ? (d + 1) & mask : rec[(d << 3) | REC_NEXT]!;
        desc[w] = ad >>> 0;
        desc[w + 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
        desc[w + 2] = l;
        let f = 0;
        if (i >= readableEnd) {
          f = F_WRITE;
          wBytes += l;
        }
        if (i < sEnd - 1) f |= F_NEXT | (nx << 16);
        desc[w + 3] = f;
        tail = d;
        d = nx;
      }
      if (inOrder) this.nextDesc = (tail + 1) & mask;
      else this.freeHead = rec[(tail << 3) | REC_NEXT]!;
      this.numFree -= cnt;
      const r = head << 3;
      rec[r + REC_WRITABLE] = wBytes > 0xffffffff ? -1 : wBytes; // saturated: used len is a u32
      rec[r + REC_DESCS] = cnt;
      rec[r + REC_TAIL] = tail;
      // chainIndirect[head] is already -1 here (collectSlow() resets it when an indirect chain is released).
    }
    rec[(head << 3) + REC_TOKEN] = bChain[o]!;
    bChain[o + 3] = head;
    if (inOrder) this.order[(this.orderHead + this.inFlightCount) & mask] = head;
    this.inFlightCount++;
    const a = this.availShadow;
    this.avail[2 + (a & mask)] = head;
    this.availShadow = (a + 1) & 0xffff;
    return true;
  }

  /** Put `cnt` segments from `s0` into a fresh indirect table and point descriptor `head` at it. */
  private writeIndirect(head: number, bSeg: Float64Array, s0: number, cnt: number, readableN: number): void {
    const indirectAddr = this.allocIndirect!(cnt * 16);
    const space = this.space;
    const r = space.resolve(indirectAddr, cnt * 16, true);
    if (r < 0) throw new VirtioError('INVALID_ARGUMENT', `allocIndirect returned 0x${indirectAddr.toString(16)}, which is not ${cnt * 16} writable bytes of ${space.name}`);
    const dv = space.regions[r]!.dv;
    let o = space.off;
    let wBytes = 0;
    for (let i = 0; i < cnt; i++, o += 16) {
      const a = bSeg[2 * (s0 + i)]!;
      const l = bSeg[2 * (s0 + i) + 1]!;
      dv.setUint32(o, a >>> 0, true);
      dv.setUint32(o + 4, (a / TWO32) >>> 0, true);
      dv.setUint32(o + 8, l, true);
      let f = i < cnt - 1 ? F_NEXT : 0;
      if (i >= readableN) {
        f |= F_WRITE;
        wBytes += l;
      }
      dv.setUint16(o + 12, f, true);
      dv.setUint16(o + 14, i < cnt - 1 ? i + 1 : 0, true);
    }
    const desc = this.desc;
    const w = head << 2;
    desc[w] = indirectAddr >>> 0;
    desc[w + 1] = (indirectAddr / TWO32) >>> 0;
    desc[w + 2] = cnt * 16;
    desc[w + 3] = F_INDIRECT;
    const rr = head << 3;
    this.rec[rr + REC_WRITABLE] = wBytes > 0xffffffff ? -1 : wBytes; // saturated: used len is a u32
    this.rec[rr + REC_DESCS] = 1;
    this.rec[rr + REC_TAIL] = head;
    this.chainIndirect[head] = indirectAddr;
  }

  publish(): boolean {
    if (this.filling) this.reentrant('publish');
    const nw = this.availShadow;
    const old = this.availPublished;
    if (nw === old) return false;
    // basic.split-vq.updating-idx.driver.1: descriptors and ring entries are stored before idx.
    Atomics.store(this.avail, 1, nw);
    this.availPublished = nw;
    if (this.eventIdx) {
      // basic.split-vq.available-buffer-notif-suppression.driver.3: avail_event lives at the tail of the USED ring.
      return vringNeedEvent(Atomics.load(this.used16, this.availEventAt), nw, old);
    }
    // basic.split-vq.available-buffer-notif-suppression.driver.2
    return (Atomics.load(this.used16, 0) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** True when the device has returned buffers not yet collected (does not validate). */
  hasUsed(): boolean {
    return !this.stopped && (this.cachedUsed !== this.lastUsed || Atomics.load(this.used16, 1) !== this.lastUsed);
  }

  getUsed(): boolean {
    if (this.filling) this.reentrant('getUsed');
    if (this.stopped) return false;
    if (this.cachedUsed === this.lastUsed && !this.refreshUsed()) return false;
    if (this.fastOk) {
      // Plain completion: the checks of collectFast, inline.
      const last = this.lastUsed;
      const slot = 1 + ((last & this.mask) << 1);
      const id = this.used32[slot]!;
      const len = this.used32[slot + 1]!;
      if (id < this.size) {
        const rec = this.rec;
        const r = id << 3;
        const nd = rec[r | REC_DESCS]!;
        if (nd !== 0 && len <= rec[r | REC_WRITABLE]! >>> 0) {
          rec[(rec[r | REC_TAIL]! << 3) | REC_NEXT] = this.freeHead;
          this.freeHead = id;
          this.numFree += nd;
          rec[r | REC_DESCS] = 0;
          this.inFlightCount--;
          this.lastUsed = (last + 1) & 0xffff;
          this.lastToken = rec[r]!; // REC_TOKEN
          this.lastLen = len;
          return true;
        }
      }
    }
    const tok = this.oneTok;
    const len = this.oneLen;
    if (!this.collectSlow(tok, len, 0)) return false;
    this.lastToken = tok[0]!;
    this.lastLen = len[0]!;
    return true;
  }

  /**
   * Read used idx (when everything seen so far was consumed) and validate it.
   * @returns true when new entries are available; false when none, or after DEVICE_USED_IDX_AHEAD.
   */
  private refreshUsed(): boolean {
    const last = this.lastUsed;
    const u = Atomics.load(this.used16, 1);
    if (u === last) return false;
    const pending = (u - last) & 0xffff;
    if (pending > this.inFlightCount) {
      return this.fail('DEVICE_USED_IDX_AHEAD', undefined, `used idx ${u} is ${pending} entries ahead of ${last}, but only ${this.inFlightCount} buffers are in flight`);
    }
    this.cachedUsed = u;
    return true;
  }

  /** Collect up to `max` used buffers (see {@link DriverQueue.getUsedBatch}); returns how many. */
  getUsedBatch(tokens: Int32Array, lens: Uint32Array, max: number): number {
    if (this.filling) this.reentrant('getUsedBatch');
    const m = max < tokens.length ? max : tokens.length;
    return this.collect(tokens, lens, m < lens.length ? m : lens.length);
  }

  /**
   * Visitor form of {@link addBatch} (see {@link DriverQueue.addEach}). Regular chains (no
   * IN_ORDER, no indirect threshold) are written by {@link addEachFast} in one pass; others go
   * through the general writer one at a time.
   */
  addEach(filler: ChainFiller, max: number): number {
    if (this.filling) this.reentrant('addEach');
    if (this.stopped) return 0;
    this.filling = true;
    try {
      return this.addEachLoop(filler, max);
    } catch (e) {
      // A filler that throws leaves this pass's descriptors written but unrecorded: stop the queue
      // (the driver resets the device) and let the caller see the error. A malformed description
      // is refused before anything of its chain is written: the queue stays usable.
      if (!this.badFill) this.stopped = true;
      throw e;
    } finally {
      this.filling = false;
      this.badFill = false;
    }
  }

  private addEachLoop(filler: ChainFiller, max: number): number {
    let k = 0;
    while (k < max) {
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_NUM_FREE] = this.numFree;
        ds[DS_AVAIL] = this.availShadow;
        ds[DS_K] = k;
        ds[DS_N] = max;
        const k1 = (this.addEachFastFn ?? this.make_addEachFastFn())(filler);
        this.inFlightCount += k1 - k;
        k = k1;
        this.freeHead = ds[DS_FREE_HEAD]!;
        this.numFree = ds[DS_NUM_FREE]!;
        this.availShadow = ds[DS_AVAIL]!;
        // ds[DS_SEG]: 0 = stopped by the filler; 1 = chain k is described (its count, as returned,
        // in pendingCnt) but the fast path did not take it (malformed, ring full, or it needs the
        // general writer).
        if (ds[DS_SEG] === 0) break;
        if (!this.addEachSlow(filler, k, this.pendingCnt)) break;
        k++;
        continue;
      }
      const cnt = filler.fill(k, this.fillAddr, this.fillLen);
      if (cnt === 0 || !this.addEachSlow(filler, k, cnt)) break;
      k++;
    }
    return k;
  }

  /** addEachFast, specialised per queue (see specialize.ts); made on first use. */
  private addEachFastFn: ((f: ChainFiller) => number) | null = null;
  /** Compile (once) this queue's own copy of addEachFast (see specialize.ts). */
  private make_addEachFastFn(): (f: ChainFiller) => number {
    return (this.addEachFastFn = specialize(SplitDriverQueue.make_addEachFast, { DS_AVAIL, DS_FREE_HEAD, DS_K, DS_MASK, DS_N, DS_NUM_FREE, DS_SEG, F_NEXT, F_WRITE, REC_DESCS, REC_NEXT, REC_TAIL, REC_WRITABLE, TWO32 }, this));
  }

  /**
   * Factory of addEach's loop for one queue (compiled once per queue by specialize()): ask the
   * filler for chain k, write its descriptors (chains of up to three segments; longer ones are left
   * to {@link addEachSlow}), record it, fill the avail entry. Leaves ds[DS_SEG] = 0 when it stopped
   * because the filler returned 0, else 1 with the refused chain's segment count in pendingCnt.
   */
  private static make_addEachFast(q: SplitDriverQueue): (f: ChainFiller) => number {
    const ds = q.ds;
    const mask = ds[DS_MASK]!;
    const desc = q.desc;
    const avail = q.avail;
    const rec = q.rec;
    const sAddr = q.fillAddr;
    const sLen = q.fillLen;
    const capSeg = sLen.length;
    return (f: ChainFiller): number => {
      const n = ds[DS_N]!;
      let k = ds[DS_K]!;
      let freeHead = ds[DS_FREE_HEAD]!;
      let numFree = ds[DS_NUM_FREE]!;
      let a = ds[DS_AVAIL]!;
      let pending = 0;
      for (; k < n; k++) {
        const cnt = f.fill(k, sAddr, sLen);
        if (cnt === 0) break;
        const rdEnd = f.readable;
        // Up to three segments in straight-line code: a loop nested in this chain loop would make V8
        // re-check every typed array on each pass. Longer chains go to the general writer.
        if (!(cnt > 0 && cnt <= 3 && cnt <= capSeg && (cnt | 0) === cnt && rdEnd >= 0 && rdEnd <= cnt && (rdEnd | 0) === rdEnd) || numFree < cnt) {
          pending = cnt;
          break;
        }
        const head = freeHead;
        let tail = head;
        let wBytes = 0;
        // Segment 0. Addresses are below 2^53: `>>> 0` takes the low 32 bits exactly, `/ 2^32 >>> 0` the high ones.
        let ad = sAddr[0]!;
        let l = sLen[0]!;
        let w = head << 2;
        let nx = rec[(head << 3) | REC_NEXT]!;
        let fl = 0;
        desc[w] = ad >>> 0;
        desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
        desc[w | 2] = l;
        if (rdEnd === 0) {
          fl = F_WRITE;
          wBytes = l;
        }
        if (cnt > 1) {
          desc[w | 3] = fl | F_NEXT | (nx << 16);
          // Segment 1.
          const d1 = nx;
          tail = d1;
          ad = sAddr[1]!;
          l = sLen[1]!;
          w = d1 << 2;
          nx = rec[(d1 << 3) | REC_NEXT]!;
          fl = 0;
          desc[w] = ad >>> 0;
          desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
          desc[w | 2] = l;
          if (rdEnd <= 1) {
            fl = F_WRITE;
            wBytes += l;
          }
          if (cnt > 2) {
            desc[w | 3] = fl | F_NEXT | (nx << 16);
            // Segment 2.
            const d2 = nx;
            tail = d2;
            ad = sAddr[2]!;
            l = sLen[2]!;
            w = d2 << 2;
            nx = rec[(d2 << 3) | REC_NEXT]!;
            fl = 0;
            desc[w] = ad >>> 0;
            desc[w | 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
            desc[w | 2] = l;
            if (rdEnd <= 2) {
              fl = F_WRITE;
              wBytes += l;
            }
          }
        }
        desc[w | 3] = fl;
        freeHead = nx;
        numFree -= cnt;
        const r = head << 3;
        rec[r] = f.token; // REC_TOKEN
        rec[r | REC_WRITABLE] = wBytes > 0xffffffff ? -1 : wBytes; // saturated: used len is a u32
        rec[r | REC_DESCS] = cnt;
        rec[r | REC_TAIL] = tail;
        avail[2 + (a & mask)] = head;
        a = (a + 1) & 0xffff;
      }
      ds[DS_FREE_HEAD] = freeHead;
      ds[DS_NUM_FREE] = numFree;
      ds[DS_AVAIL] = a;
      ds[DS_SEG] = pending === 0 ? 0 : 1;
      q.pendingCnt = pending;
      return k;
    };
  }

  /** addEachFast's refused chain: the segment count fill() returned (any number). */
  private pendingCnt = 0;

  /**
   * Add chain `k`, already described in the scratch arrays (`cnt` segments), with the general
   * writer (checks, indirect tables, IN_ORDER). False when it does not fit.
   * @throws VirtioError INVALID_ARGUMENT for a malformed description
   */
  private addEachSlow(f: ChainFiller, k: number, cnt: number): boolean {
    const rd = f.readable;
    if (!(Number.isInteger(cnt) && cnt > 0 && cnt <= this.fillLen.length) || !(Number.isInteger(rd) && rd >= 0 && rd <= cnt)) {
      this.badFill = true;
      throw new VirtioError('INVALID_ARGUMENT', `SplitDriverQueue.addEach: chain ${k}: fill() returned ${cnt} segments with readable = ${rd}; need 1..${this.fillLen.length} segments and 0 <= readable <= segments`);
    }
    let one = this.oneSg;
    if (one.seg.length < 2 * cnt) one = this.oneSg = new SgBatch(1, cnt);
    one.clear().begin(f.token | 0);
    const c = one.chain;
    const sg = one.seg;
    for (let i = 0; i < cnt; i++) {
      sg[2 * i] = this.fillAddr[i]!;
      sg[2 * i + 1] = this.fillLen[i]!;
    }
    c[1] = cnt;
    c[2] = rd;
    one.count = 1;
    one.segs = cnt;
    return this.addMany(one, 1) === 1;
  }

  /**
   * Visitor form of {@link getUsedBatch} (see {@link DriverQueue.collectEach}): plain completions
   * in one pass ({@link collectEachFast}); IN_ORDER, indirect tables and anything invalid through
   * {@link collectSlow}, which reports.
   */
  collectEach(visitor: UsedVisitor, max: number): number {
    if (this.filling) this.reentrant('collectEach');
    if (this.stopped) return 0;
    this.filling = true;
    try {
      return this.collectEachLoop(visitor, max);
    } catch (e) {
      // A visitor that throws leaves this pass's ring state unknown: stop the queue (the driver
      // resets the device), then let the caller see the error.
      this.stopped = true;
      throw e;
    } finally {
      this.filling = false;
    }
  }

  private collectEachLoop(visitor: UsedVisitor, max: number): number {
    let k = 0;
    while (k < max) {
      if (this.cachedUsed === this.lastUsed && !this.refreshUsed()) break;
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_USED] = this.cachedUsed;
        ds[DS_LAST_USED] = this.lastUsed;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_NUM_FREE] = this.numFree;
        ds[DS_K] = k;
        ds[DS_N] = max;
        const k1 = (this.collectEachFastFn ?? this.make_collectEachFastFn())(visitor);
        this.inFlightCount -= k1 - k;
        k = k1;
        this.lastUsed = ds[DS_LAST_USED]!;
        this.freeHead = ds[DS_FREE_HEAD]!;
        this.numFree = ds[DS_NUM_FREE]!;
        if (k === max || this.cachedUsed === this.lastUsed) continue;
      }
      const tok = this.oneTok;
      const len = this.oneLen;
      if (!this.collectSlow(tok, len, 0)) break;
      k++;
      visitor.used(tok[0]!, len[0]!);
    }
    return k;
  }

  /** collectEachFast, specialised per queue (see specialize.ts); made on first use. */
  private collectEachFastFn: ((v: UsedVisitor) => number) | null = null;
  /** Compile (once) this queue's own copy of collectEachFast (see specialize.ts). */
  private make_collectEachFastFn(): (v: UsedVisitor) => number {
    return (this.collectEachFastFn = specialize(SplitDriverQueue.make_collectEachFast, { DS_FREE_HEAD, DS_K, DS_LAST_USED, DS_MASK, DS_N, DS_NUM_FREE, DS_SIZE, DS_USED, REC_DESCS, REC_NEXT, REC_TAIL, REC_WRITABLE }, this));
  }

  /**
   * Factory of collectEach's loop for one queue (compiled once per queue by specialize()): the
   * checks of {@link collectFast}, then the visitor (which must not call this queue: the ring state
   * is in locals until the loop ends).
   */
  private static make_collectEachFast(q: SplitDriverQueue): (v: UsedVisitor) => number {
    const ds = q.ds;
    const mask = ds[DS_MASK]!;
    const size = ds[DS_SIZE]!;
    const used32 = q.used32;
    const rec = q.rec;
    return (v: UsedVisitor): number => {
      const usedIdx = ds[DS_USED]!;
      const max = ds[DS_N]!;
      let k = ds[DS_K]!;
      let last = ds[DS_LAST_USED]!;
      let freeHead = ds[DS_FREE_HEAD]!;
      let numFree = ds[DS_NUM_FREE]!;
      while (k < max && last !== usedIdx) {
        const slot = 1 + ((last & mask) << 1);
        const rawId = used32[slot]!;
        const len = used32[slot + 1]!;
        if (!(rawId < size)) break;
        // Known below the queue size now: as an int32, freeHead (an int32 from ds) stays one too
        // (a Uint32Array value would make it a double, converted back on every store).
        const id = rawId | 0;
        const r = id << 3;
        const nd = rec[r | REC_DESCS]!;
        if (nd === 0 || len > rec[r | REC_WRITABLE]! >>> 0) break;
        rec[(rec[r | REC_TAIL]! << 3) | REC_NEXT] = freeHead;
        freeHead = id;
        numFree += nd;
        rec[r | REC_DESCS] = 0;
        k++;
        last = (last + 1) & 0xffff;
        v.used(rec[r]!, len); // REC_TOKEN
      }
      ds[DS_LAST_USED] = last;
      ds[DS_FREE_HEAD] = freeHead;
      ds[DS_NUM_FREE] = numFree;
      return k;
    };
  }

  /**
   * The one used-ring reader behind {@link getUsed} and {@link getUsedBatch}: validates and
   * releases up to `max` used buffers, with state in locals written back once.
   */
  private collect(outTok: Int32Array, outLen: Uint32Array, max: number): number {
    if (this.stopped) return 0;
    let k = 0;
    while (k < max) {
      if (this.cachedUsed === this.lastUsed && !this.refreshUsed()) break;
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_USED] = this.cachedUsed;
        ds[DS_LAST_USED] = this.lastUsed;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_NUM_FREE] = this.numFree;
        ds[DS_K] = k;
        ds[DS_N] = max;
        const k1 = this.collectFast(outTok, outLen);
        this.inFlightCount -= k1 - k;
        k = k1;
        this.lastUsed = ds[DS_LAST_USED]!;
        this.freeHead = ds[DS_FREE_HEAD]!;
        this.numFree = ds[DS_NUM_FREE]!;
        if (k === max || this.cachedUsed === this.lastUsed) continue;
      }
      if (!this.collectSlow(outTok, outLen, k)) break;
      k++;
    }
    return k;
  }

  /**
   * Collect entries while they are valid (known used idx, id in flight, len within the writable
   * part; {@link fastOk}: no IN_ORDER, no indirect tables); stops without consuming at the first
   * other one, which {@link collectSlow} re-checks and reports. No calls inside the loop; scalars
   * in/out through `ds`.
   */
  private collectFast(outTok: Int32Array, outLen: Uint32Array): number {
    const ds = this.ds;
    const mask = ds[DS_MASK]!;
    const size = ds[DS_SIZE]!;
    const usedIdx = ds[DS_USED]!;
    const max = ds[DS_N]!;
    let k = ds[DS_K]!;
    let last = ds[DS_LAST_USED]!;
    let freeHead = ds[DS_FREE_HEAD]!;
    let numFree = ds[DS_NUM_FREE]!;
    const used32 = this.used32;
    const rec = this.rec;
    while (k < max && last !== usedIdx) {
      const slot = 1 + ((last & mask) << 1);
      const rawId = used32[slot]!;
      const len = used32[slot + 1]!;
      if (!(rawId < size)) break;
      const id = rawId | 0; // int32 from here (see collectEachFast)
      const r = id << 3;
      const nd = rec[r | REC_DESCS]!;
      if (nd === 0 || len > rec[r | REC_WRITABLE]! >>> 0) break;
      rec[(rec[r | REC_TAIL]! << 3) | REC_NEXT] = freeHead;
      freeHead = id;
      numFree += nd;
      rec[r | REC_DESCS] = 0;
      outTok[k] = rec[r]!; // REC_TOKEN
      outLen[k] = len;
      k++;
      last = (last + 1) & 0xffff;
    }
    ds[DS_LAST_USED] = last;
    ds[DS_FREE_HEAD] = freeHead;
    ds[DS_NUM_FREE] = numFree;
    return k;
  }

  /** Collect the used entry at lastUsed with every check (and the IN_ORDER batched form) as output `k`. */
  private collectSlow(outTok: Int32Array, outLen: Uint32Array, k: number): boolean {
    const rec = this.rec;
    const last = this.lastUsed;
    let head: number;
    let len: number;
    if (this.batchLast >= 0) {
      head = this.order[this.orderHead]!;
      if (head === this.batchLast) {
        len = this.batchLastLen;
        this.batchLast = -1;
      } else {
        len = rec[(head << 3) + REC_WRITABLE]! >>> 0;
      }
    } else {
      const slot = 1 + ((last & this.mask) << 1);
      const id = this.used32[slot]!;
      len = this.used32[slot + 1]!;
      if (!(id < this.size) || rec[(id << 3) + REC_DESCS] === 0) {
        return this.fail('DEVICE_USED_BAD_ID', undefined, `used ring entry ${last} returns id ${id}, which is not the head of a buffer in flight`);
      }
      // basic.split-vq.vq-used-ring.device.2: len counts bytes written into the device-writable part.
      const writable = rec[(id << 3) + REC_WRITABLE]! >>> 0;
      if (len > writable) {
        return this.fail('DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2', `used ring entry ${last} (id ${id}) claims ${len} bytes written, but the chain has only ${writable} writable bytes`);
      }
      head = id;
      if (this.inOrder) {
        const oldest = this.order[this.orderHead]!;
        if (oldest !== id) {
          // Batched in-order completion: `id` ends a batch starting at the oldest chain.
          this.batchLast = id;
          this.batchLastLen = len;
          head = oldest;
          len = rec[(oldest << 3) + REC_WRITABLE]! >>> 0;
        }
      }
    }
    // Release the chain's descriptors.
    const r = head << 3;
    if (this.inOrder) this.orderHead = (this.orderHead + 1) & this.mask;
    else {
      rec[(rec[r + REC_TAIL]! << 3) | REC_NEXT] = this.freeHead;
      this.freeHead = head;
    }
    this.numFree += rec[r + REC_DESCS]!;
    rec[r + REC_DESCS] = 0;
    this.inFlightCount--;
    const ind = this.chainIndirect[head]!;
    if (ind >= 0) {
      this.chainIndirect[head] = -1;
      if (this.freeIndirect !== undefined) this.freeIndirect(ind);
    }
    this.lastUsed = (last + 1) & 0xffff;
    outTok[k] = rec[r + REC_TOKEN]!;
    outLen[k] = len;
    return true;
  }

  enableInterrupts(): void {
    if (this.filling) this.reentrant('enableInterrupts');
    if (this.eventIdx) {
      // basic.split-vq.used-buffer-notif-suppression.driver.2: flags 0; used_event = next entry we want to hear about.
      Atomics.store(this.avail, this.usedEventAt, this.lastUsed);
    } else {
      Atomics.store(this.avail, 0, 0);
    }
  }

  disableInterrupts(): void {
    if (this.filling) this.reentrant('disableInterrupts');
    if (this.eventIdx) {
      // Point used_event at the entry just consumed: it is reached again only after 2^16 more.
      Atomics.store(this.avail, this.usedEventAt, (this.lastUsed - 1) & 0xffff);
    } else {
      // basic.split-vq.used-buffer-notif-suppression.driver.1
      Atomics.store(this.avail, 0, VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
  }

  /**
   * Notification data without the vq index, in its le32 position: bits 16–30 next_off = avail idx
   * bits 0–14, bit 31 next_wrap = avail idx bit 15 — i.e. the published avail idx in the high 16
   * bits. OR in the queue index (bits 0–15) to get the 32-bit notification value.
   */
  notificationData(): number {
    return ((this.availPublished & 0xffff) << 16) >>> 0;
  }

  /** Next avail index to be published (tests). */
  get nextAvailIndex(): number {
    return this.availShadow;
  }
}
