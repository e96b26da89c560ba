/**
 * What the main thread of a vfio-user device process and its queue workers
 * (`queue-workers.ts` ⇄ `queue-worker-main.ts`) say to each other: the worker's start data, the
 * messages in both directions, and the shared control words.
 *
 * Control words (one `Int32Array` over a SharedArrayBuffer per worker, Atomics only):
 *  - {@link C_EPOCH}: the queue epoch the main thread wants running (0 = none). Written by main only.
 *  - {@link C_ACTIVE}: the epoch the worker is running (0 = none). The worker claims an epoch with
 *    compareExchange(0 → e) and re-checks {@link C_EPOCH} afterwards, so a stop that cleared
 *    C_EPOCH before the claim is never missed; main waits (Atomics.wait) for C_ACTIVE to leave e.
 *  - {@link C_KICK}: a kick is pending (main writes the kick eventfd only on a 0 → 1 transition;
 *    the worker clears it before it looks at the ring).
 *  - {@link C_PARK}: the epoch main's choke point parked (the worker parks its queue on its next wake).
 *  - counters ({@link C_WAKEUPS} …): plain stores by the worker, read by main for statistics.
 */
import type { GuestError } from '../device/choke.js';
import type { QueueConfig } from '../queue/types.js';

/** Control word indices. */
export const C_EPOCH = 0;
export const C_ACTIVE = 1;
export const C_KICK = 2;
export const C_PARK = 3;
/** Kick-eventfd wake-ups handled. */
export const C_WAKEUPS = 4;
/** Requests the worker's blk engine started (its BlkStats.requests). */
export const C_REQUESTS = 5;
/** Interrupts sent straight to the MSI-X vector's eventfd. */
export const C_IRQS = 6;
/** Interrupts routed through the main thread (no usable vector eventfd). */
export const C_IRQS_VIA_MAIN = 7;
/** Epochs started. */
export const C_STARTS = 8;
/** Number of control words. */
export const CONTROL_WORDS = 16;

/** The disk a worker serves from. */
export type WorkerDisk =
  /** A RAM disk in a memfd the main thread keeps open for the worker's whole life. */
  | { kind: 'ram'; fd: number; size: number }
  /** A disk image file; each worker opens it itself (its own fd, its own fdatasync). */
  | { kind: 'file'; path: string };

/** Options of the per-worker blk engine (the same values the main thread's BlkDevice got). */
export interface WorkerBlkOptions {
  queues: number;
  queueSize: number;
  readOnly: boolean;
  durableFlush: boolean;
}

/** `workerData` of a queue worker. */
export interface QueueWorkerData {
  /** Worker number (= the queue it is dedicated to). */
  id: number;
  control: SharedArrayBuffer;
  /** Kick eventfd (owned by main; the worker only polls and reads it). */
  kickFd: number;
  disk: WorkerDisk;
  blk: WorkerBlkOptions;
}

/**
 * One guest-memory region the worker maps itself: guest-physical [base, base+size) is at byte
 * `fdOffset` of `fd`. The fd is a dup made for this worker, which owns it (closed when the region is unmapped).
 */
export interface WorkerRegion {
  fd: number;
  fdOffset: number;
  size: number;
  base: number;
  readOnly: boolean;
  name: string;
}

/** Main → worker. */
export type ToWorker =
  | {
      t: 'start';
      epoch: number;
      q: number;
      cfg: QueueConfig;
      /** Negotiated feature words. */
      features: number[];
      regions: WorkerRegion[];
      /** dup of the MSI-X vector's eventfd (owned by the worker), or -1: interrupts go through main. */
      irqFd: number;
    }
  | { t: 'stop'; epoch: number }
  /** New interrupt route (same ownership rules as in 'start'). */
  | { t: 'route'; epoch: number; irqFd: number }
  | { t: 'close' };

/** Worker → main. */
export type FromWorker =
  | { t: 'ready' }
  | { t: 'init-error'; message: string }
  | { t: 'guest-error'; epoch: number; err: GuestError }
  /** A queue interrupt for main to raise (no usable vector eventfd). */
  | { t: 'irq'; epoch: number }
  /** Something the main thread should log (setup failures of one epoch). */
  | { t: 'log'; message: string }
  | { t: 'closed' };
