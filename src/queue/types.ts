/**
 * Queue-layer contracts shared by the split and packed rings, device side and driver side.
 *
 * The queue layer is pure: no I/O, no timers, no threads. It reads and writes rings and buffers
 * only through an {@link AddressSpace}, and reports guest errors only through a
 * {@link GuestErrorSink}, after which the queue is parked.
 *
 * Hot paths allocate nothing per request: chains are filled into a caller-owned, reusable
 * {@link DescChain}; driver-side buffers are described by a reusable {@link SgList}. The optional
 * batch members (popBatch / addBatch / getUsedBatch, with {@link ChainBatch} and {@link SgBatch})
 * do the same work for many chains per call, keeping ring state in locals (perf-limits.md §6).
 */
import { fixedF64, fixedI32, fixedU32 } from './fixed-arrays.js';
import type { AddressSpace } from '../memory/space.js';
import type { GuestErrorSink } from '../device/choke.js';
import { VirtioError } from '../errors.js';

/** Split-ring queue size limit (split-ring.tex: 32768) and packed (2^15). */
export const MAX_QUEUE_SIZE = 32768;

/** Descriptor flags (split and packed). */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Packed only. */
export const VIRTQ_DESC_F_AVAIL = 1 << 7;
export const VIRTQ_DESC_F_USED = 1 << 15;

/** What a queue needs to know about its configuration (the transport fills it from the driver's writes). */
export interface QueueConfig {
  /** Queue index within the device (for error reports). */
  index: number;
  /** Queue size negotiated by the driver. */
  size: number;
  /** The device's maximum for this queue (size must not exceed it). */
  maxSize: number;
  /** Descriptor area bus address. */
  desc: number;
  /** Driver area (split: avail ring; packed: driver event suppression) bus address. */
  driver: number;
  /** Device area (split: used ring; packed: device event suppression) bus address. */
  device: number;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /** VIRTIO_F_IN_ORDER negotiated. */
  inOrder: boolean;
  /** Maximum segments per chain the device accepts (default: queue size; indirect tables up to this). */
  maxChainSegments?: number;
  /**
   * Another thread or process may touch the rings while this side runs (worker + SharedArrayBuffer,
   * memfd shared with a VMM or guest). Packed rings then order their per-descriptor flags accesses
   * with Atomics (about 20 ns each on Node 20). Default: true when the descriptor ring is backed by
   * a SharedArrayBuffer or an fd-backed (shareable) region, false otherwise.
   */
  concurrent?: boolean;
}

/**
 * A descriptor chain as popped by the device: segments in ring order, device-readable segments
 * first. Reused across pops — copy out what you need before the next pop into the same object.
 * Buffer i lives at `space.regions[region[i]].u8[offset[i] .. offset[i]+len[i])`.
 */
export class DescChain {
  /** Head id to hand back in {@link DeviceQueue.pushUsed} (split: head index; packed: buffer id). */
  head = 0;
  /** Number of segments. */
  count = 0;
  /** Number of leading device-readable segments. */
  readable = 0;
  /** Sum of readable segment lengths. */
  readableBytes = 0;
  /** Sum of writable segment lengths. */
  writableBytes = 0;
  /** Ring slots this chain occupies (packed: descriptors to skip; split: table entries walked). */
  descCount = 0;
  /** Region index (in the queue's address space) of each segment. */
  readonly region: Int32Array;
  /** Byte offset of each segment inside its region's buffer. */
  readonly offset: Float64Array;
  /** Bus address of each segment. */
  readonly addr: Float64Array;
  /** Length of each segment. */
  readonly len: Uint32Array;

  /** @param capacity most segments a chain may have (use the queue size, or the max indirect length). */
  constructor(capacity: number) {
    this.region = fixedI32(capacity);
    this.offset = fixedF64(capacity);
    this.addr = fixedF64(capacity);
    this.len = fixedU32(capacity);
  }

  /** Capacity in segments. */
  get capacity(): number {
    return this.len.length;
  }
}

/** Stride of {@link ChainBatch.chain}: `[first segment, segment count, readable count, descCount]`. */
export const CHAIN_STRIDE = 4;

/**
 * Several popped descriptor chains in flat typed arrays (the batch form of {@link DescChain}),
 * filled by {@link DeviceQueue.popBatch}. Reused across calls; allocates nothing per chain.
 *
 * The layout packs related fields into few arrays on purpose: V8 re-checks each typed array
 * (map, length, base pointer) on every loop iteration it is touched in, so fewer distinct arrays
 * per chain is measurably faster (perf-limits.md). For chain `i < count`:
 * - `head[i]`: head id to complete (split: head index; packed: buffer id) — hand `head` straight
 *   to {@link DeviceQueue.pushUsedBatch};
 * - `chain[4i]` first segment index `f`, `chain[4i+1]` segment count `n`, `chain[4i+2]` leading
 *   device-readable segments, `chain[4i+3]` ring slots / table entries walked (as {@link DescChain.descCount});
 * - `bytes[2i]` readable bytes, `bytes[2i+1]` writable bytes.
 * For segment `s` in `f .. f+n-1`:
 * - `seg[2s]` region index in the queue's address space, `seg[2s+1]` length;
 * - `pos[2s]` byte offset inside that region's buffer, `pos[2s+1]` bus address.
 * The bytes are `space.regions[seg[2s]].u8[pos[2s] .. pos[2s] + seg[2s+1])`.
 */
export class ChainBatch {
  /** Chains held (set by popBatch). */
  count = 0;
  /** Head id per chain (dense). */
  readonly head: Uint32Array;
  /** Per chain, stride {@link CHAIN_STRIDE}: first segment, segment count, readable count, descCount. */
  readonly chain: Uint32Array;
  /** Per chain, stride 2: readable bytes, writable bytes. */
  readonly bytes: Float64Array;
  /** Per segment, stride 2: region index, length. */
  readonly seg: Uint32Array;
  /** Per segment, stride 2: buffer offset, bus address. */
  readonly pos: Float64Array;

  /**
   * @param maxChains most chains per batch (e.g. 64)
   * @param segCapacity most segments over all chains of a batch (default 4 per chain). A chain
   *   that does not fit in the room left is left in the ring for the next call; a chain longer than
   *   the whole capacity (or the device limit) is a guest error, as with {@link DescChain}.
   */
  constructor(maxChains: number, segCapacity = 4 * maxChains) {
    this.head = fixedU32(maxChains);
    this.chain = fixedU32(CHAIN_STRIDE * maxChains);
    this.bytes = fixedF64(2 * maxChains);
    this.seg = fixedU32(2 * segCapacity);
    this.pos = fixedF64(2 * segCapacity);
  }

  /** Most chains per batch. */
  get maxChains(): number {
    return this.head.length;
  }
  /** Most segments per batch. */
  get segCapacity(): number {
    return this.seg.length >>> 1;
  }

  /** Copy chain `i` into `out` (convenience for code written against {@link DescChain}; not for hot loops). */
  copyChain(i: number, out: DescChain): void {
    const c = this.chain;
    const f = c[CHAIN_STRIDE * i]!;
    const n = c[CHAIN_STRIDE * i + 1]!;
    if (n > out.len.length) throw new VirtioError('INVALID_ARGUMENT', `ChainBatch.copyChain: chain ${i} has ${n} segments, the DescChain holds ${out.len.length}`);
    out.head = this.head[i]!;
    out.count = n;
    out.readable = c[CHAIN_STRIDE * i + 2]!;
    out.descCount = c[CHAIN_STRIDE * i + 3]!;
    out.readableBytes = this.bytes[2 * i]!;
    out.writableBytes = this.bytes[2 * i + 1]!;
    const seg = this.seg;
    const pos = this.pos;
    for (let k = 0; k < n; k++) {
      const s = 2 * (f + k);
      out.region[k] = seg[s]!;
      out.len[k] = seg[s + 1]!;
      out.offset[k] = pos[s]!;
      out.addr[k] = pos[s + 1]!;
    }
  }
}

/**
 * Receives chains from {@link DeviceQueue.popEach}: the visitor form of popping, where the queue
 * walks, validates, hands over and completes each chain in one pass (no batch arrays between the
 * steps). The same validation as {@link DeviceQueue.pop} applies; invalid chains never reach the
 * visitor (they go to the sink and park the queue).
 */
export interface ChainVisitor {
  /**
   * Handle one chain. `chain` is the queue's own {@link DescChain}, valid only during this call.
   * @returns the bytes written into the chain (≥ 0, at most its writable bytes): the queue puts
   *   it in the used ring at once (used idx is published once per popEach call); or a negative
   *   number: the chain stays in flight and the device completes it later with
   *   {@link DeviceQueue.pushUsed} / {@link DeviceQueue.pushUsedBatch}.
   * Inside the call, pushUsed / pushUsedBatch / pop / popBatch / popEach of the same queue throw
   * VirtioError `REENTRANT_CALL`; {@link DeviceQueue.park} is allowed (popEach stops after this
   * chain). A visitor that throws is a device-model bug: the queue parks and the error goes to
   * the sink (code INTERNAL), so nothing is thrown out of the caller's notify handler.
   */
  visit(chain: DescChain): number;
}

/** Device side of a virtqueue (split or packed). */
export interface DeviceQueue {
  /** 'split' or 'packed'. */
  readonly kind: 'split' | 'packed';
  readonly index: number;
  readonly size: number;
  /** True after a guest error: pop returns false until {@link reset}. */
  readonly parked: boolean;
  /**
   * Park the queue from outside (the device's choke point, after an error the model or another
   * queue found): pop and notification calls then return at once without touching memory, until
   * {@link reset}. Chains already popped may still be pushed used, so heads are not leaked.
   */
  park(): void;
  /** Chains popped and not yet pushed used. */
  readonly inFlight: number;

  /**
   * Pop the next available chain into `chain`, validating it completely (eager validation).
   * @returns true when a chain was popped; false when none is available, or the queue is parked,
   * or the chain was invalid (then the error went to the sink and the queue is parked).
   */
  pop(chain: DescChain): boolean;
  /**
   * Batch form of {@link pop} (optional; split and packed implement it): pop up to
   * `min(max, batch.maxChains)` chains into `batch` with exactly the same validation, reading the
   * driver's index and writing back ring state once per call. Sets `batch.count` and returns it.
   * Chains before an invalid one are returned (they are valid and in flight); the invalid one is
   * reported to the sink and parks the queue — check {@link parked} when the result is short.
   * Complete the chains with {@link pushUsedBatch}(`batch.head`, lens, n).
   */
  popBatch?(batch: ChainBatch, max: number): number;
  /**
   * Visitor form of popping (optional; split and packed implement it): for up to `max` chains,
   * validate the chain exactly as {@link pop} does, call `visitor.visit(chain)`, and complete it
   * at once when the visitor returns a length (see {@link ChainVisitor}). One pass per chain, one
   * read of the driver's index and one used-index publish per call: the fastest way to serve a
   * queue whose requests complete synchronously.
   * @returns chains handed to the visitor; short when the ring ran empty, the queue parked, or
   * an invalid chain was found (reported to the sink; check {@link parked}).
   */
  popEach?(visitor: ChainVisitor, max: number): number;
  /** Return a chain to the driver with `len` bytes written. Errors go to the sink. */
  pushUsed(head: number, len: number): void;
  /** Push many at once (one index publish). `heads[i]`, `lens[i]` for i < n. */
  pushUsedBatch(heads: ArrayLike<number>, lens: ArrayLike<number>, n: number): void;
  /**
   * Should the device interrupt the driver now (VIRTQ_AVAIL_F_NO_INTERRUPT / used_event /
   * packed driver event suppression)? Accounts for everything pushed since the last call that returned.
   */
  needsInterrupt(): boolean;
  /** Ask the driver for notifications again; returns true when buffers arrived meanwhile (re-check). */
  enableNotifications(): boolean;
  /** Tell the driver not to notify (VIRTQ_USED_F_NO_NOTIFY / avail_event / packed DISABLE). */
  disableNotifications(): void;
  /** True when at least one chain is available (does not validate). */
  hasAvailable(): boolean;
  /** Forget all state (device or queue reset). Does not touch guest memory. */
  reset(): void;
  /**
   * Ring position for hand-over (vhost-user GET/SET_VRING_BASE): split = next avail index (16 bits);
   * packed = next avail offset | wrap counter << 15, and likewise for used in the high 16 bits.
   */
  getBase(): number;
  setBase(base: number): void;
}

/**
 * A reusable scatter-gather list for the driver side: `count` segments, the first `readable` of
 * them device-readable, the rest device-writable.
 */
export class SgList {
  count = 0;
  readable = 0;
  readonly addr: Float64Array;
  readonly len: Uint32Array;
  constructor(capacity: number) {
    this.addr = fixedF64(capacity);
    this.len = fixedU32(capacity);
  }
  /** Reset to empty. */
  clear(): this {
    this.count = 0;
    this.readable = 0;
    return this;
  }
  /** Append a device-readable segment (must come before any writable one). */
  out(addr: number, len: number): this {
    if (this.readable !== this.count) throw new Error('SgList: readable segments must precede writable ones');
    this.addr[this.count] = addr;
    this.len[this.count] = len;
    this.count++;
    this.readable++;
    return this;
  }
  /** Append a device-writable segment. */
  in(addr: number, len: number): this {
    this.addr[this.count] = addr;
    this.len[this.count] = len;
    this.count++;
    return this;
  }
}

/** Stride of {@link SgBatch.chain}: `[token, segment count, readable count, head]`. */
export const SG_CHAIN_STRIDE = 4;

/**
 * Several driver-side scatter-gather lists in flat typed arrays (the batch form of {@link SgList}),
 * for {@link DriverQueue.addBatch}. Chains' segments are stored back to back. For chain `i < count`:
 * `chain[4i]` token, `chain[4i+1]` segment count, `chain[4i+2]` leading device-readable segments,
 * `chain[4i+3]` head/id (written by addBatch). Segment `s` (numbered over the whole batch) has bus
 * address `seg[2s]` and length `seg[2s+1]`.
 * Build it with {@link clear}, {@link chain}, {@link out}, {@link in}, or fill the arrays directly
 * (then set `count` and `segs`).
 */
export class SgBatch {
  /** Chains in the batch. */
  count = 0;
  /** Segments over all chains. */
  segs = 0;
  /** Per chain, stride {@link SG_CHAIN_STRIDE}: token, segment count, readable count, head (output). */
  readonly chain: Int32Array;
  /** Per segment, stride 2: bus address, length. */
  readonly seg: Float64Array;

  /** @param maxChains most chains; @param segCapacity most segments over all chains (default 4 per chain). */
  constructor(maxChains: number, segCapacity = 4 * maxChains) {
    this.chain = fixedI32(SG_CHAIN_STRIDE * maxChains);
    this.seg = fixedF64(2 * segCapacity);
  }
  /** Most chains. */
  get maxChains(): number {
    return this.chain.length >>> 2;
  }
  /** Reset to empty. */
  clear(): this {
    this.count = 0;
    this.segs = 0;
    return this;
  }
  /** Start a new chain with `token` (an int32); append its segments with {@link out} / {@link in}. */
  begin(token: number): this {
    const o = SG_CHAIN_STRIDE * this.count;
    if (o >= this.chain.length) throw new VirtioError('INVALID_ARGUMENT', `SgBatch: more than ${this.maxChains} chains`);
    this.chain[o] = token;
    this.chain[o + 1] = 0;
    this.chain[o + 2] = 0;
    this.count++;
    return this;
  }
  /** Append a device-readable segment to the current chain (before any writable one). */
  out(addr: number, len: number): this {
    const o = SG_CHAIN_STRIDE * (this.count - 1);
    if (o < 0) throw new VirtioError('INVALID_ARGUMENT', 'SgBatch.out: call begin() first');
    const c = this.chain;
    if (c[o + 1] !== c[o + 2]) throw new VirtioError('INVALID_ARGUMENT', 'SgBatch: readable segments must precede writable ones');
    this.push(addr, len);
    c[o + 1]!++;
    c[o + 2]!++;
    return this;
  }
  /** Append a device-writable segment to the current chain. */
  in(addr: number, len: number): this {
    const o = SG_CHAIN_STRIDE * (this.count - 1);
    if (o < 0) throw new VirtioError('INVALID_ARGUMENT', 'SgBatch.in: call begin() first');
    this.push(addr, len);
    this.chain[o + 1]!++;
    return this;
  }
  private push(addr: number, len: number): void {
    const s = 2 * this.segs;
    if (s >= this.seg.length) throw new VirtioError('INVALID_ARGUMENT', `SgBatch: more than ${this.seg.length >>> 1} segments`);
    this.seg[s] = addr;
    this.seg[s + 1] = len;
    this.segs++;
  }
}

/**
 * Supplies chains to {@link DriverQueue.addEach} (the visitor form of adding: the caller describes
 * each chain straight into the queue's scratch arrays, the queue writes it into the ring in the
 * same pass).
 */
export interface ChainFiller {
  /** Caller's token of the chain last filled (set by {@link fill}; returned with its used buffer). */
  token: number;
  /** Leading device-readable segments of the chain last filled (set by {@link fill}). */
  readable: number;
  /**
   * Describe chain `k` (0, 1, … within one addEach call): write its segments' bus addresses and
   * lengths to `addr[0..n)` / `len[0..n)` (`n` ≤ `addr.length`), set {@link token} and
   * {@link readable}, and return `n` (≥ 1), or 0 to stop. A chain that then does not fit in the
   * ring is not added (addEach returns `k`); describe it again in the next call.
   */
  fill(k: number, addr: Float64Array, len: Uint32Array): number;
}

/** Receives used buffers from {@link DriverQueue.collectEach}. */
export interface UsedVisitor {
  /**
   * One used buffer, validated: the token it was added with and the bytes the device wrote.
   * Must not call the same queue (it throws REENTRANT_CALL); add buffers after collectEach
   * returns. If it throws, the queue stops and the error propagates.
   */
  used(token: number, len: number): void;
}

/** Driver-side options. */
export interface DriverQueueOptions {
  /** Use an indirect table for chains with at least this many segments (0 = never). Needs VIRTIO_F_INDIRECT_DESC. */
  indirectThreshold?: number;
  /** Allocates indirect tables (bus addresses inside the driver's space); required when indirectThreshold > 0. */
  allocIndirect?: (bytes: number) => number;
  /** Frees an indirect table from allocIndirect. */
  freeIndirect?: (addr: number) => void;
}

/** Driver side of a virtqueue: posts buffers, kicks, validates and collects used buffers. */
export interface DriverQueue {
  readonly kind: 'split' | 'packed';
  readonly size: number;
  /** Free descriptor slots. */
  readonly freeCount: number;
  /** Buffers posted and not yet collected. */
  readonly inFlight: number;
  /**
   * Add a chain. `token` is returned by {@link getUsed} (an index into the caller's table).
   * @returns the head/id, or -1 when the ring has no room.
   */
  add(sg: SgList, token: number): number;
  /** Publish added buffers (split: store avail idx). Returns whether the device wants a notification. */
  publish(): boolean;
  /**
   * Collect one used buffer. Validates what the device returned (id in range and in flight, length
   * not beyond the writable part). Returns false when none is pending; invalid entries go to the sink.
   * On success the token and written length are in {@link lastToken} / {@link lastLen}.
   */
  getUsed(): boolean;
  /**
   * Batch form of {@link add} (optional; split and packed implement it): add chains 0, 1, … of
   * `batch` in order until one does not fit; writes each chain's head/id to `batch.chain[4i+3]`
   * and returns how many were added (then call {@link publish} once).
   */
  addBatch?(batch: SgBatch): number;
  /**
   * Batch form of {@link getUsed} (optional): collect up to `max` used buffers with the same
   * validation, writing tokens to `tokens[i]` and written lengths to `lens[i]`; returns how many.
   * Stops early (after reporting to the sink, which stops the queue) when the device returned
   * something invalid; entries before it are returned.
   */
  getUsedBatch?(tokens: Int32Array, lens: Uint32Array, max: number): number;
  /**
   * Visitor form of {@link addBatch} (optional; split and packed implement it): for k = 0, 1, …
   * up to `max`, ask `filler.fill(k, …)` for a chain and write it into the ring in the same pass,
   * until the filler returns 0 or a chain does not fit. Returns how many were added (then call
   * {@link publish} once). Throws VirtioError INVALID_ARGUMENT for a malformed description (the
   * chains before it are added).
   */
  addEach?(filler: ChainFiller, max: number): number;
  /**
   * Visitor form of {@link getUsedBatch} (optional): validate and release up to `max` used
   * buffers, calling `visitor.used(token, len)` for each; returns how many. Stops early (after
   * reporting to the sink) at something invalid, as getUsed does.
   */
  collectEach?(visitor: UsedVisitor, max: number): number;
  readonly lastToken: number;
  readonly lastLen: number;
  /** Ask the device for interrupts (or suppress them). */
  enableInterrupts(): void;
  disableInterrupts(): void;
  /** Notification data word for VIRTIO_F_NOTIFICATION_DATA (next_off / next_wrap, without the vq index). */
  notificationData(): number;
}

/** Factory signature for device queues; returns null (after reporting to the sink) when the configuration is invalid. */
export type DeviceQueueFactory = (space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink) => DeviceQueue | null;
