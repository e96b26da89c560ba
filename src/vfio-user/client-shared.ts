/**
 * The shared-memory mailbox between the vfio-user client's main thread (which must look
 * synchronous to the simulated guest driver) and its socket pump worker (`client-pump.ts`).
 *
 * A ring of {@link SLOTS} slots in a SharedArrayBuffer. The main thread fills slot i (message bytes,
 * fds), sets it READY and writes the doorbell eventfd; the pump sends the messages in ring order on
 * the socket (assigning message ids), and for requests that want a reply copies the reply into the
 * slot and sets DONE (Atomics.notify). Posted writes (NO_REPLY) go back to FREE once sent. The main
 * thread blocks with Atomics.wait only on its own slot — the pump keeps answering the device's
 * DMA_READ / DMA_WRITE requests meanwhile, so a region access never deadlocks against DMA.
 */

/** Slots in the ring. */
export const SLOTS = 16;
/** Bytes per slot (request, then reply payload). */
export const SLOT_BYTES = 64 * 1024;
/** Most fds per slot (each way). */
export const SLOT_FDS = 16;

/** Int32 fields of a slot. */
export const S_STATE = 0;
export const S_LEN = 1;
export const S_NFDS = 2;
export const S_WANT_REPLY = 3;
export const S_REPLY_LEN = 4;
/** 0 = ok, > 0 = errno from an error reply, -1 = closed, -2 = timeout, -3 = reply too large. */
export const S_REPLY_ERR = 5;
export const S_REPLY_NFDS = 6;
export const S_FDS = 8;
export const S_RFDS = S_FDS + SLOT_FDS;
export const SLOT_INTS = S_RFDS + SLOT_FDS;

/** Slot states. */
export const ST_FREE = 0;
export const ST_READY = 1;
export const ST_SENT = 2;
export const ST_DONE = 3;

/** Global Int32 fields (after the slots). */
export const G_CLOSED = SLOTS * SLOT_INTS;
export const G_INTS = 4;
export const CTL_INTS = SLOTS * SLOT_INTS + G_INTS;

/** Float64 counters of the DMA the pump served. */
export const C_DMA_READS = 0;
export const C_DMA_WRITES = 1;
export const C_DMA_BYTES_READ = 2;
export const C_DMA_BYTES_WRITTEN = 3;
export const C_DMA_REFUSED = 4;
export const C_MESSAGES_IN = 5;
export const C_MESSAGES_OUT = 6;
export const C_BYTES_IN = 7;
export const C_BYTES_OUT = 8;
export const COUNTERS = 9;

/** The SharedArrayBuffers of one client. */
export interface MailboxBuffers {
  ctl: SharedArrayBuffer;
  data: SharedArrayBuffer;
  counters: SharedArrayBuffer;
}

/** Allocate a mailbox. */
export function allocMailbox(): MailboxBuffers {
  return {
    ctl: new SharedArrayBuffer(CTL_INTS * 4),
    data: new SharedArrayBuffer(SLOTS * SLOT_BYTES),
    counters: new SharedArrayBuffer(COUNTERS * 8),
  };
}

/** Guest RAM the pump maps to serve DMA_READ / DMA_WRITE. */
export interface PumpRam {
  base: number;
  size: number;
  fd: number;
}

/** workerData of the pump. */
export interface PumpData {
  mailbox: MailboxBuffers;
  socketFd: number;
  doorbellFd: number;
  ram: PumpRam[];
  /** Our max_data_xfer_size (DMA requests larger than this are refused). */
  maxDataXferSize: number;
  /** Reply timeout (ms). */
  timeoutMs: number;
}

// ---------------------------------------------------------------- slot fields and counters
// The two sides read and write the same fields; these helpers are the one place that knows the
// slot layout. State changes (Atomics.store / wait / notify of S_STATE) stay with the callers:
// they are the protocol.

/** Int32 index of slot `s`'s state word (for Atomics.load / store / wait / notify). */
export function slotState(s: number): number {
  return s * SLOT_INTS + S_STATE;
}

/** Main thread: fill slot `s` with a request (message bytes, fds, whether it wants a reply); the caller then sets READY. */
export function writeRequest(ctl: Int32Array, data: Uint8Array, s: number, msg: Uint8Array, fds: readonly number[], wantReply: boolean): void {
  const b = s * SLOT_INTS;
  data.set(msg, s * SLOT_BYTES);
  ctl[b + S_LEN] = msg.length;
  ctl[b + S_NFDS] = fds.length;
  fds.forEach((fd, k) => (ctl[b + S_FDS + k] = fd));
  ctl[b + S_WANT_REPLY] = wantReply ? 1 : 0;
  ctl[b + S_REPLY_ERR] = 0;
}

/** Pump: the request in READY slot `s` (a copy of its bytes), its fds, and whether it wants a reply. */
export function readRequest(ctl: Int32Array, data: Uint8Array, s: number): { msg: Uint8Array; fds: number[]; wantReply: boolean } {
  const b = s * SLOT_INTS;
  const len = ctl[b + S_LEN]!;
  const nfds = ctl[b + S_NFDS]!;
  const fds: number[] = [];
  for (let k = 0; k < nfds; k++) fds.push(ctl[b + S_FDS + k]!);
  return { msg: data.slice(s * SLOT_BYTES, s * SLOT_BYTES + len), fds, wantReply: ctl[b + S_WANT_REPLY] !== 0 };
}

/** True when a reply of `bytes` payload bytes and `nfds` fds fits in a slot. */
export function replyFits(bytes: number, nfds: number): boolean {
  return bytes <= SLOT_BYTES && nfds <= SLOT_FDS;
}

/**
 * Pump: store the outcome of slot `s` — `err` (see {@link S_REPLY_ERR}) and, when given, the reply
 * payload and fds (which must {@link replyFits}); the caller then sets DONE.
 */
export function writeReply(ctl: Int32Array, data: Uint8Array, s: number, err: number, reply?: { payload: Uint8Array; fds: readonly number[] }): void {
  const b = s * SLOT_INTS;
  if (reply !== undefined) {
    data.set(reply.payload, s * SLOT_BYTES);
    ctl[b + S_REPLY_LEN] = reply.payload.length;
    ctl[b + S_REPLY_NFDS] = reply.fds.length;
    reply.fds.forEach((fd, k) => (ctl[b + S_RFDS + k] = fd));
  }
  ctl[b + S_REPLY_ERR] = err;
}

/** Main thread: the outcome of DONE slot `s`: `err`, and with err 0 the reply payload (a copy) and fds. */
export function readReply(ctl: Int32Array, data: Uint8Array, s: number): { err: number; payload: Uint8Array; fds: number[] } {
  const b = s * SLOT_INTS;
  const err = ctl[b + S_REPLY_ERR]!;
  if (err !== 0) return { err, payload: new Uint8Array(0), fds: [] };
  const len = ctl[b + S_REPLY_LEN]!;
  const fds: number[] = [];
  for (let k = 0; k < ctl[b + S_REPLY_NFDS]!; k++) fds.push(ctl[b + S_RFDS + k]!);
  return { err, payload: data.slice(s * SLOT_BYTES, s * SLOT_BYTES + len), fds };
}

/** Connection traffic counts (the pump's `VfioUserConnection.stats`). */
export interface ConnCounts {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** Everything the pump counts, under the names the client's stats use. */
export interface PumpCounts extends ConnCounts {
  dmaReads: number;
  dmaWrites: number;
  dmaBytesRead: number;
  dmaBytesWritten: number;
  dmaRefused: number;
}

/** Pump: publish the connection's counts. */
export function writeConnCounts(c: Float64Array, s: ConnCounts): void {
  c[C_MESSAGES_IN] = s.messagesIn;
  c[C_MESSAGES_OUT] = s.messagesOut;
  c[C_BYTES_IN] = s.bytesIn;
  c[C_BYTES_OUT] = s.bytesOut;
}

/** Main thread: copy the pump's counts into `out`. */
export function readPumpCounts(c: Float64Array, out: PumpCounts): void {
  out.dmaReads = c[C_DMA_READS]!;
  out.dmaWrites = c[C_DMA_WRITES]!;
  out.dmaBytesRead = c[C_DMA_BYTES_READ]!;
  out.dmaBytesWritten = c[C_DMA_BYTES_WRITTEN]!;
  out.dmaRefused = c[C_DMA_REFUSED]!;
  out.messagesIn = c[C_MESSAGES_IN]!;
  out.messagesOut = c[C_MESSAGES_OUT]!;
  out.bytesIn = c[C_BYTES_IN]!;
  out.bytesOut = c[C_BYTES_OUT]!;
}
