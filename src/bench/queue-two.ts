/**
 * Two-agent queue benchmark: the driver runs in this thread, the device in a worker thread
 * (src/bench/queue-worker.ts) with its own AddressSpace and device queue over the same
 * SharedArrayBuffer guest memory. The driver keeps the ring as full as it can (up to 64 chains per
 * publish), reclaims whenever the device signals, and stops posting when a repetition's time is
 * up, then drains. Every busy-poll gives up after `timeoutMs` without progress.
 */
import { VirtioError } from '../errors.js';
import type { RecordingSink } from '../device/choke.js';
import { BenchDriver, effectiveApi, type QueueApi } from './queue-agents.js';
import { describeSinks, makeDeviceQueue, makeDriverQueue } from './queue-impl.js';
import { BENCH_BATCH, BENCH_MEM_SIZE, type ChainDescs, type RingKind } from './queue-layout.js';
import { checkMeasureOptions, type MeasureOptions, type Measurement, type SideTimes } from './measure.js';
import { CTL_BYTES, CTL_DEV_STATE, CTL_EPOCH, CTL_IRQ, CTL_NOTIFY, DeviceState, type DeviceWorkerData, SPINS_PER_CHECK } from './queue-shared.js';
import { siblingModule } from './launch.js';
import { type DriverRun, runAgainstWorker } from './queue-worker-run.js';

/** Slots of the driver's busy-time sums (`sides`): ms in post calls that posted, chains posted, ms in reclaims that reclaimed, chains reclaimed. */
const S_POST_MS = 0;
const S_POST_N = 1;
const S_RECL_MS = 2;
const S_RECL_N = 3;

/**
 * Driver side of one repetition: post and reclaim for `ms`, then drain.
 * With `sides` (non-null) the post and reclaim calls that moved chains are timed into it.
 * Returns chains completed or a failure text.
 */
function driverRun(driver: BenchDriver, sink: RecordingSink, ctl: Int32Array, ms: number, timeoutMs: number, sides: Float64Array | null): DriverRun | string {
  let done = 0;
  let seen = Atomics.load(ctl, CTL_IRQ);
  let notify = Atomics.load(ctl, CTL_NOTIFY);
  const t0 = performance.now();
  let t = t0;
  let lastProgress = t0;
  let posting = true;
  let spins = 0;
  for (;;) {
    if (posting) {
      let p: number;
      if (sides !== null) {
        const c0 = performance.now();
        p = driver.post(BENCH_BATCH);
        if (p > 0) {
          sides[S_POST_MS] += performance.now() - c0;
          sides[S_POST_N] += p;
        }
      } else {
        p = driver.post(BENCH_BATCH);
      }
      if (p > 0) {
        notify = (notify + 1) | 0;
        Atomics.store(ctl, CTL_NOTIFY, notify);
      }
    }
    const irq = Atomics.load(ctl, CTL_IRQ);
    if (irq !== seen) {
      seen = irq;
      if (sides !== null) {
        const c0 = performance.now();
        const r = driver.reclaim();
        if (r > 0) {
          sides[S_RECL_MS] += performance.now() - c0;
          sides[S_RECL_N] += r;
        }
        done += r;
      } else {
        done += driver.reclaim();
      }
      spins = 0;
      t = performance.now();
      lastProgress = t;
      if (posting && t - t0 >= ms) posting = false;
      if (!posting && driver.inFlight === 0) break;
      continue;
    }
    if (++spins >= SPINS_PER_CHECK) {
      spins = 0;
      t = performance.now();
      const st = Atomics.load(ctl, CTL_DEV_STATE);
      if (st === DeviceState.FAILED || st === DeviceState.TIMED_OUT) return 'the device worker stopped';
      if (sink.errors.length > 0) return 'the driver queue rejected what the device returned';
      if (t - lastProgress > timeoutMs) return `no used buffers for ${timeoutMs} ms (${driver.inFlight} chains in flight)`;
      if (posting && t - t0 >= ms) posting = false;
      if (!posting && driver.inFlight === 0) break;
    }
  }
  return { chains: done, elapsedMs: t - t0 };
}

/**
 * Run the two-agent benchmark for one ring and chain length. `api`: see {@link QueueApi}.
 * Throws VirtioError on a failure.
 */
export async function runTwoAgents(ring: RingKind, descs: ChainDescs, opts: MeasureOptions, api: QueueApi = 'visit'): Promise<Measurement> {
  checkMeasureOptions(opts);
  const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
  const ctlBuf = new SharedArrayBuffer(CTL_BYTES);
  const ctl = new Int32Array(ctlBuf);
  const d = makeDriverQueue(ring, guest); // before the device: the driver zeroes the rings
  // Decide the API style here (a throw-away device queue has the same members as the worker's).
  const probe = makeDeviceQueue(ring, new SharedArrayBuffer(BENCH_MEM_SIZE));
  const used: QueueApi = effectiveApi(api, probe.dq, d.drv);
  const driver = new BenchDriver(d.drv, guest, descs, used);
  const timing = opts.sides === true;
  const data: DeviceWorkerData = { guest, ctl: ctlBuf, ring, descs, timeoutMs: opts.timeoutMs, api: used, sides: timing };
  // Timed in warm-up too (same code path throughout: no deoptimization when measuring starts).
  const sides = timing ? new Float64Array(4) : null;
  const label = `${ring}, ${descs} descriptors, two agents`;
  Atomics.store(ctl, CTL_EPOCH, 1);
  const run = await runAgainstWorker(siblingModule('queue-worker', import.meta.url), data, ctl, label, opts, {
    rep: (ms) => driverRun(driver, d.sink, ctl, ms, opts.timeoutMs, sides),
    startTimed: () => {
      // Timed repetitions: a new epoch (the device zeroes its sums), zeroed driver sums.
      Atomics.store(ctl, CTL_EPOCH, 2);
      sides?.fill(0);
    },
    describe: () => describeSinks(d.sink, d.sink),
  });
  const { mchainsPerS, chains, end } = run;
  if (driver.badStatus !== 0) {
    throw new VirtioError('INTERNAL', `queue benchmark (${label}): ${driver.badStatus} status bytes were not written by the device`);
  }
  const out: Measurement = { mchainsPerS, chains, api: used };
  if (sides !== null) {
    const dev = end.type === 'done' ? end.sides : undefined;
    if (dev === undefined || !(dev.chains > 0) || !(sides[S_POST_N]! > 0) || !(sides[S_RECL_N]! > 0)) {
      throw new VirtioError('INTERNAL', `queue benchmark (${label}): no busy-time figures (device ${JSON.stringify(dev)}, driver ${Array.from(sides).join(', ')})`);
    }
    const st: SideTimes = {
      postNs: (sides[S_POST_MS]! / sides[S_POST_N]!) * 1e6,
      reclaimNs: (sides[S_RECL_MS]! / sides[S_RECL_N]!) * 1e6,
      deviceNs: (dev.busyMs / dev.chains) * 1e6,
    };
    out.sides = st;
  }
  return out;
}
