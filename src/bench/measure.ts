/** Measurement options and results shared by the JS runners and the C reference runner. */
import { VirtioError } from '../errors.js';

/** How long to measure. */
export interface MeasureOptions {
  /** Length of one timed repetition (ms). */
  ms: number;
  /** Untimed warm-up before the repetitions (ms): JIT tiering, caches, page faults. */
  warmupMs: number;
  /** Timed repetitions. */
  reps: number;
  /** Busy-polls give up after this long without progress (ms). */
  timeoutMs: number;
  /**
   * Two agents only: also time each side's busy calls (driver post and reclaim calls that moved
   * chains, device batches that served some; two clock reads per call, on the JS and the C side
   * alike) and report {@link SideTimes}. Off by default: it costs a little throughput.
   */
  sides?: boolean;
}

/**
 * Busy time per chain of each side with two agents (ns, over the timed repetitions): the driver's
 * post calls, its reclaim calls, and the device's batches. Their sum above 1e3 / (M chains/s)
 * means the sides overlapped; the gap below it is time both spent waiting.
 */
export interface SideTimes {
  postNs: number;
  reclaimNs: number;
  deviceNs: number;
}

/** One runner's result for one cell. */
export interface Measurement {
  /** Million chains per second, one value per timed repetition. */
  mchainsPerS: number[];
  /** Chains completed in the timed repetitions. */
  chains: number;
  /** JS only: the queue API style the harness used ('chain' or 'batch'). */
  api?: 'chain' | 'batch' | 'visit';
  /** Two agents with {@link MeasureOptions.sides}: busy time per chain of each side. */
  sides?: SideTimes;
}

/** Defaults for a tiny run (tests). */
export const TINY_MEASURE: MeasureOptions = { ms: 5, warmupMs: 5, reps: 1, timeoutMs: 5000 };

/** Throws unless the options are sane (positive, bounded). */
export function checkMeasureOptions(o: MeasureOptions): void {
  if (!(o.ms > 0 && o.ms <= 60_000) || !(o.warmupMs >= 0 && o.warmupMs <= 60_000) || !(Number.isInteger(o.reps) && o.reps >= 1 && o.reps <= 100) || !(o.timeoutMs > 0) || (o.sides !== undefined && typeof o.sides !== 'boolean')) {
    throw new VirtioError('INVALID_ARGUMENT', `bad measurement options ${JSON.stringify(o)}: ms 1..60000, warmupMs 0..60000, reps 1..100, timeoutMs > 0`);
  }
}
