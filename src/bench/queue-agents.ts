/**
 * The two halves of the queue benchmark workload, written against the queue contracts
 * (src/queue/types.ts) so they run the library's real split and packed queues.
 *
 * - {@link BenchDriver} (the simulated guest): takes a token (0..255) from its free stack, writes
 *   the request into guest memory (blk header; status byte set to 0xff), adds the chain with
 *   `DriverQueue.add(sg, token)`, publishes once per batch; reclaims with `getUsed()` and checks
 *   that the device wrote the status byte.
 * - {@link BenchDevice}: pops up to 64 chains with `DeviceQueue.pop(chain)`, checks the request
 *   layout, reads the blk header, writes the status byte, and returns the batch with one
 *   `pushUsedBatch`.
 *
 * Same algorithm as bench/c/queue_bench.c. State is copied into locals at the top of each hot
 * method (perf-limits.md §6.2); nothing is allocated per chain.
 */
import type { AddressSpace } from '../memory/space.js';
import type { MemoryRegion } from '../memory/region.js';
import { DescChain, SgList, type DeviceQueue, type DriverQueue } from '../queue/types.js';
import {
  BENCH_BATCH,
  BENCH_GPA_BASE,
  BENCH_MAX_SEGS,
  BENCH_QUEUE_SIZE,
  BUF1_LEN,
  BUF1_OFF,
  type ChainDescs,
  DATA_LEN,
  DATA_OFF,
  HDR_LEN,
  HDR_OFF,
  STATUS_OFF,
  STATUS_UNSET,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_IN,
} from './queue-layout.js';

/** Driver half: posts requests and reclaims them. */
export class BenchDriver {
  /** Chains whose status byte was not written by the device. */
  badStatus = 0;
  /** Chains currently posted and not reclaimed. */
  inFlight = 0;
  private readonly drv: DriverQueue;
  private readonly descs: ChainDescs;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  private readonly sg: SgList;
  private readonly freeTok: Int32Array;
  private nFree: number;
  private seq = 0;

  /**
   * @param drv the driver queue (its rings live in `guest`)
   * @param guest the guest-memory buffer (bus address {@link BENCH_GPA_BASE} = byte 0)
   */
  constructor(drv: DriverQueue, guest: ArrayBufferLike, descs: ChainDescs) {
    this.drv = drv;
    this.descs = descs;
    this.u8 = new Uint8Array(guest);
    this.u32 = new Uint32Array(guest);
    this.sg = new SgList(3);
    this.freeTok = new Int32Array(BENCH_QUEUE_SIZE);
    for (let i = 0; i < BENCH_QUEUE_SIZE; i++) this.freeTok[i] = BENCH_QUEUE_SIZE - 1 - i;
    this.nFree = BENCH_QUEUE_SIZE;
  }

  /** Post up to `max` chains and publish them; returns how many were posted. */
  post(max: number): number {
    const drv = this.drv;
    const sg = this.sg;
    const u8 = this.u8;
    const u32 = this.u32;
    const freeTok = this.freeTok;
    const three = this.descs === 3;
    let nFree = this.nFree;
    let seq = this.seq;
    let posted = 0;
    while (posted < max && nFree > 0) {
      const t = freeTok[nFree - 1]!;
      sg.clear();
      if (three) {
        const h = (HDR_OFF + HDR_LEN * t) >>> 2;
        u32[h] = VIRTIO_BLK_T_IN;
        u32[h + 1] = 0;
        u32[h + 2] = seq >>> 0;
        u32[h + 3] = (seq / 4294967296) >>> 0;
        u8[STATUS_OFF + t] = STATUS_UNSET;
        sg.out(BENCH_GPA_BASE + HDR_OFF + HDR_LEN * t, HDR_LEN);
        sg.in(BENCH_GPA_BASE + DATA_OFF + DATA_LEN * t, DATA_LEN);
        sg.in(BENCH_GPA_BASE + STATUS_OFF + t, 1);
      } else {
        u8[BUF1_OFF + BUF1_LEN * t] = STATUS_UNSET;
        sg.in(BENCH_GPA_BASE + BUF1_OFF + BUF1_LEN * t, BUF1_LEN);
      }
      if (drv.add(sg, t) < 0) break;
      seq++;
      nFree--;
      posted++;
    }
    if (posted > 0) drv.publish();
    this.nFree = nFree;
    this.seq = seq;
    this.inFlight += posted;
    return posted;
  }

  /** Collect every used chain, check its status byte; returns how many were collected. */
  reclaim(): number {
    const drv = this.drv;
    const u8 = this.u8;
    const freeTok = this.freeTok;
    const statusBase = this.descs === 3 ? STATUS_OFF : BUF1_OFF;
    const stride = this.descs === 3 ? 1 : BUF1_LEN;
    let nFree = this.nFree;
    let bad = 0;
    let got = 0;
    while (drv.getUsed()) {
      const t = drv.lastToken;
      if (u8[statusBase + stride * t] !== VIRTIO_BLK_S_OK) bad++;
      freeTok[nFree++] = t;
      got++;
    }
    this.nFree = nFree;
    this.badStatus += bad;
    this.inFlight -= got;
    return got;
  }
}

/** Device half: pops, handles and completes requests. */
export class BenchDevice {
  /** Chains with an unexpected layout (a bug in the queue code or the harness). */
  badRequests = 0;
  /** Sum of the sectors read from blk headers (proves the header was read). */
  checksum = 0;
  private readonly dq: DeviceQueue;
  private readonly descs: ChainDescs;
  private readonly regions: MemoryRegion[];
  private readonly chain: DescChain;
  private readonly heads: Uint32Array;
  private readonly lens: Uint32Array;

  constructor(dq: DeviceQueue, space: AddressSpace, descs: ChainDescs) {
    this.dq = dq;
    this.descs = descs;
    this.regions = space.regions;
    this.chain = new DescChain(BENCH_MAX_SEGS);
    this.heads = new Uint32Array(BENCH_BATCH);
    this.lens = new Uint32Array(BENCH_BATCH);
  }

  /**
   * Pop up to one batch (64 chains), handle them, push them used in one batch.
   * @returns chains completed, or -1 when the queue parked (guest error) or a request was malformed.
   */
  batch(): number {
    const dq = this.dq;
    const chain = this.chain;
    const heads = this.heads;
    const lens = this.lens;
    const regions = this.regions;
    const cRegion = chain.region;
    const cOff = chain.offset;
    const cLen = chain.len;
    const three = this.descs === 3;
    let checksum = this.checksum;
    let n = 0;
    let bad = 0;
    while (n < BENCH_BATCH && dq.pop(chain)) {
      let used: number;
      if (three) {
        if (chain.count !== 3 || chain.readable !== 1 || cLen[0]! < HDR_LEN || cLen[2]! < 1) {
          bad++;
          break;
        }
        const hdr = regions[cRegion[0]!]!.dv;
        const ho = cOff[0]!;
        const type = hdr.getUint32(ho, true);
        checksum += hdr.getUint32(ho + 8, true) + hdr.getUint32(ho + 12, true) * 4294967296;
        regions[cRegion[2]!]!.u8[cOff[2]!] = type === VIRTIO_BLK_T_IN ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
        used = chain.writableBytes;
      } else {
        if (chain.count !== 1 || chain.readable !== 0 || cLen[0]! < 1) {
          bad++;
          break;
        }
        regions[cRegion[0]!]!.u8[cOff[0]!] = VIRTIO_BLK_S_OK;
        used = 1;
      }
      heads[n] = chain.head;
      lens[n] = used;
      n++;
    }
    if (n > 0) dq.pushUsedBatch(heads, lens, n);
    this.checksum = checksum;
    if (bad > 0) {
      this.badRequests += bad;
      return -1;
    }
    if (n === 0 && dq.parked) return -1;
    return n;
  }
}
