/**
 * Split virtqueue, driver side (a simulated guest driver): posts buffers, decides kicks, and
 * validates what the device hands back before trusting it.
 *
 * Bookkeeping lives in private typed arrays (free list, tokens, per-head writable bytes), never in
 * the shared descriptor table, so a misbehaving device cannot corrupt it. A device error (used idx
 * running ahead, unknown id, len beyond the writable part) goes to the sink once and the queue
 * stops returning buffers.
 *
 * IN_ORDER: descriptors are allocated in ring order (`next = x + 1`, wrapping to 0;
 * basic.split-vq.vq-desc-table.driver.2, indirect entries 0,1,2… per indirect-desc.driver.5), and
 * {@link getUsed} accepts the batched form where one used element (id of the last chain of a batch)
 * stands for several chains; the earlier chains of the batch are reported with their full writable
 * length, as Linux does.
 */
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
} from '../types.js';
import { vringNeedEvent } from '../event-idx.js';
import { isSplitSetupError, resolveSplitRings, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from './layout.js';

const log = logger('queue');
const TWO32 = 4294967296;

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

  /** Free list links (driver-private). */
  private readonly freeNext: Uint16Array;
  /** Per head: caller token. */
  private readonly tokens: Int32Array;
  /** Per head: ring descriptors used by the chain. */
  private readonly chainDescs: Uint16Array;
  /** Per head: last ring descriptor of the chain. */
  private readonly chainTail: Uint16Array;
  /** Per head: writable bytes (max accepted used len). */
  private readonly chainWritable: Float64Array;
  /** Per head: indirect table bus address, or -1. */
  private readonly chainIndirect: Float64Array;
  /** Per head: 1 while in flight. */
  private readonly headInFlight: Uint8Array;
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

  /** One-chain scratch for {@link add} / {@link getUsed} (they run the batch code with n = 1). */
  private readonly oneSg = new SgBatch(1, 0);
  private readonly oneTok = new Int32Array(1);
  private readonly oneLen = new Uint32Array(1);

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
    this.freeNext = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.freeNext[i] = (i + 1) & this.mask;
    this.numFree = size;
    this.tokens = new Int32Array(size);
    this.chainDescs = new Uint16Array(size);
    this.chainTail = new Uint16Array(size);
    this.chainWritable = new Float64Array(size);
    this.chainIndirect = new Float64Array(size).fill(-1);
    this.headInFlight = new Uint8Array(size);
    this.order = new Uint16Array(size);
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
    const one = this.oneSg;
    one.start[1] = sg.count;
    one.readable[0] = sg.readable;
    one.token[0] = token;
    return this.addMany(one, sg.addr, sg.len, 1) === 1 ? one.head[0]! : -1;
  }

  /** Add chains 0, 1, … of `batch` until one does not fit (see {@link DriverQueue.addBatch}); returns how many. */
  addBatch(batch: SgBatch): number {
    return this.addMany(batch, batch.addr, batch.len, batch.count);
  }

  /**
   * The one descriptor writer behind {@link add} and {@link addBatch}: adds chains 0..n-1 of `b`
   * (segments in `sAddr`/`sLen`) in order until one does not fit; heads go to `b.head`.
   * Ring and free-list state is copied into locals once and written back once.
   * @throws VirtioError for an empty chain (after writing back the chains added before it)
   */
  private addMany(b: SgBatch, sAddr: Float64Array, sLen: Uint32Array, n: number): number {
    const bStart = b.start;
    const bReadable = b.readable;
    const bToken = b.token;
    const bHead = b.head;
    const desc = this.desc;
    const avail = this.avail;
    const mask = this.mask;
    const inOrder = this.inOrder;
    const freeNext = this.freeNext;
    const tokens = this.tokens;
    const chainDescs = this.chainDescs;
    const chainTail = this.chainTail;
    const chainWritable = this.chainWritable;
    const headInFlight = this.headInFlight;
    const order = this.order;
    const threshold = this.indirectThreshold;
    const orderHead = this.orderHead;
    let freeHead = this.freeHead;
    let nextDesc = this.nextDesc;
    let numFree = this.numFree;
    let inFlight = this.inFlightCount;
    let a = this.availShadow;
    let k = 0;
    let empty = false;
    for (; k < n; k++) {
      const s0 = bStart[k]!;
      const cnt = bStart[k + 1]! - s0;
      if (cnt <= 0) {
        empty = true;
        break;
      }
      let head: number;
      if (threshold > 0 && cnt >= threshold) {
        if (numFree < 1) break;
        head = inOrder ? nextDesc : freeHead;
        this.writeIndirect(head, sAddr, sLen, s0, cnt, bReadable[k]!);
        if (inOrder) nextDesc = (head + 1) & mask;
        else freeHead = freeNext[head]!;
        numFree -= 1;
      } else {
        if (numFree < cnt) break;
        const readableEnd = s0 + bReadable[k]!;
        const sEnd = s0 + cnt;
        head = inOrder ? nextDesc : freeHead;
        let d = head;
        let tail = head;
        let wBytes = 0;
        for (let i = s0; i < sEnd; i++) {
          const ad = sAddr[i]!;
          const l = sLen[i]!;
          const w = d << 2;
          const nx = inOrder ? (d + 1) & mask : freeNext[d]!;
          // Addresses are below 2^53: `>>> 0` takes the low 32 bits exactly, `/ 2^32 >>> 0` the high ones.
          desc[w] = ad >>> 0;
          desc[w + 1] = ad > 0xffffffff ? (ad / TWO32) >>> 0 : 0;
          desc[w + 2] = l;
          let f = 0;
          if (i >= readableEnd) {
            f = VIRTQ_DESC_F_WRITE;
            wBytes += l;
          }
          if (i < sEnd - 1) f |= VIRTQ_DESC_F_NEXT | (nx << 16);
          desc[w + 3] = f;
          tail = d;
          d = nx;
        }
        if (inOrder) nextDesc = (tail + 1) & mask;
        else freeHead = freeNext[tail]!;
        numFree -= cnt;
        chainDescs[head] = cnt;
        chainTail[head] = tail;
        chainWritable[head] = wBytes;
        // chainIndirect[head] is already -1 here (collect() resets it when an indirect chain is released).
      }
      tokens[head] = bToken[k]!;
      headInFlight[head] = 1;
      if (inOrder) order[(orderHead + inFlight) & mask] = head;
      inFlight++;
      avail[2 + (a & mask)] = head;
      a = (a + 1) & 0xffff;
      bHead[k] = head;
    }
    this.freeHead = freeHead;
    this.nextDesc = nextDesc;
    this.numFree = numFree;
    this.inFlightCount = inFlight;
    this.availShadow = a;
    if (empty) throw new VirtioError('INVALID_ARGUMENT', k === 0 && n === 1 ? 'SplitDriverQueue.add: empty SgList' : `SplitDriverQueue.addBatch: chain ${k} has no segments`);
    return k;
  }

  /** Put `cnt` segments from `s0` into a fresh indirect table and point descriptor `head` at it. */
  private writeIndirect(head: number, sAddr: Float64Array, sLen: Uint32Array, s0: number, cnt: number, readableN: number): void {
    const indirectAddr = this.allocIndirect!(cnt * 16);
    const space = this.space;
    const r = space.resolve(indirectAddr, cnt * 16, true);
    if (r < 0) throw new VirtioError('INVALID_ARGUMENT', `allocIndirect returned 0x${indirectAddr.toString(16)}, which is not ${cnt * 16} writable bytes of ${space.name}`);
    const dv = space.regions[r]!.dv;
    let o = space.off;
    let wBytes = 0;
    for (let i = 0; i < cnt; i++, o += 16) {
      const a = sAddr[s0 + i]!;
      const l = sLen[s0 + i]!;
      dv.setUint32(o, a >>> 0, true);
      dv.setUint32(o + 4, (a / TWO32) >>> 0, true);
      dv.setUint32(o + 8, l, true);
      let f = i < cnt - 1 ? VIRTQ_DESC_F_NEXT : 0;
      if (i >= readableN) {
        f |= VIRTQ_DESC_F_WRITE;
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
    desc[w + 3] = VIRTQ_DESC_F_INDIRECT;
    this.chainDescs[head] = 1;
    this.chainTail[head] = head;
    this.chainWritable[head] = wBytes;
    this.chainIndirect[head] = indirectAddr;
  }

  publish(): boolean {
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
    const tok = this.oneTok;
    const len = this.oneLen;
    if (this.collect(tok, len, 1) === 0) return false;
    this.lastToken = tok[0]!;
    this.lastLen = len[0]!;
    return true;
  }

  /** Collect up to `max` used buffers (see {@link DriverQueue.getUsedBatch}); returns how many. */
  getUsedBatch(tokens: Int32Array, lens: Uint32Array, max: number): number {
    const m = max < tokens.length ? max : tokens.length;
    return this.collect(tokens, lens, m < lens.length ? m : lens.length);
  }

  /**
   * The one used-ring reader behind {@link getUsed} and {@link getUsedBatch}: validates and
   * releases up to `max` used buffers, with state in locals written back once.
   */
  private collect(outTok: Int32Array, outLen: Uint32Array, max: number): number {
    if (this.stopped) return 0;
    const used32 = this.used32;
    const mask = this.mask;
    const size = this.size;
    const inOrder = this.inOrder;
    const order = this.order;
    const tokens = this.tokens;
    const chainDescs = this.chainDescs;
    const chainTail = this.chainTail;
    const chainWritable = this.chainWritable;
    const headInFlight = this.headInFlight;
    const freeNext = this.freeNext;
    const indirect = this.indirectThreshold > 0;
    let last = this.lastUsed;
    let usedIdx = this.cachedUsed;
    let inFlight = this.inFlightCount;
    let freeHead = this.freeHead;
    let numFree = this.numFree;
    let orderHead = this.orderHead;
    let k = 0;
    while (k < max) {
      if (usedIdx === last) {
        const u = Atomics.load(this.used16, 1);
        if (u === last) break;
        const pending = (u - last) & 0xffff;
        if (pending > inFlight) {
          this.fail('DEVICE_USED_IDX_AHEAD', undefined, `used idx ${u} is ${pending} entries ahead of ${last}, but only ${inFlight} buffers are in flight`);
          break;
        }
        usedIdx = u;
      }
      let head: number;
      let len: number;
      if (this.batchLast >= 0) {
        head = order[orderHead]!;
        if (head === this.batchLast) {
          len = this.batchLastLen;
          this.batchLast = -1;
        } else {
          len = chainWritable[head]!;
        }
      } else {
        const slot = 1 + ((last & mask) << 1);
        const id = used32[slot]!;
        len = used32[slot + 1]!;
        if (!(id < size) || headInFlight[id] !== 1) {
          this.fail('DEVICE_USED_BAD_ID', undefined, `used ring entry ${last} returns id ${id}, which is not the head of a buffer in flight`);
          break;
        }
        // basic.split-vq.vq-used-ring.device.2: len counts bytes written into the device-writable part.
        if (len > chainWritable[id]!) {
          this.fail('DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2', `used ring entry ${last} (id ${id}) claims ${len} bytes written, but the chain has only ${chainWritable[id]} writable bytes`);
          break;
        }
        head = id;
        if (inOrder) {
          const oldest = order[orderHead]!;
          if (oldest !== id) {
            // Batched in-order completion: `id` ends a batch starting at the oldest chain.
            this.batchLast = id;
            this.batchLastLen = len;
            head = oldest;
            len = chainWritable[oldest]!;
          }
        }
      }
      // Release the chain's descriptors.
      if (inOrder) orderHead = (orderHead + 1) & mask;
      else {
        freeNext[chainTail[head]!] = freeHead;
        freeHead = head;
      }
      numFree += chainDescs[head]!;
      headInFlight[head] = 0;
      inFlight--;
      if (indirect) this.releaseIndirect(head);
      last = (last + 1) & 0xffff;
      outTok[k] = tokens[head]!;
      outLen[k] = len;
      k++;
    }
    this.lastUsed = last;
    this.cachedUsed = usedIdx;
    this.inFlightCount = inFlight;
    this.freeHead = freeHead;
    this.numFree = numFree;
    this.orderHead = orderHead;
    return k;
  }

  private releaseIndirect(head: number): void {
    const ind = this.chainIndirect[head]!;
    if (ind >= 0) {
      this.chainIndirect[head] = -1;
      if (this.freeIndirect !== undefined) this.freeIndirect(ind);
    }
  }

  enableInterrupts(): void {
    if (this.eventIdx) {
      // basic.split-vq.used-buffer-notif-suppression.driver.2: flags 0; used_event = next entry we want to hear about.
      Atomics.store(this.avail, this.usedEventAt, this.lastUsed);
    } else {
      Atomics.store(this.avail, 0, 0);
    }
  }

  disableInterrupts(): void {
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
