/**
 * Packed virtqueue layout (packed-ring.tex, "Structure Size and Alignment"): sizes, alignments,
 * the event-suppression constants, and resolving the three areas inside an {@link AddressSpace}
 * into prebuilt typed-array views.
 *
 * | part                      | align | bytes |
 * |---------------------------|------:|-------|
 * | descriptor ring           |    16 | 16·QS |
 * | driver event suppression  |     4 | 4     | (driver area; written by the driver, read by the device)
 * | device event suppression  |     4 | 4     | (device area; written by the device, read by the driver)
 *
 * `struct pvirtq_desc` (16 bytes): addr le64 @0, len le32 @8, id le16 @12, flags le16 @14.
 * Views index from the start of each area (little-endian host, checked at load):
 * - `desc32` Uint32Array: entry i at `4i` addr lo, `4i+1` addr hi, `4i+2` len.
 * - `desc16` Uint16Array: entry i at `8i+6` id, `8i+7` flags.
 * - event suppression Uint16Array: `0` desc {off:15, wrap:1}, `1` flags {desc_event_flags:2}.
 *
 * Packed queue sizes need not be powers of two (up to 2^15).
 */
import type { VirtioErrorCode } from '../../errors.js';
import type { AddressSpace } from '../../memory/space.js';
import { MAX_QUEUE_SIZE } from '../types.js';

export const PACKED_DESC_ALIGN = 16;
export const PACKED_EVENT_ALIGN = 4;
/** Bytes per descriptor. */
export const PACKED_DESC_BYTES = 16;
/** Bytes per event suppression structure. */
export const PACKED_EVENT_BYTES = 4;

/** desc_event_flags: notifications enabled. */
export const RING_EVENT_FLAGS_ENABLE = 0;
/** desc_event_flags: notifications disabled. */
export const RING_EVENT_FLAGS_DISABLE = 1;
/** desc_event_flags: notify only for the descriptor at desc_event_off/wrap (needs VIRTIO_F_RING_EVENT_IDX). */
export const RING_EVENT_FLAGS_DESC = 2;

/** The views read little-endian fields through host-order typed arrays. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Where {@link layoutPackedRings} put the three parts. */
export interface PackedRingLayout {
  /** Descriptor ring bus address (16-aligned). */
  desc: number;
  /** Driver event suppression ("driver area") bus address (4-aligned). */
  driver: number;
  /** Device event suppression ("device area") bus address (4-aligned). */
  device: number;
  /** Bytes from `base` to the end of the device area. */
  bytes: number;
}

/**
 * Lay out a packed ring of `size` descriptors starting at or after `base`, each part correctly
 * aligned (basic.packed-vq.vq.driver.1): descriptor ring, driver area, device area.
 */
export function layoutPackedRings(base: number, size: number): PackedRingLayout {
  const desc = Math.ceil(base / PACKED_DESC_ALIGN) * PACKED_DESC_ALIGN;
  const driver = desc + PACKED_DESC_BYTES * size; // 16-aligned, hence 4-aligned
  const device = driver + PACKED_EVENT_BYTES;
  return { desc, driver, device, bytes: device + PACKED_EVENT_BYTES - base };
}

/** Resolved views over a packed ring (see the module comment for indexing). */
export interface PackedRingViews {
  desc32: Uint32Array;
  desc16: Uint16Array;
  /** Driver event suppression (driver area). */
  driverEvent: Uint16Array;
  /** Device event suppression (device area). */
  deviceEvent: Uint16Array;
  /** The descriptor ring's backing can be seen by another agent (SharedArrayBuffer or fd-backed region). */
  shareable: boolean;
}

/** A configuration problem found by {@link resolvePackedRings}. */
export interface PackedSetupError {
  code: VirtioErrorCode;
  clause: string | undefined;
  message: string;
}

/** Geometry a packed ring needs (a subset of QueueConfig). */
export interface PackedGeometry {
  index: number;
  size: number;
  maxSize: number;
  desc: number;
  driver: number;
  device: number;
}

/**
 * Check a packed ring's size and alignment and resolve its three areas in `space`, once.
 * `writableArea` names the area this side writes besides the descriptor ring: the device writes the
 * device area, the driver writes the driver area (the descriptor ring is written by both).
 * @returns the views, or a {@link PackedSetupError} describing what the driver got wrong.
 */
export function resolvePackedRings(space: AddressSpace, g: PackedGeometry, writableArea: 'device' | 'driver'): PackedRingViews | PackedSetupError {
  const q = `queue ${g.index}`;
  if (!HOST_IS_LITTLE_ENDIAN) return { code: 'INTERNAL', clause: undefined, message: 'packed ring views need a little-endian host' };
  // pci.common-cfg.driver.2 (size 0), mmio.regs.driver.9 (size <= maximum); packed sizes need not be powers of 2.
  if (!Number.isInteger(g.size) || g.size <= 0 || g.size > g.maxSize || g.size > MAX_QUEUE_SIZE) {
    return {
      code: 'QUEUE_SIZE_INVALID',
      clause: g.size === 0 ? 'pci.common-cfg.driver.2' : 'mmio.regs.driver.9',
      message: `${q}: packed queue size ${g.size} is invalid (must be 1..${Math.min(g.maxSize, MAX_QUEUE_SIZE)}); write a size no larger than the device's maximum`,
    };
  }
  // basic.packed-vq.vq.driver.1: descriptor ring 16-aligned, event suppression areas 4-aligned.
  const parts: Array<[string, number, number, number, boolean]> = [
    ['descriptor ring', g.desc, PACKED_DESC_ALIGN, PACKED_DESC_BYTES * g.size, true],
    ['driver event suppression area', g.driver, PACKED_EVENT_ALIGN, PACKED_EVENT_BYTES, writableArea === 'driver'],
    ['device event suppression area', g.device, PACKED_EVENT_ALIGN, PACKED_EVENT_BYTES, writableArea === 'device'],
  ];
  for (const [name, addr, align, , ] of parts) {
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % align !== 0) {
      return { code: 'RING_MISALIGNED', clause: 'basic.packed-vq.vq.driver.1', message: `${q}: ${name} at 0x${addr.toString(16)} is not ${align}-byte aligned` };
    }
  }
  const views: Array<{ buffer: ArrayBufferLike; off: number; fd: number | undefined }> = [];
  for (const [name, addr, align, bytes, write] of parts) {
    const r = space.resolve(addr, bytes, write);
    if (r < 0) {
      return {
        code: 'RING_OUT_OF_SPACE',
        clause: undefined,
        message: `${q}: ${name} [0x${addr.toString(16)}, +${bytes}) is not inside one ${write ? 'writable ' : ''}region of ${space.name} (${space.describe()})`,
      };
    }
    const off = space.off;
    // Typed-array views need the area's offset inside its backing buffer to be aligned too; that
    // depends on how the host placed the region in its buffer, not on the guest.
    if (off % (align === PACKED_DESC_ALIGN ? 4 : 2) !== 0) {
      return { code: 'RING_MISALIGNED', clause: undefined, message: `${q}: ${name} lands at byte offset ${off} of its region's backing buffer; the host must back regions at 4-byte-aligned offsets` };
    }
    views.push({ buffer: space.regions[r]!.buffer, off, fd: space.regions[r]!.fd });
  }
  const d = views[0]!;
  const dr = views[1]!;
  const dv = views[2]!;
  return {
    desc32: new Uint32Array(d.buffer, d.off, 4 * g.size),
    desc16: new Uint16Array(d.buffer, d.off, 8 * g.size),
    driverEvent: new Uint16Array(dr.buffer, dr.off, 2),
    deviceEvent: new Uint16Array(dv.buffer, dv.off, 2),
    shareable: d.fd !== undefined || (typeof SharedArrayBuffer !== 'undefined' && d.buffer instanceof SharedArrayBuffer),
  };
}

/** Type guard for {@link resolvePackedRings}' error result. */
export function isPackedSetupError(v: PackedRingViews | PackedSetupError): v is PackedSetupError {
  return (v as PackedSetupError).code !== undefined;
}
