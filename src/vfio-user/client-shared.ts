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
