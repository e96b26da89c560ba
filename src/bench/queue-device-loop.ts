/**
 * The device thread's loop of the two-agent queue benchmark (the C program's device_loop): busy-poll
 * the driver's notify counter, serve batches until one comes back short, bump the interrupt
 * counter after each; look at the stop flag and the clock every SPINS_PER_CHECK idle spins. Used
 * by the library's device worker (queue-worker.ts) and the plain-JS one (queue-plain-worker.ts);
 * each runs in its own isolate, so the two never share this function's type feedback.
 */
import { BENCH_BATCH } from './queue-layout.js';
import { CTL_EPOCH, CTL_IRQ, CTL_NOTIFY, CTL_STOP, type DeviceSides, DeviceState, SPINS_PER_CHECK } from './queue-shared.js';

/** What the loop serves with: one batch of up to 64 chains per call. */
export interface BatchServer {
  /** Chains completed, or -1 on a ring error or a malformed request. */
  batch(): number;
}

/**
 * Poll and serve until stop, failure or timeout; returns the final state. `ready` is called after
 * the counters were sampled, so a notification sent right after it is not missed. With `sides`
 * (non-null) each batch that served chains is timed into it, zeroed whenever CTL_EPOCH changes
 * (the timing branch is the same in warm-up and timed repetitions, so it never deoptimizes).
 */
export function deviceLoop(ctl: Int32Array, device: BatchServer, timeoutMs: number, ready: () => void, sides: DeviceSides | null): DeviceState {
  let seen = Atomics.load(ctl, CTL_NOTIFY);
  let irq = Atomics.load(ctl, CTL_IRQ);
  let epoch = -1;
  ready();
  let spins = 0;
  let last = performance.now();
  for (;;) {
    const nt = Atomics.load(ctl, CTL_NOTIFY);
    if (nt === seen) {
      if (++spins < SPINS_PER_CHECK) continue;
      spins = 0;
      if (Atomics.load(ctl, CTL_STOP) !== 0) return DeviceState.STOPPED;
      if (performance.now() - last > timeoutMs) return DeviceState.TIMED_OUT;
      continue;
    }
    seen = nt;
    for (;;) {
      let n: number;
      if (sides !== null) {
        const ep = Atomics.load(ctl, CTL_EPOCH);
        if (ep !== epoch) {
          epoch = ep;
          sides.busyMs = 0;
          sides.chains = 0;
        }
        const t0 = performance.now();
        n = device.batch();
        if (n > 0) {
          sides.busyMs += performance.now() - t0;
          sides.chains += n;
        }
      } else {
        n = device.batch();
      }
      if (n < 0) return DeviceState.FAILED;
      if (n === 0) break;
      irq = (irq + 1) | 0;
      Atomics.store(ctl, CTL_IRQ, irq);
      if (n < BENCH_BATCH) break;
    }
    last = performance.now();
  }
}
