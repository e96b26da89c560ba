/**
 * Gather/scatter copies between a popped {@link DescChain} and a plain Uint8Array.
 *
 * Used by device models (split and packed rings alike). The chain's segments were resolved and
 * checked against the queue's address space when the chain was popped (readable segments for
 * read access, writable segments for write access), so these copies index the regions' prebuilt
 * byte views directly and never reach outside the space. Nothing here allocates for copies of up
 * to {@link SMALL_COPY} bytes per segment; larger segment copies use one `subarray()` + `set()`.
 */
import type { AddressSpace } from '../memory/space.js';
import type { DescChain } from './types.js';

/** Per-segment copies up to this many bytes use a byte loop (no view allocation). */
export const SMALL_COPY = 64;

/**
 * Copy up to `len` bytes from the chain's device-readable part, starting `chainOff` bytes into it,
 * into `dst[dstOff..]`. basic.split-vq.vq-desc-table.device.1: only readable segments are read.
 * @returns bytes copied (less than `len` when the readable part is shorter).
 */
export function readFromChain(space: AddressSpace, chain: DescChain, dst: Uint8Array, dstOff = 0, len = dst.length - dstOff, chainOff = 0): number {
  const regions = space.regions;
  const cRegion = chain.region;
  const cOff = chain.offset;
  const cLen = chain.len;
  const n = chain.readable;
  let skip = chainOff;
  let left = Math.min(len, dst.length - dstOff);
  let d = dstOff;
  for (let i = 0; i < n && left > 0; i++) {
    const sl = cLen[i]!;
    if (skip >= sl) {
      skip -= sl;
      continue;
    }
    const take = Math.min(sl - skip, left);
    const src = regions[cRegion[i]!]!.u8;
    const s = cOff[i]! + skip;
    if (take <= SMALL_COPY) {
      for (let k = 0; k < take; k++) dst[d + k] = src[s + k]!;
    } else {
      dst.set(src.subarray(s, s + take), d);
    }
    d += take;
    left -= take;
    skip = 0;
  }
  return d - dstOff;
}

/**
 * Copy up to `len` bytes from `src[srcOff..]` into the chain's device-writable part, starting
 * `chainOff` bytes into it. basic.split-vq.vq-desc-table.device.1: only writable segments are written.
 * @returns bytes copied (less than `len` when the writable part is shorter).
 */
export function writeToChain(space: AddressSpace, chain: DescChain, src: Uint8Array, srcOff = 0, len = src.length - srcOff, chainOff = 0): number {
  const regions = space.regions;
  const cRegion = chain.region;
  const cOff = chain.offset;
  const cLen = chain.len;
  const n = chain.count;
  let skip = chainOff;
  let left = Math.min(len, src.length - srcOff);
  let s = srcOff;
  for (let i = chain.readable; i < n && left > 0; i++) {
    const sl = cLen[i]!;
    if (skip >= sl) {
      skip -= sl;
      continue;
    }
    const take = Math.min(sl - skip, left);
    const dst = regions[cRegion[i]!]!.u8;
    const d = cOff[i]! + skip;
    if (take <= SMALL_COPY) {
      for (let k = 0; k < take; k++) dst[d + k] = src[s + k]!;
    } else {
      dst.set(src.subarray(s, s + take), d);
    }
    s += take;
    left -= take;
    skip = 0;
  }
  return s - srcOff;
}

/**
 * Write one byte at `chainOff` bytes into the writable part (e.g. a virtio-blk status byte).
 * @returns false when the writable part is shorter than `chainOff + 1`.
 */
export function writeByteToChain(space: AddressSpace, chain: DescChain, chainOff: number, value: number): boolean {
  const cLen = chain.len;
  const n = chain.count;
  let skip = chainOff;
  for (let i = chain.readable; i < n; i++) {
    const sl = cLen[i]!;
    if (skip < sl) {
      space.regions[chain.region[i]!]!.u8[chain.offset[i]! + skip] = value;
      return true;
    }
    skip -= sl;
  }
  return false;
}
