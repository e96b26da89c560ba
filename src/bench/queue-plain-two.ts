/**
 * The plain-JS yardstick with two agents (split rings): the plain driver functions
 * (queue-plain.ts) in this thread, the plain device function in a worker
 * (queue-plain-worker.ts), over one SharedArrayBuffer, with the control words and the protocol of
 * the library's two-agent run (queue-two.ts) and of the C program: the driver keeps the ring as
 * full as it can (up to 64 chains per publish), bumps NOTIFY after each publish, reclaims whenever
 * the device bumps IRQ, and drains at the end of each repetition.
 *
 * The driver loop below is a copy of queue-two.ts's, on purpose: the library and the plain run
 * share a process in each benchmark round, and one shared loop would see both drivers and turn
 * polymorphic (V8 type feedback is per function), slowing whichever runs second.
 */
import { VirtioError } from '../errors.js';
import { siblingModule } from './launch.js';
import { BENCH_BATCH, type ChainDescs } from './queue-layout.js';
import { checkMeasureOptions, type MeasureOptions, type Measurement } from './measure.js';
import { makePlain, type Plain, plainBadStatus, plainInFlight, post, reclaim } from './queue-plain.js';
import { CTL_BYTES, CTL_DEV_STATE, CTL_IRQ, CTL_NOTIFY, DeviceState, type PlainWorkerData, SPINS_PER_CHECK } from './queue-shared.js';
import { type DriverRun, runAgainstWorker } from './queue-worker-run.js';

/** One repetition: post and reclaim for `ms`, then drain. Chains and elapsed ms, or a failure text. */
function plainDriverRun(p: Plain, ctl: Int32Array, ms: number, timeoutMs: number): DriverRun | string {
  let done = 0;
  let seen = Atomics.load(ctl, CTL_IRQ);
  let notify = Atomics.load(ctl, CTL_NOTIFY);
  const t0 = performance.now();
  let t = t0;
  let lastProgress = t0;
  let posting = true;
  let spins = 0;
  for (;;) {
    if (posting && post(p, BENCH_BATCH) > 0) {
      notify = (notify + 1) | 0;
      Atomics.store(ctl, CTL_NOTIFY, notify);
    }
    const irq = Atomics.load(ctl, CTL_IRQ);
    if (irq !== seen) {
      seen = irq;
      const r = reclaim(p);
      if (r < 0) return p.error ?? 'the device returned a bad used element';
      done += r;
      spins = 0;
      t = performance.now();
      lastProgress = t;
      if (posting && t - t0 >= ms) posting = false;
      if (!posting && plainInFlight(p) === 0) break;
      continue;
    }
    if (++spins >= SPINS_PER_CHECK) {
      spins = 0;
      t = performance.now();
      const st = Atomics.load(ctl, CTL_DEV_STATE);
      if (st === DeviceState.FAILED || st === DeviceState.TIMED_OUT) return 'the device worker stopped';
      if (t - lastProgress > timeoutMs) return `no used buffers for ${timeoutMs} ms (${plainInFlight(p)} chains in flight)`;
      if (posting && t - t0 >= ms) posting = false;
      if (!posting && plainInFlight(p) === 0) break;
    }
  }
  return { chains: done, elapsedMs: t - t0 };
}

/**
 * Run the plain-JS split workload with two agents (driver here, device in a worker).
 * Throws VirtioError on a failure of either side.
 */
export async function runPlainTwoAgents(descs: ChainDescs, opts: MeasureOptions): Promise<Measurement> {
  checkMeasureOptions(opts);
  const p = makePlain(descs); // lays out the free list before the device attaches
  const ctlBuf = new SharedArrayBuffer(CTL_BYTES);
  const ctl = new Int32Array(ctlBuf);
  const data: PlainWorkerData = { guest: p.u8.buffer as SharedArrayBuffer, ctl: ctlBuf, descs, timeoutMs: opts.timeoutMs };
  const label = `plain JS, split, ${descs} descriptors, two agents`;
  const run = await runAgainstWorker(siblingModule('queue-plain-worker', import.meta.url), data, ctl, label, opts, {
    rep: (ms) => plainDriverRun(p, ctl, ms, opts.timeoutMs),
  });
  if (plainBadStatus(p) !== 0) throw new VirtioError('INTERNAL', `queue benchmark (${label}): ${plainBadStatus(p)} status bytes were not written by the device`);
  return { mchainsPerS: run.mchainsPerS, chains: run.chains };
}
