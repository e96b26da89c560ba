/**
 * vhost-user protocol constants (QEMU docs/interop/vhost-user.rst): request codes, header flags,
 * feature bits, protocol feature bits and size limits. Numbers only; the wire layouts are in
 * `codec.ts`.
 */

/** Header: request u32, flags u32, size u32. */
export const VHOST_USER_HDR_SIZE = 12;
/** Version in the low two flag bits. */
export const VHOST_USER_VERSION = 0x1;
export const VHOST_USER_VERSION_MASK = 0x3;
/** Set on every reply from the back-end. */
export const VHOST_USER_REPLY_MASK = 0x4;
/** The front-end wants a reply (REPLY_ACK). */
export const VHOST_USER_NEED_REPLY_MASK = 0x8;
/** Flag bits a valid header may carry. */
export const VHOST_USER_KNOWN_FLAGS = VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_MASK | VHOST_USER_NEED_REPLY_MASK;

/** Largest payload accepted (the biggest fixed layout is the 8-region memory table; config ≤ 256 + 12). */
export const VHOST_USER_MAX_PAYLOAD = 4096;
/** Regions in a SET_MEM_TABLE message (VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_USER_MAX_REGIONS = 8;
/** Most fds one message may carry (one per region). */
export const VHOST_USER_MAX_FDS = 8;
/** Largest device config space exchanged by GET/SET_CONFIG. */
export const VHOST_USER_MAX_CONFIG_SIZE = 256;

/** SET_VRING_KICK/CALL/ERR u64 payload: ring index in bits 0-7, "no fd" flag in bit 8. */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
export const VHOST_USER_VRING_NOFD_MASK = 0x100;

/** vring address flag: log used-ring writes. */
export const VHOST_VRING_F_LOG = 1;

/** Front-end → back-end requests. */
export const enum Req {
  NONE = 0,
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
}

/** Back-end → front-end requests (on the BACKEND_REQ channel). */
export const enum BackendReq {
  IOTLB_MSG = 1,
  CONFIG_CHANGE_MSG = 2,
  VRING_HOST_NOTIFIER_MSG = 3,
  VRING_CALL = 4,
  VRING_ERR = 5,
}

const REQ_NAMES: Record<number, string> = {
  1: 'GET_FEATURES',
  2: 'SET_FEATURES',
  3: 'SET_OWNER',
  4: 'RESET_OWNER',
  5: 'SET_MEM_TABLE',
  6: 'SET_LOG_BASE',
  7: 'SET_LOG_FD',
  8: 'SET_VRING_NUM',
  9: 'SET_VRING_ADDR',
  10: 'SET_VRING_BASE',
  11: 'GET_VRING_BASE',
  12: 'SET_VRING_KICK',
  13: 'SET_VRING_CALL',
  14: 'SET_VRING_ERR',
  15: 'GET_PROTOCOL_FEATURES',
  16: 'SET_PROTOCOL_FEATURES',
  17: 'GET_QUEUE_NUM',
  18: 'SET_VRING_ENABLE',
  19: 'SEND_RARP',
  20: 'NET_SET_MTU',
  21: 'SET_BACKEND_REQ_FD',
  22: 'IOTLB_MSG',
  23: 'SET_VRING_ENDIAN',
  24: 'GET_CONFIG',
  25: 'SET_CONFIG',
  26: 'CREATE_CRYPTO_SESSION',
  27: 'CLOSE_CRYPTO_SESSION',
  28: 'POSTCOPY_ADVISE',
  29: 'POSTCOPY_LISTEN',
  30: 'POSTCOPY_END',
  31: 'GET_INFLIGHT_FD',
  32: 'SET_INFLIGHT_FD',
  33: 'GPU_SET_SOCKET',
  34: 'RESET_DEVICE',
  35: 'VRING_KICK',
  36: 'GET_MAX_MEM_SLOTS',
  37: 'ADD_MEM_REG',
  38: 'REM_MEM_REG',
  39: 'SET_STATUS',
  40: 'GET_STATUS',
};

/** "SET_MEM_TABLE" for 5; "request 99" for unknown codes. */
export function reqName(req: number): string {
  return REQ_NAMES[req] ?? `request ${req}`;
}

/** Requests that always carry a reply (REPLY_ACK adds none to them). */
export function reqHasReply(req: number): boolean {
  return (
    req === Req.GET_FEATURES ||
    req === Req.GET_PROTOCOL_FEATURES ||
    req === Req.GET_VRING_BASE ||
    req === Req.GET_QUEUE_NUM ||
    req === Req.GET_CONFIG ||
    req === Req.GET_MAX_MEM_SLOTS ||
    req === Req.GET_STATUS ||
    req === Req.GET_INFLIGHT_FD
  );
}

/** Virtio feature bit 30, reused by vhost-user: the back-end speaks protocol features. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
/** vhost feature: dirty logging (migration). Never offered here. */
export const VHOST_F_LOG_ALL = 26;

/** Protocol feature bits. */
export const VHOST_USER_PROTOCOL_F_MQ = 0;
export const VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1;
export const VHOST_USER_PROTOCOL_F_RARP = 2;
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = 3;
export const VHOST_USER_PROTOCOL_F_MTU = 4;
/** Called SLAVE_REQ in older texts (QEMU 7.2). */
export const VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5;
export const VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = 6;
export const VHOST_USER_PROTOCOL_F_CRYPTO_SESSION = 7;
export const VHOST_USER_PROTOCOL_F_PAGEFAULT = 8;
export const VHOST_USER_PROTOCOL_F_CONFIG = 9;
export const VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD = 10;
export const VHOST_USER_PROTOCOL_F_HOST_NOTIFIER = 11;
export const VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12;
export const VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13;
export const VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = 14;
export const VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15;
export const VHOST_USER_PROTOCOL_F_STATUS = 16;

/** GET/SET_CONFIG flags. */
export const VHOST_SET_CONFIG_TYPE_FRONTEND = 0;
export const VHOST_SET_CONFIG_TYPE_MIGRATION = 1;

/** A feature mask (u64) as two u32 halves: features never go through BigInt on hot paths. */
export interface Mask64 {
  lo: number;
  hi: number;
}

/** Bit `b` (0..63) of a 64-bit mask. */
export function maskHas(m: Mask64, b: number): boolean {
  return b < 32 ? ((m.lo >>> b) & 1) === 1 : ((m.hi >>> (b - 32)) & 1) === 1;
}

/** Mask with the given bits set. */
export function maskOf(bits: Iterable<number>): Mask64 {
  let lo = 0;
  let hi = 0;
  for (const b of bits) {
    if (b < 32) lo |= 1 << b;
    else if (b < 64) hi |= 1 << (b - 32);
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

/** Bits set in a mask, ascending. */
export function maskBits(m: Mask64): number[] {
  const out: number[] = [];
  for (let b = 0; b < 64; b++) if (maskHas(m, b)) out.push(b);
  return out;
}

/** "0x…" of a 64-bit mask. */
export function maskHex(m: Mask64): string {
  return m.hi === 0 ? `0x${m.lo.toString(16)}` : `0x${m.hi.toString(16)}${m.lo.toString(16).padStart(8, '0')}`;
}
