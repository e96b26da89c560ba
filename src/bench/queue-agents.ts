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
 * Two API styles (`QueueApi`): `chain` uses the per-chain members (pop / add / getUsed);
 * `batch` uses the optional batch members (popBatch / addBatch / getUsedBatch) when both queues
 * have them, else falls back to `chain`. Either way the work per chain (checks, ring accesses) is
 * the library's.
 *
 * Same algorithm as bench/c/queue_bench.c. State is copied into locals at the top of each hot
 * method (perf-limits.md §6.2); nothing is allocated per chain.
 */
import type { AddressSpace } from '../memory/space.js';
import type { MemoryRegion } from '../memory/region.js';
import { CHAIN_STRIDE as I_CHAIN_STRIDE, ChainBatch, type ChainFiller, type ChainVisitor, DescChain, type UsedVisitor, SG_CHAIN_STRIDE as I_SG_CHAIN_STRIDE, SgBatch, SgList, type DeviceQueue, type DriverQueue } from '../queue/types.js';
import {
  BENCH_BATCH as I_BENCH_BATCH,
  BENCH_GPA_BASE as I_BENCH_GPA_BASE,
  BENCH_MAX_SEGS as I_BENCH_MAX_SEGS,
  BENCH_QUEUE_SIZE as I_BENCH_QUEUE_SIZE,
  BUF1_LEN as I_BUF1_LEN,
  BUF1_OFF as I_BUF1_OFF,
  type ChainDescs,
  DATA_LEN as I_DATA_LEN,
  DATA_OFF as I_DATA_OFF,
  HDR_LEN as I_HDR_LEN,
  HDR_OFF as I_HDR_OFF,
  STATUS_OFF as I_STATUS_OFF,
  STATUS_UNSET as I_STATUS_UNSET,
  VIRTIO_BLK_S_OK as I_VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP as I_VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_IN as I_VIRTIO_BLK_T_IN,
} from './queue-layout.js';

// Module-local copies of the imported constants: V8 folds these into the hot loops, while imported
// bindings are re-loaded and hole-checked on every use (measured with callgrind).
const CHAIN_STRIDE = I_CHAIN_STRIDE;
const SG_CHAIN_STRIDE = I_SG_CHAIN_STRIDE;
const BENCH_BATCH = I_BENCH_BATCH;
const BENCH_GPA_BASE = I_BENCH_GPA_BASE;
const BENCH_MAX_SEGS = I_BENCH_MAX_SEGS;
const BENCH_QUEUE_SIZE = I_BENCH_QUEUE_SIZE;
const BUF1_LEN = I_BUF1_LEN;
const BUF1_OFF = I_BUF1_OFF;
const DATA_LEN = I_DATA_LEN;
const DATA_OFF = I_DATA_OFF;
const HDR_LEN = I_HDR_LEN;
const HDR_OFF = I_HDR_OFF;
const STATUS_OFF = I_STATUS_OFF;
const STATUS_UNSET = I_STATUS_UNSET;
const VIRTIO_BLK_S_OK = I_VIRTIO_BLK_S_OK;
const VIRTIO_BLK_S_UNSUPP = I_VIRTIO_BLK_S_UNSUPP;
const VIRTIO_BLK_T_IN = I_VIRTIO_BLK_T_IN;

/**
 * Which queue members the harness calls: `visit` = popEach / addEach / collectEach (one pass per
 * chain), `batch` = popBatch / addBatch / getUsedBatch (flat arrays between the steps), `chain` =
 * pop / add / getUsed.
 */
export type QueueApi = 'chain' | 'batch' | 'visit';

/** The API style actually usable for this pair of queues (falls back visit → batch → chain). */
export function effectiveApi(want: QueueApi, dq: DeviceQueue, drv: DriverQueue): QueueApi {
  if (want === 'visit' && typeof dq.popEach === 'function' && typeof drv.addEach === 'function' && typeof drv.collectEach === 'function') return 'visit';
  if (want !== 'chain' && typeof dq.popBatch === 'function' && typeof drv.addBatch === 'function' && typeof drv.getUsedBatch === 'function') return 'batch';
  return 'chain';
}

/** State a {@link BenchDriver} shares with its fillers and used visitors. */
class DriverState {
  /** Free token stack (tokens 0..255) and its depth. */
  readonly freeTok = new Int32Array(BENCH_QUEUE_SIZE);
  nFree = BENCH_QUEUE_SIZE;
  /** Requests posted so far (blk header sector). */
  seq = 0;
  /** Chains whose status byte the device did not write. */
  bad = 0;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  constructor(guest: ArrayBufferLike) {
    this.u8 = new Uint8Array(guest);
    this.u32 = new Uint32Array(guest);
    for (let i = 0; i < BENCH_QUEUE_SIZE; i++) this.freeTok[i] = BENCH_QUEUE_SIZE - 1 - i;
  }
}

/** addEach filler for 1-descriptor chains: token from the top of the stack, one 64-byte writable buffer. */
class Fill1 implements ChainFiller {
  token = 0;
  readable = 0;
  constructor(private readonly st: DriverState) {}
  fill(k: number, addr: Float64Array, len: Uint32Array): number {
    const st = this.st;
    const nFree = st.nFree;
    if (k >= nFree) return 0;
    const t = st.freeTok[nFree - 1 - k]!;
    st.u8[BUF1_OFF + BUF1_LEN * t] = STATUS_UNSET;
    addr[0] = BENCH_GPA_BASE + BUF1_OFF + BUF1_LEN * t;
    len[0] = BUF1_LEN;
    this.token = t;
    this.readable = 0;
    return 1;
  }
}

/** addEach filler for virtio-blk reads: header (written here), data, status. */
class Fill3 implements ChainFiller {
  token = 0;
  readable = 1;
  constructor(private readonly st: DriverState) {}
  fill(k: number, addr: Float64Array, len: Uint32Array): number {
    const st = this.st;
    const nFree = st.nFree;
    if (k >= nFree) return 0;
    const t = st.freeTok[nFree - 1 - k]!;
    const u32 = st.u32;
    const h = (HDR_OFF + HDR_LEN * t) >>> 2;
    const seq = st.seq + k;
    u32[h] = VIRTIO_BLK_T_IN;
    u32[h | 1] = 0;
    u32[h | 2] = seq >>> 0;
    u32[h | 3] = (seq / 4294967296) >>> 0;
    st.u8[STATUS_OFF + t] = STATUS_UNSET;
    addr[0] = BENCH_GPA_BASE + HDR_OFF + HDR_LEN * t;
    len[0] = HDR_LEN;
    addr[1] = BENCH_GPA_BASE + DATA_OFF + DATA_LEN * t;
    len[1] = DATA_LEN;
    addr[2] = BENCH_GPA_BASE + STATUS_OFF + t;
    len[2] = 1;
    this.token = t;
    this.readable = 1;
    return 3;
  }
}

/** collectEach visitor for 1-descriptor chains: check the status byte (first byte of the buffer), free the token. */
class Reclaim1 implements UsedVisitor {
  constructor(private readonly st: DriverState) {}
  used(token: number, _len: number): void {
    const st = this.st;
    if (st.u8[BUF1_OFF + BUF1_LEN * token] !== VIRTIO_BLK_S_OK) st.bad++;
    st.freeTok[st.nFree++] = token;
  }
}

/** collectEach visitor for virtio-blk reads: check the status byte, free the token (offsets as constants, as in the C program). */
class Reclaim3 implements UsedVisitor {
  constructor(private readonly st: DriverState) {}
  used(token: number, _len: number): void {
    const st = this.st;
    if (st.u8[STATUS_OFF + token] !== VIRTIO_BLK_S_OK) st.bad++;
    st.freeTok[st.nFree++] = token;
  }
}

/**
 * popEach visitor for 1-descriptor chains: write the status byte, complete with 1 byte. Keeps the
 * views of the region the last buffer was in (a device model's usual cache).
 */
class Serve1 implements ChainVisitor {
  bad = 0;
  private cr = -1;
  private cu8: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  constructor(private readonly regions: MemoryRegion[]) {}
  visit(c: DescChain): number {
    if (c.count !== 1 || c.readable !== 0 || c.len[0]! < 1) {
      this.bad++;
      return 0;
    }
    const r = c.region[0]!;
    if (r !== this.cr) {
      this.cr = r;
      this.cu8 = this.regions[r]!.u8;
    }
    this.cu8[c.offset[0]!] = VIRTIO_BLK_S_OK;
    return 1;
  }
}

/** popEach visitor for virtio-blk reads: read the header, write the status, complete (region views cached). */
class Serve3 implements ChainVisitor {
  bad = 0;
  checksum = 0;
  private cr = -1;
  private cu8: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  private cdv: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
  constructor(private readonly regions: MemoryRegion[]) {}
  visit(c: DescChain): number {
    const len = c.len;
    if (c.count !== 3 || c.readable !== 1 || len[0]! < HDR_LEN || len[2]! < 1) {
      this.bad++;
      return 0;
    }
    const region = c.region;
    const off = c.offset;
    let r = region[0]!;
    if (r !== this.cr) this.useRegion(r);
    const dv = this.cdv;
    const ho = off[0]!;
    const type = dv.getUint32(ho, true);
    this.checksum += dv.getUint32(ho + 8, true) + dv.getUint32(ho + 12, true) * 4294967296;
    r = region[2]!;
    if (r !== this.cr) this.useRegion(r);
    this.cu8[off[2]!] = type === VIRTIO_BLK_T_IN ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
    return c.writableBytes;
  }
  private useRegion(r: number): void {
    const rg = this.regions[r]!;
    this.cr = r;
    this.cu8 = rg.u8;
    this.cdv = rg.dv;
  }
}

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
  private readonly batchApi: boolean;
  private readonly sgBatch: SgBatch;
  private readonly usedTok: Int32Array;
  private readonly usedLen: Uint32Array;
  /** Visit API: shared state, filler and used visitor. */
  private readonly visitApi: boolean;
  private readonly vst: DriverState;
  private readonly filler: ChainFiller;
  private readonly reclaimer: UsedVisitor;

  /**
   * @param drv the driver queue (its rings live in `guest`)
   * @param guest the guest-memory buffer (bus address {@link BENCH_GPA_BASE} = byte 0)
   * @param api `batch` only when {@link effectiveApi} says the queues support it
   */
  constructor(drv: DriverQueue, guest: ArrayBufferLike, descs: ChainDescs, api: QueueApi = 'chain') {
    this.drv = drv;
    this.batchApi = api === 'batch';
    this.visitApi = api === 'visit';
    this.vst = new DriverState(guest);
    this.filler = descs === 3 ? new Fill3(this.vst) : new Fill1(this.vst);
    this.reclaimer = descs === 3 ? new Reclaim3(this.vst) : new Reclaim1(this.vst);
    this.sgBatch = new SgBatch(BENCH_BATCH, 3 * BENCH_BATCH);
    this.usedTok = new Int32Array(BENCH_QUEUE_SIZE);
    this.usedLen = new Uint32Array(BENCH_QUEUE_SIZE);
    this.descs = descs;
    this.u8 = new Uint8Array(guest);
    this.u32 = new Uint32Array(guest);
    this.sg = new SgList(3);
    this.freeTok = new Int32Array(BENCH_QUEUE_SIZE);
    for (let i = 0; i < BENCH_QUEUE_SIZE; i++) this.freeTok[i] = BENCH_QUEUE_SIZE - 1 - i;
    this.nFree = BENCH_QUEUE_SIZE;
  }

  /** Post up to `max` (≤ 64) chains and publish them; returns how many were posted. */
  post(max: number): number {
    // Room first, as a driver does (Linux's virtqueue_add checks num_free before anything else): no
    // request is prepared — no header written into guest memory — for a chain that cannot be added.
    // The C reference (bench/c/queue_bench.c, driver_post) does the same.
    const room = Math.floor(this.drv.freeCount / this.descs);
    if (room < max) max = room;
    if (max <= 0) return 0;
    if (this.visitApi) return this.postVisit(max);
    if (!this.batchApi) return this.postChains(max);
    return this.descs === 3 ? this.postBatch3(max) : this.postBatch1(max);
  }

  /** Collect every used chain, check its status byte; returns how many were collected. */
  reclaim(): number {
    if (this.visitApi) return this.reclaimVisit();
    if (!this.batchApi) return this.reclaimChains();
    return this.reclaimBatch();
  }

  /** Post with one addEach (the filler describes each chain straight into the queue's scratch). */
  private postVisit(max: number): number {
    const st = this.vst;
    const added = this.drv.addEach!(this.filler, max < BENCH_BATCH ? max : BENCH_BATCH);
    if (added > 0) this.drv.publish();
    st.nFree -= added;
    st.seq += added;
    this.inFlight += added;
    return added;
  }

  /** Reclaim with collectEach calls. */
  private reclaimVisit(): number {
    const st = this.vst;
    const bad0 = st.bad;
    let got = 0;
    for (;;) {
      const n = this.drv.collectEach!(this.reclaimer, BENCH_QUEUE_SIZE);
      got += n;
      if (n < BENCH_QUEUE_SIZE) break;
    }
    this.badStatus += st.bad - bad0;
    this.inFlight -= got;
    return got;
  }

  private postChains(max: number): number {
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

  /**
   * Post 1-descriptor chains with one addBatch: fill an SgBatch from the top of the token stack.
   * The batch methods come in one copy per chain shape so each compiles to a loop without the
   * other shape's branch (measured: −4 % instructions per chain).
   */
  private postBatch1(max: number): number {
    const sb = this.sgBatch;
    const chain = sb.chain;
    const seg = sb.seg;
    const u8 = this.u8;
    const freeTok = this.freeTok;
    const nFree = this.nFree;
    const want = max < nFree ? (max < BENCH_BATCH ? max : BENCH_BATCH) : nFree;
    for (let k = 0; k < want; k++) {
      const t = freeTok[nFree - 1 - k]!;
      const o = SG_CHAIN_STRIDE * k;
      chain[o] = t;
      chain[o | 1] = 1;
      chain[o | 2] = 0;
      u8[BUF1_OFF + BUF1_LEN * t] = STATUS_UNSET;
      const s = k << 1;
      seg[s] = BENCH_GPA_BASE + BUF1_OFF + BUF1_LEN * t;
      seg[s | 1] = BUF1_LEN;
    }
    sb.count = want;
    sb.segs = want;
    const added = want > 0 ? this.drv.addBatch!(sb) : 0;
    return this.finishPost(added);
  }

  /** Post virtio-blk read requests (3 descriptors each) with one addBatch. */
  private postBatch3(max: number): number {
    const sb = this.sgBatch;
    const chain = sb.chain;
    const seg = sb.seg;
    const u8 = this.u8;
    const u32 = this.u32;
    const freeTok = this.freeTok;
    const nFree = this.nFree;
    const want = max < nFree ? (max < BENCH_BATCH ? max : BENCH_BATCH) : nFree;
    const seq = this.seq;
    let s = 0;
    for (let k = 0; k < want; k++) {
      const t = freeTok[nFree - 1 - k]!;
      const o = SG_CHAIN_STRIDE * k;
      chain[o] = t;
      chain[o | 1] = 3;
      chain[o | 2] = 1;
      const h = (HDR_OFF + HDR_LEN * t) >>> 2;
      u32[h] = VIRTIO_BLK_T_IN;
      u32[h | 1] = 0;
      u32[h | 2] = (seq + k) >>> 0;
      u32[h | 3] = ((seq + k) / 4294967296) >>> 0;
      u8[STATUS_OFF + t] = STATUS_UNSET;
      seg[s] = BENCH_GPA_BASE + HDR_OFF + HDR_LEN * t;
      seg[s + 1] = HDR_LEN;
      seg[s + 2] = BENCH_GPA_BASE + DATA_OFF + DATA_LEN * t;
      seg[s + 3] = DATA_LEN;
      seg[s + 4] = BENCH_GPA_BASE + STATUS_OFF + t;
      seg[s + 5] = 1;
      s += 6;
    }
    sb.count = want;
    sb.segs = 3 * want;
    const added = want > 0 ? this.drv.addBatch!(sb) : 0;
    return this.finishPost(added);
  }

  /** Publish what addBatch took and update the token stack. */
  private finishPost(added: number): number {
    if (added > 0) this.drv.publish();
    this.nFree -= added;
    this.seq += added;
    this.inFlight += added;
    return added;
  }

  /**
   * Reclaim with getUsedBatch calls, checking each token's status byte (first byte of the buffer for
   * 1-descriptor chains, the status byte of a blk request otherwise). One method for both shapes:
   * a constant status address measured no faster (callgrind).
   */
  private reclaimBatch(): number {
    const drv = this.drv;
    const u8 = this.u8;
    const freeTok = this.freeTok;
    const toks = this.usedTok;
    const lens = this.usedLen;
    const statusBase = this.descs === 3 ? STATUS_OFF : BUF1_OFF;
    const stride = this.descs === 3 ? 1 : BUF1_LEN;
    let nFree = this.nFree;
    let bad = 0;
    let got = 0;
    for (;;) {
      const n = drv.getUsedBatch!(toks, lens, BENCH_QUEUE_SIZE);
      for (let i = 0; i < n; i++) {
        const t = toks[i]!;
        if (u8[statusBase + stride * t] !== VIRTIO_BLK_S_OK) bad++;
        freeTok[nFree++] = t;
      }
      got += n;
      if (n < BENCH_QUEUE_SIZE) break;
    }
    return this.finishReclaim(nFree, bad, got);
  }

  private finishReclaim(nFree: number, bad: number, got: number): number {
    this.nFree = nFree;
    this.badStatus += bad;
    this.inFlight -= got;
    return got;
  }

  private reclaimChains(): number {
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
  private readonly batchApi: boolean;
  private readonly cb: ChainBatch;
  /** Visit API: the chain visitor (Serve1 or Serve3). */
  private readonly visitApi: boolean;
  private readonly serve1: Serve1;
  private readonly serve3: Serve3;
  /** Placeholders for batchBatch's region-view cache before its first lookup. */
  private readonly u8None: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  private readonly dvNone: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));

  /** @param api `batch` only when {@link effectiveApi} says the queues support it */
  constructor(dq: DeviceQueue, space: AddressSpace, descs: ChainDescs, api: QueueApi = 'chain') {
    this.dq = dq;
    this.batchApi = api === 'batch';
    this.visitApi = api === 'visit';
    this.serve1 = new Serve1(space.regions);
    this.serve3 = new Serve3(space.regions);
    this.cb = new ChainBatch(BENCH_BATCH, BENCH_MAX_SEGS * BENCH_BATCH);
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
    if (this.visitApi) return this.descs === 3 ? this.batchVisit3() : this.batchVisit1();
    if (!this.batchApi) return this.batchChains();
    return this.descs === 3 ? this.batchBatch3() : this.batchBatch1();
  }

  /**
   * 1-descriptor chains: one popBatch, write each status byte from the flat arrays, one
   * pushUsedBatch. Region views are cached across chains (a device model's usual cache:
   * consecutive buffers are mostly in the same region).
   */
  private batchBatch1(): number {
    const dq = this.dq;
    const cb = this.cb;
    const n = dq.popBatch!(cb, BENCH_BATCH);
    const chainA = cb.chain;
    const seg = cb.seg;
    const pos = cb.pos;
    const lens = this.lens;
    const regions = this.regions;
    let bad = 0;
    let cr = -1;
    let cu8 = this.u8None;
    for (let i = 0; i < n; i++) {
      const o = CHAIN_STRIDE * i;
      const f2 = chainA[o]! << 1;
      if (chainA[o | 1] !== 1 || chainA[o | 2] !== 0 || seg[f2 | 1]! < 1) {
        bad++;
        lens[i] = 0;
        continue;
      }
      const r = seg[f2]!;
      if (r !== cr) {
        cr = r;
        cu8 = regions[r]!.u8;
      }
      cu8[pos[f2]!] = VIRTIO_BLK_S_OK;
      lens[i] = 1;
    }
    if (n > 0) dq.pushUsedBatch(cb.head, lens, n);
    return this.finishBatch(n, bad);
  }

  /** virtio-blk read requests: read each header, write the status byte, one pushUsedBatch. */
  private batchBatch3(): number {
    const dq = this.dq;
    const cb = this.cb;
    const n = dq.popBatch!(cb, BENCH_BATCH);
    const chainA = cb.chain;
    const bytes = cb.bytes;
    const seg = cb.seg;
    const pos = cb.pos;
    const lens = this.lens;
    const regions = this.regions;
    let checksum = this.checksum;
    let bad = 0;
    let cr = -1;
    let cu8 = this.u8None;
    let cdv = this.dvNone;
    for (let i = 0; i < n; i++) {
      const o = CHAIN_STRIDE * i;
      const f2 = chainA[o]! << 1;
      if (chainA[o | 1] !== 3 || chainA[o | 2] !== 1 || seg[f2 | 1]! < HDR_LEN || seg[f2 + 5]! < 1) {
        bad++;
        lens[i] = 0;
        continue;
      }
      let r = seg[f2]!;
      if (r !== cr) {
        const rg = regions[r]!;
        cr = r;
        cu8 = rg.u8;
        cdv = rg.dv;
      }
      const ho = pos[f2]!;
      const type = cdv.getUint32(ho, true);
      checksum += cdv.getUint32(ho + 8, true) + cdv.getUint32(ho + 12, true) * 4294967296;
      r = seg[f2 + 4]!;
      if (r !== cr) {
        const rg = regions[r]!;
        cr = r;
        cu8 = rg.u8;
        cdv = rg.dv;
      }
      cu8[pos[f2 + 4]!] = type === VIRTIO_BLK_T_IN ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
      lens[i] = bytes[(i << 1) | 1]!;
    }
    this.checksum = checksum;
    if (n > 0) dq.pushUsedBatch(cb.head, lens, n);
    return this.finishBatch(n, bad);
  }

  /** Result of a device batch: -1 on a malformed request or a parked queue. */
  private finishBatch(n: number, bad: number): number {
    if (bad > 0) {
      this.badRequests += bad;
      return -1;
    }
    if (n === 0 && this.dq.parked) return -1;
    return n;
  }

  /** One popEach with the 1-descriptor visitor. */
  private batchVisit1(): number {
    const v = this.serve1;
    const n = this.dq.popEach!(v, BENCH_BATCH);
    return this.finishVisit(n, v.bad);
  }

  /** One popEach with the virtio-blk visitor. */
  private batchVisit3(): number {
    const v = this.serve3;
    const n = this.dq.popEach!(v, BENCH_BATCH);
    this.checksum = v.checksum;
    return this.finishVisit(n, v.bad);
  }

  private finishVisit(n: number, bad: number): number {
    if (bad > this.badRequests) {
      this.badRequests = bad;
      return -1;
    }
    if (n === 0 && this.dq.parked) return -1;
    return n;
  }

  private batchChains(): number {
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
