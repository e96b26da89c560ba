/**
 * Control words shared by the driver (main thread) and the device (worker) in the two-agent queue
 * benchmark: an Int32Array over a small SharedArrayBuffer, one word per 64-byte cache line.
 *
 * The driver bumps NOTIFY after each publish (its "available buffer notification"), the device
 * bumps IRQ after each used batch (its "used buffer notification"); each side busy-polls the
 * other's counter with Atomics.load, bounded in time. The ring indices themselves are read and
 * written by the queue code (Atomics.load/store inside the library).
 */

/** Driver → device: number of publishes so far. */
export const CTL_NOTIFY = 0;
/** Device → driver: number of used batches so far. */
export const CTL_IRQ = 16;
/** Driver → device: non-zero = leave the loop. */
export const CTL_STOP = 32;
/** Device → driver: a {@link DeviceState}. */
export const CTL_DEV_STATE = 48;
/**
 * Driver → device, with `sides`: the measurement phase (1 = warm-up, 2 = timed repetitions); the
 * device zeroes its busy-time sums when it changes.
 */
export const CTL_EPOCH = 64;
/** Bytes of the control buffer. */
export const CTL_BYTES = 320;

/** Device loop states (CTL_DEV_STATE). */
export const DeviceState = { STARTING: 0, RUNNING: 1, STOPPED: 2, FAILED: 3, TIMED_OUT: 4 } as const;
/** One of {@link DeviceState}. */
export type DeviceState = (typeof DeviceState)[keyof typeof DeviceState];

/** Spins between two looks at the clock / the stop flag. */
export const SPINS_PER_CHECK = 1024;

/** Data handed to the device worker. */
export interface DeviceWorkerData {
  guest: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  ring: 'split' | 'packed';
  descs: 1 | 3;
  timeoutMs: number;
  /** Effective API style (decided by the main thread). */
  api: 'chain' | 'batch' | 'visit';
  /** Time each device batch (see MeasureOptions.sides). */
  sides: boolean;
}

/** Data handed to the plain-JS yardstick's device worker (queue-plain-worker.ts): split rings only. */
export interface PlainWorkerData {
  guest: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  descs: 1 | 3;
  timeoutMs: number;
}

/** The device's busy time with `sides`: ms in batches that served chains, and those chains (current epoch). */
export interface DeviceSides {
  busyMs: number;
  chains: number;
}

/** Messages from the device worker. */
export type DeviceWorkerMessage =
  | { type: 'ready' }
  | { type: 'done'; state: DeviceState; checksum: number; error: string | undefined; sides?: DeviceSides };
