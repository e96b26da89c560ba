/**
 * The queue benchmark's "plain JS" yardstick: the C reference's split-ring algorithm
 * (bench/c/queue_bench.c) hand-written in one file of plain JavaScript — typed arrays over the
 * guest memory, ring state in locals inside each hot function (loaded from an object at entry,
 * as code with runtime queue addresses must), no library, no batch arrays, no in-flight map.
 *
 * It answers "what does JS itself reach against C on this machine" for the split cells (one
 * thread here; two agents in queue-plain-two.ts), so the report can separate the cost of the language from the cost of the library's
 * layers (perf-limits.md §4: such code reached 0.35× C where the targets were set). It makes the
 * C program's checks: avail idx not more than the queue size ahead, head and next in range, a
 * chain-length TTL, no indirect, every buffer inside guest memory, readable before writable, at
 * most 4 segments; the driver checks used ids and lengths.
 */
import { VirtioError } from '../errors.js';
import { checkMeasureOptions, type MeasureOptions, type Measurement } from './measure.js';
import { BENCH_BATCH, BENCH_GPA_BASE, BENCH_MAX_SEGS, BENCH_MEM_SIZE, BENCH_QUEUE_SIZE, BUF1_LEN, BUF1_OFF, type ChainDescs, DATA_LEN, DATA_OFF, DESC_OFF, DEVICE_OFF, DRIVER_OFF, HDR_LEN, HDR_OFF, STATUS_OFF } from './queue-layout.js';

const QS = BENCH_QUEUE_SIZE;
const QMASK = QS - 1;
const GPA = BENCH_GPA_BASE;
const MEM = BENCH_MEM_SIZE;
const MAX_SEGS = BENCH_MAX_SEGS;
/** u16 index of avail.idx / avail.ring[0], u32 index of used.ring[0], u16 index of used.idx. */
const AVAIL_IDX16 = (DRIVER_OFF >> 1) + 1;
const AVAIL_RING16 = (DRIVER_OFF >> 1) + 2;
const USED_IDX16 = (DEVICE_OFF >> 1) + 1;
const USED_RING32 = (DEVICE_OFF >> 2) + 1;
const DESC32 = DESC_OFF >> 2;
const ST_FREE_HEAD = 0;
const ST_NUM_FREE = 1;
const ST_AVAIL = 2;
const ST_LAST_USED = 3;
const ST_USED_CACHE = 4;
const ST_LAST_AVAIL = 5;
const ST_AVAIL_CACHE = 6;
const ST_USED = 7;
const ST_NFREE_TOK = 8;
const ST_BAD = 9;
const ST_SEQ = 10;

/** All state of one side (or both) of a plain run; hot functions copy what they use into locals. */
export interface Plain {
  descs: ChainDescs;
  u8: Uint8Array;
  u16: Uint16Array;
  u32: Uint32Array;
  st: Int32Array;
  token: Int32Array;
  ndesc: Uint32Array;
  wlen: Uint32Array;
  freeTok: Int32Array;
  heads: Uint32Array;
  lens: Uint32Array;
  cOff: Float64Array;
  cLen: Uint32Array;
  checksum: number;
  error: string | undefined;
}

/**
 * State for a plain run. Without `attach`: fresh guest memory with the driver's free list laid out
 * (the driver side, or both sides in one thread). With `attach`: the device side over guest memory
 * another thread's driver laid out (nothing is written to it here).
 */
export function makePlain(descs: ChainDescs, attach?: SharedArrayBuffer): Plain {
  const sab = attach ?? new SharedArrayBuffer(MEM);
  const p: Plain = {
    descs,
    u8: new Uint8Array(sab),
    u16: new Uint16Array(sab),
    u32: new Uint32Array(sab),
    st: new Int32Array(16),
    token: new Int32Array(QS).fill(-1),
    ndesc: new Uint32Array(QS),
    wlen: new Uint32Array(QS),
    freeTok: new Int32Array(QS),
    heads: new Uint32Array(BENCH_BATCH),
    lens: new Uint32Array(BENCH_BATCH),
    cOff: new Float64Array(MAX_SEGS),
    cLen: new Uint32Array(MAX_SEGS),
    checksum: 0,
    error: undefined,
  };
  for (let i = 0; i < QS; i++) {
    if (attach === undefined) p.u16[((DESC32 + 4 * i + 3) << 1) + 1] = (i + 1) & QMASK;
    p.freeTok[i] = QS - 1 - i;
  }
  p.st[ST_NUM_FREE] = QS;
  p.st[ST_NFREE_TOK] = QS;
  return p;
}

/** Chains the driver side of `p` has posted and not reclaimed. */
export function plainInFlight(p: Plain): number {
  return QS - p.st[ST_NFREE_TOK]!;
}

/** Status bytes the driver side of `p` found not written by the device. */
export function plainBadStatus(p: Plain): number {
  return p.st[ST_BAD]!;
}

/** Driver: post up to `max` chains and publish them. */
export function post(p: Plain, max: number): number {
  const u8 = p.u8;
  const u16 = p.u16;
  const u32 = p.u32;
  const st = p.st;
  const token = p.token;
  const ndesc = p.ndesc;
  const wlen = p.wlen;
  const freeTok = p.freeTok;
  const three = p.descs === 3;
  let freeHead = st[ST_FREE_HEAD]!;
  let numFree = st[ST_NUM_FREE]!;
  let av = st[ST_AVAIL]!;
  let nft = st[ST_NFREE_TOK]!;
  let seq = st[ST_SEQ]!;
  let posted = 0;
  while (posted < max && nft > 0) {
    const t = freeTok[nft - 1]!;
    const head = freeHead;
    if (three) {
      if (numFree < 3) break;
      const h = (HDR_OFF + HDR_LEN * t) >> 2;
      u32[h] = 0;
      u32[h + 1] = 0;
      u32[h + 2] = seq >>> 0;
      u32[h + 3] = 0;
      seq = (seq + 1) | 0;
      u8[STATUS_OFF + t] = 0xff;
      let w = DESC32 + 4 * head;
      u32[w] = GPA + HDR_OFF + HDR_LEN * t;
      u32[w + 1] = 0;
      u32[w + 2] = HDR_LEN;
      u16[(w + 3) << 1] = 1;
      w = DESC32 + 4 * u16[((w + 3) << 1) + 1]!;
      u32[w] = GPA + DATA_OFF + DATA_LEN * t;
      u32[w + 1] = 0;
      u32[w + 2] = DATA_LEN;
      u16[(w + 3) << 1] = 3;
      w = DESC32 + 4 * u16[((w + 3) << 1) + 1]!;
      u32[w] = GPA + STATUS_OFF + t;
      u32[w + 1] = 0;
      u32[w + 2] = 1;
      u16[(w + 3) << 1] = 2;
      freeHead = u16[((w + 3) << 1) + 1]!;
      numFree -= 3;
      wlen[head] = DATA_LEN + 1;
      ndesc[head] = 3;
    } else {
      if (numFree < 1) break;
      const off = BUF1_OFF + BUF1_LEN * t;
      u8[off] = 0xff;
      const w = DESC32 + 4 * head;
      u32[w] = GPA + off;
      u32[w + 1] = 0;
      u32[w + 2] = BUF1_LEN;
      u16[(w + 3) << 1] = 2;
      freeHead = u16[((w + 3) << 1) + 1]!;
      numFree -= 1;
      wlen[head] = BUF1_LEN;
      ndesc[head] = 1;
    }
    token[head] = t;
    u16[AVAIL_RING16 + (av & QMASK)] = head;
    av = (av + 1) & 0xffff;
    nft--;
    posted++;
  }
  if (posted > 0) Atomics.store(u16, AVAIL_IDX16, av);
  st[ST_FREE_HEAD] = freeHead;
  st[ST_NUM_FREE] = numFree;
  st[ST_AVAIL] = av;
  st[ST_NFREE_TOK] = nft;
  st[ST_SEQ] = seq;
  return posted;
}

/** Device: pop, handle and complete up to one batch; -1 on a ring error (recorded in p.error). */
export function device(p: Plain): number {
  const u8 = p.u8;
  const u16 = p.u16;
  const u32 = p.u32;
  const st = p.st;
  const heads = p.heads;
  const lens = p.lens;
  const cOff = p.cOff;
  const cLen = p.cLen;
  const three = p.descs === 3;
  let last = st[ST_LAST_AVAIL]!;
  let cache = st[ST_AVAIL_CACHE]!;
  let u = st[ST_USED]!;
  let checksum = p.checksum;
  let n = 0;
  while (n < BENCH_BATCH) {
    if (cache === last) {
      const a = Atomics.load(u16, AVAIL_IDX16);
      if (a === last) break;
      if (((a - last) & 0xffff) > QS) return fail(p, 'avail idx more than queue size ahead');
      cache = a;
    }
    const head = u16[AVAIL_RING16 + (last & QMASK)]!;
    if (head >= QS) return fail(p, 'head index out of range');
    let i = head;
    let cnt = 0;
    let readable = 0;
    let ttl = QS;
    for (;;) {
      if (ttl-- === 0) return fail(p, 'descriptor chain loops');
      const w = DESC32 + 4 * i;
      const lo = u32[w]!;
      const hi = u32[w + 1]!;
      const len = u32[w + 2]!;
      const fl = u16[(w + 3) << 1]!;
      if ((fl & 4) !== 0) return fail(p, 'indirect not negotiated');
      const off = hi * 4294967296 + lo - GPA;
      if (off < 0 || off > MEM || len > MEM - off) return fail(p, 'buffer outside guest memory');
      if ((fl & 2) === 0) {
        if (readable !== cnt) return fail(p, 'readable after writable');
        readable++;
      }
      if (cnt >= MAX_SEGS) return fail(p, 'chain too long for this device');
      cOff[cnt] = off;
      cLen[cnt] = len;
      cnt++;
      if ((fl & 1) === 0) break;
      i = u16[((w + 3) << 1) + 1]!;
      if (i >= QS) return fail(p, 'next index out of range');
    }
    last = (last + 1) & 0xffff;
    let ul: number;
    if (three) {
      if (cnt !== 3 || readable !== 1 || cLen[0]! < HDR_LEN) return fail(p, 'malformed blk request');
      const h = cOff[0]! >> 2;
      checksum += u32[h + 2]!;
      u8[cOff[2]!] = u32[h] === 0 ? 0 : 2;
      ul = cLen[1]! + 1;
    } else {
      if (cnt !== 1 || readable !== 0) return fail(p, 'malformed request');
      u8[cOff[0]!] = 0;
      ul = 1;
    }
    heads[n] = head;
    lens[n] = ul;
    n++;
  }
  for (let k = 0; k < n; k++) {
    const e = USED_RING32 + 2 * ((u + k) & QMASK);
    u32[e] = heads[k]!;
    u32[e + 1] = lens[k]!;
  }
  u = (u + n) & 0xffff;
  if (n > 0) Atomics.store(u16, USED_IDX16, u);
  st[ST_LAST_AVAIL] = last;
  st[ST_AVAIL_CACHE] = cache;
  st[ST_USED] = u;
  p.checksum = checksum;
  return n;
}

/** Driver: reclaim every used chain; -1 on a bad used element. */
export function reclaim(p: Plain): number {
  const u8 = p.u8;
  const u16 = p.u16;
  const u32 = p.u32;
  const st = p.st;
  const token = p.token;
  const ndesc = p.ndesc;
  const wlen = p.wlen;
  const freeTok = p.freeTok;
  const statusBase = p.descs === 3 ? STATUS_OFF : BUF1_OFF;
  const stride = p.descs === 3 ? 1 : BUF1_LEN;
  let lu = st[ST_LAST_USED]!;
  let cache = st[ST_USED_CACHE]!;
  let freeHead = st[ST_FREE_HEAD]!;
  let numFree = st[ST_NUM_FREE]!;
  let nft = st[ST_NFREE_TOK]!;
  let bad = st[ST_BAD]!;
  let got = 0;
  for (;;) {
    if (cache === lu) {
      const x = Atomics.load(u16, USED_IDX16);
      if (x === lu) break;
      if (((x - lu) & 0xffff) > QS) return fail(p, 'device used idx ahead');
      cache = x;
    }
    const e = USED_RING32 + 2 * (lu & QMASK);
    const id = u32[e]!;
    const l = u32[e + 1]!;
    if (id >= QS || token[id]! < 0) return fail(p, 'device returned a bad id');
    if (l > wlen[id]!) return fail(p, 'device returned a bad length');
    let i = id;
    const nd = ndesc[id]!;
    for (let k = 1; k < nd; k++) i = u16[((DESC32 + 4 * i + 3) << 1) + 1]!;
    u16[((DESC32 + 4 * i + 3) << 1) + 1] = freeHead;
    freeHead = id;
    numFree += nd;
    const t = token[id]!;
    token[id] = -1;
    lu = (lu + 1) & 0xffff;
    if (u8[statusBase + stride * t] !== 0) bad++;
    freeTok[nft++] = t;
    got++;
  }
  st[ST_LAST_USED] = lu;
  st[ST_USED_CACHE] = cache;
  st[ST_FREE_HEAD] = freeHead;
  st[ST_NUM_FREE] = numFree;
  st[ST_NFREE_TOK] = nft;
  st[ST_BAD] = bad;
  return got;
}

function fail(p: Plain, what: string): -1 {
  p.error ??= what;
  return -1;
}

/** Batches between two clock reads. */
const BATCHES_PER_CHECK = 16;

/**
 * Run the plain-JS split workload single-threaded (driver and device alternating in batches of
 * 64, as the C program's --agents 1). Throws VirtioError when the rings report an error.
 */
export function runPlainSplit(descs: ChainDescs, opts: MeasureOptions): Measurement {
  checkMeasureOptions(opts);
  const p = makePlain(descs);
  const runFor = (ms: number): [number, number] => {
    let done = 0;
    const t0 = performance.now();
    let t = t0;
    for (;;) {
      for (let k = 0; k < BATCHES_PER_CHECK; k++) {
        if (post(p, BENCH_BATCH) !== BENCH_BATCH || device(p) !== BENCH_BATCH) break;
        const r = reclaim(p);
        if (r !== BENCH_BATCH) break;
        done += r;
      }
      if (p.error !== undefined) throw new VirtioError('INTERNAL', `plain-JS queue benchmark (split, ${descs} descriptors): ${p.error}`);
      t = performance.now();
      if (t - t0 >= ms) break;
    }
    return [done, t - t0];
  };
  if (opts.warmupMs > 0) runFor(opts.warmupMs);
  const mchainsPerS: number[] = [];
  let chains = 0;
  for (let r = 0; r < opts.reps; r++) {
    const [n, el] = runFor(opts.ms);
    chains += n;
    mchainsPerS.push(n / el / 1000);
  }
  if (p.st[ST_BAD] !== 0) throw new VirtioError('INTERNAL', `plain-JS queue benchmark: ${p.st[ST_BAD]} status bytes were not written`);
  return { mchainsPerS, chains };
}
