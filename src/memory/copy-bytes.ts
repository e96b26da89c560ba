/**
 * Copy between two byte views without allocating: short runs by a byte loop, longer ones through
 * the native addon's `copy` (ArrayBuffers and offsets, no view is created). Without the addon,
 * runs above {@link SMALL_COPY} bytes fall back to one `subarray()` each. Used by the device
 * models' hot paths (blk RAM disk, rng pool). (Not Buffer#copy: on Node 20 it builds a view per call.)
 */
import { native } from '../native/index.js';

/** Runs up to this many bytes use a byte loop. */
export const SMALL_COPY = 64;

/** Copy `len` bytes from src[sOff..] to dst[dOff..] (different buffers). */
export function copyBytes(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, len: number): void {
  if (len <= SMALL_COPY) {
    for (let k = 0; k < len; k++) dst[dOff + k] = src[sOff + k]!;
  } else if (native.available) {
    native.copy(dst.buffer, dst.byteOffset + dOff, src.buffer, src.byteOffset + sOff, len);
  } else {
    dst.set(src.subarray(sOff, sOff + len), dOff);
  }
}
