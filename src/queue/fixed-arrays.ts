/**
 * Typed arrays for the queues' own state, each over an ArrayBuffer of its own.
 *
 * V8 keeps the storage of a small `new Float64Array(n)` (≤ 64 bytes) inside the JavaScript heap,
 * where the garbage collector may move it, so optimised code re-loads its address on every access.
 * The storage of an ArrayBuffer never moves: the per-queue fast loops (specialize.ts) then see
 * these arrays at constant addresses with constant lengths, whatever the queue or segment count.
 */

/** Float64Array of `n` zeros with fixed storage. */
export function fixedF64(n: number): Float64Array {
  return new Float64Array(new ArrayBuffer(8 * n));
}
/** Int32Array of `n` zeros with fixed storage. */
export function fixedI32(n: number): Int32Array {
  return new Int32Array(new ArrayBuffer(4 * n));
}
/** Uint32Array of `n` zeros with fixed storage. */
export function fixedU32(n: number): Uint32Array {
  return new Uint32Array(new ArrayBuffer(4 * n));
}
/** Uint16Array of `n` zeros with fixed storage. */
export function fixedU16(n: number): Uint16Array {
  return new Uint16Array(new ArrayBuffer(2 * n));
}
/** Uint8Array of `n` zeros with fixed storage. */
export function fixedU8(n: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(n));
}
