/**
 * The SWIOTLB window: the device-owned bounce region of the 2025 RFC (`reference/swiotlb.md` §4).
 *
 * On PCI it is a range of one of the device's BARs described by a `VIRTIO_PCI_CAP_SWIOTLB`
 * capability (BAR-relative le32 offset and length); on MMIO a DT `restricted-dma-pool`. When
 * VIRTIO_F_SWIOTLB is negotiated the window is the device's whole world: {@link asAddressSpace}
 * gives an {@link AddressSpace} holding only the window, and every ring, descriptor and buffer
 * address the driver passes must fall inside it (rfc-swiotlb.feature.driver.1,
 * rfc-swiotlb.pci.driver.2, rfc-swiotlb.mmio.driver.2).
 *
 * The window's bus base is the BAR base plus the capability offset, as the driver programmed it;
 * {@link moveTo} follows BAR reprogramming and moves the region inside the address space.
 */
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';
import { MemoryRegion } from '../memory/region.js';
import { AddressSpace } from '../memory/space.js';
import { allocateWindowBacking, type WindowBackingKind } from './backing.js';
import { MAX_WINDOW_SIZE, MIN_WINDOW_SIZE, PAGE_SIZE } from './constants.js';

const log = logger('swiotlb');

/** Options for {@link SwiotlbWindow}. */
export interface SwiotlbWindowOptions {
  /** Window size in bytes (default: the buffer's length from `offset`). Whole pages, 4 KiB … 0xFFFFF000. */
  size?: number;
  /** Byte offset of the window inside the buffer (default 0). */
  offset?: number;
  /** Initial bus base (BAR base + capability offset); page aligned. Default 0 (BAR not yet programmed). */
  base?: number;
  /** Name for logs and errors (default "swiotlb"). */
  name?: string;
  /** File descriptor backing the buffer (to share the window with another process). */
  fd?: number;
  /** Offset of the buffer's first byte inside `fd`. */
  fdOffset?: number;
  /** Called once by {@link SwiotlbWindow.close} (e.g. munmap + close of an owned memfd). */
  release?: () => void;
}

/** Options for {@link SwiotlbWindow.allocate}. */
export interface SwiotlbAllocateOptions {
  /** `auto` (memfd when the native addon loads, else SharedArrayBuffer), `memfd`, `shared`, `array`. */
  backing?: WindowBackingKind;
  base?: number;
  name?: string;
}

/** Listener for {@link SwiotlbWindow.onMove}. */
export type WindowMoveListener = (newBase: number, oldBase: number) => void;

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Check a window size; throws INVALID_ARGUMENT saying what to change. */
export function checkWindowSize(size: number, name = 'swiotlb'): void {
  if (!Number.isSafeInteger(size) || size < MIN_WINDOW_SIZE || size > MAX_WINDOW_SIZE || size % PAGE_SIZE !== 0) {
    throw new VirtioError(
      'INVALID_ARGUMENT',
      `${name}: window size ${size} is invalid; use a multiple of ${PAGE_SIZE} bytes between ${MIN_WINDOW_SIZE} and ${hex(MAX_WINDOW_SIZE)} ` +
        `(the capability's length is le32; Linux pools are whole pages; 64 MiB is Linux's default)`,
    );
  }
}

function checkBase(base: number, size: number, name: string): void {
  if (!Number.isSafeInteger(base) || base < 0 || base % PAGE_SIZE !== 0 || base + size > 2 ** 53) {
    throw new VirtioError('INVALID_ARGUMENT', `${name}: window base ${hex(base)} is invalid; use a ${PAGE_SIZE}-byte aligned bus address below 2^53 - size (BAR base + capability offset)`);
  }
}

/** The device-owned bounce region. */
export class SwiotlbWindow {
  /** Size in bytes. */
  readonly size: number;
  /** Backing memory (shared with the driver-side pool and, through `fd`, other processes). */
  readonly buffer: ArrayBufferLike;
  readonly name: string;
  /** The window as a memory region (its `base` is the current bus base). */
  readonly region: MemoryRegion;
  private readonly space: AddressSpace;
  private readonly listeners: WindowMoveListener[] = [];
  private release: (() => void) | undefined;

  /**
   * Wrap caller-provided memory (e.g. a memfd mapping from src/memory/ram.ts).
   * @throws VirtioError INVALID_ARGUMENT for a bad size, offset or base.
   */
  constructor(buffer: ArrayBufferLike, opts: SwiotlbWindowOptions = {}) {
    const name = opts.name ?? 'swiotlb';
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > buffer.byteLength) {
      throw new VirtioError('INVALID_ARGUMENT', `${name}: offset ${offset} is outside the ${buffer.byteLength}-byte buffer`);
    }
    const size = opts.size ?? buffer.byteLength - offset;
    checkWindowSize(size, name);
    if (offset + size > buffer.byteLength) {
      throw new VirtioError('INVALID_ARGUMENT', `${name}: offset ${offset} + size ${size} exceeds the ${buffer.byteLength}-byte buffer; pass a larger buffer or a smaller size`);
    }
    const base = opts.base ?? 0;
    checkBase(base, size, name);
    this.size = size;
    this.buffer = buffer;
    this.name = name;
    const spec = { base, size, buffer, offset, name, fdOffset: opts.fdOffset ?? 0 };
    this.region = new MemoryRegion(opts.fd === undefined ? spec : { ...spec, fd: opts.fd });
    this.space = new AddressSpace([this.region], `${name}-window`);
    this.release = opts.release;
    log('%s: window size=%s base=%s', name, hex(size), hex(base));
  }

  /**
   * Allocate window memory and wrap it: a memfd mapping through the native addon when it can be
   * loaded (and `backing` is `auto` or `memfd`), else a SharedArrayBuffer (or ArrayBuffer with
   * `backing: 'array'`). {@link close} releases an owned memfd.
   */
  static async allocate(size: number, opts: SwiotlbAllocateOptions = {}): Promise<SwiotlbWindow> {
    const name = opts.name ?? 'swiotlb';
    checkWindowSize(size, name);
    const b = await allocateWindowBacking(size, opts.backing ?? 'auto');
    const wopts: SwiotlbWindowOptions = { size, name, release: b.release };
    if (opts.base !== undefined) wopts.base = opts.base;
    if (b.fd !== undefined) {
      wopts.fd = b.fd;
      wopts.fdOffset = b.fdOffset ?? 0;
    }
    try {
      return new SwiotlbWindow(b.buffer, wopts);
    } catch (e) {
      b.release();
      throw e;
    }
  }

  /** Current bus address of the first byte. */
  get base(): number {
    return this.region.base;
  }

  /** Bus address one past the last byte. */
  get end(): number {
    return this.region.base + this.size;
  }

  /** Byte offset of the window's first byte inside {@link buffer}. */
  get bufferOffset(): number {
    return this.region.offset;
  }

  /** File descriptor backing the buffer, if any. */
  get fd(): number | undefined {
    return this.region.fd;
  }

  /** Offset of {@link buffer} inside {@link fd}. */
  get fdOffset(): number {
    return this.region.fdOffset;
  }

  /** Byte view over the whole backing buffer (index with `bufferOffset + (addr - base)`). */
  get u8(): Uint8Array {
    return this.region.u8;
  }

  /** True when [addr, addr+len) lies entirely inside the window at its current base. */
  contains(addr: number, len: number): boolean {
    const base = this.region.base;
    return addr >= base && len >= 0 && addr + len <= base + this.size;
  }

  /**
   * The address space a device sees when SWIOTLB is negotiated: only the window. The same object
   * is returned every time, and {@link moveTo} moves the region inside it.
   */
  asAddressSpace(): AddressSpace {
    return this.space;
  }

  /**
   * Follow BAR reprogramming: the window now starts at bus address `base` (BAR base + capability
   * offset). Bounce addresses handed out before the move are not translated: a driver reprograms
   * the BAR only with no buffers mapped, as on real hardware.
   */
  moveTo(base: number): void {
    checkBase(base, this.size, this.name);
    const old = this.region.base;
    if (old === base) return;
    this.space.moveRegion(0, base);
    log('%s: window moved %s -> %s', this.name, hex(old), hex(base));
    for (const l of this.listeners) l(base, old);
  }

  /** Be told about {@link moveTo}. Returns a function that removes the listener. */
  onMove(listener: WindowMoveListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Release owned backing memory (memfd from {@link allocate}). Views over the buffer must not be used afterwards. Idempotent. */
  close(): void {
    const r = this.release;
    this.release = undefined;
    if (r !== undefined) r();
  }
}
