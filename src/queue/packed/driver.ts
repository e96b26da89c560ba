/**
 * Driver side of the packed virtqueue (a simulated guest driver; virtio 1.4 packed-ring.tex).
 *
 * - Buffer ids come from a free list; each id remembers its token, ring slots, writable bytes and
 *   indirect table.
 * - {@link PackedDriverQueue.add} writes a buffer's descriptors (the id in each; the spec requires it
 *   in the last). The head's flags are written after the rest of the list
 *   (basic.packed-vq.scatter-gather-support.driver.6). The head of the FIRST buffer added since the
 *   last {@link PackedDriverQueue.publish} is held back until publish, so publish exposes the whole
 *   batch at once, like the split ring's index store; later heads are written by add (the device
 *   polls in ring order and stops at the held-back head).
 * - {@link PackedDriverQueue.publish} decides whether to kick from the DEVICE event suppression area.
 * - {@link PackedDriverQueue.getUsed} checks each used descriptor (id in range and in flight, length
 *   within the writable part) and reports violations to the sink, after which the queue is broken
 *   (getUsed returns false) until a new queue is built.
 * - With IN_ORDER, a used descriptor for buffer X also completes every older buffer: they are
 *   returned one per getUsed call, each with its full writable length, X with the written length.
 *
 * The constructor zeroes the descriptor ring and both event areas (the ring is zero-initialized).
 *
 * Memory ordering (when `cfg.concurrent`, default for SharedArrayBuffer / fd-backed rings): the
 * batch's held-back head flags are stored with `Atomics.store` in publish (everything else of the
 * batch was written before it; until then the held-back slot says neither available nor used), used
 * flags are read with `Atomics.load` — getUsedBatch once per call, on the first used descriptor,
 * which pairs with the device's release of its batch's first descriptor; otherwise plain accesses.
 *
 * Per-id bookkeeping (token, writable bytes, slots, free-list link) lives in one Float64Array so the
 * hot loops touch few typed arrays. addBatch / getUsedBatch have call-free fast paths for direct
 * chains (no IN_ORDER, no indirect tables) that stop at anything else; {@link PackedDriverQueue.add}
 * and {@link PackedDriverQueue.getUsed} then handle that chain or entry and do all the reporting.
 */
import { fixedF64, fixedI32, fixedU16, fixedU32 } from '../fixed-arrays.js';
import { specialize } from '../specialize.js';
import { VirtioError, requireArg, type VirtioErrorCode } from '../../errors.js';
import type { AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../../device/choke.js';
import { packedNeedEvent } from '../event-idx.js';
import {
  type ChainFiller,
  type DriverQueue,
  type DriverQueueOptions,
  type QueueConfig,
  type SgBatch,
  SG_CHAIN_STRIDE,
  SgList,
  type UsedVisitor,
  VIRTQ_DESC_F_AVAIL,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_USED,
  VIRTQ_DESC_F_WRITE,
} from '../types.js';
import { isPackedSetupError, resolvePackedRings, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE } from './layout.js';

const TWO_POW_32 = 4294967296;
/** 2^-32, exact: `Math.floor(a * INV_TWO_POW_32)` is the high word of `a` without a division. */
const INV_TWO_POW_32 = 1 / TWO_POW_32;
// Module-local copies of the flag bits: V8 folds these into the fast loops (imported bindings are
// re-loaded and hole-checked on every use).
const F_NEXT = VIRTQ_DESC_F_NEXT;
const F_WRITE = VIRTQ_DESC_F_WRITE;
const F_AVAIL = VIRTQ_DESC_F_AVAIL;
const F_USED = VIRTQ_DESC_F_USED;
const AVAIL_USED = VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
/** Fields of a per-id record in PackedDriverQueue.rec. */
const REC_TOKEN = 0;
const REC_WRITABLE = 1;
const REC_DESCS = 2;
const REC_NEXT_FREE = 3;
/** Slots of PackedDriverQueue.ds (fast-path scalars in and out, untagged int32 for V8). */
const DS_SIZE = 0;
const DS_MAXDIRECT = 1;
const DS_ATOMIC = 2;
const DS_OFF = 3;
const DS_WRAP = 4;
const DS_FREE_DESCS = 5;
const DS_FREE_HEAD = 6;
const DS_PENDING = 7;
const DS_PENDING_FLAGS = 8;
const DS_K = 9;
const DS_N = 10;
const DS_SEG = 11;
const DS_SLOTS_ADDED = 12;
/** addEachFast out: 1 when it stopped at a chain the filler described but it did not take (else 0). */
const DS_REFUSED = 13;
const DS_SLOTS = 14;

/** Driver side of a packed virtqueue. */
export class PackedDriverQueue implements DriverQueue {
  readonly kind = 'packed' as const;
  readonly size: number;
  readonly index: number;

  private readonly space: AddressSpace;
  private readonly sink: GuestErrorSink;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  /** Driver event suppression (written by the driver). */
  private readonly drvEvent: Uint16Array;
  /** Device event suppression (read by the driver to decide kicks). */
  private readonly devEvent: Uint16Array;
  private readonly eventIdx: boolean;
  private readonly inOrder: boolean;
  /** Order flags accesses with Atomics (another agent shares the ring); see device.ts. */
  private readonly atomic: boolean;
  private readonly indirectThreshold: number;
  private readonly allocIndirect: ((bytes: number) => number) | undefined;
  private readonly freeIndirect: ((addr: number) => void) | undefined;
  private readonly maxSeg: number;

  private availOff = 0;
  private availWrap = 1;
  private usedOff = 0;
  private usedWrap = 1;
  private freeDescs: number;
  /** Head of the free-id list (linked through REC_NEXT_FREE), -1 when empty. */
  private freeHead = 0;
  /**
   * Per id, stride 4 (one array, so the hot loops touch one view): token, writable bytes (the most
   * a used length may say), ring slots while in flight (0 = free), next free id (while free).
   */
  private readonly rec: Float64Array;
  /** Indirect table address per id, or -1. */
  private readonly idIndirect: Float64Array;
  private nInFlight = 0;
  /** Slot of the held-back head (or -1), its flags and wrap counter. */
  private pendingHead = -1;
  private pendingFlags = 0;
  private pendingWrap = 1;
  private addedSincePublish = 0;
  /** Avail position (offset | wrap << 15) at the last publish. */
  private publishedPos = 1 << 15;
  /** IN_ORDER: ids in add order. */
  private readonly fifo: Uint16Array;
  private fifoHead = 0;
  private fifoCount = 0;
  /** IN_ORDER: buffers left to return from the current used descriptor, its id and length. */
  private batchLeft = 0;
  private batchLen = 0;
  private isBroken = false;
  private sgScratch: SgList | undefined;
  private tok = 0;
  private len = 0;
  /** Fast-path scalar slots (DS_*). */
  private readonly ds = fixedI32(DS_SLOTS);
  /**
   * addFast / collectFast are used unless IN_ORDER or indirect tables (the complete paths do their
   * bookkeeping); tests may turn them off to compare them with the complete paths.
   */
  private fastOk: boolean;
  /** True while an addEach filler or a collectEach visitor runs (the ring state is in locals then). */
  private filling = false;
  /** Scratch segment arrays handed to {@link addEach} fillers (allocated on first use, maxSeg entries). */
  private fillAddr = fixedF64(0);
  private fillLen = fixedU32(0);
  /** addEachFast out: the segment count the filler returned for the chain it did not take. */
  private refusedCnt = 0;

  /**
   * @param space the driver's view of memory (rings, buffers and indirect tables live here).
   * @param cfg ring addresses and negotiated features; must describe a valid packed ring (throws
   *   VirtioError otherwise: this is the host building its simulated guest).
   */
  constructor(space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink, opts: DriverQueueOptions = {}) {
    const v = resolvePackedRings(space, cfg, 'driver');
    if (isPackedSetupError(v)) throw new VirtioError(v.code, v.message, { clause: v.clause });
    const threshold = opts.indirectThreshold ?? 0;
    requireArg(Number.isInteger(threshold) && threshold >= 0, `indirectThreshold must be a non-negative integer (got ${threshold})`);
    requireArg(threshold === 0 || !cfg.indirect || typeof opts.allocIndirect === 'function', 'indirectThreshold > 0 needs opts.allocIndirect');
    this.space = space;
    this.sink = sink;
    this.size = cfg.size;
    this.index = cfg.index;
    this.desc32 = v.desc32;
    this.desc16 = v.desc16;
    this.drvEvent = v.driverEvent;
    this.devEvent = v.deviceEvent;
    this.eventIdx = cfg.eventIdx;
    this.inOrder = cfg.inOrder;
    this.atomic = cfg.concurrent ?? v.shareable;
    this.indirectThreshold = cfg.indirect ? threshold : 0;
    this.allocIndirect = opts.allocIndirect;
    this.freeIndirect = opts.freeIndirect;
    this.maxSeg = cfg.maxChainSegments ?? cfg.size;
    const size = cfg.size;
    this.freeDescs = size;
    this.rec = fixedF64(4 * size);
    // Free ids as a LIFO list: 0, 1, 2, ... are handed out first.
    for (let i = 0; i < size; i++) this.rec[(i << 2) | REC_NEXT_FREE] = i + 1 < size ? i + 1 : -1;
    this.freeHead = 0;
    this.fastOk = !cfg.inOrder && this.indirectThreshold === 0;
    this.ds[DS_SIZE] = size;
    this.ds[DS_MAXDIRECT] = Math.min(this.maxSeg, size);
    this.ds[DS_ATOMIC] = this.atomic ? 1 : 0;
    this.idIndirect = fixedF64(size).fill(-1);
    this.fifo = fixedU16(size);
    v.desc32.fill(0);
    v.driverEvent.fill(0);
    v.deviceEvent.fill(0);
  }

  /** Free descriptor slots in the ring. */
  get freeCount(): number {
    return this.freeDescs;
  }
  /** Buffers added and not yet collected. */
  get inFlight(): number {
    return this.nInFlight;
  }
  /** Token of the buffer returned by the last successful {@link getUsed}. */
  get lastToken(): number {
    return this.tok;
  }
  /** Bytes the device wrote into it (0 when the used descriptor had no WRITE flag). */
  get lastLen(): number {
    return this.len;
  }
  /** True after the device returned something invalid (reported to the sink). */
  get broken(): boolean {
    return this.isBroken;
  }

  /**
   * Add a buffer. Uses one indirect table when indirect descriptors were negotiated and
   * `sg.count >= indirectThreshold`. Returns the buffer id, or -1 when there are not enough free
   * slots or ids. Throws INVALID_ARGUMENT for an empty list or one that can never fit.
   */
  add(sg: SgList, token: number): number {
    if (this.filling) this.reentrant('add');
    return this.addChain(sg, token);
  }

  /** The complete writer behind {@link add} (indirect tables, IN_ORDER, all checks). */
  private addChain(sg: SgList, token: number): number {
    const n = sg.count;
    const th = this.indirectThreshold;
    const indirect = th > 0 && n >= th;
    const slots = indirect ? 1 : n;
    if (n === 0 || n > this.maxSeg || slots > this.size) {
      // basic.packed-vq.scatter-gather-support.driver.1 / .driver.2
      throw new VirtioError('INVALID_ARGUMENT', `packed queue ${this.index}: a buffer needs 1..${Math.min(this.maxSeg, indirect ? this.maxSeg : this.size)} segments (got ${n})`);
    }
    if (slots > this.freeDescs || this.freeHead < 0) return -1;
    const id = this.freeHead;
    const rec = this.rec;
    const r = id << 2;
    this.freeHead = rec[r | REC_NEXT_FREE]!;
    const d16 = this.desc16;
    const d32 = this.desc32;
    const size = this.size;
    const sAddr = sg.addr;
    const sLen = sg.len;
    const readable = sg.readable;
    let off = this.availOff;
    let wrap = this.availWrap;
    let writable = 0;
    for (let i = readable; i < n; i++) writable += sLen[i]!;
    const headSlot = off;
    const headWrap = wrap;
    let headFlags = 0;
    if (indirect) {
      const bytes = n * 16;
      const table = this.allocIndirect!(bytes);
      const r = this.space.resolveOrThrow(table, bytes, true);
      const dv = this.space.regions[r]!.dv;
      let t = this.space.off;
      for (let i = 0; i < n; i++, t += 16) {
        const a = sAddr[i]!;
        dv.setUint32(t, a >>> 0, true);
        dv.setUint32(t + 4, Math.floor(a * INV_TWO_POW_32), true);
        dv.setUint32(t + 8, sLen[i]!, true);
        dv.setUint16(t + 12, 0, true);
        // basic.packed-vq.indirect-desc.driver.2: only WRITE inside an indirect table.
        dv.setUint16(t + 14, i >= readable ? VIRTQ_DESC_F_WRITE : 0, true);
      }
      const b = off * 4;
      d32[b] = table >>> 0;
      d32[b + 1] = Math.floor(table * INV_TWO_POW_32);
      d32[b + 2] = bytes;
      d16[off * 8 + 6] = id;
      headFlags = VIRTQ_DESC_F_INDIRECT | (wrap !== 0 ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED);
      this.idIndirect[id] = table;
      off++;
      if (off === size) {
        off = 0;
        wrap ^= 1;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const a = sAddr[i]!;
        const b = off * 4;
        d32[b] = a >>> 0;
        d32[b + 1] = Math.floor(a * INV_TWO_POW_32);
        d32[b + 2] = sLen[i]!;
        d16[off * 8 + 6] = id;
        // Available: AVAIL = wrap counter, USED = its inverse.
        const f = (wrap !== 0 ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED) | (i >= readable ? VIRTQ_DESC_F_WRITE : 0) | (i < n - 1 ? VIRTQ_DESC_F_NEXT : 0);
        if (i === 0) headFlags = f;
        else d16[off * 8 + 7] = f; // ordered by the head's release
        off++;
        if (off === size) {
          off = 0;
          wrap ^= 1;
        }
      }
    }
    // basic.packed-vq.scatter-gather-support.driver.6 / updating-flags.driver.1: head flags last.
    if (this.pendingHead < 0) {
      this.pendingHead = headSlot;
      this.pendingFlags = headFlags;
      this.pendingWrap = headWrap;
      // Until publish: AVAIL = !wrap, USED = 0 — neither available to the device nor used to us.
      d16[headSlot * 8 + 7] = headWrap !== 0 ? 0 : VIRTQ_DESC_F_AVAIL;
    } else {
      d16[headSlot * 8 + 7] = headFlags; // ordered by the held-back head's release in publish()
    }
    this.availOff = off;
    this.availWrap = wrap;
    this.freeDescs -= slots;
    this.addedSincePublish += slots;
    rec[r | REC_DESCS] = slots;
    rec[r | REC_WRITABLE] = writable;
    rec[r | REC_TOKEN] = token;
    this.nInFlight++;
    if (this.inOrder) {
      let p = this.fifoHead + this.fifoCount;
      if (p >= size) p -= size;
      this.fifo[p] = id;
      this.fifoCount++;
    }
    return id;
  }

  /**
   * Batch form of {@link add}: add chains 0, 1, … of `batch` until one does not fit (not enough free
   * slots or ids); writes each id to `batch.chain[4i+3]` and returns how many were added. Same
   * head-last rule and batching as add; call {@link publish} once afterwards. Throws
   * INVALID_ARGUMENT for an empty or impossible chain (those before it stay added).
   *
   * Direct chains go through {@link addFast} (no calls in its loop); indirect tables, IN_ORDER and
   * anything it does not take go through {@link add}, one chain at a time.
   */
  addBatch(batch: SgBatch): number {
    if (this.filling) this.reentrant('addBatch');
    const ch = batch.chain;
    const sseg = batch.seg;
    const nChains = batch.count;
    let k = 0;
    let s = 0;
    while (k < nChains) {
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_OFF] = this.availOff;
        ds[DS_WRAP] = this.availWrap;
        ds[DS_FREE_DESCS] = this.freeDescs;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_PENDING] = this.pendingHead;
        ds[DS_PENDING_FLAGS] = this.pendingFlags;
        ds[DS_K] = k;
        ds[DS_N] = nChains;
        ds[DS_SEG] = s;
        ds[DS_SLOTS_ADDED] = 0;
        const k1 = this.addFast(batch);
        this.nInFlight += k1 - k;
        k = k1;
        s = ds[DS_SEG]!;
        this.availOff = ds[DS_OFF]!;
        this.availWrap = ds[DS_WRAP]!;
        this.freeDescs = ds[DS_FREE_DESCS]!;
        this.freeHead = ds[DS_FREE_HEAD]!;
        if (this.pendingHead < 0 && ds[DS_PENDING]! >= 0) {
          // addFast held back the first head of this publish batch.
          this.pendingWrap = (ds[DS_PENDING_FLAGS]! & F_AVAIL) !== 0 ? 1 : 0;
        }
        this.pendingHead = ds[DS_PENDING]!;
        this.pendingFlags = ds[DS_PENDING_FLAGS]!;
        this.addedSincePublish += ds[DS_SLOTS_ADDED]!;
        if (k === nChains) break;
      }
      // The complete writer for one chain: indirect tables, IN_ORDER, no room, invalid chains.
      const co = SG_CHAIN_STRIDE * k;
      const n = ch[co + 1]!;
      const readableN = ch[co + 2]!;
      if (!(n >= 0)) throw new VirtioError('INVALID_ARGUMENT', `packed queue ${this.index}: batch chain ${k} has ${n} segments`);
      const sg = this.scratchSg(n);
      sg.count = 0;
      sg.readable = 0;
      for (let i = 0; i < n; i++) {
        const q = 2 * (s + i);
        if (i < readableN) sg.out(sseg[q]!, sseg[q + 1]!);
        else sg.in(sseg[q]!, sseg[q + 1]!);
      }
      const id = this.addChain(sg, ch[co]!);
      if (id < 0) break;
      ch[co + 3] = id;
      s += n;
      k++;
    }
    return k;
  }

  /**
   * Write direct chains from `ds[DS_K]` on while they are valid (1..maxDirect segments) and fit;
   * stops at the first other one. The first head of a publish batch is held back (its flags go to
   * ds[DS_PENDING_FLAGS] for {@link publish}; the slot meanwhile says neither available nor used);
   * every other head is written after its list, id and flags in one store. No calls in the loop.
   * @returns the index of the first chain not added
   */
  private addFast(batch: SgBatch): number {
    const ds = this.ds;
    const size = ds[DS_SIZE]!;
    const maxDirect = ds[DS_MAXDIRECT]!;
    const nChains = ds[DS_N]!;
    let k = ds[DS_K]!;
    let s = ds[DS_SEG]!;
    let off = ds[DS_OFF]!;
    // (flags & 0x8080) of an available descriptor in this lap: AVAIL = wrap, USED = !wrap.
    let av = ds[DS_WRAP] !== 0 ? F_AVAIL : F_USED;
    let freeDescs = ds[DS_FREE_DESCS]!;
    let freeHead = ds[DS_FREE_HEAD]!;
    let pending = ds[DS_PENDING]!;
    let pendingFlags = ds[DS_PENDING_FLAGS]!;
    let slotsAdded = 0;
    const ch = batch.chain;
    const sseg = batch.seg;
    const d32 = this.desc32;
    const rec = this.rec;
    while (k < nChains) {
      const co = k << 2;
      const n = ch[co | 1]!;
      if (!(n > 0 && n <= maxDirect && n <= freeDescs) || freeHead < 0) break;
      const id = freeHead;
      const r = id << 2;
      freeHead = rec[r | REC_NEXT_FREE]!;
      const readable = ch[co | 2]!;
      const headSlot = off;
      const headAv = av;
      let writable = 0;
      let headFlags: number;
      if (n === 1) {
        // One segment: straight-line code.
        const q = s << 1;
        const a = sseg[q]!;
        const l = sseg[q | 1]!;
        const b = off << 2;
        d32[b] = a >>> 0;
        d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
        d32[b | 2] = l;
        if (readable <= 0) {
          headFlags = av | F_WRITE;
          writable = l;
        } else {
          headFlags = av;
        }
        off = (off + 1) | 0;
        if (off === size) {
          off = 0;
          av ^= AVAIL_USED;
        }
      } else {
        headFlags = av | F_NEXT | (readable <= 0 ? F_WRITE : 0);
        for (let i = 0; i < n; i++) {
          const q = (s + i) << 1;
          const a = sseg[q]!;
          const l = sseg[q | 1]!;
          const b = off << 2;
          d32[b] = a >>> 0;
          d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
          d32[b | 2] = l;
          let f = av;
          if (i >= readable) {
            f |= F_WRITE;
            writable += l;
          }
          if (i < n - 1) f |= F_NEXT;
          // The head (i = 0) is written after the loop; the rest now (ordered by the head's store).
          if (i > 0) d32[b | 3] = id | (f << 16);
          off = (off + 1) | 0;
          if (off === size) {
            off = 0;
            av ^= AVAIL_USED;
          }
        }
      }
      // basic.packed-vq.scatter-gather-support.driver.6 / updating-flags.driver.1: head flags last.
      if (pending < 0) {
        pending = headSlot;
        pendingFlags = headFlags;
        // Until publish: AVAIL = !wrap, USED = 0 — neither available to the device nor used to us.
        d32[(headSlot << 2) | 3] = id | ((headAv === F_AVAIL ? 0 : F_AVAIL) << 16);
      } else {
        d32[(headSlot << 2) | 3] = id | (headFlags << 16);
      }
      rec[r] = ch[co]!; // REC_TOKEN
      rec[r | REC_WRITABLE] = writable;
      rec[r | REC_DESCS] = n;
      ch[co | 3] = id;
      freeDescs -= n;
      slotsAdded += n;
      s += n;
      k++;
    }
    ds[DS_SEG] = s;
    ds[DS_OFF] = off;
    ds[DS_WRAP] = av === F_AVAIL ? 1 : 0;
    ds[DS_FREE_DESCS] = freeDescs;
    ds[DS_FREE_HEAD] = freeHead;
    ds[DS_PENDING] = pending;
    ds[DS_PENDING_FLAGS] = pendingFlags;
    ds[DS_SLOTS_ADDED] = slotsAdded;
    return k;
  }

  /** Throw for a call made from inside this queue's own addEach filler or collectEach visitor. */
  private reentrant(what: string): never {
    throw new VirtioError('REENTRANT_CALL', `packed queue ${this.index}: ${what}() called from inside an addEach filler or collectEach visitor of the same queue; do it after the call returns`);
  }

  /**
   * Visitor form of {@link addBatch} (see {@link DriverQueue.addEach}). Direct chains (no IN_ORDER,
   * no indirect threshold) are written by {@link addEachFast} in one pass, with the same head-last
   * rule and held-back first head as addBatch; others (and anything addEachFast refuses) go through
   * the complete writer one at a time. A filler that throws stops the queue (as a collectEach
   * visitor does); the chains before it stay added, the ring state consistent, and the error
   * propagates.
   */
  addEach(filler: ChainFiller, max: number): number {
    if (this.filling) this.reentrant('addEach');
    if (this.isBroken) return 0;
    if (this.fillLen.length === 0) {
      const cap = Number.isInteger(this.maxSeg) && this.maxSeg > 0 ? this.maxSeg : this.size;
      this.fillAddr = fixedF64(cap);
      this.fillLen = fixedU32(cap);
    }
    this.filling = true;
    try {
      return this.addEachLoop(filler, max);
    } catch (e) {
      if (!(e instanceof VirtioError && e.code === 'INVALID_ARGUMENT')) this.isBroken = true;
      throw e;
    } finally {
      this.filling = false;
    }
  }

  private addEachLoop(filler: ChainFiller, max: number): number {
    let k = 0;
    while (k < max) {
      if (this.fastOk) {
        const ds = this.ds;
        ds[DS_OFF] = this.availOff;
        ds[DS_WRAP] = this.availWrap;
        ds[DS_FREE_DESCS] = this.freeDescs;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_PENDING] = this.pendingHead;
        ds[DS_PENDING_FLAGS] = this.pendingFlags;
        ds[DS_K] = k;
        ds[DS_N] = max < 0x7fffffff ? max : 0x7fffffff;
        ds[DS_SLOTS_ADDED] = 0;
        ds[DS_REFUSED] = 0;
        try {
          (this.addEachFastFn ?? this.make_addEachFastFn())(filler);
        } finally {
          // Also when the filler threw: addEachFast wrote back the chains before it.
          const k1 = ds[DS_K]!;
          this.nInFlight += k1 - k;
          k = k1;
          this.availOff = ds[DS_OFF]!;
          this.availWrap = ds[DS_WRAP]!;
          this.freeDescs = ds[DS_FREE_DESCS]!;
          this.freeHead = ds[DS_FREE_HEAD]!;
          if (this.pendingHead < 0 && ds[DS_PENDING]! >= 0) {
            // addEachFast held back the first head of this publish batch.
            this.pendingWrap = (ds[DS_PENDING_FLAGS]! & F_AVAIL) !== 0 ? 1 : 0;
          }
          this.pendingHead = ds[DS_PENDING]!;
          this.pendingFlags = ds[DS_PENDING_FLAGS]!;
          this.addedSincePublish += ds[DS_SLOTS_ADDED]!;
        }
        // Stopped by the filler (0), by max, or at a chain it described and addEachFast refused
        // (malformed, too long for a direct list, or no room): the complete writer decides.
        if (ds[DS_REFUSED] === 0) break;
        if (!this.addEachSlow(filler, k, this.refusedCnt)) break;
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
  private addEachFastFn: ((f: ChainFiller) => void) | null = null;
  /** Compile (once) this queue's own copy of addEachFast (see specialize.ts). */
  private make_addEachFastFn(): (f: ChainFiller) => void {
    return (this.addEachFastFn = specialize(PackedDriverQueue.make_addEachFast, { AVAIL_USED, DS_FREE_DESCS, DS_FREE_HEAD, DS_K, DS_MAXDIRECT, DS_N, DS_OFF, DS_PENDING, DS_PENDING_FLAGS, DS_REFUSED, DS_SIZE, DS_SLOTS_ADDED, DS_WRAP, F_AVAIL, F_NEXT, F_USED, F_WRITE, REC_DESCS, REC_NEXT_FREE, REC_WRITABLE, TWO_POW_32 }, this));
  }

  /**
   * Factory of addEach's loop for one queue (compiled once per queue by specialize()); the rules of
   * {@link addFast}: ask the filler for chain k, write its descriptors (lists of up to three; longer
   * ones are refused to the general writer; head flags last; the publish batch's first head held
   * back), record the id. Stops when the filler returns 0, or — consuming nothing but the
   * description — at a chain it does not take (ds[DS_REFUSED] = 1, the filler's count in
   * {@link refusedCnt}). Its state goes back to `ds` in `finally`, so a filler that throws leaves the
   * chains before it added. No calls in the loop but the filler.
   */
  private static make_addEachFast(q: PackedDriverQueue): (f: ChainFiller) => void {
    const ds = q.ds;
    const size = ds[DS_SIZE]!;
    const maxDirect = ds[DS_MAXDIRECT]!;
    const sAddr = q.fillAddr;
    const sLen = q.fillLen;
    const d32 = q.desc32;
    const rec = q.rec;
    return (f: ChainFiller): void => {
      const nChains = ds[DS_N]!;
      let k = ds[DS_K]!;
      let off = ds[DS_OFF]!;
      // (flags & 0x8080) of an available descriptor in this lap: AVAIL = wrap, USED = !wrap.
      let av = ds[DS_WRAP] !== 0 ? F_AVAIL : F_USED;
      let freeDescs = ds[DS_FREE_DESCS]!;
      let freeHead = ds[DS_FREE_HEAD]!;
      let pending = ds[DS_PENDING]!;
      let pendingFlags = ds[DS_PENDING_FLAGS]!;
      let slotsAdded = 0;
      let refused = 0;
      try {
        for (; k < nChains; k++) {
          const n = f.fill(k, sAddr, sLen);
          if (n === 0) break;
          const readable = f.readable;
          if (!((n | 0) === n && n > 0 && n <= 3 && n <= maxDirect && n <= freeDescs && (readable | 0) === readable && readable >= 0 && readable <= n) || freeHead < 0) {
            q.refusedCnt = n;
            refused = 1;
            break;
          }
          const id = freeHead;
          const r = id << 2;
          freeHead = rec[r | REC_NEXT_FREE]!;
          const headSlot = off;
          const headAv = av;
          let writable = 0;
          let headFlags: number;
          if (n === 1) {
            // One segment: straight-line code.
            const a = sAddr[0]!;
            const l = sLen[0]!;
            const b = off << 2;
            d32[b] = a >>> 0;
            d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
            d32[b | 2] = l;
            if (readable === 0) {
              headFlags = av | F_WRITE;
              writable = l;
            } else {
              headFlags = av;
            }
            off = (off + 1) | 0;
            if (off === size) {
              off = 0;
              av ^= AVAIL_USED;
            }
          } else {
            // Two or three segments, straight-line code too: a loop nested in this chain loop would
            // make V8 re-check every typed array on each pass. Longer lists go to the general writer.
            headFlags = av | F_NEXT | (readable === 0 ? F_WRITE : 0);
            let a = sAddr[0]!;
            let l = sLen[0]!;
            let b = off << 2;
            d32[b] = a >>> 0;
            d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
            d32[b | 2] = l;
            if (readable === 0) writable = l;
            off = (off + 1) | 0;
            if (off === size) {
              off = 0;
              av ^= AVAIL_USED;
            }
            // Segment 1 (written now; the head's flags are stored last, below).
            a = sAddr[1]!;
            l = sLen[1]!;
            b = off << 2;
            d32[b] = a >>> 0;
            d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
            d32[b | 2] = l;
            let fl = av;
            if (readable <= 1) {
              fl |= F_WRITE;
              writable += l;
            }
            if (n > 2) fl |= F_NEXT;
            d32[b | 3] = id | (fl << 16);
            off = (off + 1) | 0;
            if (off === size) {
              off = 0;
              av ^= AVAIL_USED;
            }
            if (n > 2) {
              a = sAddr[2]!;
              l = sLen[2]!;
              b = off << 2;
              d32[b] = a >>> 0;
              d32[b | 1] = a > 0xffffffff ? (a / TWO_POW_32) >>> 0 : 0;
              d32[b | 2] = l;
              fl = av;
              if (readable <= 2) {
                fl |= F_WRITE;
                writable += l;
              }
              d32[b | 3] = id | (fl << 16);
              off = (off + 1) | 0;
              if (off === size) {
                off = 0;
                av ^= AVAIL_USED;
              }
            }
          }
          // basic.packed-vq.scatter-gather-support.driver.6 / updating-flags.driver.1: head flags last.
          if (pending < 0) {
            pending = headSlot;
            pendingFlags = headFlags;
            // Until publish: AVAIL = !wrap, USED = 0 — neither available to the device nor used to us.
            d32[(headSlot << 2) | 3] = id | ((headAv === F_AVAIL ? 0 : F_AVAIL) << 16);
          } else {
            d32[(headSlot << 2) | 3] = id | (headFlags << 16);
          }
          rec[r] = f.token; // REC_TOKEN
          rec[r | REC_WRITABLE] = writable;
          rec[r | REC_DESCS] = n;
          freeDescs -= n;
          slotsAdded += n;
        }
      } finally {
        ds[DS_K] = k;
        ds[DS_OFF] = off;
        ds[DS_WRAP] = av === F_AVAIL ? 1 : 0;
        ds[DS_FREE_DESCS] = freeDescs;
        ds[DS_FREE_HEAD] = freeHead;
        ds[DS_PENDING] = pending;
        ds[DS_PENDING_FLAGS] = pendingFlags;
        ds[DS_SLOTS_ADDED] = slotsAdded;
        ds[DS_REFUSED] = refused;
      }
    };
  }

  /**
   * Add chain `k`, already described in the scratch arrays (`cnt` segments), with the complete
   * writer (indirect tables, IN_ORDER, every check). False when it does not fit.
   * @throws VirtioError INVALID_ARGUMENT for a malformed description (or one that can never fit, as add)
   */
  private addEachSlow(f: ChainFiller, k: number, cnt: number): boolean {
    const rd = f.readable;
    const cap = this.fillLen.length;
    if (!(Number.isInteger(cnt) && cnt > 0 && cnt <= cap) || !(Number.isInteger(rd) && rd >= 0 && rd <= cnt)) {
      throw new VirtioError('INVALID_ARGUMENT', `packed queue ${this.index}: addEach chain ${k}: fill() returned ${cnt} segments with readable = ${rd}; need 1..${cap} segments and 0 <= readable <= segments`);
    }
    const sg = this.scratchSg(cnt);
    const sAddr = this.fillAddr;
    const sLen = this.fillLen;
    for (let i = 0; i < cnt; i++) {
      sg.addr[i] = sAddr[i]!;
      sg.len[i] = sLen[i]!;
    }
    sg.count = cnt;
    sg.readable = rd;
    return this.addChain(sg, f.token) >= 0;
  }

  /**
   * Visitor form of {@link getUsedBatch} (see {@link DriverQueue.collectEach}): plain completions
   * in one pass ({@link collectEachFast}); IN_ORDER, indirect tables and anything invalid through
   * the complete reader, which reports. A visitor that throws stops the queue; the error propagates.
   */
  collectEach(visitor: UsedVisitor, max: number): number {
    if (this.filling) this.reentrant('collectEach');
    if (this.isBroken) return 0;
    this.filling = true;
    try {
      return this.collectEachLoop(visitor, max);
    } catch (e) {
      // A visitor that throws leaves this pass's ring state unknown: stop the queue (the driver
      // resets the device), then let the caller see the error.
      this.isBroken = true;
      throw e;
    } finally {
      this.filling = false;
    }
  }

  private collectEachLoop(visitor: UsedVisitor, max: number): number {
    let k = 0;
    while (k < max) {
      if (this.fastOk) {
        if (this.isBroken) break;
        const ds = this.ds;
        ds[DS_OFF] = this.usedOff;
        ds[DS_WRAP] = this.usedWrap;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_K] = k;
        ds[DS_N] = max < 0x7fffffff ? max : 0x7fffffff;
        ds[DS_SLOTS_ADDED] = 0;
        const k1 = (this.collectEachFastFn ?? this.make_collectEachFastFn())(visitor);
        if (k1 > k) {
          this.nInFlight -= k1 - k;
          this.freeDescs += ds[DS_SLOTS_ADDED]!;
          this.usedOff = ds[DS_OFF]!;
          this.usedWrap = ds[DS_WRAP]!;
          this.freeHead = ds[DS_FREE_HEAD]!;
          k = k1;
        }
        if (k >= max || ds[DS_PENDING]! === 0) break; // (DS_PENDING: 0 = nothing more is used)
      }
      // The complete reader for one entry (and the one place that reports).
      if (!this.readUsed()) break;
      k++;
      visitor.used(this.tok, this.len);
    }
    return k;
  }

  /** collectEachFast, specialised per queue (see specialize.ts); made on first use. */
  private collectEachFastFn: ((v: UsedVisitor) => number) | null = null;
  /** Compile (once) this queue's own copy of collectEachFast (see specialize.ts). */
  private make_collectEachFastFn(): (v: UsedVisitor) => number {
    return (this.collectEachFastFn = specialize(PackedDriverQueue.make_collectEachFast, { AVAIL_USED, DS_ATOMIC, DS_FREE_HEAD, DS_K, DS_N, DS_OFF, DS_PENDING, DS_SIZE, DS_SLOTS_ADDED, DS_WRAP, F_WRITE, REC_DESCS, REC_NEXT_FREE, REC_WRITABLE }, this));
  }

  /**
   * Factory of collectEach's loop for one queue (compiled once per queue by specialize()): the
   * checks and the single acquire of {@link collectFast}, then the visitor (which must not call this
   * queue: the ring state is in locals until the loop ends). Stops without consuming at the first
   * entry it does not take (ds[DS_PENDING] as collectFast). The returned function gives the number
   * of buffers collected in this collectEach call so far.
   */
  private static make_collectEachFast(q: PackedDriverQueue): (v: UsedVisitor) => number {
    const ds = q.ds;
    const size = ds[DS_SIZE]!;
    const d32 = q.desc32;
    const rec = q.rec;
    return (v: UsedVisitor): number => {
      const m = ds[DS_N]!;
      let k = ds[DS_K]!;
      let uo = ds[DS_OFF]!;
      // (flags & 0x8080) of a used descriptor: AVAIL = USED = used wrap counter.
      let ub = ds[DS_WRAP] !== 0 ? AVAIL_USED : 0;
      let freeHead = ds[DS_FREE_HEAD]!;
      let freed = 0;
      if (ds[DS_ATOMIC] !== 0) Atomics.load(q.desc16, (uo << 3) | 7);
      let more = 1;
      while (k < m) {
        const b = uo << 2;
        const word = d32[b | 3]!;
        const fl = word >>> 16;
        if ((fl & AVAIL_USED) !== ub) {
          more = 0;
          break;
        }
        const id = word & 0xffff;
        if (id >= size) break;
        const r = id << 2;
        const nd = rec[r | REC_DESCS]!;
        if (nd === 0) break;
        // Element Length is reserved (ignored) in a used descriptor without WRITE.
        const len = (fl & F_WRITE) !== 0 ? d32[b | 2]! : 0;
        if (len > rec[r | REC_WRITABLE]!) break;
        rec[r | REC_DESCS] = 0;
        rec[r | REC_NEXT_FREE] = freeHead;
        freeHead = id;
        freed += nd;
        k++;
        uo += nd;
        if (uo >= size) {
          uo -= size;
          ub ^= AVAIL_USED;
        }
        v.used(rec[r]!, len); // REC_TOKEN
      }
      ds[DS_PENDING] = more;
      ds[DS_OFF] = uo;
      ds[DS_WRAP] = ub !== 0 ? 1 : 0;
      ds[DS_FREE_HEAD] = freeHead;
      ds[DS_SLOTS_ADDED] = freed;
      return k;
    };
  }

  /** An SgList for addBatch's indirect path (grown on demand, not per request). */
  private scratchSg(n: number): SgList {
    let sg = this.sgScratch;
    if (sg === undefined || sg.addr.length < n) {
      sg = new SgList(Math.max(n, 16));
      this.sgScratch = sg;
    }
    return sg;
  }

  /**
   * Expose everything added since the last publish and decide whether to notify the device from the
   * DEVICE event suppression area: DISABLE → no; DESC (with EVENT_IDX) → yes when the avail position
   * passed desc_event_off/wrap; otherwise yes (DESC without EVENT_IDX and the reserved value 3 count as
   * ENABLE). Returns false when nothing was added.
   */
  publish(): boolean {
    // (inside addEach the held-back head is in addEachFast's locals: publishing then would expose a stale one)
    if (this.filling) this.reentrant('publish');
    const d16 = this.desc16;
    if (this.pendingHead >= 0) {
      if (this.atomic) Atomics.store(d16, this.pendingHead * 8 + 7, this.pendingFlags);
      else d16[this.pendingHead * 8 + 7] = this.pendingFlags;
      this.pendingHead = -1;
    }
    const added = this.addedSincePublish;
    if (added === 0) return false;
    const now = this.availOff | (this.availWrap << 15);
    const old = this.publishedPos;
    this.addedSincePublish = 0;
    this.publishedPos = now;
    // basic.packed-vq.sending-available-buffer-notif.driver.1: Atomics.load is sequentially consistent.
    const ev = this.devEvent;
    const flags = Atomics.load(ev, 1) & 3;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags !== RING_EVENT_FLAGS_DESC || !this.eventIdx) return true;
    if (added >= this.size) return true;
    return packedNeedEvent(Atomics.load(ev, 0), now, old, this.size);
  }

  /**
   * Collect one used buffer into {@link lastToken} / {@link lastLen}. Returns false when none is
   * pending, when the queue is broken, or when the used descriptor is invalid (reported to the sink:
   * DEVICE_USED_BAD_ID for an id out of range or not in flight, DEVICE_USED_BAD_LEN for a length
   * beyond the buffer's writable bytes).
   */
  getUsed(): boolean {
    if (this.filling) this.reentrant('getUsed');
    return this.readUsed();
  }

  /** The complete reader behind {@link getUsed}: one used buffer, every check, the one place that reports. */
  private readUsed(): boolean {
    if (this.isBroken) return false;
    if (this.batchLeft > 0) return this.nextInBatch();
    const d16 = this.desc16;
    const uo = this.usedOff;
    const uw = this.usedWrap;
    const flags = this.atomic ? Atomics.load(d16, uo * 8 + 7) : d16[uo * 8 + 7]!;
    // Used: AVAIL = USED = our used wrap counter.
    if (((flags >>> 7) & 1) !== uw || flags >>> 15 !== uw) return false;
    const id = d16[uo * 8 + 6]!;
    const raw = this.desc32[uo * 4 + 2]!;
    const rec = this.rec;
    if (id >= this.size || rec[(id << 2) | REC_DESCS] === 0) {
      return this.fail('DEVICE_USED_BAD_ID', `used descriptor at offset ${uo} has id ${id}, which is ${id >= this.size ? `not below the queue size ${this.size}` : 'not in flight'}`);
    }
    // Element Length is reserved (ignored) in a used descriptor without WRITE.
    const len = (flags & VIRTQ_DESC_F_WRITE) !== 0 ? raw : 0;
    const writable = rec[(id << 2) | REC_WRITABLE]!;
    if (len > writable) {
      return this.fail('DEVICE_USED_BAD_LEN', `used descriptor at offset ${uo} (id ${id}) says ${len} bytes written, but the buffer has only ${writable} writable bytes`);
    }
    if (this.inOrder && this.fifo[this.fifoHead] !== id) {
      // IN_ORDER batch: every buffer up to id is used.
      const size = this.size;
      let k = 0;
      let p = this.fifoHead;
      while (this.fifo[p] !== id) {
        k++;
        p++;
        if (p === size) p = 0;
      }
      this.batchLeft = k + 1;
      this.batchLen = len;
      return this.nextInBatch();
    }
    if (this.inOrder) {
      this.fifoHead = this.fifoHead + 1 === this.size ? 0 : this.fifoHead + 1;
      this.fifoCount--;
    }
    this.complete(id, len);
    return true;
  }

  /**
   * Batch form of {@link getUsed}: collect up to `max` used buffers (tokens to `tokens[i]`, written
   * lengths to `lens[i]`) with the same validation; returns how many. Stops early after reporting
   * an invalid used descriptor (entries before it are returned).
   *
   * Plain completions go through {@link collectFast} (no calls in its loop); IN_ORDER, indirect
   * tables and anything it does not take go through {@link getUsed}, which also does all reporting.
   */
  getUsedBatch(tokens: Int32Array, lens: Uint32Array, max: number): number {
    if (this.filling) this.reentrant('getUsedBatch');
    let m = max;
    if (tokens.length < m) m = tokens.length;
    if (lens.length < m) m = lens.length;
    let k = 0;
    while (k < m) {
      if (this.fastOk) {
        if (this.isBroken) break;
        const ds = this.ds;
        ds[DS_OFF] = this.usedOff;
        ds[DS_WRAP] = this.usedWrap;
        ds[DS_FREE_HEAD] = this.freeHead;
        ds[DS_K] = k;
        ds[DS_N] = m;
        ds[DS_SLOTS_ADDED] = 0;
        const k1 = this.collectFast(tokens, lens);
        if (k1 > k) {
          this.nInFlight -= k1 - k;
          this.freeDescs += ds[DS_SLOTS_ADDED]!;
          this.usedOff = ds[DS_OFF]!;
          this.usedWrap = ds[DS_WRAP]!;
          this.freeHead = ds[DS_FREE_HEAD]!;
          this.tok = tokens[k1 - 1]!;
          this.len = lens[k1 - 1]!;
          k = k1;
        }
        if (k === m || ds[DS_PENDING]! === 0) break; // (DS_PENDING: 0 = nothing more is used)
      }
      // The complete reader for one entry (and the one place that reports).
      if (!this.readUsed()) break;
      tokens[k] = this.tok;
      lens[k] = this.len;
      k++;
    }
    return k;
  }

  /**
   * Collect used descriptors from ds[DS_K] on while they are valid (id in flight, length within the
   * writable part); no IN_ORDER, no indirect tables ({@link fastOk}). When the ring is shared, the
   * first used descriptor's flags are read with ONE `Atomics.load` (pairing with the device's release
   * of its batch's first descriptor), the rest with plain loads. Stops without consuming at the first
   * entry it does not take; ds[DS_PENDING] = 0 when that entry is not used (nothing more to collect),
   * 1 when {@link getUsed} must check it. No calls inside the loop.
   * @returns the index after the last entry collected
   */
  private collectFast(outTok: Int32Array, outLen: Uint32Array): number {
    const ds = this.ds;
    const size = ds[DS_SIZE]!;
    const m = ds[DS_N]!;
    let k = ds[DS_K]!;
    let uo = ds[DS_OFF]!;
    // (flags & 0x8080) of a used descriptor: AVAIL = USED = used wrap counter.
    let ub = ds[DS_WRAP] !== 0 ? AVAIL_USED : 0;
    let freeHead = ds[DS_FREE_HEAD]!;
    let freed = 0;
    const d32 = this.desc32;
    const rec = this.rec;
    if (ds[DS_ATOMIC] !== 0) Atomics.load(this.desc16, (uo << 3) | 7);
    let more = 1;
    while (k < m) {
      const b = uo << 2;
      const word = d32[b | 3]!;
      const fl = word >>> 16;
      if ((fl & AVAIL_USED) !== ub) {
        more = 0;
        break;
      }
      const id = word & 0xffff;
      if (id >= size) break;
      const r = id << 2;
      const nd = rec[r | REC_DESCS]!;
      if (nd === 0) break;
      // Element Length is reserved (ignored) in a used descriptor without WRITE.
      const len = (fl & F_WRITE) !== 0 ? d32[b | 2]! : 0;
      if (len > rec[r | REC_WRITABLE]!) break;
      rec[r | REC_DESCS] = 0;
      rec[r | REC_NEXT_FREE] = freeHead;
      freeHead = id;
      freed += nd;
      outTok[k] = rec[r]!; // REC_TOKEN
      outLen[k] = len;
      k++;
      uo += nd;
      if (uo >= size) {
        uo -= size;
        ub ^= AVAIL_USED;
      }
    }
    ds[DS_PENDING] = more;
    ds[DS_OFF] = uo;
    ds[DS_WRAP] = ub !== 0 ? 1 : 0;
    ds[DS_FREE_HEAD] = freeHead;
    ds[DS_SLOTS_ADDED] = freed;
    return k;
  }

  /** IN_ORDER: return the oldest buffer of the current batch. */
  private nextInBatch(): boolean {
    const id = this.fifo[this.fifoHead]!;
    this.fifoHead = this.fifoHead + 1 === this.size ? 0 : this.fifoHead + 1;
    this.fifoCount--;
    this.batchLeft--;
    this.complete(id, this.batchLeft === 0 ? this.batchLen : this.rec[(id << 2) | REC_WRITABLE]!);
    return true;
  }

  /** Skip the buffer's slots, free its id and indirect table, set lastToken/lastLen. */
  private complete(id: number, len: number): void {
    const rec = this.rec;
    const r = id << 2;
    const n = rec[r | REC_DESCS]!;
    let uo = this.usedOff + n;
    if (uo >= this.size) {
      uo -= this.size;
      this.usedWrap ^= 1;
    }
    this.usedOff = uo;
    rec[r | REC_DESCS] = 0;
    rec[r | REC_NEXT_FREE] = this.freeHead;
    this.freeHead = id;
    this.freeDescs += n;
    this.nInFlight--;
    if (this.indirectThreshold !== 0) {
      const table = this.idIndirect[id]!;
      if (table >= 0) {
        this.idIndirect[id] = -1;
        if (this.freeIndirect !== undefined) this.freeIndirect(table);
      }
    }
    this.tok = rec[r | REC_TOKEN]!;
    this.len = len;
  }

  /**
   * Ask for used-buffer notifications (driver event suppression area): with EVENT_IDX, DESC at the
   * position of the next used descriptor; otherwise ENABLE.
   */
  enableInterrupts(): void {
    // (inside collectEach the used position is in locals: the event offset would be stale)
    if (this.filling) this.reentrant('enableInterrupts');
    const ev = this.drvEvent;
    if (this.eventIdx) {
      let uo = this.usedOff;
      let uw = this.usedWrap;
      if (this.batchLeft > 0) {
        // Mid IN_ORDER batch: the next used descriptor comes after the batch's remaining buffers.
        let p = this.fifoHead;
        for (let k = 0; k < this.batchLeft; k++) {
          uo += this.rec[(this.fifo[p]! << 2) | REC_DESCS]!;
          if (uo >= this.size) {
            uo -= this.size;
            uw ^= 1;
          }
          p = p + 1 === this.size ? 0 : p + 1;
        }
      }
      ev[0] = uo | (uw << 15);
      Atomics.store(ev, 1, RING_EVENT_FLAGS_DESC);
    } else {
      Atomics.store(ev, 1, RING_EVENT_FLAGS_ENABLE);
    }
  }

  /** Suppress used-buffer notifications (driver event suppression area: DISABLE). */
  disableInterrupts(): void {
    Atomics.store(this.drvEvent, 1, RING_EVENT_FLAGS_DISABLE);
  }

  /**
   * VIRTIO_F_NOTIFICATION_DATA word without the queue index: bits 16–30 next_off, bit 31 next_wrap —
   * the next descriptor not yet made available (basic.packed-vq.vq-desc-table.driver.3). OR the queue
   * index into bits 0–15. Call after {@link publish}; before it, the held-back head is reported.
   */
  notificationData(): number {
    const pos = this.pendingHead >= 0 ? this.pendingHead | (this.pendingWrap << 15) : this.availOff | (this.availWrap << 15);
    return (pos << 16) >>> 0;
  }

  private fail(code: VirtioErrorCode, message: string): false {
    this.isBroken = true;
    try {
      this.sink.guestError({ code, clause: undefined, message: `packed queue ${this.index} (driver side): ${message}`, queue: this.index });
    } catch {
      // The sink must not throw; a broken one must not crash the simulated driver either.
    }
    return false;
  }
}
