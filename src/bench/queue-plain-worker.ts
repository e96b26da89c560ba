/**
 * Device side of the plain-JS yardstick with two agents (queue-plain-two.ts), run in a worker
 * thread: the plain device function (queue-plain.ts) over the shared guest memory, in the same
 * loop as the library's device worker (queue-device-loop.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { deviceLoop } from './queue-device-loop.js';
import { device, makePlain } from './queue-plain.js';
import { CTL_DEV_STATE, DeviceState, type DeviceWorkerMessage, type PlainWorkerData } from './queue-shared.js';

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('queue-plain-worker.ts must run in a worker thread');
  const data = workerData as PlainWorkerData;
  const ctl = new Int32Array(data.ctl);
  let msg: DeviceWorkerMessage;
  try {
    const p = makePlain(data.descs, data.guest);
    Atomics.store(ctl, CTL_DEV_STATE, DeviceState.RUNNING);
    const state = deviceLoop(ctl, { batch: () => device(p) }, data.timeoutMs, () => port.postMessage({ type: 'ready' } satisfies DeviceWorkerMessage), null);
    Atomics.store(ctl, CTL_DEV_STATE, state);
    const error = state === DeviceState.FAILED ? (p.error ?? 'device failed') : state === DeviceState.TIMED_OUT ? `device saw no notification for ${data.timeoutMs} ms` : undefined;
    msg = { type: 'done', state, checksum: p.checksum, error };
  } catch (e) {
    Atomics.store(ctl, CTL_DEV_STATE, DeviceState.FAILED);
    msg = { type: 'done', state: DeviceState.FAILED, checksum: 0, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(msg);
}

main();
