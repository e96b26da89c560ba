/**
 * The guest driver's bounce pool over a {@link SwiotlbWindow}, with Linux swiotlb semantics
 * (`reference/swiotlb.md` §8; kernel/dma/swiotlb.c as of commit 009fbfc9, alignment handling as
 * corrected in Linux 6.9).
 *
 * When VIRTIO_F_SWIOTLB is accepted the driver must pass the device only addresses inside the
 * window (rfc-swiotlb.feature.driver.1, rfc-swiotlb.pci.driver.2, rfc-swiotlb.mmio.driver.2):
 * every buffer is copied ("bounced") between guest RAM and a slot range of the window, and the
 * rings and indirect tables are allocated from the window ({@link BouncePool.allocCoherent}).
 *
 * Allocator (Linux's, one area — restricted pools use one area):
 * - the window is cut into 2 KiB slots (IO_TLB_SHIFT 11) grouped in segments of 128 slots
 *   (IO_TLB_SEGSIZE); an allocation never crosses a segment, so the largest mapping is 256 KiB
 *   minus roundup(min_align_mask, 2 KiB);
 * - bookkeeping: `owner[i]` = first slot of the allocation holding slot i (−1 = free) and the
 *   allocation's length at its first slot. Allocation and release cost O(slots of the mapping).
 *   (Linux's `io_tlb_slot.list` — free slots to the segment end — also makes release and
 *   allocation rewrite the free slots before the mapping in its segment, up to 127 writes; the
 *   owner table answers the same question by looking at the candidate's own slots.)
 * - the search starts at a rotating index (Linux `area->index`: one past the last allocation) and
 *   wraps once, taking the first candidate slot, in that circular order, whose alignment fits and
 *   whose `need` slots are free and inside one segment — the slot Linux's walk picks. A candidate
 *   is checked from its last slot backwards; on a used slot the walk jumps past that whole
 *   allocation, so a search costs O(allocations passed × slots per mapping), not O(slots);
 * - min_align_mask (a device attribute, e.g. 0xfff for NVMe-like devices): the bounce address
 *   keeps `orig & min_align_mask` — bits below 2 KiB as the offset inside the first slot
 *   (Linux `swiotlb_align_offset()`), bits from 2 KiB up by choosing a slot whose bus address has
 *   them (Linux's `iotlb_align_mask` check);
 * - alloc_align_mask: the allocation (first slot) starts at a bus address with these bits clear;
 * - mappings of PAGE_SIZE or more start on a page-aligned slot (`reference/swiotlb.md` §8,
 *   "≥ PAGE_SIZE mappings: only page-aligned slots are searched"), except for address bits that
 *   min_align_mask fixes — the Linux 6.9 fix (Will Deacon, 2024) of the pre-6.9 conflict that made
 *   some NVMe mappings impossible. Alignment is checked on every candidate slot (pre-6.9 Linux only
 *   stepped by a stride from an unaligned start index).
 *
 * Copies (§8, direction summary): map always copies original → bounce, even for from-device (so a
 * short device write does not expose stale window bytes); unmap and syncForCpu copy bounce →
 * original for from-device and bidirectional; syncForDevice copies original → bounce for
 * to-device and bidirectional. Partial syncs on a sub-range of a mapping are allowed.
 *
 * Coherent allocations ({@link BouncePool.allocCoherent}) come from the same slot allocator, as in
 * a Linux restricted-dma-pool (`for_alloc`, `swiotlb_alloc()`): size rounded up to pages, aligned
 * to the size rounded up to a power of two pages (`get_order`), at most 256 KiB, zero-filled.
 *
 * Handles are bounce bus addresses (plain Numbers); the allocator allocates no objects (the default
 * JS copier makes one `subarray` view per copy above 16 bytes; native copiers make none). The per-buffer
 * batched calls ({@link BouncePool.mapBatch}, {@link BouncePool.unmapBatch},
 * {@link BouncePool.syncBatch}, {@link BouncePool.mapSg}) do one {@link BatchCopier} call per
 * request — the native addon's `copyBatch` plugs in there.
 *
 * Queued paths, for a driver that posts many requests per notification: {@link BouncePool.queueMapSg}
 * allocates the slots and returns the bounce addresses at once but only records the copy-in;
 * {@link BouncePool.queueUnmapSg} checks the mapping and records the copy-back; {@link BouncePool.flush}
 * runs everything recorded with one {@link BatchCopier} call and then frees the slots of the queued
 * unmaps. One native call per kick (and per interrupt) instead of two per request: the call's fixed
 * cost (~2.5k instructions for argument unwrapping, `reference/perf-limits.md` §1) is larger than a
 * 4 KiB memcpy. Every other operation flushes first, so the pool behaves as if the queued copies ran
 * in order.
 */
import { VirtioError, type VirtioErrorCode } from '../errors.js';
import { logger } from '../log.js';
import type { AddressSpace } from '../memory/space.js';
import type { MemoryRegion } from '../memory/region.js';
import type { SgList } from '../queue/types.js';
import * as copyMod from './copy.js';
import { type BatchCopier, type Copier, jsCopy, runBatch } from './copy.js';
import * as C from './constants.js';
import { isAlignMask, MAX_ALIGN_MASK, MAX_MAPPING_SIZE, maxMappingSize } from './constants.js';
import type { SwiotlbWindow } from './window.js';

const log = logger('swiotlb');

// Module-local copies of the numbers the hot paths use: TurboFan folds a module's own constants
// into the code, while every use of an imported binding loads a cell and checks it for the TDZ hole.
const IO_TLB_SHIFT = C.IO_TLB_SHIFT;
const IO_TLB_SIZE = C.IO_TLB_SIZE;
const IO_TLB_SEGSIZE = C.IO_TLB_SEGSIZE;
const PAGE_SIZE = C.PAGE_SIZE;
const OP_STRIDE = copyMod.OP_STRIDE;

/** DMA direction of a streaming mapping (Linux DMA_TO_DEVICE / DMA_FROM_DEVICE / DMA_BIDIRECTIONAL). */
export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';

/** Direction codes: bit 0 = data flows to the device, bit 1 = data flows from the device. */
export const DIR_TO_DEVICE = 1;
export const DIR_FROM_DEVICE = 2;
export const DIR_BIDIRECTIONAL = 3;
/** Slot-table marker for a coherent allocation. */
const KIND_COHERENT = 4;
// Non-exported copies for the hot paths (exported bindings are cells, like imports; see above).
const TO_DEV = 1;
const FROM_DEV = 2;

/** Per-mapping alignment options (Linux `dma_get_min_align_mask()` and `alloc_align_mask`). */
export interface MapOptions {
  /** Overrides the pool's min_align_mask for this mapping (2^n − 1). */
  minAlignMask?: number;
  /** The first slot starts at a bus address with these bits clear (2^n − 1). Default 0. */
  allocAlignMask?: number;
}

/** Options for {@link BouncePool}. */
export interface BouncePoolOptions {
  /** The device's bounce window. */
  window: SwiotlbWindow;
  /** Guest RAM: the driver's private memory that original addresses refer to. */
  ram: AddressSpace;
  /** Device attribute min_align_mask (2^n − 1), default 0. Per-mapping override in {@link MapOptions}. */
  minAlignMask?: number;
  /** Single copy between RAM and window; default {@link jsCopy}. */
  copy?: Copier;
  /** Batched copy (native `copyBatch` contract); default runs the batch through `copy`. */
  copyBatch?: BatchCopier;
  /** Initial capacity of the batch scratch arrays (grown on demand). Default 64. */
  batchCapacity?: number;
}

/** Snapshot of the pool's counters. */
export interface BouncePoolStats {
  /** Slots in the window (window size / 2 KiB). */
  totalSlots: number;
  /** Slots held by streaming mappings and coherent allocations. */
  usedSlots: number;
  freeSlots: number;
  /** Largest `usedSlots` seen (Linux `debugfs io_tlb_used_hiwater`). */
  highWaterSlots: number;
  /** Streaming mappings currently live. */
  liveMappings: number;
  /** Streaming mappings made since creation. */
  totalMappings: number;
  /** Coherent allocations currently live, and the slots they hold. */
  liveCoherent: number;
  coherentSlots: number;
  /** map / allocCoherent calls refused for any reason. */
  failures: number;
  /** ... of which for lack of free slots (BOUNCE_POOL_FULL, Linux "swiotlb buffer is full"). */
  fullFailures: number;
  /** Bytes copied RAM → window (map, syncForDevice). */
  bytesToDevice: number;
  /** Bytes copied window → RAM (unmap, syncForCpu). */
  bytesFromDevice: number;
}

function dirCode(dir: DmaDirection): number {
  return dir === 'to-device' ? DIR_TO_DEVICE : dir === 'from-device' ? DIR_FROM_DEVICE : dir === 'bidirectional' ? DIR_BIDIRECTIONAL : 0;
}

function dirName(code: number): string {
  return code === DIR_TO_DEVICE ? 'to-device' : code === DIR_FROM_DEVICE ? 'from-device' : code === DIR_BIDIRECTIONAL ? 'bidirectional' : code === KIND_COHERENT ? 'coherent' : 'free';
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The driver-side bounce allocator. */
export class BouncePool {
  readonly window: SwiotlbWindow;
  readonly ram: AddressSpace;
  /** The device's min_align_mask (default for {@link map}). */
  readonly minAlignMask: number;
  /** Number of 2 KiB slots. */
  readonly nslots: number;

  private readonly copy: Copier;
  private readonly copyBatchFn: BatchCopier | undefined;

  // Slot table (index = slot).
  /** First slot of the allocation holding this slot; −1 = free. */
  private readonly owner: Int32Array;
  // Per allocation (index = first slot).
  private readonly span: Int32Array;
  private readonly msize: Int32Array;
  private readonly moff: Uint16Array;
  /** DIR_* for streaming mappings, KIND_COHERENT, 0 = none. */
  private readonly mdir: Uint8Array;
  /** Set while a batched unmap holds the mapping (catches duplicates in one batch). */
  private readonly pending: Uint8Array;
  private readonly morig: Float64Array;
  private readonly mramIdx: Int32Array;
  private readonly mramOff: Float64Array;

  /** Rotating search start (Linux `area->index`). */
  private index = 0;
  private used = 0;
  private hiwater = 0;
  private live = 0;
  private totalMaps = 0;
  private liveCoh = 0;
  private cohSlots = 0;
  private failures = 0;
  private fullFailures = 0;
  private bytesTo = 0;
  private bytesFrom = 0;

  // Hot-path copies of window facts (the region's `base` follows moveTo; offset and size are fixed).
  private readonly wreg: MemoryRegion;
  private readonly wOff: number;
  private readonly wSize: number;
  /** maxMappingSize(minAlignMask). */
  private readonly maxMap: number;

  // Batch scratch: copy records, slots, buffers and their views (0 = window, 1 + i = ram region i).
  private ops: Float64Array;
  private slots: Int32Array;
  /** Copy records queued by queueMapSg / queueUnmapSg (ops[0 .. nops × OP_STRIDE)), run by flush. */
  private nops = 0;
  /** Slots of queued unmaps, freed by flush (`pending` is set for each). */
  private qfree: Int32Array;
  private nfree = 0;
  private bufs: ArrayBufferLike[] = [];
  private views: Uint8Array[] = [];

  constructor(opts: BouncePoolOptions) {
    const { window, ram } = opts;
    const minAlignMask = opts.minAlignMask ?? 0;
    if (!isAlignMask(minAlignMask)) {
      throw new VirtioError('INVALID_ARGUMENT', `bounce pool: minAlignMask ${minAlignMask} must be 2^n - 1 (0 … ${hex(MAX_ALIGN_MASK)}), e.g. 0xfff for a device that needs the offset inside a 4 KiB page preserved`);
    }
    if (maxMappingSize(minAlignMask) <= 0) {
      throw new VirtioError('INVALID_ARGUMENT', `bounce pool: minAlignMask ${hex(minAlignMask)} leaves no room for a mapping inside a 256 KiB segment; use a mask below ${hex(MAX_MAPPING_SIZE - IO_TLB_SIZE)}`);
    }
    this.window = window;
    this.ram = ram;
    this.minAlignMask = minAlignMask;
    this.copy = opts.copy ?? jsCopy;
    this.copyBatchFn = opts.copyBatch;
    this.wreg = window.region;
    this.wOff = window.bufferOffset;
    this.wSize = window.size;
    this.maxMap = maxMappingSize(minAlignMask);
    const n = window.size >>> IO_TLB_SHIFT;
    this.nslots = n;
    this.owner = new Int32Array(n);
    this.span = new Int32Array(n);
    this.msize = new Int32Array(n);
    this.moff = new Uint16Array(n);
    this.mdir = new Uint8Array(n);
    this.pending = new Uint8Array(n);
    this.morig = new Float64Array(n);
    this.mramIdx = new Int32Array(n);
    this.mramOff = new Float64Array(n);
    const cap = Math.max(1, opts.batchCapacity ?? 64);
    this.ops = new Float64Array(cap * OP_STRIDE);
    this.slots = new Int32Array(cap);
    this.qfree = new Int32Array(cap);
    this.initSlots();
    this.refreshBuffers();
    log('pool: %d slots (%d segments) over %s, min_align_mask=%s', n, Math.ceil(n / IO_TLB_SEGSIZE), window.name, hex(minAlignMask));
  }

  private initSlots(): void {
    this.nops = 0;
    this.nfree = 0;
    this.owner.fill(-1);
    this.mdir.fill(0);
    this.pending.fill(0);
    this.index = 0;
    this.used = 0;
    this.live = 0;
    this.liveCoh = 0;
    this.cohSlots = 0;
  }

  private refreshBuffers(): void {
    const regions = this.ram.regions;
    this.bufs = [this.window.buffer, ...regions.map((r) => r.buffer)];
    this.views = [this.window.u8, ...regions.map((r) => r.u8)];
  }

  /** Largest single mapping for the given min_align_mask (default: the pool's). */
  maxMappingSize(minAlignMask: number = this.minAlignMask): number {
    return maxMappingSize(minAlignMask);
  }

  /** Free slots now. */
  get freeSlots(): number {
    return this.nslots - this.used;
  }

  // ------------------------------------------------------------------ allocator core

  /**
   * Find `need` free slots in one segment whose first slot's bus address satisfies
   * `(addr & mask) === target` (`mask` = contiguous bits from bit 11 up). −1 when none.
   */
  private find(need: number, mask: number, target: number): number {
    const n = this.nslots;
    if (need > n - this.used) return -1; // Linux: nslots > area_nslabs - area->used
    const pm = mask >>> IO_TLB_SHIFT; // candidate period − 1 (period is a power of two)
    const r = ((target - (this.wreg.base & mask)) & mask) >>> IO_TLB_SHIFT;
    const start = this.index;
    let s = this.scan(start, n, need, pm, r);
    if (s < 0 && start > 0) s = this.scan(0, start, need, pm, r);
    return s;
  }

  /**
   * First slot c in [lo, hi) with c ≡ r (mod pm + 1) whose slots [c, c+need) are free and inside
   * one segment (Linux: `list[c] >= need`), else −1.
   */
  private scan(lo: number, hi: number, need: number, pm: number, r: number): number {
    const owner = this.owner;
    const span = this.span;
    const n = this.nslots;
    const SEGM = IO_TLB_SEGSIZE - 1;
    let c = lo + ((r - lo) & pm);
    while (c < hi) {
      let next: number;
      if ((c & SEGM) + need > IO_TLB_SEGSIZE || c + need > n) {
        next = (c | SEGM) + 1; // would cross the segment: try the next one
      } else {
        let j = c + need - 1;
        while (j >= c && owner[j]! < 0) j--;
        if (j < c) return c;
        const h = owner[j]!;
        next = h + span[h]!; // every start up to j includes slot j: skip its whole allocation
      }
      c = next + ((r - next) & pm);
    }
    return -1;
  }

  /** Mark slots [s, s+need) used. */
  private take(s: number, need: number): void {
    const owner = this.owner;
    const end = s + need;
    for (let i = s; i < end; i++) owner[i] = s;
    this.span[s] = need;
    const used = this.used + need;
    this.used = used;
    if (used > this.hiwater) this.hiwater = used;
    this.index = end >= this.nslots ? 0 : end; // Linux: area->index = index + nslots (wrapped)
  }

  /** Free the allocation starting at s. */
  private release(s: number): void {
    const owner = this.owner;
    const need = this.span[s]!;
    const end = s + need;
    for (let i = s; i < end; i++) owner[i] = -1;
    this.mdir[s] = 0;
    this.used -= need;
  }

  /** Longest run of free slots inside one segment (failure messages only; O(slots)). */
  private largestFreeRun(): number {
    let best = 0;
    let run = 0;
    for (let i = 0; i < this.nslots; i++) {
      if ((i & (IO_TLB_SEGSIZE - 1)) === 0) run = 0;
      if (this.owner[i]! < 0) {
        run++;
        if (run > best) best = run;
      } else {
        run = 0;
      }
    }
    return best;
  }

  private refuse(code: VirtioErrorCode, message: string, full = false): never {
    this.failures++;
    if (full) this.fullFailures++;
    log('%s: %s', code, message);
    throw new VirtioError(code, message);
  }

  private fullMessage(what: string, size: number, need: number): string {
    const largest = this.largestFreeRun();
    return (
      `swiotlb buffer is full: ${what} of ${size} bytes needs ${need} contiguous 2 KiB slots in one segment (with its alignment), ` +
      `but ${this.nslots - this.used} of ${this.nslots} slots are free and the largest free run is ${largest}; ` +
      `unmap buffers sooner, reduce requests in flight, or make the window (${this.window.size} bytes) larger`
    );
  }

  /**
   * Allocate and record a streaming mapping (no copy). Returns the first slot.
   * Throws with the pool unchanged.
   */
  private allocStreaming(orig: number, size: number, d: number, minAlign: number, allocAlign: number): number {
    const max = minAlign === this.minAlignMask ? this.maxMap : maxMappingSize(minAlign);
    if (d === 0 || !Number.isSafeInteger(orig) || orig < 0 || !Number.isInteger(size) || size <= 0 || size > max) this.refuseMap(orig, size, d, max, minAlign);
    const ram = this.ram;
    const write = (d & DIR_FROM_DEVICE) !== 0;
    const ri = ram.resolve(orig, size, write);
    if (ri < 0) this.refuseRam(orig, size, write);
    const ramOff = ram.off;
    // Linux swiotlb_align_offset(): low bits of orig kept inside the first slot.
    const offset = orig & minAlign & (IO_TLB_SIZE - 1);
    const need = (size + offset + IO_TLB_SIZE - 1) >>> IO_TLB_SHIFT;
    // Slot-level bits min_align_mask preserves (Linux iotlb_align_mask).
    const matchMask = minAlign & ~(IO_TLB_SIZE - 1);
    let alignMask = allocAlign & ~(IO_TLB_SIZE - 1);
    if ((alignMask & matchMask & orig) !== 0) this.refuseAlign(orig, minAlign, allocAlign);
    // reference/swiotlb.md §8: mappings of PAGE_SIZE or more only on page-aligned slots
    // (bits fixed by min_align_mask excepted, as in Linux 6.9).
    if (size >= PAGE_SIZE) alignMask |= (PAGE_SIZE - 1) & ~(IO_TLB_SIZE - 1) & ~matchMask;
    const s = this.find(need, matchMask | alignMask, orig & matchMask);
    if (s < 0) this.refuse('BOUNCE_POOL_FULL', this.fullMessage('mapping', size, need), true);
    this.take(s, need);
    this.msize[s] = size;
    this.moff[s] = offset;
    this.mdir[s] = d;
    this.morig[s] = orig;
    this.mramIdx[s] = ri;
    this.mramOff[s] = ramOff;
    return s;
  }

  /** Cold path of allocStreaming's argument checks (kept out of the hot function). */
  private refuseMap(orig: number, size: number, d: number, max: number, minAlign: number): never {
    if (d === 0) this.refuse('INVALID_ARGUMENT', `bounce map: direction must be 'to-device', 'from-device' or 'bidirectional'`);
    if (!Number.isSafeInteger(orig) || orig < 0) this.refuse('INVALID_ARGUMENT', `bounce map: original address ${orig} must be a non-negative integer below 2^53`);
    if (!Number.isInteger(size) || size <= 0) this.refuse('INVALID_ARGUMENT', `bounce map: size ${size} must be a positive integer (zero-length mappings are not allowed)`);
    this.refuse('BOUNCE_MAP_TOO_LARGE', `bounce map: ${size} bytes exceeds the largest swiotlb mapping (${max} bytes = 256 KiB segment minus roundup(min_align_mask ${hex(minAlign)}, 2 KiB)); split the buffer into segments of at most ${max} bytes (virtio_max_dma_size)`);
  }

  private refuseRam(orig: number, size: number, write: boolean): never {
    this.refuse('INVALID_ARGUMENT', `bounce map: original buffer [${hex(orig)}, +${hex(size)}) is not inside one ${write ? 'writable ' : ''}region of guest RAM (${this.ram.describe()}); split it at region boundaries`);
  }

  private refuseAlign(orig: number, minAlign: number, allocAlign: number): never {
    this.refuse('INVALID_ARGUMENT', `bounce map: alloc_align_mask ${hex(allocAlign)} wants address bits clear that min_align_mask ${hex(minAlign)} must keep from ${hex(orig)}; use a smaller alloc_align_mask or align the original buffer`);
  }

  private alignOpts(opts: MapOptions | undefined): void {
    if (opts === undefined) return;
    if (opts.minAlignMask !== undefined && !isAlignMask(opts.minAlignMask)) {
      this.refuse('INVALID_ARGUMENT', `bounce map: minAlignMask ${opts.minAlignMask} must be 2^n - 1 between 0 and ${hex(MAX_ALIGN_MASK)}`);
    }
    if (opts.allocAlignMask !== undefined && !isAlignMask(opts.allocAlignMask)) {
      this.refuse('INVALID_ARGUMENT', `bounce map: allocAlignMask ${opts.allocAlignMask} must be 2^n - 1 between 0 and ${hex(MAX_ALIGN_MASK)}`);
    }
  }

  /** First slot of the allocation whose handle (start address) is `addr`, else −1. */
  private startSlotOf(addr: number): number {
    const off = addr - this.wreg.base;
    if (!(off >= 0 && off < this.wSize)) return -1;
    const s = off >>> IO_TLB_SHIFT;
    if (this.owner[s] !== s || off !== s * IO_TLB_SIZE + this.moff[s]!) return -1;
    return s;
  }

  private badHandle(what: string, addr: number, extra: string): never {
    throw new VirtioError('BOUNCE_BAD_HANDLE', `${what}: ${hex(addr)} ${extra} (window ${this.window.name} at [${hex(this.window.base)}, +${hex(this.window.size)}))`);
  }

  /**
   * The live streaming mapping containing [addr, addr+size): returns its first slot and leaves
   * the offset of `addr` inside the mapping in {@link rel}. Throws BOUNCE_BAD_HANDLE / INVALID_ARGUMENT.
   */
  private locate(what: string, addr: number, size: number, d: number): number {
    if (d === 0) throw new VirtioError('INVALID_ARGUMENT', `${what}: direction must be 'to-device', 'from-device' or 'bidirectional'`);
    const off = addr - this.window.base;
    if (!(off >= 0 && off < this.window.size)) this.badHandle(what, addr, 'is not inside the bounce window');
    const h = this.owner[off >>> IO_TLB_SHIFT]!;
    if (h < 0 || this.mdir[h] === KIND_COHERENT) this.badHandle(what, addr, 'is not inside a live streaming mapping');
    const rel = off - (h * IO_TLB_SIZE + this.moff[h]!);
    const msize = this.msize[h]!;
    if (!Number.isInteger(rel) || rel < 0 || !Number.isInteger(size) || size < 0 || rel + size > msize) {
      throw new VirtioError('INVALID_ARGUMENT', `${what}: [${hex(addr)}, +${size}) is not inside the ${msize}-byte mapping at ${hex(this.window.base + h * IO_TLB_SIZE + this.moff[h]!)}; sync only bytes of the mapping`);
    }
    const md = this.mdir[h]!;
    if (d !== md && md !== DIR_BIDIRECTIONAL) {
      throw new VirtioError('INVALID_ARGUMENT', `${what}: direction ${dirName(d)} differs from the mapping's ${dirName(md)}; sync with the direction used for map`);
    }
    this.rel = rel;
    return h;
  }
  /** Output of {@link locate}. */
  private rel = 0;

  private copyIn(s: number, rel: number, len: number): void {
    const r = this.ram.regions[this.mramIdx[s]!]!;
    this.copy(this.wreg.u8, this.wOff + s * IO_TLB_SIZE + this.moff[s]! + rel, r.u8, this.mramOff[s]! + rel, len);
    this.bytesTo += len;
  }

  private copyOut(s: number, rel: number, len: number): void {
    const r = this.ram.regions[this.mramIdx[s]!]!;
    this.copy(r.u8, this.mramOff[s]! + rel, this.wreg.u8, this.wOff + s * IO_TLB_SIZE + this.moff[s]! + rel, len);
    this.bytesFrom += len;
  }

  // ------------------------------------------------------------------ streaming mappings

  /**
   * Map `size` bytes of guest RAM at `origAddr` for DMA: allocate window slots and copy the
   * original into them (always, whatever the direction — §8). Returns the bounce bus address,
   * the only address the driver may hand the device (rfc-swiotlb.feature.driver.1,
   * rfc-swiotlb.pci.driver.2, rfc-swiotlb.mmio.driver.2).
   * @throws VirtioError BOUNCE_POOL_FULL, BOUNCE_MAP_TOO_LARGE, INVALID_ARGUMENT (pool unchanged).
   */
  map(origAddr: number, size: number, dir: DmaDirection, opts?: MapOptions): number {
    this.settle();
    let minAlign = this.minAlignMask;
    let allocAlign = 0;
    if (opts !== undefined) {
      this.alignOpts(opts);
      if (opts.minAlignMask !== undefined) minAlign = opts.minAlignMask;
      if (opts.allocAlignMask !== undefined) allocAlign = opts.allocAlignMask;
    }
    const s = this.allocStreaming(origAddr, size, dirCode(dir), minAlign, allocAlign);
    this.copyIn(s, 0, size);
    this.live++;
    this.totalMaps++;
    // rfc-swiotlb.feature.driver.1: the address handed to the device is inside the window.
    return this.wreg.base + s * IO_TLB_SIZE + this.moff[s]!;
  }

  /**
   * Unmap: copy bounce → original for from-device and bidirectional, then free the slots.
   * `bounceAddr` must be what {@link map} returned, `size` and `dir` what it was given.
   * @throws VirtioError BOUNCE_BAD_HANDLE (unknown or already unmapped), INVALID_ARGUMENT (size or direction mismatch); nothing changes then.
   */
  unmap(bounceAddr: number, size: number, dir: DmaDirection): void {
    this.settle();
    const d = dirCode(dir);
    const s = this.startSlotOf(bounceAddr);
    if (s < 0 || this.mdir[s] === KIND_COHERENT) this.badHandle('bounce unmap', bounceAddr, 'is not a live mapping returned by map() (never mapped, already unmapped, or not its start address)');
    if (size !== this.msize[s] || d !== this.mdir[s]) this.unmapMismatch(s, size, d);
    if ((d & DIR_FROM_DEVICE) !== 0) this.copyOut(s, 0, size);
    this.release(s);
    this.live--;
  }

  /** Cold path: size or direction of an unmap differ from the mapping's (s = its first slot). */
  private unmapMismatch(s: number, size: number, d: number): never {
    const md = this.mdir[s]!;
    const addr = this.wreg.base + s * IO_TLB_SIZE + this.moff[s]!;
    if (size !== this.msize[s]) throw new VirtioError('INVALID_ARGUMENT', `bounce unmap: ${hex(addr)} was mapped with ${this.msize[s]} bytes, unmapped with ${size}; pass the size given to map()`);
    throw new VirtioError('INVALID_ARGUMENT', `bounce unmap: ${hex(addr)} was mapped ${dirName(md)}, unmapped ${d === 0 ? 'with an invalid direction' : dirName(d)}; pass the direction given to map()`);
  }

  /** Copy original → bounce for to-device / bidirectional (nothing for from-device). Sub-ranges allowed. */
  syncForDevice(bounceAddr: number, size: number, dir: DmaDirection): void {
    this.settle();
    const d = dirCode(dir);
    const h = this.locate('bounce syncForDevice', bounceAddr, size, d);
    if ((d & DIR_TO_DEVICE) !== 0 && size > 0) this.copyIn(h, this.rel, size);
  }

  /** Copy bounce → original for from-device / bidirectional (nothing for to-device). Sub-ranges allowed. */
  syncForCpu(bounceAddr: number, size: number, dir: DmaDirection): void {
    this.settle();
    const d = dirCode(dir);
    const h = this.locate('bounce syncForCpu', bounceAddr, size, d);
    if ((d & DIR_FROM_DEVICE) !== 0 && size > 0) this.copyOut(h, this.rel, size);
  }

  /** Original guest-RAM address of the byte at bounce address `addr` (a live streaming mapping), else −1. */
  originalOf(addr: number): number {
    const off = addr - this.window.base;
    if (!(off >= 0 && off < this.window.size)) return -1;
    const h = this.owner[off >>> IO_TLB_SHIFT]!;
    if (h < 0 || this.mdir[h] === KIND_COHERENT) return -1;
    const rel = off - (h * IO_TLB_SIZE + this.moff[h]!);
    return rel >= 0 && rel < this.msize[h]! ? this.morig[h]! + rel : -1;
  }

  // ------------------------------------------------------------------ batched paths

  /** Room for `count` slots of scratch and `records` copy records (queued records are kept). */
  private ensureBatch(count: number, records: number): void {
    if (!Number.isInteger(count) || count < 0) throw new VirtioError('INVALID_ARGUMENT', `bounce batch: count ${count} must be a non-negative integer`);
    if (this.slots.length < count) {
      let cap = this.slots.length;
      while (cap < count) cap *= 2;
      this.slots = new Int32Array(cap);
    }
    if (this.ops.length < records * OP_STRIDE) {
      let cap = this.ops.length;
      while (cap < records * OP_STRIDE) cap *= 2;
      const ops = new Float64Array(cap);
      ops.set(this.ops.subarray(0, this.nops * OP_STRIDE));
      this.ops = ops;
    }
    if (this.bufs.length !== this.ram.regions.length + 1) this.refreshBuffers();
  }

  /** Run queued copies first, so that any other operation sees them done (in order). */
  private settle(): void {
    if (this.nops !== 0 || this.nfree !== 0) this.flush();
  }

  private runOps(count: number): void {
    if (count === 0) return;
    const f = this.copyBatchFn;
    if (f !== undefined) f(this.bufs, this.ops, count);
    else runBatch(this.copy, this.views, this.ops, count);
  }

  /** Append a copy record RAM ↔ window for mapping s. */
  private op(k: number, s: number, rel: number, len: number, toDevice: boolean): void {
    const o = k * OP_STRIDE;
    const ops = this.ops;
    const w = this.wOff + s * IO_TLB_SIZE + this.moff[s]! + rel;
    const ri = this.mramIdx[s]! + 1;
    const ro = this.mramOff[s]! + rel;
    if (toDevice) {
      ops[o] = 0;
      ops[o + 1] = w;
      ops[o + 2] = ri;
      ops[o + 3] = ro;
    } else {
      ops[o] = ri;
      ops[o + 1] = ro;
      ops[o + 2] = 0;
      ops[o + 3] = w;
    }
    ops[o + 4] = len;
  }

  /**
   * Core of the batched map: `dirs` a single direction or one per buffer; when `dirs` is null,
   * buffers below `readable` are to-device and the rest from-device (SgList shape).
   */
  private mapMany(
    count: number,
    addrs: ArrayLike<number>,
    sizes: ArrayLike<number>,
    dirs: DmaDirection | ArrayLike<DmaDirection> | null,
    readable: number,
    out: { [i: number]: number },
    opts: MapOptions | undefined,
    queued: boolean,
  ): void {
    if (!queued) this.settle();
    const k0 = this.nops;
    this.ensureBatch(count, k0 + count);
    let minAlign = this.minAlignMask;
    let allocAlign = 0;
    if (opts !== undefined) {
      this.alignOpts(opts);
      if (opts.minAlignMask !== undefined) minAlign = opts.minAlignMask;
      if (opts.allocAlignMask !== undefined) allocAlign = opts.allocAlignMask;
    }
    const one = typeof dirs === 'string' ? dirCode(dirs) : 0;
    const slots = this.slots;
    let i = 0;
    let bytes = 0;
    try {
      for (; i < count; i++) {
        const d = dirs === null ? (i < readable ? DIR_TO_DEVICE : DIR_FROM_DEVICE) : typeof dirs === 'string' ? one : dirCode((dirs as ArrayLike<DmaDirection>)[i]!);
        const size = sizes[i]!;
        const s = this.allocStreaming(addrs[i]!, size, d, minAlign, allocAlign);
        slots[i] = s;
        this.op(k0 + i, s, 0, size, true); // map always copies in (§8)
        bytes += size;
      }
      if (!queued) this.runOps(count);
    } catch (e) {
      for (let j = 0; j < i; j++) this.release(slots[j]!);
      throw e;
    }
    if (queued) this.nops = k0 + count;
    this.bytesTo += bytes;
    this.live += count;
    this.totalMaps += count;
    const base = this.wreg.base;
    const moff = this.moff;
    for (let j = 0; j < count; j++) {
      const s = slots[j]!;
      out[j] = base + s * IO_TLB_SIZE + moff[s]!; // rfc-swiotlb.feature.driver.1
    }
  }

  /**
   * Map `count` buffers with one batched copy. `dirs` is one direction for all or one per buffer;
   * bounce addresses go to `out[0..count)`. All or nothing: on error no buffer stays mapped.
   */
  mapBatch(count: number, origAddrs: ArrayLike<number>, sizes: ArrayLike<number>, dirs: DmaDirection | ArrayLike<DmaDirection>, out: { [i: number]: number }, opts?: MapOptions): void {
    this.mapMany(count, origAddrs, sizes, dirs, 0, out, opts, false);
  }

  private unmapMany(count: number, addrs: ArrayLike<number>, sizes: ArrayLike<number>, dirs: DmaDirection | ArrayLike<DmaDirection> | null, readable: number, queued: boolean): void {
    if (!queued) this.settle();
    const k0 = this.nops;
    this.ensureBatch(count, k0 + count);
    if (queued && this.qfree.length < this.nfree + count) this.growFree(this.nfree + count);
    const slots = this.slots;
    const pending = this.pending;
    const mdir = this.mdir;
    const msize = this.msize;
    const one = typeof dirs === 'string' ? dirCode(dirs) : 0;
    let i = 0;
    let k = k0;
    let bytes = 0;
    try {
      for (; i < count; i++) {
        const d = dirs === null ? (i < readable ? DIR_TO_DEVICE : DIR_FROM_DEVICE) : typeof dirs === 'string' ? one : dirCode((dirs as ArrayLike<DmaDirection>)[i]!);
        const s = this.startSlotOf(addrs[i]!);
        if (s < 0 || mdir[s] === KIND_COHERENT || pending[s] !== 0) this.badUnmap(addrs[i]!);
        const size = msize[s]!;
        if (sizes[i] !== size || d !== mdir[s]) this.unmapMismatch(s, sizes[i]!, d);
        pending[s] = 1;
        slots[i] = s;
        if ((d & DIR_FROM_DEVICE) !== 0) {
          this.op(k++, s, 0, size, false);
          bytes += size;
        }
      }
      if (!queued) this.runOps(k);
    } catch (e) {
      for (let j = 0; j < i; j++) pending[slots[j]!] = 0;
      throw e;
    }
    this.bytesFrom += bytes;
    if (queued) {
      this.nops = k;
      const q = this.qfree;
      let f = this.nfree;
      for (let j = 0; j < count; j++) q[f++] = slots[j]!;
      this.nfree = f;
      return;
    }
    for (let j = 0; j < count; j++) {
      const s = slots[j]!;
      pending[s] = 0;
      this.release(s);
    }
    this.live -= count;
  }

  /** Cold path of the unmaps: `addr` is no live mapping's handle, or is being unmapped already. */
  private badUnmap(addr: number): never {
    const s = this.startSlotOf(addr);
    if (s < 0 || this.mdir[s] === KIND_COHERENT) this.badHandle('bounce unmap', addr, 'is not a live mapping returned by map()');
    this.badHandle('bounce unmap', addr, 'is already being unmapped (it appears twice in one batch, or was queued by queueUnmapSg and not flushed yet)');
  }

  /**
   * Unmap `count` buffers (arguments as for {@link unmap}) with one batched copy-out.
   * Everything is checked before anything is copied or freed.
   */
  unmapBatch(count: number, bounceAddrs: ArrayLike<number>, sizes: ArrayLike<number>, dirs: DmaDirection | ArrayLike<DmaDirection>): void {
    this.unmapMany(count, bounceAddrs, sizes, dirs, 0, false);
  }

  /**
   * Sync `count` ranges with one batched copy: `target` 'device' = {@link syncForDevice},
   * 'cpu' = {@link syncForCpu}. Everything is checked before anything is copied.
   */
  syncBatch(target: 'device' | 'cpu', count: number, bounceAddrs: ArrayLike<number>, sizes: ArrayLike<number>, dirs: DmaDirection | ArrayLike<DmaDirection>): void {
    this.settle();
    this.ensureBatch(count, count);
    const toDev = target === 'device';
    const bit = toDev ? DIR_TO_DEVICE : DIR_FROM_DEVICE;
    const what = toDev ? 'bounce syncForDevice' : 'bounce syncForCpu';
    const one = typeof dirs === 'string' ? dirCode(dirs) : 0;
    let k = 0;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const d = typeof dirs === 'string' ? one : dirCode((dirs as ArrayLike<DmaDirection>)[i]!);
      const size = sizes[i]!;
      const h = this.locate(what, bounceAddrs[i]!, size, d);
      if ((d & bit) !== 0 && size > 0) {
        this.op(k++, h, this.rel, size, toDev);
        bytes += size;
      }
    }
    this.runOps(k);
    if (toDev) this.bytesTo += bytes;
    else this.bytesFrom += bytes;
  }

  /**
   * Bounce a driver scatter-gather list: readable segments are mapped to-device, writable ones
   * from-device; `out` receives the same shape with bounce addresses. One batched copy.
   */
  mapSg(sg: SgList, out: SgList, opts?: MapOptions): void {
    this.mapSgImpl(sg, out, opts, false);
  }

  /** Unmap a list filled by {@link mapSg}: copies writable segments back to RAM, then frees all. */
  unmapSg(bounced: SgList): void {
    this.unmapSgImpl(bounced, false);
  }

  /**
   * As {@link mapSg}, but the copy-in is only recorded: the slots are allocated and `out` holds the
   * bounce addresses on return; the window holds the data after the next {@link flush} (or any
   * other pool operation, which flushes first). Call {@link flush} before the device may read the
   * buffers — the driver does it before publishing the ring (rfc-swiotlb.feature.driver.1).
   * All or nothing: on error nothing of this list stays mapped or queued.
   */
  queueMapSg(sg: SgList, out: SgList, opts?: MapOptions): void {
    this.mapSgImpl(sg, out, opts, true);
  }

  /**
   * As {@link unmapSg}, but the copy-back of the writable segments is only recorded and the slots
   * stay allocated until the next {@link flush}, which copies and then frees them. Everything is
   * checked now (a second unmap of the same list before the flush is refused).
   */
  queueUnmapSg(bounced: SgList): void {
    this.unmapSgImpl(bounced, true);
  }

  /**
   * Run every copy queued by {@link queueMapSg} / {@link queueUnmapSg}, in order, with one
   * {@link BatchCopier} call, then free the slots of the queued unmaps. If the copy throws (e.g.
   * the window was unmapped), the queue is dropped and the queued unmaps are freed all the same.
   */
  flush(): void {
    const n = this.nops;
    const nf = this.nfree;
    if (n === 0 && nf === 0) return;
    this.nops = 0;
    this.nfree = 0;
    try {
      this.runOps(n);
    } finally {
      const q = this.qfree;
      const pending = this.pending;
      for (let j = 0; j < nf; j++) {
        const s = q[j]!;
        pending[s] = 0;
        this.release(s);
      }
      this.live -= nf;
    }
  }

  /** Copy records waiting for {@link flush}. */
  get queuedCopies(): number {
    return this.nops;
  }

  /**
   * mapSg / queueMapSg. With the pool's own alignment (no `opts`) this is the request hot path:
   * the steps of {@link allocStreaming} and {@link op} inlined with the tables in locals (same
   * checks in the same order, same slot choice — test/swiotlb/pool-queue.test.ts compares it with
   * map()); with `opts` it goes through the general {@link mapMany}.
   */
  private mapSgImpl(sg: SgList, out: SgList, opts: MapOptions | undefined, queued: boolean): void {
    const n = sg.count;
    if (out.addr.length < n || out.len.length < n) throw new VirtioError('INVALID_ARGUMENT', `bounce mapSg: output list holds ${out.addr.length} segments, needs ${n}`);
    const addrs = sg.addr;
    const lens = sg.len;
    const readable = sg.readable;
    if (opts !== undefined) {
      this.mapMany(n, addrs, lens, null, readable, out.addr, opts, queued);
    } else {
      if (!queued) this.settle();
      const k0 = this.nops;
      if (this.slots.length < n || this.ops.length < (k0 + n) * OP_STRIDE || this.bufs.length !== this.ram.regions.length + 1) this.ensureBatch(n, k0 + n);
      const slots = this.slots;
      const ops = this.ops;
      const ram = this.ram;
      const msize = this.msize;
      const moff = this.moff;
      const mdir = this.mdir;
      const morig = this.morig;
      const mramIdx = this.mramIdx;
      const mramOff = this.mramOff;
      const minAlign = this.minAlignMask;
      const max = this.maxMap;
      const wOff = this.wOff;
      const offMask = minAlign & (IO_TLB_SIZE - 1); // Linux swiotlb_align_offset()
      const matchMask = minAlign & ~(IO_TLB_SIZE - 1); // Linux iotlb_align_mask
      const bigMask = matchMask | ((PAGE_SIZE - 1) & ~(IO_TLB_SIZE - 1) & ~matchMask); // §8: ≥ PAGE_SIZE on page-aligned slots
      let i = 0;
      let k = k0 * OP_STRIDE;
      let bytes = 0;
      try {
        for (; i < n; i++) {
          const orig = addrs[i]!;
          const size = lens[i]!;
          const d = i < readable ? TO_DEV : FROM_DEV;
          if (!(size > 0 && size <= max) || !Number.isSafeInteger(orig) || orig < 0) this.refuseMap(orig, size, d, max, minAlign);
          const ri = ram.resolve(orig, size, d === FROM_DEV);
          if (ri < 0) this.refuseRam(orig, size, d === FROM_DEV);
          const ramOff = ram.off;
          const offset = orig & offMask;
          const need = (size + offset + IO_TLB_SIZE - 1) >>> IO_TLB_SHIFT;
          const s = this.find(need, size >= PAGE_SIZE ? bigMask : matchMask, orig & matchMask);
          if (s < 0) this.refuse('BOUNCE_POOL_FULL', this.fullMessage('mapping', size, need), true);
          this.take(s, need);
          msize[s] = size;
          moff[s] = offset;
          mdir[s] = d;
          morig[s] = orig;
          mramIdx[s] = ri;
          mramOff[s] = ramOff;
          slots[i] = s;
          // Copy-in record (map always copies in, §8): window ← RAM.
          ops[k] = 0;
          ops[k + 1] = wOff + s * IO_TLB_SIZE + offset;
          ops[k + 2] = ri + 1;
          ops[k + 3] = ramOff;
          ops[k + 4] = size;
          k += OP_STRIDE;
          bytes += size;
        }
        if (!queued) this.runOps(n);
      } catch (e) {
        for (let j = 0; j < i; j++) this.release(slots[j]!);
        throw e;
      }
      if (queued) this.nops = k0 + n;
      this.bytesTo += bytes;
      this.live += n;
      this.totalMaps += n;
      const base = this.wreg.base;
      const oa = out.addr;
      for (let j = 0; j < n; j++) {
        const s = slots[j]!;
        oa[j] = base + s * IO_TLB_SIZE + moff[s]!; // rfc-swiotlb.feature.driver.1
      }
    }
    const ol = out.len;
    for (let i = 0; i < n; i++) ol[i] = lens[i]!;
    out.count = n;
    out.readable = readable;
  }

  /** unmapSg / queueUnmapSg: {@link unmapMany} for an SgList, with the tables in locals. */
  private unmapSgImpl(b: SgList, queued: boolean): void {
    if (!queued) this.settle();
    const n = b.count;
    const k0 = this.nops;
    if (this.slots.length < n || this.ops.length < (k0 + n) * OP_STRIDE || this.bufs.length !== this.ram.regions.length + 1) this.ensureBatch(n, k0 + n);
    if (queued && this.qfree.length < this.nfree + n) this.growFree(this.nfree + n);
    const addrs = b.addr;
    const lens = b.len;
    const readable = b.readable;
    const slots = this.slots;
    const ops = this.ops;
    const owner = this.owner;
    const pending = this.pending;
    const msize = this.msize;
    const moff = this.moff;
    const mdir = this.mdir;
    const mramIdx = this.mramIdx;
    const mramOff = this.mramOff;
    const base = this.wreg.base;
    const wSize = this.wSize;
    const wOff = this.wOff;
    let i = 0;
    let k = k0 * OP_STRIDE;
    let bytes = 0;
    try {
      for (; i < n; i++) {
        const addr = addrs[i]!;
        const off = addr - base;
        if (!(off >= 0 && off < wSize)) this.badUnmap(addr);
        const s = off >>> IO_TLB_SHIFT;
        const md = mdir[s]!;
        // The handle is the start address of a live streaming mapping not already being unmapped.
        if (owner[s] !== s || off !== s * IO_TLB_SIZE + moff[s]! || md === KIND_COHERENT || pending[s] !== 0) this.badUnmap(addr);
        const d = i < readable ? TO_DEV : FROM_DEV;
        const size = msize[s]!;
        if (lens[i] !== size || d !== md) this.unmapMismatch(s, lens[i]!, d);
        pending[s] = 1;
        slots[i] = s;
        if (d === FROM_DEV) {
          // Copy-back record: RAM ← window.
          ops[k] = mramIdx[s]! + 1;
          ops[k + 1] = mramOff[s]!;
          ops[k + 2] = 0;
          ops[k + 3] = wOff + off;
          ops[k + 4] = size;
          k += OP_STRIDE;
          bytes += size;
        }
      }
      if (!queued) this.runOps(k / OP_STRIDE);
    } catch (e) {
      for (let j = 0; j < i; j++) pending[slots[j]!] = 0;
      throw e;
    }
    this.bytesFrom += bytes;
    if (queued) {
      this.nops = k / OP_STRIDE;
      const q = this.qfree;
      let f = this.nfree;
      for (let j = 0; j < n; j++) q[f++] = slots[j]!;
      this.nfree = f;
      return;
    }
    for (let j = 0; j < n; j++) {
      const s = slots[j]!;
      pending[s] = 0;
      this.release(s);
    }
    this.live -= n;
  }

  private growFree(need: number): void {
    let cap = this.qfree.length;
    while (cap < need) cap *= 2;
    const q = new Int32Array(cap);
    q.set(this.qfree.subarray(0, this.nfree));
    this.qfree = q;
  }

  // ------------------------------------------------------------------ coherent allocations

  /**
   * Allocate zeroed window memory for rings and indirect tables (Linux `swiotlb_alloc()` for a
   * restricted pool): size rounded up to pages, aligned to max(`align`, the size rounded up to a
   * power of two pages), at most 256 KiB. Returns the bus address (inside the window).
   * @throws VirtioError BOUNCE_POOL_FULL, BOUNCE_MAP_TOO_LARGE, INVALID_ARGUMENT.
   */
  allocCoherent(size: number, align: number = PAGE_SIZE): number {
    if (!Number.isInteger(size) || size <= 0) this.refuse('INVALID_ARGUMENT', `bounce allocCoherent: size ${size} must be a positive integer`);
    if (!Number.isInteger(align) || align <= 0 || align > 2 ** 30 || (align & (align - 1)) !== 0) {
      this.refuse('INVALID_ARGUMENT', `bounce allocCoherent: align ${align} must be a power of two up to 2^30`);
    }
    const bytes = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
    if (bytes > MAX_MAPPING_SIZE) {
      this.refuse('BOUNCE_MAP_TOO_LARGE', `bounce allocCoherent: ${size} bytes exceeds 256 KiB; coherent memory comes from the same 2 KiB-slot allocator as streaming mappings (as in a Linux restricted-dma-pool) — use a smaller queue size or split the table`);
    }
    let order = PAGE_SIZE;
    while (order < bytes) order *= 2; // get_order(size)
    const alignMask = Math.max(order, align) - 1;
    const need = bytes >>> IO_TLB_SHIFT;
    const s = this.find(need, alignMask & ~(IO_TLB_SIZE - 1), 0);
    if (s < 0) this.refuse('BOUNCE_POOL_FULL', this.fullMessage('coherent allocation', bytes, need), true);
    this.take(s, need);
    this.msize[s] = bytes;
    this.moff[s] = 0;
    this.mdir[s] = KIND_COHERENT;
    this.liveCoh++;
    this.cohSlots += need;
    const w = this.window.bufferOffset + s * IO_TLB_SIZE;
    this.window.u8.fill(0, w, w + bytes);
    return this.window.base + s * IO_TLB_SIZE;
  }

  /** Free memory from {@link allocCoherent}. @throws VirtioError BOUNCE_BAD_HANDLE for anything else. */
  freeCoherent(addr: number): void {
    const s = this.startSlotOf(addr);
    if (s < 0 || this.mdir[s] !== KIND_COHERENT) this.badHandle('bounce freeCoherent', addr, 'is not a live coherent allocation (never allocated, already freed, or a streaming mapping)');
    this.cohSlots -= this.span[s]!;
    this.liveCoh--;
    this.release(s);
  }

  /** Size in bytes of the live coherent allocation at `addr`, else −1. */
  coherentSize(addr: number): number {
    const s = this.startSlotOf(addr);
    return s >= 0 && this.mdir[s] === KIND_COHERENT ? this.msize[s]! : -1;
  }

  // ------------------------------------------------------------------ housekeeping

  /** Forget every mapping and allocation without copying (device reset / driver teardown). Counters other than usage are kept. */
  reset(): void {
    this.initSlots();
    log('pool over %s reset', this.window.name);
  }

  /** Counters as a plain object. */
  stats(): BouncePoolStats {
    return {
      totalSlots: this.nslots,
      usedSlots: this.used,
      freeSlots: this.nslots - this.used,
      highWaterSlots: this.hiwater,
      liveMappings: this.live,
      totalMappings: this.totalMaps,
      liveCoherent: this.liveCoh,
      coherentSlots: this.cohSlots,
      failures: this.failures,
      fullFailures: this.fullFailures,
      bytesToDevice: this.bytesTo,
      bytesFromDevice: this.bytesFrom,
    };
  }

  /**
   * Check the slot table against itself (O(slots); for tests and debugging): every allocation
   * owns exactly its slots inside one segment, free slots have no owner, the used count adds up.
   * Throws VirtioError INTERNAL.
   */
  verify(): void {
    const n = this.nslots;
    const owner = this.owner;
    let used = 0;
    for (let i = 0; i < n; ) {
      const h = owner[i]!;
      if (h < 0) {
        i++;
        continue;
      }
      const sp = this.span[h]!;
      if (h !== i || sp <= 0 || i + sp > n || this.mdir[h] === 0) throw new VirtioError('INTERNAL', `bounce pool: slot ${i} owned by ${h} (span ${sp}) is inconsistent`);
      if ((i >>> 7) !== ((i + sp - 1) >>> 7)) throw new VirtioError('INTERNAL', `bounce pool: allocation at slot ${i} (${sp} slots) crosses a segment`);
      for (let j = i; j < i + sp; j++) if (owner[j] !== h) throw new VirtioError('INTERNAL', `bounce pool: slot ${j} of allocation ${h} has owner ${owner[j]}`);
      used += sp;
      i += sp;
    }
    if (used !== this.used) throw new VirtioError('INTERNAL', `bounce pool: ${used} slots held, counter says ${this.used}`);
  }
}
