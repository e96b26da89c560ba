/**
 * The server's DMA map table and the three DMA models of a vfio-user device process.
 *
 * - **direct**: DMA_MAP carries an fd (the guest-RAM memfd). The range is mmap'ed
 *   ({@link mapRegionFromFd}) and becomes a region of the device's {@link AddressSpace}; queues run
 *   straight on guest memory.
 * - **message**: DMA_MAP without an fd. The range becomes a *mirror* region: process-local memory
 *   at the same guest addresses (virtual memory only — pages are committed when touched). Nothing
 *   of the guest is mapped; the message engine (`message-dma.ts`) fills the mirror with DMA_READ
 *   before a queue runs and sends what the device wrote back with DMA_WRITE.
 * - **SWIOTLB**: the client maps no guest RAM at all; the table stays empty and the device's space
 *   is the bounce window of its own BAR (exported to the client as an mmap-able region).
 *
 * Re-mapping while queues run (QEMU 11 + SeaBIOS: the PAM registers flip 0xc0000–0xfffff between RAM
 * and ROM *after* the firmware set up its virtqueue, so the guest-RAM mapping is unmapped and mapped
 * again in pieces): a running queue keeps the address space it was started with. So that space stays
 * valid and coherent with the current one, (1) an unmapped fd mapping is *retired*, not munmap'ed,
 * until the next device reset ({@link DmaTable.releaseRetired}) or the client goes ({@link DmaTable.clear}) —
 * its pages are the same guest-RAM file pages the new mappings show; (2) mirror memory is one
 * persistent buffer per 1 GiB window of guest addresses, so every mirror region for an address
 * shares the same bytes whatever the current split of the mappings.
 *
 * Validation (each failure is an errno for the error reply): size 0, not page aligned, beyond
 * 2^53, overlapping an existing mapping (EEXIST), the fd too small for offset + size, too many
 * mappings (ENOSPC); DMA_UNMAP must match a mapping exactly (ENOENT) unless flag ALL.
 */
import { logger } from '../log.js';
import { mapRegionFromFd, type MappedFdRegion } from '../memory/ram.js';
import { MemoryRegion } from '../memory/region.js';
import { AddressSpace } from '../memory/space.js';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import { protoError } from './codec.js';
import { DMA_FLAG_READ, DMA_FLAG_WRITE, DMA_UNMAP_FLAG_ALL, Errno } from './protocol.js';

const log = logger('vfio-user:dma');

/** Page granularity of DMA mappings. */
export const DMA_PAGE = 4096;
/** Mirror memory is allocated in windows of at most this size. */
const MIRROR_WINDOW = 1024 * 1024 * 1024;
/** Most retired fd mappings kept before the oldest is munmap'ed. */
const MAX_RETIRED = 256;

/** Which DMA model the mappings amount to. */
export type DmaModel = 'none' | 'direct' | 'message' | 'mixed';

/** One DMA mapping. */
export interface DmaEntry {
  readonly addr: number;
  readonly size: number;
  readonly flags: number;
  /** 'mapped' = fd mmap'ed (direct DMA); 'message' = mirror only (DMA_READ/WRITE). */
  readonly kind: 'mapped' | 'message';
  /** Regions in the device's space for this entry (windows). */
  readonly regions: readonly MemoryRegion[];
  /** The fd mapping (kind 'mapped'). */
  readonly mapping: MappedFdRegion | undefined;
}

/** Counters. */
export interface DmaTableStats {
  maps: number;
  mapsWithFd: number;
  unmaps: number;
  refused: number;
}

/** Options of {@link DmaTable}. */
export interface DmaTableOptions {
  /** Most mappings (default 65535). */
  maxMaps?: number;
  native?: NativeApi;
  /** Name prefix of the device's address space. */
  name?: string;
}

/** The server's DMA map table. */
export class DmaTable {
  readonly stats: DmaTableStats = { maps: 0, mapsWithFd: 0, unmaps: 0, refused: 0 };
  private entries: DmaEntry[] = [];
  /** Unmapped fd mappings kept alive for queues started on an older space (released at reset). */
  private retired: MappedFdRegion[] = [];
  /** Mirror memory per 1 GiB window index (persistent until {@link clear}). */
  private readonly mirrorWindows = new Map<number, ArrayBuffer>();
  private spaceCache: AddressSpace | undefined;
  private readonly listeners: Array<(space: AddressSpace) => void> = [];
  private readonly nat: NativeApi;
  private readonly maxMaps: number;
  private readonly name: string;

  constructor(opts: DmaTableOptions = {}) {
    this.nat = opts.native ?? defaultNative;
    this.maxMaps = opts.maxMaps ?? 65535;
    this.name = opts.name ?? 'vfio-user-dma';
  }

  /** Mappings, sorted by address. */
  get list(): readonly DmaEntry[] {
    return this.entries;
  }

  /** The model the current mappings amount to. */
  get model(): DmaModel {
    let fd = false;
    let msg = false;
    for (const e of this.entries) {
      if (e.kind === 'mapped') fd = true;
      else msg = true;
    }
    return fd && msg ? 'mixed' : fd ? 'direct' : msg ? 'message' : 'none';
  }

  /** True when some mapping is message-only. */
  get hasMessageRanges(): boolean {
    return this.entries.some((e) => e.kind === 'message');
  }

  /** The device's address space: every mapping (mmap'ed or mirror). Rebuilt after each change. */
  space(): AddressSpace {
    this.spaceCache ??= new AddressSpace(this.entries.flatMap((e) => [...e.regions]), this.name);
    return this.spaceCache;
  }

  /** Be told when the space changes. */
  onChange(fn: (space: AddressSpace) => void): void {
    this.listeners.push(fn);
  }

  private changed(): void {
    this.spaceCache = undefined;
    const s = this.space();
    for (const l of this.listeners) {
      try {
        l(s);
      } catch (e) {
        log('space listener threw: %O', e);
      }
    }
  }

  /**
   * DMA_MAP. `fd` (owned by the table from here on, closed on unmap or failure) makes it a direct
   * mapping; without one it is message-only.
   * @throws PROTOCOL VirtioError with the errno for the reply
   */
  map(addr: number, size: number, flags: number, offset: number, fd: number | undefined): DmaEntry {
    try {
      if ((flags & DMA_FLAG_READ) === 0) throw protoError(Errno.EINVAL, `DMA_MAP [0x${addr.toString(16)}, +0x${size.toString(16)}) without READ permission`);
      if (size <= 0 || addr % DMA_PAGE !== 0 || size % DMA_PAGE !== 0) throw protoError(Errno.EINVAL, `DMA_MAP [0x${addr.toString(16)}, +0x${size.toString(16)}): address and size must be non-zero multiples of ${DMA_PAGE}`);
      if (addr + size > 2 ** 53) throw protoError(Errno.EOVERFLOW, `DMA_MAP [0x${addr.toString(16)}, +0x${size.toString(16)}) ends beyond 2^53`);
      if (this.entries.length >= this.maxMaps) throw protoError(Errno.ENOSPC, `DMA_MAP: already ${this.entries.length} mappings (max_dma_maps)`);
      for (const e of this.entries) {
        if (addr < e.addr + e.size && e.addr < addr + size) {
          throw protoError(Errno.EEXIST, `DMA_MAP [0x${addr.toString(16)}, +0x${size.toString(16)}) overlaps [0x${e.addr.toString(16)}, +0x${e.size.toString(16)})`);
        }
      }
      const readOnly = (flags & DMA_FLAG_WRITE) === 0;
      const name = `dma@0x${addr.toString(16)}`;
      let entry: DmaEntry;
      if (fd !== undefined) {
        let fdSize: number;
        try {
          fdSize = this.nat.fdSize(fd);
        } catch {
          throw protoError(Errno.EBADF, `DMA_MAP: fd ${fd} cannot be inspected`);
        }
        if (offset + size > fdSize) throw protoError(Errno.EINVAL, `DMA_MAP: offset 0x${offset.toString(16)} + size 0x${size.toString(16)} exceeds the ${fdSize}-byte file`);
        let m: MappedFdRegion;
        try {
          m = mapRegionFromFd(fd, offset, size, addr, { name, readOnly, ownsFd: true, native: this.nat });
        } catch (e) {
          throw protoError(Errno.ENOMEM, `DMA_MAP: mmap of fd ${fd} failed: ${(e as Error).message}`);
        }
        entry = { addr, size, flags, kind: 'mapped', regions: m.regions, mapping: m };
        this.stats.mapsWithFd++;
      } else {
        const regions: MemoryRegion[] = [];
        try {
          // Split at window boundaries; each piece is a view of its window's persistent buffer.
          for (let a = addr, k = 0; a < addr + size; k++) {
            const w = Math.floor(a / MIRROR_WINDOW);
            const wBase = w * MIRROR_WINDOW;
            const len = Math.min(addr + size, wBase + MIRROR_WINDOW) - a;
            let buf = this.mirrorWindows.get(w);
            if (buf === undefined) {
              buf = new ArrayBuffer(MIRROR_WINDOW);
              this.mirrorWindows.set(w, buf);
            }
            regions.push(new MemoryRegion({ base: a, size: len, buffer: buf, offset: a - wBase, readOnly, name: len < size ? `${name}#${k}` : `${name}-mirror` }));
            a += len;
          }
        } catch (e) {
          throw protoError(Errno.ENOMEM, `DMA_MAP: cannot reserve ${size} bytes of mirror memory: ${(e as Error).message}`);
        }
        entry = { addr, size, flags, kind: 'message', regions, mapping: undefined };
      }
      this.entries.push(entry);
      this.entries.sort((a, b) => a.addr - b.addr);
      this.stats.maps++;
      log('map [0x%s, +0x%s) %s %s', addr.toString(16), size.toString(16), readOnly ? 'ro' : 'rw', entry.kind);
      this.changed();
      return entry;
    } catch (e) {
      this.stats.refused++;
      if (fd !== undefined && !this.entries.some((x) => x.mapping?.fd === fd)) {
        try {
          this.nat.close(fd);
        } catch {
          /* ignore */
        }
      }
      throw e;
    }
  }

  /**
   * DMA_UNMAP: exactly one mapping [addr, addr+size), or all with DMA_UNMAP_FLAG_ALL.
   * @throws PROTOCOL VirtioError (ENOENT when nothing matches)
   */
  unmap(addr: number, size: number, flags: number): number {
    if ((flags & DMA_UNMAP_FLAG_ALL) !== 0) {
      if (addr !== 0 || size !== 0) throw protoError(Errno.EINVAL, 'DMA_UNMAP ALL needs address and size 0');
      const n = this.entries.length;
      if (n === 0) return 0;
      for (const e of this.entries) this.retire(e);
      this.stats.unmaps += n;
      this.entries = [];
      this.changed();
      return n;
    }
    const i = this.entries.findIndex((e) => e.addr === addr && e.size === size);
    if (i < 0) {
      this.stats.refused++;
      throw protoError(Errno.ENOENT, `DMA_UNMAP [0x${addr.toString(16)}, +0x${size.toString(16)}) matches no mapping`);
    }
    const [e] = this.entries.splice(i, 1);
    this.retire(e!);
    this.stats.unmaps++;
    this.changed();
    return 1;
  }

  /** Drop every mapping and release all memory (client gone: queues were reset before). */
  clear(): void {
    this.releaseRetired();
    this.mirrorWindows.clear();
    if (this.entries.length === 0) return;
    for (const e of this.entries) e.mapping?.close();
    this.stats.unmaps += this.entries.length;
    this.entries = [];
    this.changed();
  }

  /** Number of unmapped fd mappings still kept for queues started on an older space. */
  get retiredCount(): number {
    return this.retired.length;
  }

  /** munmap the retired fd mappings: call when no queue runs on an older space (device reset). */
  releaseRetired(): void {
    const r = this.retired;
    if (r.length === 0) return;
    this.retired = [];
    for (const m of r) m.close();
    log('released %d retired mappings', r.length);
  }

  private retire(e: DmaEntry): void {
    if (e.mapping === undefined) return;
    this.retired.push(e.mapping);
    // Bound the address space kept (a guest that re-maps forever without resetting the device).
    if (this.retired.length > MAX_RETIRED) this.retired.shift()!.close();
  }

  /** The mapping containing [addr, addr+len) entirely, if any. */
  find(addr: number, len: number): DmaEntry | undefined {
    for (const e of this.entries) if (addr >= e.addr && addr + len <= e.addr + e.size) return e;
    return undefined;
  }

  /**
   * Call `fn(addr, len, region, bufOff)` for each part of [addr, addr+len) inside a message-only
   * mapping (parts elsewhere are skipped).
   */
  forEachMirrorPiece(addr: number, len: number, fn: (a: number, l: number, r: MemoryRegion, bufOff: number) => void): void {
    const end = addr + len;
    for (const e of this.entries) {
      if (e.kind !== 'message' || e.addr >= end || e.addr + e.size <= addr) continue;
      for (const r of e.regions) {
        const s = Math.max(addr, r.base);
        const t = Math.min(end, r.base + r.size);
        if (t > s) fn(s, t - s, r, r.offset + (s - r.base));
      }
    }
  }

  /** True when [addr, addr+len) lies entirely in message-only mappings. */
  inMirror(addr: number, len: number): boolean {
    let covered = 0;
    this.forEachMirrorPiece(addr, len, (_a, l) => (covered += l));
    return covered === len;
  }
}
