/**
 * One typed error family for all of virtiokit.
 *
 * Every error carries a stable {@link VirtioErrorCode}; guest-caused errors also name the
 * normative clause id (from `spec/`) whose rule the guest broke. Messages say what to fix.
 *
 * Guest-caused errors are normally *not thrown*: queues and devices report them through the
 * {@link GuestErrorSink} choke point (see `src/device/choke.ts`). `VirtioError` is thrown only
 * across API boundaries that a host program calls (bad options, bad native arguments, ...).
 */

/** Error codes. Guest-caused ones start with the layer they were found in. */
export type VirtioErrorCode =
  // --- memory / address spaces
  | 'ADDRESS_OVERFLOW' // address + length wraps or exceeds 2^64 / 2^53
  | 'ADDRESS_OUT_OF_SPACE' // not inside the device's address space
  | 'ADDRESS_READ_ONLY' // write to a read-only range
  | 'REGION_OVERLAP' // memory regions overlap
  | 'REGION_INVALID' // bad region base/size/backing
  // --- queue configuration
  | 'QUEUE_SIZE_INVALID' // 0, not a power of two (split), above the maximum
  | 'QUEUE_SELECT_OUT_OF_RANGE'
  | 'RING_MISALIGNED'
  | 'RING_OUT_OF_SPACE'
  | 'QUEUE_NOT_READY'
  // --- descriptor chains (device side)
  | 'CHAIN_LOOP' // chain longer than the queue size / loop
  | 'DESC_INDEX_OUT_OF_RANGE' // head or next >= queue size
  | 'NESTED_INDIRECT'
  | 'INDIRECT_BAD_LENGTH' // 0, not a multiple of 16, too many entries
  | 'INDIRECT_WITH_NEXT' // INDIRECT and NEXT both set
  | 'INDIRECT_NOT_NEGOTIATED'
  | 'READABLE_AFTER_WRITABLE'
  | 'CHAIN_TOO_LONG_BYTES' // total length > 2^32
  | 'ZERO_LENGTH_BUFFER'
  | 'AVAIL_IDX_AHEAD' // avail idx moved more than queue size ahead
  | 'HEAD_IN_FLIGHT' // head offered again while in flight / in-flight overrun
  | 'PACKED_BAD_ID' // packed buffer id out of range or already in flight
  | 'USED_BAD_ID' // device-side push of a head that is not in flight
  | 'REENTRANT_CALL' // a queue method called from inside that queue's own popEach/addEach/collectEach callback
  // --- driver-side validation of what a device returns
  | 'DEVICE_USED_BAD_ID'
  | 'DEVICE_USED_BAD_LEN'
  | 'DEVICE_USED_IDX_AHEAD'
  | 'QUEUE_FULL'
  // --- features and status
  | 'FEATURE_NOT_OFFERED'
  | 'FEATURE_DEPENDENCY'
  | 'FEATURE_REQUIRED'
  | 'STATUS_TRANSITION'
  | 'FEATURES_LOCKED'
  // --- transports
  | 'BAD_ACCESS'
  | 'BAD_NOTIFY'
  // --- SWIOTLB bounce pool (driver side)
  | 'BOUNCE_POOL_FULL'
  | 'BOUNCE_MAP_TOO_LARGE'
  | 'BOUNCE_BAD_HANDLE'
  // --- device models
  | 'DEVICE_REQUEST_INVALID'
  | 'DEVICE_IO'
  // --- host side: options, native addon, protocols
  | 'INVALID_ARGUMENT'
  | 'NATIVE_UNAVAILABLE'
  | 'NATIVE_ERROR'
  | 'CLOSED'
  | 'PROTOCOL'
  | 'TIMEOUT'
  | 'INTERNAL';

/** The one error class of virtiokit. */
export class VirtioError extends Error {
  /** Stable machine-readable code. */
  readonly code: VirtioErrorCode;
  /** Normative clause id (e.g. `basic.split-vq.indirect-desc.device.1`) when one applies. */
  readonly clause: string | undefined;
  /** Errno from a native call, when the error came from one. */
  readonly errno: number | undefined;

  constructor(code: VirtioErrorCode, message: string, opts: { clause?: string; errno?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'VirtioError';
    this.code = code;
    this.clause = opts.clause;
    this.errno = opts.errno;
  }
}

/** True when `e` is a {@link VirtioError}, optionally with the given code. */
export function isVirtioError(e: unknown, code?: VirtioErrorCode): e is VirtioError {
  return e instanceof VirtioError && (code === undefined || e.code === code);
}

/** Throw an INVALID_ARGUMENT error unless `cond` holds. For host-facing API checks only. */
export function requireArg(cond: boolean, message: string): asserts cond {
  if (!cond) throw new VirtioError('INVALID_ARGUMENT', message);
}
