/**
 * Pure-JavaScript stand-in for the native addon, used when `build/Release/virtiokit.node` cannot be
 * loaded (or `VIRTIOKIT_NO_NATIVE=1`). Copies work on ArrayBuffers and SharedArrayBuffers in one
 * process, with the same argument checks as the addon; everything that needs the kernel (memfd,
 * mmap, eventfd, sockets, poll) throws NATIVE_UNAVAILABLE telling the user how to build the addon.
 */
import { types as utilTypes } from 'node:util';
import { VirtioError } from '../errors.js';
import type { NativeApi, PollHandle, RecvResult } from './types.js';

/** What the user must do to get the real addon. */
export const BUILD_HINT =
  'build it with `npm rebuild virtiokit` (or `npm install` in a checkout); that needs a C compiler, make and python3';

/** Byte views per buffer, created once (a copy never allocates a view after the first). */
const views = new WeakMap<object, Uint8Array>();

const EMPTY = new Uint8Array(0);

function viewOf(buf: unknown, fn: string, name: string): Uint8Array {
  const v = views.get(buf as object);
  if (v !== undefined && v.byteLength !== 0) return v;
  let u8: Uint8Array;
  if (buf instanceof ArrayBuffer || utilTypes.isSharedArrayBuffer(buf)) {
    if (buf.byteLength === 0) return EMPTY; // empty or detached
    u8 = new Uint8Array(buf);
  } else if (ArrayBuffer.isView(buf)) {
    if (buf.byteLength === 0) return EMPTY;
    u8 = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } else {
    throw new VirtioError('INVALID_ARGUMENT', `${fn}: ${name} must be an ArrayBuffer or SharedArrayBuffer`);
  }
  views.set(buf as object, u8);
  return u8;
}

function isUint(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function boundsError(fn: string, what: string, off: number, len: number, size: number): VirtioError {
  return new VirtioError('INVALID_ARGUMENT', `${fn}: ${what} range [${off}, +${len}) exceeds its ${size} bytes`);
}

/** memmove between two byte views (same semantics as the addon). */
function move(d: Uint8Array, dOff: number, s: Uint8Array, sOff: number, len: number): void {
  if (d === s) {
    d.copyWithin(dOff, sOff, sOff + len);
  } else if (len <= 32 && d.buffer !== s.buffer) {
    for (let i = 0; i < len; i++) d[dOff + i] = s[sOff + i]!;
  } else {
    d.set(s.subarray(sOff, sOff + len), dOff); // handles overlap within one buffer
  }
}

function copy(dst: ArrayBufferLike, dstOff: number, src: ArrayBufferLike, srcOff: number, len: number): void {
  const d = viewOf(dst, 'copy', 'dst');
  const s = viewOf(src, 'copy', 'src');
  if (!isUint(dstOff) || !isUint(srcOff) || !isUint(len)) {
    throw new VirtioError('INVALID_ARGUMENT', 'copy: dstOff, srcOff and len must be non-negative integers');
  }
  if (dstOff > d.length || len > d.length - dstOff) throw boundsError('copy', 'dst', dstOff, len, d.length);
  if (srcOff > s.length || len > s.length - srcOff) throw boundsError('copy', 'src', srcOff, len, s.length);
  if (len !== 0) move(d, dstOff, s, srcOff, len);
}

function copyBatch(bufs: ArrayBufferLike[], ops: Float64Array, count: number): number {
  if (!Array.isArray(bufs)) throw new VirtioError('INVALID_ARGUMENT', 'copyBatch: bufs must be an array of ArrayBuffers');
  if (!(ops instanceof Float64Array)) {
    throw new VirtioError('INVALID_ARGUMENT', 'copyBatch: ops must be a Float64Array of [dstIndex, dstOff, srcIndex, srcOff, len] records');
  }
  if (!isUint(count)) throw new VirtioError('INVALID_ARGUMENT', 'copyBatch: count must be a non-negative integer');
  if (count * 5 > ops.length) {
    throw new VirtioError('INVALID_ARGUMENT', `copyBatch: count ${count} needs ${count * 5} numbers but ops holds ${ops.length}`);
  }
  const n = bufs.length;
  // Pass 1: validate everything.
  let total = 0;
  for (let i = 0; i < count; i++) {
    const o = i * 5;
    const di = ops[o]!;
    const doff = ops[o + 1]!;
    const si = ops[o + 2]!;
    const soff = ops[o + 3]!;
    const len = ops[o + 4]!;
    if (!isUint(di) || !isUint(doff) || !isUint(si) || !isUint(soff) || !isUint(len)) {
      throw new VirtioError('INVALID_ARGUMENT', `copyBatch: record ${i} has a field that is not a non-negative integer ([${di}, ${doff}, ${si}, ${soff}, ${len}])`);
    }
    if (di >= n || si >= n) throw new VirtioError('INVALID_ARGUMENT', `copyBatch: record ${i} names buffer ${di}/${si} but bufs has ${n} entries`);
    const d = viewOf(bufs[di], 'copyBatch', `bufs[${di}]`);
    const s = viewOf(bufs[si], 'copyBatch', `bufs[${si}]`);
    if (doff > d.length || len > d.length - doff) throw boundsError('copyBatch', `record ${i} dst (bufs[${di}])`, doff, len, d.length);
    if (soff > s.length || len > s.length - soff) throw boundsError('copyBatch', `record ${i} src (bufs[${si}])`, soff, len, s.length);
    total += len;
  }
  // Pass 2: copy (the records were checked; views are cached).
  for (let i = 0; i < count; i++) {
    const o = i * 5;
    const len = ops[o + 4]!;
    if (len !== 0) move(viewOf(bufs[ops[o]!], 'copyBatch', 'dst'), ops[o + 1]!, viewOf(bufs[ops[o + 2]!], 'copyBatch', 'src'), ops[o + 3]!, len);
  }
  return total;
}

/** A NativeApi whose kernel-backed functions throw NATIVE_UNAVAILABLE. */
export function createFallback(reason: string): NativeApi {
  const unavailable = (fn: string): never => {
    throw new VirtioError('NATIVE_UNAVAILABLE', `${fn} needs virtiokit's native addon, which is not available (${reason}); ${BUILD_HINT}`);
  };
  return Object.freeze({
    available: false,
    unavailableReason: reason,
    addonPath: undefined,
    pageSize: 4096,
    memfdCreate: (): number => unavailable('memfdCreate'),
    mmap: (): ArrayBuffer => unavailable('mmap'),
    munmap: (): void => unavailable('munmap'),
    isMapped: (): boolean => false,
    copy,
    copyBatch,
    eventfdCreate: (): number => unavailable('eventfdCreate'),
    eventfdRead: (): number => unavailable('eventfdRead'),
    eventfdWrite: (): void => unavailable('eventfdWrite'),
    close: (): void => unavailable('close'),
    dup: (): number => unavailable('dup'),
    fdSize: (): number => unavailable('fdSize'),
    socketpair: (): [number, number] => unavailable('socketpair'),
    listenUnix: (): number => unavailable('listenUnix'),
    accept: (): number => unavailable('accept'),
    connectUnix: (): number => unavailable('connectUnix'),
    sendmsg: (): number => unavailable('sendmsg'),
    recvmsg: (): RecvResult | null => unavailable('recvmsg'),
    poll: (): PollHandle => unavailable('poll'),
  });
}
