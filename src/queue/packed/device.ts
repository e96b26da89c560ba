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
 * fd-backed region), the flags word of a buffer's first descriptor is read with `Atomics.load` and
 * each used descriptor's (a batch's first) flags written with `Atomics.store`, which orders the plain
 * accesses around them (the driver published the rest of a list before its head, and reads a used
 * batch starting with its first descriptor). Event suppression areas always use Atomics (once per
 * batch). Without `concurrent`, plain typed-array accesses are used (Atomics cost ~20 ns each).
 *
 * {@link PackedDeviceQueue.popBatch} does the same validation for many buffers per call with the ring
 * state (and the last resolved region) in locals; indirect tables take a shared cold path.
 *
 * In-order (VIRTIO_F_IN_ORDER): {@link PackedDeviceQueue.pushUsedBatch} writes a single used
 * descriptor for a batch (the last buffer's id; the driver skips the others and treats them as fully
 * used) when the batch is exactly the oldest buffers in pop order and every buffer but the last is
 * returned with its full writable length. Otherwise, and for single {@link PackedDeviceQueue.pushUsed}
 * calls, one used descriptor per buffer is written, which is always correct.
 */
import type { VirtioErrorCode } from '../../errors.js';
import { resolveErrorCode, type AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../../device/choke.js';
import { logger } from '../../log.js';
import { packedNeedEvent } from '../event-idx.js';
import {
  type ChainBatch,
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
    this.idDescs = new Uint32Array(cfg.size);
    this.idWritable = new Float64Array(cfg.size);
    this.idSeq = new Float64Array(cfg.size);
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
    if (this.isParked) return false;
    const d16 = this.desc16;
    const d32 = this.desc32;
    const size = this.size;
    let off = this.availOff;
    let wrap = this.availWrap;
    // basic.packed-vq.vq-desc-table.device.2: read flags first; use the descriptor only when AVAIL
    // matches our wrap counter and USED does not.
    let flags = this.atomic ? Atomics.load(d16, off * 8 + 7) : d16[off * 8 + 7]!;
    if (((flags >>> 7) & 1) !== wrap || flags >>> 15 === wrap) return false;

    const space = this.space;
    const cRegion = chain.region;
    const cOff = chain.offset;
    const cAddr = chain.addr;
    const cLen = chain.len;
    let maxSeg = this.maxDirect;
    if (cRegion.length < maxSeg) maxSeg = cRegion.length;
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
        return this.popIndirect(chain, cRegion.length, flags, lo, hi, len, id, descs, off, wrap);
      }
      if (count >= maxSeg) {
        // basic.packed-vq.scatter-gather-support.driver.1 (device limit; scatter-gather-support.device.2)
        return this.fail('CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1', `descriptor list at offset ${this.availOff} has more than ${maxSeg} descriptors (the device's limit)`);
      }
      const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!write && readable !== count) {
        // basic.packed-vq.scatter-gather-support.driver.3
        return this.fail('READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', `descriptor at offset ${off} is device-readable but follows a device-writable one`);
      }
      const r = space.resolveHiLo(lo, hi, len, write);
      if (r < 0) return this.failAddress(r, lo, hi, len, write, off);
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
        return this.fail('CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.2', `descriptor list at offset ${this.availOff} is longer than the queue size ${size}`);
      }
      flags = d16[off * 8 + 7]!; // ordered by the head's acquire (the driver wrote the head last)
      // Rest of the list not available yet: leave it for later (scatter-gather-support.driver.6 says
      // the head is exposed last, so a conforming driver never shows a partial list).
      if (((flags >>> 7) & 1) !== wrap || flags >>> 15 === wrap) return false;
    }
    if (rBytes + wBytes > TWO_POW_32) {
      // The 2^32 total-length rule is stated for split rings (basic.split-vq.vq-desc-table.driver.1); applied here too.
      return this.fail('CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `buffer at offset ${this.availOff} totals ${rBytes + wBytes} bytes (more than 2^32)`);
    }
    return this.commit(chain, id, descs, off, wrap, count, readable, rBytes, wBytes);
  }

  /**
   * Batch form of {@link pop}: pop up to `min(max, batch.maxChains)` buffers into `batch` with the
   * same validation, ring state in locals. Stops at the first buffer that is not (completely)
   * available, or that does not fit in the batch's remaining segment room (left for the next call),
   * or that is invalid (reported, queue parked; the buffers before it are returned and in flight).
   */
  popBatch(batch: ChainBatch, max: number): number {
    batch.count = 0;
    if (this.isParked) return 0;
    const d16 = this.desc16;
    const d32 = this.desc32;
    const size = this.size;
    const space = this.space;
    const heads = batch.head;
    const chains = batch.chain;
    const bytes = batch.bytes;
    const seg = batch.seg;
    const pos = batch.pos;
    const idDescs = this.idDescs;
    const inOrder = this.inOrder;
    const segCap = seg.length >>> 1;
    const maxC = max < heads.length ? max : heads.length;
    const maxDirect = this.maxDirect;
    let off = this.availOff;
    let wrap = this.availWrap;
    let descsInFlight = this.descsInFlight;
    let nInFlight = this.nInFlight;
    const regions = space.regions;
    let cIdx = -1;
    let cBase = 0;
    let cEnd = -1;
    let cOffB = 0;
    let cRO = true;
    let c = 0;
    let s = 0;
    outer: while (c < maxC) {
      let flags = this.atomic ? Atomics.load(d16, off * 8 + 7) : d16[off * 8 + 7]!;
      if (((flags >>> 7) & 1) !== wrap || flags >>> 15 === wrap) break; // basic.packed-vq.vq-desc-table.device.2
      const room = segCap - s;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // Cold path: one indirect table. Leave it for the next call when it would fit an empty batch only.
        const tl = d32[off * 4 + 2]!;
        if (c > 0 && tl !== 0 && (tl & 15) === 0 && tl >>> 4 > room) break;
        this.availOff = off;
        this.availWrap = wrap;
        this.descsInFlight = descsInFlight;
        this.nInFlight = nInFlight;
        const sc = this.scratchChain();
        const b = off * 4;
        if (!this.popIndirect(sc, room, flags, d32[b]!, d32[b + 1]!, tl, d16[off * 8 + 6]!, 1, off, wrap)) {
          batch.count = c;
          return c;
        }
        off = this.availOff;
        wrap = this.availWrap;
        descsInFlight = this.descsInFlight;
        nInFlight = this.nInFlight;
        const n = sc.count;
        for (let k = 0; k < n; k++) {
          const q = 2 * (s + k);
          seg[q] = sc.region[k]!;
          seg[q + 1] = sc.len[k]!;
          pos[q] = sc.offset[k]!;
          pos[q + 1] = sc.addr[k]!;
        }
        heads[c] = sc.head;
        const co = 4 * c;
        chains[co] = s;
        chains[co + 1] = n;
        chains[co + 2] = sc.readable;
        chains[co + 3] = 1;
        bytes[2 * c] = sc.readableBytes;
        bytes[2 * c + 1] = sc.writableBytes;
        s += n;
        c++;
        continue;
      }
      const limit = maxDirect < room ? maxDirect : room;
      let o = off;
      let w = wrap;
      let count = 0;
      let readable = 0;
      let rBytes = 0;
      let wBytes = 0;
      let descs = 0;
      let id = 0;
      for (;;) {
        const b = o * 4;
        const lo = d32[b]!;
        const hi = d32[b + 1]!;
        const len = d32[b + 2]!;
        id = d16[o * 8 + 6]!;
        descs++;
        if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
          // basic.packed-vq.indirect-desc.driver.4 (an INDIRECT descriptor after NEXT ones)
          this.failAt(off, wrap, descsInFlight, nInFlight, 'INDIRECT_WITH_NEXT', 'basic.packed-vq.indirect-desc.driver.4', `descriptor at offset ${o} has INDIRECT set inside a NEXT-linked list (list position ${descs})`);
          break outer;
        }
        if (count >= limit) {
          if (c > 0 && count < maxDirect) break outer; // may fit an empty batch: next call
          // basic.packed-vq.scatter-gather-support.driver.1
          this.failAt(off, wrap, descsInFlight, nInFlight, 'CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1', `descriptor list at offset ${off} has more than ${count} descriptors (the device's limit)`);
          break outer;
        }
        const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
        if (!write && readable !== count) {
          this.failAt(off, wrap, descsInFlight, nInFlight, 'READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', `descriptor at offset ${o} is device-readable but follows a device-writable one`);
          break outer;
        }
        // Same answer as space.resolveHiLo, with the last region hit cached in locals for this call.
        const addr = hi * TWO_POW_32 + lo;
        let r = cIdx;
        let boff = 0;
        if (hi < 0x200000 && addr >= cBase && addr + len <= cEnd && (!write || !cRO)) {
          boff = cOffB + (addr - cBase);
        } else {
          r = space.resolveHiLo(lo, hi, len, write);
          if (r < 0) {
            this.availOff = off;
            this.availWrap = wrap;
            this.descsInFlight = descsInFlight;
            this.nInFlight = nInFlight;
            this.failAddress(r, lo, hi, len, write, o);
            break outer;
          }
          boff = space.off;
          const rg = regions[r]!;
          cIdx = r;
          cBase = rg.base;
          cEnd = rg.base + rg.size;
          cOffB = rg.offset;
          cRO = rg.readOnly;
        }
        const q = 2 * (s + count);
        seg[q] = r;
        seg[q + 1] = len;
        pos[q] = boff;
        pos[q + 1] = addr;
        count++;
        if (write) {
          wBytes += len;
        } else {
          rBytes += len;
          readable++;
        }
        o++;
        if (o === size) {
          o = 0;
          w ^= 1;
        }
        if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
        if (descs >= size) {
          this.failAt(off, wrap, descsInFlight, nInFlight, 'CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.2', `descriptor list at offset ${off} is longer than the queue size ${size}`);
          break outer;
        }
        flags = d16[o * 8 + 7]!;
        if (((flags >>> 7) & 1) !== w || flags >>> 15 === w) break outer; // rest not available yet
      }
      if (rBytes + wBytes > TWO_POW_32) {
        this.failAt(off, wrap, descsInFlight, nInFlight, 'CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1', `buffer at offset ${off} totals ${rBytes + wBytes} bytes (more than 2^32)`);
        break;
      }
      if (id >= size) {
        this.failAt(off, wrap, descsInFlight, nInFlight, 'PACKED_BAD_ID', undefined, `buffer at offset ${off} has id ${id}, not below the queue size ${size}`);
        break;
      }
      if (idDescs[id] !== 0) {
        this.failAt(off, wrap, descsInFlight, nInFlight, 'HEAD_IN_FLIGHT', undefined, `buffer at offset ${off} reuses id ${id}, which is still in flight`);
        break;
      }
      if (descsInFlight + descs > size) {
        this.failAt(off, wrap, descsInFlight, nInFlight, 'HEAD_IN_FLIGHT', 'basic.packed-vq.vq-desc-table.driver.1', `buffer at offset ${off} would put ${descsInFlight + descs} descriptors in flight, more than the queue size ${size}`);
        break;
      }
      idDescs[id] = descs;
      if (inOrder) {
        this.idWritable[id] = wBytes;
        this.idSeq[id] = this.popSeq++;
      }
      descsInFlight += descs;
      nInFlight++;
      heads[c] = id;
      const co = 4 * c;
      chains[co] = s;
      chains[co + 1] = count;
      chains[co + 2] = readable;
      chains[co + 3] = descs;
      bytes[2 * c] = rBytes;
      bytes[2 * c + 1] = wBytes;
      s += count;
      c++;
      off = o;
      wrap = w;
    }
    if (!this.isParked) {
      this.availOff = off;
      this.availWrap = wrap;
      this.descsInFlight = descsInFlight;
      this.nInFlight = nInFlight;
    }
    batch.count = c;
    return c;
  }

  /** A DescChain for popBatch's indirect path (allocated on first use, maxSeg segments). */
  private scratchChain(): DescChain {
    let sc = this.scratch;
    if (sc === undefined) {
      sc = new DescChain(this.maxSeg);
      this.scratch = sc;
    }
    return sc;
  }

  /** popBatch error: write back the state of the buffers already taken, then report. */
  private failAt(off: number, wrap: number, descsInFlight: number, nInFlight: number, code: VirtioErrorCode, clause: string | undefined, message: string): void {
    this.availOff = off;
    this.availWrap = wrap;
    this.descsInFlight = descsInFlight;
    this.nInFlight = nInFlight;
    this.fail(code, clause, message);
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
  pushUsed(id: number, len: number): void {
    const size = this.size;
    const idDescs = this.idDescs;
    const n = id >= 0 && id < size && (id | 0) === id ? idDescs[id]! : 0;
    if (n === 0) {
      this.fail('USED_BAD_ID', undefined, `device returned id ${id}, which is not in flight`);
      return;
    }
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
    if (n <= 0) return;
    if (n === 1) {
      this.pushUsed(heads[0]!, lens[0]!);
      return;
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
