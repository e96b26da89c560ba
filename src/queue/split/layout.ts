/**
 * Split virtqueue layout (virtio 1.x, non-legacy): sizes, alignments, and resolving the three ring
 * areas inside an {@link AddressSpace} into prebuilt typed-array views.
 *
 * | part             | align | bytes      |
 * |------------------|------:|------------|
 * | descriptor table |    16 | 16·QS      |
 * | available ring   |     2 | 6 + 2·QS   | flags, idx, ring[QS], used_event
 * | used ring        |     4 | 6 + 8·QS   | flags, idx, ring[QS]{id,len}, avail_event
 *
 * Views index from the start of each area:
 * - `desc`  Uint32Array: entry i at `4i` = addr lo, `4i+1` = addr hi, `4i+2` = len,
 *   `4i+3` = flags | next << 16 (little-endian host).
 * - `avail` Uint16Array: 0 flags, 1 idx, `2+i` ring[i], `2+QS` used_event.
 * - `used32` Uint32Array: `1+2i` id, `2+2i` len; `used16` Uint16Array: 0 flags, 1 idx, `2+4·QS` avail_event.
 */
import type { AddressSpace } from '../../memory/space.js';
import type { VirtioErrorCode } from '../../errors.js';
import { MAX_QUEUE_SIZE } from '../types.js';

/** Available ring flag: driver asks for no used-buffer notifications. */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Used ring flag: device asks for no available-buffer notifications. */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

export const SPLIT_DESC_ALIGN = 16;
export const SPLIT_AVAIL_ALIGN = 2;
export const SPLIT_USED_ALIGN = 4;

/** The views read little-endian fields through host-order typed arrays. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Bytes of the descriptor table. */
export function splitDescBytes(size: number): number {
  return 16 * size;
}
/** Bytes of the available ring including used_event. */
export function splitAvailBytes(size: number): number {
  return 6 + 2 * size;
}
/** Bytes of the used ring including avail_event. */
export function splitUsedBytes(size: number): number {
  return 6 + 8 * size;
}

/** Where {@link layoutSplitRings} put the three parts. */
export interface SplitRingLayout {
  /** Descriptor table bus address (16-aligned). */
  desc: number;
  /** Available ring ("driver area") bus address (2-aligned). */
  driver: number;
  /** Used ring ("device area") bus address (4-aligned). */
  device: number;
  /** Bytes from `base` to the end of the used ring. */
  bytes: number;
}

/**
 * Lay out a split ring of `size` entries starting at or after `base`, each part correctly aligned
 * (basic.split-vq.vq.driver.1): descriptor table, then available ring, then used ring.
 */
export function layoutSplitRings(base: number, size: number): SplitRingLayout {
  const desc = Math.ceil(base / SPLIT_DESC_ALIGN) * SPLIT_DESC_ALIGN;
  const driver = desc + splitDescBytes(size);
  const device = Math.ceil((driver + splitAvailBytes(size)) / SPLIT_USED_ALIGN) * SPLIT_USED_ALIGN;
  return { desc, driver, device, bytes: device + splitUsedBytes(size) - base };
}

/** Resolved ring views (see the module comment for indexing). */
export interface SplitRingViews {
  desc: Uint32Array;
  avail: Uint16Array;
  used32: Uint32Array;
  used16: Uint16Array;
}

/** A configuration problem found by {@link resolveSplitRings}. */
export interface SplitSetupError {
  code: VirtioErrorCode;
  clause: string | undefined;
  message: string;
}

/** What {@link resolveSplitRings} needs. */
export interface SplitRingConfig {
  size: number;
  maxSize: number;
  desc: number;
  driver: number;
  device: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Validate a split-ring configuration and build views over the three areas.
 * Checks: size ≠ 0, power of 2 (pci.common-cfg.driver.3), ≤ maxSize (mmio.regs.driver.9), ≤ 32768;
 * alignment 16/2/4 (basic.split-vq.vq.driver.1); each area inside ONE region of the space, used ring
 * writable. The descriptor table and rings must also sit at buffer offsets the typed-array views
 * accept (4/2/4) — always true unless a region's buffer offset and bus base disagree modulo 4.
 * @returns the views, or a {@link SplitSetupError}.
 */
export function resolveSplitRings(space: AddressSpace, cfg: SplitRingConfig): SplitRingViews | SplitSetupError {
  const size = cfg.size;
  if (!HOST_IS_LITTLE_ENDIAN) {
    return { code: 'INTERNAL', clause: undefined, message: 'split rings need a little-endian host' };
  }
  if (!Number.isInteger(size) || size <= 0 || (size & (size - 1)) !== 0) {
    // pci.common-cfg.driver.3: split queue size must be a power of 2 (0 means "unavailable").
    return { code: 'QUEUE_SIZE_INVALID', clause: 'pci.common-cfg.driver.3', message: `queue size ${size} is not a non-zero power of 2` };
  }
  if (size > cfg.maxSize || size > MAX_QUEUE_SIZE) {
    // mmio.regs.driver.9 (and its PCI equivalent): size must not exceed the device's maximum.
    return { code: 'QUEUE_SIZE_INVALID', clause: 'mmio.regs.driver.9', message: `queue size ${size} exceeds the maximum ${Math.min(cfg.maxSize, MAX_QUEUE_SIZE)}` };
  }
  const parts: Array<[string, number, number, number, boolean]> = [
    ['descriptor table', cfg.desc, SPLIT_DESC_ALIGN, splitDescBytes(size), false],
    ['available ring', cfg.driver, SPLIT_AVAIL_ALIGN, splitAvailBytes(size), false],
    ['used ring', cfg.device, SPLIT_USED_ALIGN, splitUsedBytes(size), true],
  ];
  const offs: number[] = [];
  const bufs: ArrayBufferLike[] = [];
  for (const [name, addr, align, bytes, write] of parts) {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % align !== 0) {
      // basic.split-vq.vq.driver.1: each part aligned to 16 / 2 / 4.
      return { code: 'RING_MISALIGNED', clause: 'basic.split-vq.vq.driver.1', message: `${name} at ${hex(addr)} is not ${align}-byte aligned` };
    }
    const r = space.resolve(addr, bytes, write);
    if (r < 0) {
      return {
        code: 'RING_OUT_OF_SPACE',
        clause: undefined,
        message: `${name} [${hex(addr)}, +${bytes}) for queue size ${size} is not inside one ${write ? 'writable ' : ''}region of ${space.name} (${space.describe()})`,
      };
    }
    const off = space.off;
    if (off % (align === 2 ? 2 : 4) !== 0) {
      return {
        code: 'RING_MISALIGNED',
        clause: undefined,
        message: `${name} at ${hex(addr)} lands at buffer offset ${off} of region ${space.regions[r]!.name}, which typed-array views cannot index; give the region a buffer offset congruent to its base modulo 16`,
      };
    }
    offs.push(off);
    bufs.push(space.regions[r]!.buffer);
  }
  return {
    desc: new Uint32Array(bufs[0]!, offs[0]!, 4 * size),
    avail: new Uint16Array(bufs[1]!, offs[1]!, 3 + size),
    used32: new Uint32Array(bufs[2]!, offs[2]!, 1 + 2 * size),
    used16: new Uint16Array(bufs[2]!, offs[2]!, 3 + 4 * size),
  };
}

/** Type guard for the error arm of {@link resolveSplitRings}. */
export function isSplitSetupError(v: SplitRingViews | SplitSetupError): v is SplitSetupError {
  return (v as SplitSetupError).code !== undefined;
}
