/**
 * Guest RAM: an {@link AddressSpace} whose regions are backed by memfds (shareable with other
 * processes by fd), SharedArrayBuffers (shareable with workers) or plain ArrayBuffers.
 *
 * Node.js cannot wrap more than 4 GiB in one ArrayBuffer, so a larger region becomes several
 * consecutive windows of at most 4 GiB — one memfd mapped at increasing offsets — each its own
 * {@link MemoryRegion} in the space. Accesses never straddle two windows through
 * {@link AddressSpace.resolve} (it reports OUT_OF_SPACE), which is what a device must handle anyway
 * for buffers that cross RAM regions.
 */
import { VirtioError, requireArg } from '../errors.js';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import { MemoryRegion, type RegionSpec } from './region.js';
import { AddressSpace } from './space.js';

/** Largest window: the largest ArrayBuffer Node.js can wrap (2^32 bytes). */
export const MAX_WINDOW = 2 ** 32;

/** How guest RAM is backed. `auto` = memfd when the native addon is available, else `shared`. */
export type RamBacking = 'auto' | 'memfd' | 'shared' | 'plain';

/** One RAM region of the guest-physical layout. */
export interface RamLayoutEntry {
  /** Guest-physical address of the first byte. */
  base: number;
  /** Size in bytes (> 0). */
  size: number;
  /** Name for logs and errors (default `ram<i>`). */
  name?: string;
}

/** Options of {@link createGuestRam}. */
export interface GuestRamOptions {
  /** Backing store (default `auto`). */
  backing?: RamBacking;
  /** Name of the resulting address space (default `guest-ram`). */
  name?: string;
  /** Native API to use (default: the loaded addon / fallback). */
  native?: NativeApi;
}

/** One layout entry as created: its fd (memfd backing) and the windows that cover it. */
export interface GuestRamRegion {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  /** The memfd holding the whole region (offset 0 = `base`), or undefined when not memfd-backed. */
  readonly fd: number | undefined;
  /** The ≤ 4 GiB windows in the address space, in address order. */
  readonly windows: readonly MemoryRegion[];
}

/** Guest RAM as created by {@link createGuestRam}. */
export interface GuestRam {
  /** All RAM, as the address space a direct-DMA device is given. */
  readonly space: AddressSpace;
  /** The backing actually used (`auto` resolved). */
  readonly backing: 'memfd' | 'shared' | 'plain';
  /** One entry per layout entry, in layout order. */
  readonly regions: readonly GuestRamRegion[];
  /** True after {@link close}. */
  readonly closed: boolean;
  /**
   * Unmap the windows and close the memfds (memfd backing); idempotent. Afterwards the space's
   * buffers are detached (length 0) and must not be used.
   */
  close(): void;
}

function checkLayout(layout: readonly RamLayoutEntry[]): void {
  requireArg(Array.isArray(layout) && layout.length > 0, 'createGuestRam: layout must be a non-empty array of { base, size, name? }');
  layout.forEach((e, i) => {
    requireArg(
      Number.isSafeInteger(e.base) && e.base >= 0 && Number.isSafeInteger(e.size) && e.size > 0 && e.base + e.size <= Number.MAX_SAFE_INTEGER,
      `createGuestRam: layout[${i}] needs integer base >= 0 and size > 0 ending below 2^53 (got base=${e.base}, size=${e.size})`,
    );
  });
}

/** Window sizes covering `size` bytes. */
function windowSizes(size: number): number[] {
  const out: number[] = [];
  for (let done = 0; done < size; done += MAX_WINDOW) out.push(Math.min(MAX_WINDOW, size - done));
  return out;
}

/** Create guest RAM for `layout` (regions must not overlap). */
export function createGuestRam(layout: readonly RamLayoutEntry[], opts: GuestRamOptions = {}): GuestRam {
  checkLayout(layout);
  const nat = opts.native ?? defaultNative;
  const want = opts.backing ?? 'auto';
  requireArg(want === 'auto' || want === 'memfd' || want === 'shared' || want === 'plain', `createGuestRam: unknown backing '${String(want)}' (auto, memfd, shared or plain)`);
  const backing: GuestRam['backing'] = want === 'auto' ? (nat.available ? 'memfd' : 'shared') : want;
  if (backing === 'memfd' && !nat.available) {
    throw new VirtioError('NATIVE_UNAVAILABLE', `createGuestRam: memfd backing needs the native addon (${nat.unavailableReason ?? 'not loaded'}); use backing 'shared' or build the addon with \`npm rebuild\``);
  }

  const fds: number[] = [];
  const maps: ArrayBuffer[] = [];
  const cleanup = (): void => {
    for (const m of maps) nat.munmap(m);
    for (const fd of fds) nat.close(fd);
    maps.length = 0;
    fds.length = 0;
  };

  const regions: GuestRamRegion[] = [];
  try {
    layout.forEach((e, i) => {
      const name = e.name ?? `ram${i}`;
      const sizes = windowSizes(e.size);
      let fd: number | undefined;
      if (backing === 'memfd') {
        fd = nat.memfdCreate(`virtiokit-${name}`, e.size);
        fds.push(fd);
      }
      const windows: MemoryRegion[] = [];
      let off = 0;
      sizes.forEach((sz, k) => {
        let buffer: ArrayBufferLike;
        if (fd !== undefined) {
          const ab = nat.mmap(fd, off, sz, true);
          maps.push(ab);
          buffer = ab;
        } else {
          buffer = backing === 'shared' ? new SharedArrayBuffer(sz) : new ArrayBuffer(sz);
        }
        const spec: RegionSpec = { base: e.base + off, size: sz, buffer, name: sizes.length === 1 ? name : `${name}#${k}`, fdOffset: off };
        if (fd !== undefined) spec.fd = fd;
        const r = new MemoryRegion(spec);
        windows.push(r);
        off += sz;
      });
      regions.push({ name, base: e.base, size: e.size, fd, windows });
    });
  } catch (err) {
    cleanup();
    throw err;
  }

  let space: AddressSpace;
  try {
    space = new AddressSpace(regions.flatMap((r) => r.windows), opts.name ?? 'guest-ram');
  } catch (err) {
    cleanup();
    throw err;
  }

  let closed = false;
  return {
    space,
    backing,
    regions,
    get closed(): boolean {
      return closed;
    },
    close(): void {
      if (closed) return;
      closed = true;
      cleanup();
    },
  };
}

/** Options of {@link mapRegionFromFd}. */
export interface MapFdOptions {
  /** Region name (default `fd<fd>`). */
  name?: string;
  /** Map privately and mark the region read-only (stores through the space are refused). */
  readOnly?: boolean;
  /** Close `fd` in {@link MappedFdRegion.close} (default false: the caller keeps owning it). */
  ownsFd?: boolean;
  /** Native API to use (default: the loaded addon). */
  native?: NativeApi;
}

/** A region of another process's memory, mapped from an fd it passed us. */
export interface MappedFdRegion {
  /** The ≤ 4 GiB windows covering [base, base + size), ready for an {@link AddressSpace}. */
  readonly regions: readonly MemoryRegion[];
  readonly fd: number;
  readonly closed: boolean;
  /** Unmap (and close the fd when `ownsFd`); idempotent. */
  close(): void;
}

/**
 * Map `size` bytes of `fd` starting at `fdOffset` (any offset; need not be page aligned, e.g. a
 * vhost-user `mmap_offset`) as guest-physical [base, base + size). Each window maps from the page
 * boundary at or below its first byte: {@link MemoryRegion.fdOffset} is the fd offset of the
 * window's buffer (page aligned) and {@link MemoryRegion.offset} the distance to the window's first
 * guest byte, so that byte lies at fd offset `fdOffset + offset`.
 */
export function mapRegionFromFd(fd: number, fdOffset: number, size: number, base: number, opts: MapFdOptions = {}): MappedFdRegion {
  const nat = opts.native ?? defaultNative;
  const name = opts.name ?? `fd${fd}`;
  requireArg(Number.isSafeInteger(fd) && fd >= 0, `mapRegionFromFd: fd must be a non-negative integer (got ${fd})`);
  requireArg(Number.isSafeInteger(fdOffset) && fdOffset >= 0, `mapRegionFromFd: fdOffset must be a non-negative integer (got ${fdOffset})`);
  requireArg(Number.isSafeInteger(size) && size > 0, `mapRegionFromFd: size must be a positive integer (got ${size})`);
  requireArg(Number.isSafeInteger(base) && base >= 0 && base + size <= Number.MAX_SAFE_INTEGER, `mapRegionFromFd: base must be a non-negative integer with base + size below 2^53 (got ${base})`);
  if (!nat.available) {
    throw new VirtioError('NATIVE_UNAVAILABLE', `mapRegionFromFd needs the native addon (${nat.unavailableReason ?? 'not loaded'}); build it with \`npm rebuild\``);
  }
  const page = nat.pageSize;
  const readOnly = opts.readOnly ?? false;
  const maps: ArrayBuffer[] = [];
  const regions: MemoryRegion[] = [];
  try {
    let done = 0;
    let k = 0;
    while (done < size) {
      const start = fdOffset + done;
      const aligned = start - (start % page);
      const delta = start - aligned;
      const len = Math.min(size - done, MAX_WINDOW - delta);
      const ab = nat.mmap(fd, aligned, delta + len, !readOnly);
      maps.push(ab);
      regions.push(new MemoryRegion({ base: base + done, size: len, buffer: ab, offset: delta, readOnly, name: size <= MAX_WINDOW - delta && k === 0 ? name : `${name}#${k}`, fd, fdOffset: aligned }));
      done += len;
      k++;
    }
  } catch (err) {
    for (const m of maps) nat.munmap(m);
    throw err;
  }
  let closed = false;
  return {
    regions,
    fd,
    get closed(): boolean {
      return closed;
    },
    close(): void {
      if (closed) return;
      closed = true;
      for (const m of maps) nat.munmap(m);
      if (opts.ownsFd === true) nat.close(fd);
    },
  };
}
