/**
 * The front-end's memory table as a vhost-user back-end sees it: regions with a guest-physical
 * address, a user (front-end virtual) address and an fd to map at `mmap_offset`.
 *
 * Two ways to build the device's {@link AddressSpace}:
 *  - {@link MemTable.mapAll}: every region, whole (the usual vhost-user back-end);
 *  - {@link MemTable.mapRanges}: only the given guest-physical byte ranges (`--restrict` ranges plus
 *    the ring areas). Each range is clipped to the regions, ranges are merged per region, and only
 *    the page-aligned sub-range of the region's fd that covers each merged range is mmapped; the
 *    resulting {@link MemoryRegion}s expose exactly the requested bytes, so nothing else of guest
 *    memory is reachable through the space.
 */
import { VirtioError } from '../errors.js';
import { mapRegionFromFd, type MappedFdRegion } from '../memory/ram.js';
import type { MemoryRegion } from '../memory/region.js';
import { AddressSpace } from '../memory/space.js';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import type { MemRegionDesc } from './codec.js';

/** A guest-physical byte range [start, end). */
export interface GpaRange {
  start: number;
  end: number;
}

/** One region of the table with its fd (owned by the table). */
export interface MemTableRegion extends MemRegionDesc {
  fd: number;
}

/** A built address space and the mappings behind it. */
export interface MappedSpace {
  readonly space: AddressSpace;
  /** Unmap every mapping now. Only when nothing uses the space any more. */
  unmap(): void;
}

/** A memory table received by SET_MEM_TABLE (owns the region fds). */
export class MemTable {
  readonly regions: readonly MemTableRegion[];
  private readonly nat: NativeApi;
  private closed = false;

  /**
   * @param descs validated regions (codec.decodeMemTable)
   * @param fds one fd per region, in order (ownership passes to the table, also on error)
   * @throws VirtioError PROTOCOL when the fd count does not match or an fd is smaller than its region
   */
  constructor(descs: readonly MemRegionDesc[], fds: readonly number[], nat: NativeApi = defaultNative) {
    this.nat = nat;
    if (fds.length !== descs.length) {
      for (const fd of fds) nat.close(fd);
      throw new VirtioError('PROTOCOL', `vhost-user SET_MEM_TABLE: ${descs.length} regions but ${fds.length} file descriptors`);
    }
    this.regions = descs.map((d, i) => ({ ...d, fd: fds[i]! }));
    for (const [i, r] of this.regions.entries()) {
      let size: number;
      try {
        size = nat.fdSize(r.fd);
      } catch {
        size = -1;
      }
      // Some fds (hugetlbfs, /dev/shm files) report their size; memfds always do. 0 = unknown (char devices).
      if (size > 0 && r.mmapOffset + r.size > size) {
        this.close();
        throw new VirtioError('PROTOCOL', `vhost-user SET_MEM_TABLE: region ${i} needs fd bytes [0x${r.mmapOffset.toString(16)}, +0x${r.size.toString(16)}) but the fd holds 0x${size.toString(16)}`);
      }
    }
  }

  /** Close the region fds (idempotent). Existing mappings stay valid. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.regions) {
      try {
        this.nat.close(r.fd);
      } catch {
        // already closed
      }
    }
  }

  /** Guest-physical address of front-end user address `ua` for `len` bytes, or -1 when not inside one region. */
  userToGpa(ua: number, len: number): number {
    for (const r of this.regions) {
      if (ua >= r.uaddr && ua + len <= r.uaddr + r.size) return r.gpa + (ua - r.uaddr);
    }
    return -1;
  }

  /** Index of the region holding [gpa, gpa+len), or -1. */
  regionOfGpa(gpa: number, len: number): number {
    for (let i = 0; i < this.regions.length; i++) {
      const r = this.regions[i]!;
      if (gpa >= r.gpa && gpa + len <= r.gpa + r.size) return i;
    }
    return -1;
  }

  /** Map every region whole. */
  mapAll(name = 'vhost-user-ram'): MappedSpace {
    return this.build(this.regions.map((r, i) => ({ region: i, start: r.gpa, end: r.gpa + r.size })), name);
  }

  /**
   * Map only `ranges` (clipped to the regions; parts outside every region are dropped), merged
   * per region. An empty result gives an empty space (every access refused).
   */
  mapRanges(ranges: readonly GpaRange[], name = 'vhost-user-restricted'): MappedSpace {
    const pieces: Array<{ region: number; start: number; end: number }> = [];
    for (const g of ranges) {
      this.regions.forEach((r, i) => {
        const s = Math.max(g.start, r.gpa);
        const e = Math.min(g.end, r.gpa + r.size);
        if (e > s) pieces.push({ region: i, start: s, end: e });
      });
    }
    pieces.sort((a, b) => a.region - b.region || a.start - b.start);
    const merged: typeof pieces = [];
    for (const p of pieces) {
      const last = merged[merged.length - 1];
      if (last !== undefined && last.region === p.region && p.start <= last.end) last.end = Math.max(last.end, p.end);
      else merged.push({ ...p });
    }
    return this.build(merged, name);
  }

  private build(pieces: ReadonlyArray<{ region: number; start: number; end: number }>, name: string): MappedSpace {
    if (this.closed) throw new VirtioError('CLOSED', 'vhost-user: the memory table was closed');
    const maps: MappedFdRegion[] = [];
    const regions: MemoryRegion[] = [];
    try {
      for (const p of pieces) {
        const r = this.regions[p.region]!;
        const m = mapRegionFromFd(r.fd, r.mmapOffset + (p.start - r.gpa), p.end - p.start, p.start, { name: `ram${p.region}@0x${p.start.toString(16)}`, native: this.nat });
        maps.push(m);
        regions.push(...m.regions);
      }
    } catch (e) {
      for (const m of maps) m.close();
      throw e;
    }
    const space = new AddressSpace(regions, name);
    let done = false;
    return {
      space,
      unmap(): void {
        if (done) return;
        done = true;
        for (const m of maps) m.close();
      },
    };
  }
}
