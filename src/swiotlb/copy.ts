/**
 * Copy hooks for the bounce pool. The default is plain JavaScript over the regions' prebuilt
 * whole-buffer views; the native addon's `copy` / `copyBatch` (src/native/types.ts) plug in
 * through {@link nativeCopiers} without this module importing native code.
 */

/**
 * Copy `len` bytes from `src[srcOff..]` to `dst[dstOff..]`. The views span whole backing buffers
 * (byteOffset 0), so offsets are buffer offsets. Source and destination never overlap.
 */
export type Copier = (dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number) => void;

/**
 * Batched copy with the native addon's contract: `ops` holds `count` records of five numbers
 * `[dstIndex, dstOff, srcIndex, srcOff, len]` indexing `bufs`. Returns the bytes copied.
 */
export type BatchCopier = (bufs: ArrayBufferLike[], ops: Float64Array, count: number) => number;

/** Numbers per record in a {@link BatchCopier} `ops` array. */
export const OP_STRIDE = 5;

/** Below this length a byte loop beats creating a subarray view. */
const SMALL_COPY = 16;

/** Default copier: byte loop for tiny copies, else `dst.set(src.subarray(...))`. */
export const jsCopy: Copier = (dst, dstOff, src, srcOff, len) => {
  if (len <= SMALL_COPY) {
    for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i]!;
    return;
  }
  dst.set(src.subarray(srcOff, srcOff + len), dstOff);
};

/** Run a batch through a single-copy {@link Copier}, with `views[i]` a whole-buffer view of `bufs[i]`. */
export function runBatch(copy: Copier, views: Uint8Array[], ops: Float64Array, count: number): number {
  let total = 0;
  for (let k = 0, o = 0; k < count; k++, o += OP_STRIDE) {
    const len = ops[o + 4]!;
    copy(views[ops[o]!]!, ops[o + 1]!, views[ops[o + 2]!]!, ops[o + 3]!, len);
    total += len;
  }
  return total;
}

/** The part of the native addon the copiers use (a subset of `NativeApi`). */
export interface NativeCopyApi {
  copy(dst: ArrayBufferLike, dstOff: number, src: ArrayBufferLike, srcOff: number, len: number): void;
  copyBatch(bufs: ArrayBufferLike[], ops: Float64Array, count: number): number;
}

/**
 * Copiers backed by the native addon. Single copies stay in JavaScript up to 4 KiB, where
 * `u8.set` beats one native call per copy (`reference/perf-limits.md` §3); batches go native.
 */
export function nativeCopiers(api: NativeCopyApi): { copy: Copier; copyBatch: BatchCopier } {
  return {
    copy: (dst, dstOff, src, srcOff, len) => {
      if (len <= 4096) jsCopy(dst, dstOff, src, srcOff, len);
      else api.copy(dst.buffer, dst.byteOffset + dstOff, src.buffer, src.byteOffset + srcOff, len);
    },
    copyBatch: (bufs, ops, count) => api.copyBatch(bufs, ops, count),
  };
}
