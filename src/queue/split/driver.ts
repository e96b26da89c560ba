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
    const n = sg.count;
    if (n === 0) throw new VirtioError('INVALID_ARGUMENT', 'SplitDriverQueue.add: empty SgList');
    const readableN = sg.readable;
    const sAddr = sg.addr;
    const sLen = sg.len;
    const desc = this.desc;
    const mask = this.mask;
    let head: number;
    let tail: number;
    let used: number;
    let indirectAddr = -1;
    let wBytes = 0;
    if (this.indirectThreshold > 0 && n >= this.indirectThreshold) {
      if (this.numFree < 1) return -1;
      indirectAddr = this.allocIndirect!(n * 16);
      const space = this.space;
      const r = space.resolve(indirectAddr, n * 16, true);
      if (r < 0) throw new VirtioError('INVALID_ARGUMENT', `allocIndirect returned 0x${indirectAddr.toString(16)}, which is not ${n * 16} writable bytes of ${space.name}`);
      const dv = space.regions[r]!.dv;
      let o = space.off;
      for (let i = 0; i < n; i++, o += 16) {
        const a = sAddr[i]!;
        const l = sLen[i]!;
        dv.setUint32(o, a >>> 0, true);
        dv.setUint32(o + 4, (a / TWO32) >>> 0, true);
        dv.setUint32(o + 8, l, true);
        let f = i < n - 1 ? VIRTQ_DESC_F_NEXT : 0;
        if (i >= readableN) {
          f |= VIRTQ_DESC_F_WRITE;
          wBytes += l;
        }
        dv.setUint16(o + 12, f, true);
        dv.setUint16(o + 14, i < n - 1 ? i + 1 : 0, true);
      }
      head = this.inOrder ? this.nextDesc : this.freeHead;
      const w = head << 2;
      desc[w] = indirectAddr >>> 0;
      desc[w + 1] = (indirectAddr / TWO32) >>> 0;
      desc[w + 2] = n * 16;
      desc[w + 3] = VIRTQ_DESC_F_INDIRECT;
      tail = head;
      used = 1;
    } else {
      if (this.numFree < n) return -1;
      const inOrder = this.inOrder;
      const freeNext = this.freeNext;
      head = inOrder ? this.nextDesc : this.freeHead;
      let d = head;
      tail = head;
      for (let i = 0; i < n; i++) {
        const a = sAddr[i]!;
        const l = sLen[i]!;
        const w = d << 2;
        const nx = inOrder ? (d + 1) & mask : freeNext[d]!;
        // Addresses are below 2^53: `>>> 0` takes the low 32 bits exactly, `/ 2^32 >>> 0` the high ones.
        desc[w] = a >>> 0;
        desc[w + 1] = (a / TWO32) >>> 0;
        desc[w + 2] = l;
        let f = 0;
        if (i >= readableN) {
          f = VIRTQ_DESC_F_WRITE;
          wBytes += l;
        }
        if (i < n - 1) f |= VIRTQ_DESC_F_NEXT;
        desc[w + 3] = f | ((i < n - 1 ? nx : 0) << 16);
        tail = d;
        d = nx;
      }
      used = n;
    }
    if (this.inOrder) this.nextDesc = (tail + 1) & mask;
    else this.freeHead = this.freeNext[tail]!;
    this.numFree -= used;
    this.tokens[head] = token;
    this.chainDescs[head] = used;
    this.chainTail[head] = tail;
    this.chainWritable[head] = wBytes;
    this.chainIndirect[head] = indirectAddr;
    this.headInFlight[head] = 1;
    if (this.inOrder) this.order[(this.orderHead + this.inFlightCount) & mask] = head;
    this.inFlightCount++;
    const a = this.availShadow;
    this.avail[2 + (a & mask)] = head;
    this.availShadow = (a + 1) & 0xffff;
    return head;
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
    if (this.stopped) return false;
    const last = this.lastUsed;
    let usedIdx = this.cachedUsed;
    if (usedIdx === last) {
      usedIdx = Atomics.load(this.used16, 1);
      if (usedIdx === last) return false;
      const pending = (usedIdx - last) & 0xffff;
      if (pending > this.inFlightCount) {
        return this.fail('DEVICE_USED_IDX_AHEAD', undefined, `used idx ${usedIdx} is ${pending} entries ahead of ${last}, but only ${this.inFlightCount} buffers are in flight`);
      }
      this.cachedUsed = usedIdx;
    }
    let head: number;
    let len: number;
    if (this.batchLast >= 0) {
      head = this.order[this.orderHead]!;
      if (head === this.batchLast) {
        len = this.batchLastLen;
        this.batchLast = -1;
      } else {
        len = this.chainWritable[head]!;
      }
    } else {
      const slot = 1 + ((last & this.mask) << 1);
      const id = this.used32[slot]!;
      len = this.used32[slot + 1]!;
      if (!(id < this.size) || this.headInFlight[id] !== 1) {
        return this.fail('DEVICE_USED_BAD_ID', undefined, `used ring entry ${last} returns id ${id}, which is not the head of a buffer in flight`);
      }
      // basic.split-vq.vq-used-ring.device.2: len counts bytes written into the device-writable part.
      if (len > this.chainWritable[id]!) {
        return this.fail('DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2', `used ring entry ${last} (id ${id}) claims ${len} bytes written, but the chain has only ${this.chainWritable[id]} writable bytes`);
      }
      head = id;
      if (this.inOrder) {
        const oldest = this.order[this.orderHead]!;
        if (oldest !== id) {
          // Batched in-order completion: `id` ends a batch starting at the oldest chain.
          this.batchLast = id;
          this.batchLastLen = len;
          head = oldest;
          len = this.chainWritable[oldest]!;
        }
      }
    }
    this.release(head);
    this.lastUsed = (last + 1) & 0xffff;
    this.lastToken = this.tokens[head]!;
    this.lastLen = len;
    return true;
  }

  private release(head: number): void {
    const nd = this.chainDescs[head]!;
    if (this.inOrder) {
      this.orderHead = (this.orderHead + 1) & this.mask;
    } else {
      this.freeNext[this.chainTail[head]!] = this.freeHead;
      this.freeHead = head;
    }
    this.numFree += nd;
    this.headInFlight[head] = 0;
    this.inFlightCount--;
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
