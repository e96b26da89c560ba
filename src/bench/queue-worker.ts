/**
 * Device side of the two-agent queue benchmark, run in a worker thread: builds its own
 * AddressSpace over the shared guest memory and its own device queue over the same rings, then
 * busy-polls the driver's notify counter and completes chains in batches until told to stop or
 * until nothing happened for `timeoutMs`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BenchDevice } from './queue-agents.js';
import { describeSinks, makeDeviceQueue } from './queue-impl.js';
import { BENCH_BATCH } from './queue-layout.js';
import { CTL_DEV_STATE, CTL_EPOCH, CTL_IRQ, CTL_NOTIFY, CTL_STOP, type DeviceSides, DeviceState, type DeviceWorkerData, type DeviceWorkerMessage, SPINS_PER_CHECK } from './queue-shared.js';

/**
 * Poll and serve until stop, failure or timeout; returns the final state. `ready` is called after
 * the counters were sampled, so a notification sent right after it is not missed. With `sides`
 * (non-null) each batch that served chains is timed into it, zeroed whenever CTL_EPOCH changes
 * (the timing branch is the same in warm-up and timed repetitions, so it never deoptimizes).
 */
function deviceLoop(ctl: Int32Array, device: BenchDevice, timeoutMs: number, ready: () => void, sides: DeviceSides | null): DeviceState {
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

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('queue-worker.ts must run in a worker thread');
  const data = workerData as DeviceWorkerData;
  const ctl = new Int32Array(data.ctl);
  let msg: DeviceWorkerMessage;
  try {
    const v = makeDeviceQueue(data.ring, data.guest);
    const device = new BenchDevice(v.dq, v.space, data.descs, data.api);
    Atomics.store(ctl, CTL_DEV_STATE, DeviceState.RUNNING);
    const sides: DeviceSides | null = data.sides ? { busyMs: 0, chains: 0 } : null;
    const state = deviceLoop(ctl, device, data.timeoutMs, () => port.postMessage({ type: 'ready' } satisfies DeviceWorkerMessage), sides);
    Atomics.store(ctl, CTL_DEV_STATE, state);
    const error =
      state === DeviceState.FAILED
        ? device.badRequests > 0
          ? `${device.badRequests} malformed requests popped`
          : describeSinks(v.sink, v.sink)
        : state === DeviceState.TIMED_OUT
          ? `device saw no notification for ${data.timeoutMs} ms`
          : undefined;
    msg = { type: 'done', state, checksum: device.checksum, error };
    if (sides !== null) msg.sides = sides;
  } catch (e) {
    Atomics.store(ctl, CTL_DEV_STATE, DeviceState.FAILED);
    msg = { type: 'done', state: DeviceState.FAILED, checksum: 0, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(msg);
}

main();
