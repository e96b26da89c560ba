/**
 * Device side of the two-agent queue benchmark, run in a worker thread: builds its own
 * AddressSpace over the shared guest memory and its own device queue over the same rings, then
 * busy-polls the driver's notify counter and completes chains in batches until told to stop or
 * until nothing happened for `timeoutMs`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BenchDevice } from './queue-agents.js';
import { describeSinks, makeDeviceQueue } from './queue-impl.js';
import { deviceLoop } from './queue-device-loop.js';
import { CTL_DEV_STATE, type DeviceSides, DeviceState, type DeviceWorkerData, type DeviceWorkerMessage } from './queue-shared.js';

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
