/**
 * Single-thread queue benchmark: the driver posts a batch of 64 chains, the device pops and
 * completes them, the driver reclaims them — alternating in one thread, over the library's real
 * split or packed queues on a SharedArrayBuffer guest memory.
 */
import { VirtioError } from '../errors.js';
import { BenchDevice, BenchDriver, effectiveApi, type QueueApi } from './queue-agents.js';
import { describeSinks, makeDeviceQueue, makeDriverQueue } from './queue-impl.js';
import { BENCH_BATCH, BENCH_MEM_SIZE, type ChainDescs, type RingKind } from './queue-layout.js';
import { checkMeasureOptions, type MeasureOptions, type Measurement } from './measure.js';

/** Batches between two clock reads. */
const BATCHES_PER_CHECK = 16;

/**
 * Run the single-thread benchmark for one ring and chain length. `api`: see {@link QueueApi}
 * (`batch` falls back to `chain` when the queues lack batch members). Throws VirtioError on a failure.
 */
export function runSingleThread(ring: RingKind, descs: ChainDescs, opts: MeasureOptions, api: QueueApi = 'visit'): Measurement {
  checkMeasureOptions(opts);
  const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
  const d = makeDriverQueue(ring, guest); // first: the driver zeroes the rings
  const v = makeDeviceQueue(ring, guest);
  const used = effectiveApi(api, v.dq, d.drv);
  const driver = new BenchDriver(d.drv, guest, descs, used);
  const device = new BenchDevice(v.dq, v.space, descs, used);
  const fail = (what: string): never => {
    throw new VirtioError('INTERNAL', `queue benchmark (${ring}, ${descs} descriptors, single thread): ${what}; ${describeSinks(v.sink, d.sink)}`);
  };
  /** Alternate post / device batch / reclaim for `ms`; returns chains completed and elapsed ms. */
  const runFor = (ms: number): [number, number] => {
    let done = 0;
    const t0 = performance.now();
    let t = t0;
    for (;;) {
      for (let k = 0; k < BATCHES_PER_CHECK; k++) {
        if (driver.post(BENCH_BATCH) !== BENCH_BATCH) fail('the driver could not post a full batch');
        const n = device.batch();
        if (n !== BENCH_BATCH) fail(`the device completed ${n} chains instead of ${BENCH_BATCH}`);
        const r = driver.reclaim();
        if (r !== BENCH_BATCH) fail(`the driver reclaimed ${r} chains instead of ${BENCH_BATCH}`);
        done += r;
      }
      t = performance.now();
      if (t - t0 >= ms) break;
    }
    return [done, t - t0];
  };
  if (opts.warmupMs > 0) runFor(opts.warmupMs);
  const mchainsPerS: number[] = [];
  let chains = 0;
  for (let r = 0; r < opts.reps; r++) {
    const [n, el] = runFor(opts.ms);
    chains += n;
    mchainsPerS.push(n / el / 1000);
  }
  if (driver.badStatus !== 0) fail(`${driver.badStatus} status bytes were not written by the device`);
  return { mchainsPerS, chains, api: used };
}
