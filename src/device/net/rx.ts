/**
 * Receive path of one receive queue: take driver buffers, write virtio_net_hdr + frame into
 * them, return them used.
 *
 * Popped chains that a frame could not use yet are *held* (their writable segments are kept in
 * flat typed arrays) and used first for the next frame — the device has no way to give a chain
 * back, and QEMU's "unpop" has the same effect. That gives:
 *  - mergeable buffers (VIRTIO_NET_F_MRG_RXBUF): chains are popped until they hold header + frame;
 *    if the ring runs dry part-way, the chains stay held and the frame waits (no partial writes);
 *  - without MRG_RXBUF a frame takes exactly one chain (net.setting-up-receive-buffers.device.2); a
 *    frame larger than that chain is dropped and the chain stays for the next frame (as QEMU does).
 *
 * All buffers of one frame are published with one used-index update
 * (net.processing-incoming-packets.device.4), every buffer but the last filled completely
 * (…device.3), num_buffers set to the count (…device.1/2, net.setting-up-receive-buffers.device.1),
 * and used len = bytes written (header + frame part) per buffer.
 *
 * Nothing here allocates per frame. Guest errors go to the sink and mark the queue broken.
 */
import type { AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../choke.js';
import { DescChain, type DeviceQueue } from '../../queue/types.js';

/** Outcome of {@link RxQueueState.deliver}. */
export const enum RxResult {
  /** Written and pushed used (the caller raises the interrupt). */
  DELIVERED = 0,
  /** Not enough receive buffers now; buffers popped so far stay held. */
  NO_BUFFERS = 1,
  /** The frame can never fit (single buffer too small, or > 65535 buffers): drop it. */
  TOO_BIG = 2,
  /** The queue is parked (guest error): use another queue or drop. */
  BROKEN = 3,
}

/** Largest num_buffers (le16). */
const MAX_NUM_BUFFERS = 0xffff;
/** Byte loop below this size, `set(subarray)` above (same rule as chain-io.ts). */
const SMALL_COPY = 64;

/** Per-receive-queue state. */
export class RxQueueState {
  readonly index: number;
  readonly queue: DeviceQueue;
  /** A guest error was reported for this queue: it is not used again until reset. */
  broken = false;

  private readonly chain: DescChain;
  private readonly heldHeads: Int32Array;
  private readonly heldBytes: Float64Array;
  /** Segment index where held chain i starts (length heldCount + 1 is valid). */
  private readonly heldSeg: Int32Array;
  private heldCount = 0;
  private heldTotal = 0;
  private segRegion: Int32Array;
  private segOff: Float64Array;
  private segLen: Uint32Array;
  private segCount = 0;
  private readonly usedHeads: Int32Array;
  private readonly usedLens: Uint32Array;

  constructor(queue: DeviceQueue, maxChainSegments?: number) {
    this.queue = queue;
    this.index = queue.index;
    const size = queue.size;
    this.chain = new DescChain(Math.max(1, Math.min(size, maxChainSegments ?? size)));
    this.heldHeads = new Int32Array(size);
    this.heldBytes = new Float64Array(size);
    this.heldSeg = new Int32Array(size + 1);
    const cap = size * 2;
    this.segRegion = new Int32Array(cap);
    this.segOff = new Float64Array(cap);
    this.segLen = new Uint32Array(cap);
    this.usedHeads = new Int32Array(size);
    this.usedLens = new Uint32Array(size);
  }

  /** Chains popped and not yet used (inspection). */
  get held(): number {
    return this.heldCount;
  }

  /** Forget held chains (queue or device reset: the queue forgets them too). */
  clear(): void {
    this.heldCount = 0;
    this.heldTotal = 0;
    this.segCount = 0;
    this.heldSeg[0] = 0;
  }

  /**
   * Write `hdr[0..hdrSize)` followed by `frame[off..off+len)` into receive buffers.
   * `hdr` bytes 10..11 (num_buffers) are filled in here. When `patchAt >= 0`, the two bytes at frame
   * offset `patchAt` are replaced by `patchVal` (big-endian) in the guest copy — a checksum
   * completed in software without touching the shared source frame.
   */
  deliver(space: AddressSpace, sink: GuestErrorSink, hdr: Uint8Array, hdrSize: number, frame: Uint8Array, off: number, len: number, mergeable: boolean, patchAt: number, patchVal: number): RxResult {
    if (this.broken || this.queue.parked) return RxResult.BROKEN;
    const total = hdrSize + len;
    // --- gather enough buffers
    if (mergeable) {
      while (this.heldTotal < total) {
        if (this.heldCount === MAX_NUM_BUFFERS || this.heldCount === this.queue.size) return RxResult.TOO_BIG;
        const r = this.popOne(sink, hdrSize, true);
        if (r !== RxResult.DELIVERED) return r;
      }
    } else if (this.heldCount === 0) {
      const r = this.popOne(sink, hdrSize, false);
      if (r !== RxResult.DELIVERED) return r;
    }
    // --- decide how many chains the frame takes
    let k: number;
    if (mergeable) {
      let acc = 0;
      k = 0;
      while (acc < total) acc += this.heldBytes[k++]!;
    } else {
      // net.setting-up-receive-buffers.device.2: one buffer only. Too small → drop, keep the buffer.
      if (this.heldBytes[0]! < total) return RxResult.TOO_BIG;
      k = 1;
    }
    // net.processing-incoming-packets.device.1/2, net.setting-up-receive-buffers.device.1: num_buffers.
    hdr[10] = k & 0xff;
    hdr[11] = k >>> 8;
    // --- copy: header then frame, filling every buffer but the last completely (…device.3)
    const regions = space.regions;
    const segRegion = this.segRegion;
    const segOff = this.segOff;
    const segLen = this.segLen;
    const heldSeg = this.heldSeg;
    const heldBytes = this.heldBytes;
    const usedLens = this.usedLens;
    const usedHeads = this.usedHeads;
    const heldHeads = this.heldHeads;
    const patchEnd = patchAt >= 0 ? hdrSize + patchAt : -1;
    let pos = 0;
    for (let c = 0; c < k; c++) {
      let budget = Math.min(heldBytes[c]!, total - pos);
      usedLens[c] = budget;
      usedHeads[c] = heldHeads[c]!;
      const sEnd = heldSeg[c + 1]!;
      for (let s = heldSeg[c]!; s < sEnd && budget > 0; s++) {
        const take = Math.min(segLen[s]!, budget);
        const dst = regions[segRegion[s]!]!.u8;
        let d = segOff[s]!;
        let t = take;
        // header part
        while (t > 0 && pos < hdrSize) {
          dst[d++] = hdr[pos++]!;
          t--;
        }
        if (t > 0) {
          const fs = off + (pos - hdrSize);
          if (t <= SMALL_COPY) {
            for (let i = 0; i < t; i++) dst[d + i] = frame[fs + i]!;
          } else {
            dst.set(frame.subarray(fs, fs + t), d);
          }
          if (patchEnd >= 0) {
            // Checksum bytes inside this piece: overwrite them in the guest copy.
            if (patchEnd >= pos && patchEnd < pos + t) dst[d + (patchEnd - pos)] = patchVal >>> 8;
            if (patchEnd + 1 >= pos && patchEnd + 1 < pos + t) dst[d + (patchEnd + 1 - pos)] = patchVal & 0xff;
          }
          pos += t;
        }
        budget -= take;
      }
    }
    // --- hand them back together (net.processing-incoming-packets.device.4), then drop them from the held set
    this.queue.pushUsedBatch(usedHeads, usedLens, k);
    this.dropFront(k);
    return RxResult.DELIVERED;
  }

  /** Pop one chain into the held set. DELIVERED = got one; NO_BUFFERS; BROKEN after a guest error. */
  private popOne(sink: GuestErrorSink, hdrSize: number, mergeable: boolean): RxResult {
    const ch = this.chain;
    const q = this.queue;
    if (!q.pop(ch)) {
      if (q.parked) return RxResult.BROKEN;
      // Out of buffers: ask the driver to notify when it adds some (with EVENT_IDX this moves
      // avail_event); re-check once in case buffers arrived meanwhile.
      if (!q.enableNotifications() || !q.pop(ch)) return q.parked ? RxResult.BROKEN : RxResult.NO_BUFFERS;
    }
    if (mergeable && ch.writableBytes < hdrSize) {
      // net.setting-up-receive-buffers.driver.1: with MRG_RXBUF each buffer MUST hold at least the header.
      this.broken = true;
      this.clear();
      try {
        sink.guestError({
          code: 'DEVICE_REQUEST_INVALID',
          clause: 'net.setting-up-receive-buffers.driver.1',
          message: `virtio-net receive queue ${this.index}: buffer ${ch.head} has ${ch.writableBytes} writable bytes; with VIRTIO_NET_F_MRG_RXBUF every receive buffer must hold at least the ${hdrSize}-byte virtio_net_hdr`,
          queue: this.index,
        });
      } catch {
        // a sink must not throw; nothing more to do
      }
      return RxResult.BROKEN;
    }
    const h = this.heldCount;
    const need = this.segCount + (ch.count - ch.readable);
    if (need > this.segLen.length) this.grow(need);
    let s = this.segCount;
    // Only the device-writable part receives data (basic.split-vq.vq-desc-table.device.1).
    for (let i = ch.readable; i < ch.count; i++, s++) {
      this.segRegion[s] = ch.region[i]!;
      this.segOff[s] = ch.offset[i]!;
      this.segLen[s] = ch.len[i]!;
    }
    this.segCount = s;
    this.heldHeads[h] = ch.head;
    this.heldBytes[h] = ch.writableBytes;
    this.heldSeg[h + 1] = s;
    this.heldCount = h + 1;
    this.heldTotal += ch.writableBytes;
    return RxResult.DELIVERED;
  }

  private dropFront(k: number): void {
    const rest = this.heldCount - k;
    if (rest === 0) {
      this.clear();
      return;
    }
    const base = this.heldSeg[k]!;
    let bytes = 0;
    for (let i = 0; i < k; i++) bytes += this.heldBytes[i]!;
    this.heldHeads.copyWithin(0, k, this.heldCount);
    this.heldBytes.copyWithin(0, k, this.heldCount);
    for (let i = 0; i <= rest; i++) this.heldSeg[i] = this.heldSeg[i + k]! - base;
    this.segRegion.copyWithin(0, base, this.segCount);
    this.segOff.copyWithin(0, base, this.segCount);
    this.segLen.copyWithin(0, base, this.segCount);
    this.segCount -= base;
    this.heldCount = rest;
    this.heldTotal -= bytes;
  }

  /** Grow the segment store (rare: only chains with many segments; never per frame in steady state). */
  private grow(need: number): void {
    let cap = this.segLen.length * 2;
    while (cap < need) cap *= 2;
    const r = new Int32Array(cap);
    r.set(this.segRegion.subarray(0, this.segCount));
    const o = new Float64Array(cap);
    o.set(this.segOff.subarray(0, this.segCount));
    const l = new Uint32Array(cap);
    l.set(this.segLen.subarray(0, this.segCount));
    this.segRegion = r;
    this.segOff = o;
    this.segLen = l;
  }
}
