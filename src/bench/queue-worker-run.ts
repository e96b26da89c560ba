/**
 * Runs the driver side of a two-agent benchmark against a device worker: start the worker, wait
 * until it is polling, run the warm-up and the timed repetitions, tell it to stop and collect its
 * last message. Used by the library's run (queue-two.ts) and the plain-JS yardstick's
 * (queue-plain-two.ts); each passes its own repetition function, so their hot loops stay apart.
 */
import type { Worker } from 'node:worker_threads';
import { VirtioError } from '../errors.js';
import { startWorker } from './launch.js';
import type { MeasureOptions } from './measure.js';
import { CTL_STOP, DeviceState, type DeviceWorkerMessage } from './queue-shared.js';

/** One repetition of the driver side. */
export interface DriverRun {
  chains: number;
  elapsedMs: number;
}

/** The driver side, as {@link runAgainstWorker} drives it. */
export interface DriverSide {
  /** One repetition of `ms` (then drain): chains and elapsed ms, or a failure text. */
  rep(ms: number): DriverRun | string;
  /** Called once between the warm-up and the timed repetitions. */
  startTimed?(): void;
  /** Context for a failure message (e.g. what the driver queue reported). */
  describe?(): string;
}

/** What a run against a device worker gives back. */
export interface WorkerRun {
  /** Million chains per second, one per timed repetition. */
  mchainsPerS: number[];
  /** Chains completed in the timed repetitions. */
  chains: number;
  /** The worker's last message (its final state and, with `sides`, its busy time). */
  end: DeviceWorkerMessage;
}

/** Wait for the worker's next message, an error, an exit, or `ms`. */
function nextMessage(w: Worker, ms: number, what: string): Promise<DeviceWorkerMessage> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
    };
    const onMessage = (m: DeviceWorkerMessage): void => {
      done();
      resolve(m);
    };
    const onError = (e: Error): void => {
      done();
      reject(new VirtioError('INTERNAL', `queue benchmark device worker failed while ${what}: ${e.message}`, { cause: e }));
    };
    const onExit = (code: number): void => {
      done();
      reject(new VirtioError('INTERNAL', `queue benchmark device worker exited (code ${code}) while ${what}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new VirtioError('TIMEOUT', `queue benchmark device worker did not answer within ${ms} ms while ${what}`));
    }, ms);
    w.on('message', onMessage);
    w.on('error', onError);
    w.on('exit', onExit);
  });
}

/**
 * Start the worker at `url` with `workerData`, then warm up and measure with `side.rep`, then stop
 * the worker through `ctl`. Throws VirtioError (TIMEOUT or INTERNAL) when either side fails;
 * `label` names the run in the message.
 */
export async function runAgainstWorker(url: URL, workerData: unknown, ctl: Int32Array, label: string, opts: MeasureOptions, side: DriverSide): Promise<WorkerRun> {
  const w = startWorker(url, { workerData });
  let failure: string | undefined;
  const mchainsPerS: number[] = [];
  let chains = 0;
  try {
    const ready = await nextMessage(w, Math.max(30_000, opts.timeoutMs), 'starting');
    if (ready.type !== 'ready') throw new VirtioError('INTERNAL', `queue benchmark (${label}): device worker failed to start: ${ready.type === 'done' ? ready.error : ''}`);
    if (opts.warmupMs > 0) {
      const r = side.rep(opts.warmupMs);
      if (typeof r === 'string') failure = r;
    }
    side.startTimed?.();
    for (let i = 0; i < opts.reps && failure === undefined; i++) {
      const r = side.rep(opts.ms);
      if (typeof r === 'string') {
        failure = r;
        break;
      }
      chains += r.chains;
      mchainsPerS.push(r.chains / r.elapsedMs / 1000);
    }
  } catch (e) {
    await w.terminate();
    throw e;
  }
  Atomics.store(ctl, CTL_STOP, 1);
  let end: DeviceWorkerMessage;
  try {
    end = await nextMessage(w, opts.timeoutMs + 5000, 'stopping');
  } finally {
    await w.terminate();
  }
  const devError = end.type === 'done' && end.state !== DeviceState.STOPPED ? end.error : undefined;
  if (failure !== undefined || devError !== undefined) {
    const code = end.type === 'done' && end.state === DeviceState.TIMED_OUT ? 'TIMEOUT' : 'INTERNAL';
    const more = side.describe?.();
    throw new VirtioError(code, `queue benchmark (${label}): ${failure ?? 'device failed'}${devError ? `; device: ${devError}` : ''}${more ? `; driver: ${more}` : ''}`);
  }
  return { mchainsPerS, chains, end };
}
