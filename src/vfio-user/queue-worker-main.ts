/**
 * Entry of one queue worker thread of a vfio-user device process (`--queue-workers`; the main
 * thread's side is `queue-workers.ts`, the messages `queue-worker-protocol.ts`).
 *
 * The worker owns a per-queue virtio-blk engine — a {@link BlkDevice} over its own view of the
 * disk (the RAM-disk memfd mapped here, or the image file opened here) of which it only ever
 * activates one queue — and, for each queue epoch the main thread starts:
 *  - maps the guest memory itself from the fds it was handed (`mapRegionFromFd`), builds its own
 *    {@link AddressSpace} and split device queue (`createSplitDeviceQueue`) from the ring
 *    addresses, size and negotiated features;
 *  - polls the kick eventfd through libuv on this thread's loop and serves the queue on each wake;
 *  - interrupts the guest by writing the MSI-X vector's eventfd itself (a dup it owns), or, when
 *    there is no usable vector eventfd, asks the main thread to raise the interrupt;
 *  - reports guest errors to the main thread's choke point (which sets NEEDS_RESET and raises the
 *    config interrupt) after parking its queue — nothing is thrown out of a wake-up.
 *
 * Stop (device reset, queue reset, disconnect): the engine is reset (completions still in flight
 * are dropped by generation, so guest memory is not touched again), the kick watch stops, and only
 * then is C_ACTIVE cleared — the main thread waits for exactly that before it completes the reset
 * (basic.dev-reset.device.2). The worker's mappings are released once the old epoch's backend I/O
 * has finished (a file write in flight still reads its guest buffer).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { logger } from '../log.js';
import { native as nat } from '../native/index.js';
import { POLL_READABLE, type PollHandle } from '../native/types.js';
import { mapRegionFromFd, type MappedFdRegion } from '../memory/ram.js';
import { AddressSpace } from '../memory/space.js';
import { FeatureSet } from '../features/set.js';
import { createSplitDeviceQueue } from '../queue/split/device.js';
import type { DeviceQueue } from '../queue/types.js';
import type { GuestError, GuestErrorSink } from '../device/choke.js';
import type { DeviceContext } from '../device/types.js';
import type { BlkBackend } from '../device/blk/backend.js';
import { BlkDevice } from '../device/blk/blk-device.js';
import { FileBackend } from '../device/blk/file-backend.js';
import { RamBackend } from '../device/blk/ram-backend.js';
import { isVirtioError } from '../errors.js';
import {
  C_ACTIVE,
  C_EPOCH,
  C_IRQS,
  C_IRQS_VIA_MAIN,
  C_KICK,
  C_PARK,
  C_REQUESTS,
  C_STARTS,
  C_WAKEUPS,
  type FromWorker,
  type QueueWorkerData,
  type ToWorker,
  type WorkerRegion,
} from './queue-worker-protocol.js';

const data = workerData as QueueWorkerData;
const port = parentPort!;
const log = logger(`vfio-user:qworker${data.id}`);
const ctl = new Int32Array(data.control);
const kickFd = data.kickFd;

function post(m: FromWorker): void {
  port.postMessage(m);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function closeFd(fd: number): void {
  if (fd < 0) return;
  try {
    nat.close(fd);
  } catch {
    /* already closed */
  }
}

/** One started queue epoch. */
interface Run {
  readonly epoch: number;
  readonly q: number;
  readonly queue: DeviceQueue | null;
  readonly maps: MappedFdRegion[];
  poll: PollHandle | undefined;
  irqFd: number;
}

let blk: BlkDevice | undefined;
let diskMap: ArrayBuffer | undefined;
let run: Run | undefined;
/** Release of earlier epochs' mappings (after their backend I/O drained). */
let cleanup: Promise<void> = Promise.resolve();

async function init(): Promise<void> {
  const d = data.disk;
  let backend: BlkBackend;
  if (d.kind === 'ram') {
    diskMap = nat.mmap(d.fd, 0, d.size, true);
    backend = new RamBackend(new Uint8Array(diskMap), { readOnly: data.blk.readOnly });
  } else {
    backend = await FileBackend.open(d.path, { readOnly: data.blk.readOnly });
  }
  blk = new BlkDevice(backend, { queues: data.blk.queues, queueSize: data.blk.queueSize, readOnly: data.blk.readOnly, durableFlush: data.blk.durableFlush });
}

/** A guest error of the running epoch: park locally, then tell the main thread's choke point. */
function reportFor(r: { epoch: number; q: number }, queueRef: () => DeviceQueue | null): GuestErrorSink {
  return {
    guestError(err: GuestError): void {
      try {
        queueRef()?.park();
      } catch {
        /* parking never matters more than reporting */
      }
      post({ t: 'guest-error', epoch: r.epoch, err: { code: err.code, clause: err.clause, message: err.message, queue: r.q } });
    },
  };
}

function mapRegions(regions: readonly WorkerRegion[], maps: MappedFdRegion[]): AddressSpace {
  let owned = regions.map((r) => r.fd);
  try {
    for (const r of regions) {
      maps.push(mapRegionFromFd(r.fd, r.fdOffset, r.size, r.base, { name: r.name, readOnly: r.readOnly, ownsFd: true, native: nat }));
      owned = owned.filter((fd) => fd !== r.fd);
    }
    return new AddressSpace(
      maps.flatMap((m) => [...m.regions]),
      `qworker${data.id}-dma`,
    );
  } catch (e) {
    for (const m of maps) m.close();
    maps.length = 0;
    for (const fd of owned) closeFd(fd);
    throw e;
  }
}

function start(m: Extract<ToWorker, { t: 'start' }>): void {
  const release = (): void => {
    for (const r of m.regions) closeFd(r.fd);
    closeFd(m.irqFd);
  };
  const b = blk;
  if (b === undefined || run !== undefined || Atomics.load(ctl, C_EPOCH) !== m.epoch) {
    release(); // superseded by a stop (or a bug): never touch guest memory for it
    return;
  }
  // Claim the epoch, then re-check that main still wants it (see queue-worker-protocol.ts).
  if (Atomics.compareExchange(ctl, C_ACTIVE, 0, m.epoch) !== 0 || Atomics.load(ctl, C_EPOCH) !== m.epoch) {
    if (Atomics.load(ctl, C_ACTIVE) === m.epoch) {
      Atomics.store(ctl, C_ACTIVE, 0);
      Atomics.notify(ctl, C_ACTIVE);
    }
    release();
    return;
  }
  const maps: MappedFdRegion[] = [];
  let queue: DeviceQueue | null = null;
  const r: Run = { epoch: m.epoch, q: m.q, queue: null, maps, poll: undefined, irqFd: m.irqFd };
  const sink = reportFor(r, () => queue);
  let space: AddressSpace;
  try {
    space = mapRegions(m.regions, maps);
  } catch (e) {
    closeFd(m.irqFd);
    run = { ...r, irqFd: -1 };
    sink.guestError({ code: 'INTERNAL', clause: undefined, message: `queue worker ${data.id}: cannot map guest memory for queue ${m.q}: ${errText(e)}`, queue: m.q });
    return;
  }
  queue = createSplitDeviceQueue(space, m.cfg, sink); // null: invalid rings, already reported
  const cur: Run = { ...r, queue };
  run = cur;
  ctl[C_STARTS]++;
  if (queue === null) return;
  const queues: Array<DeviceQueue | null> = new Array<DeviceQueue | null>(data.blk.queues).fill(null);
  queues[m.q] = queue;
  const ctx: DeviceContext = {
    features: new FeatureSet(m.features).freeze(),
    queues,
    space,
    interrupt: () => interrupt(cur),
    configChanged: () => undefined, // the worker's engine has no config space of its own
    sink,
  };
  try {
    b.activate(ctx);
    cur.poll = nat.poll(kickFd, POLL_READABLE, (_ev, errno) => {
      if (errno !== 0) log('kick eventfd poll error %d', errno);
      service(cur);
    });
  } catch (e) {
    sink.guestError({ code: 'INTERNAL', clause: undefined, message: `queue worker ${data.id}: cannot start queue ${m.q}: ${errText(e)}`, queue: m.q });
    return;
  }
  log('queue %d started (epoch %d, %d regions, irq %s)', m.q, m.epoch, maps.length, m.irqFd >= 0 ? 'eventfd' : 'via main');
  service(cur); // kicks that arrived before the worker was ready
}

/** A wake-up: serve every available chain of the queue. */
function service(r: Run): void {
  if (run !== r) return;
  Atomics.store(ctl, C_KICK, 0); // before looking at the ring: a later kick writes the eventfd again
  try {
    nat.eventfdRead(kickFd);
  } catch (e) {
    log('kick eventfd read failed: %s', errText(e));
  }
  if (Atomics.load(ctl, C_EPOCH) !== r.epoch) return; // a stop is on its way
  const queue = r.queue;
  if (queue === null) return;
  if (Atomics.load(ctl, C_PARK) === r.epoch && !queue.parked) queue.park();
  ctl[C_WAKEUPS]++;
  try {
    blk!.notify(r.q);
  } catch (e) {
    // As the core does for a model that throws: report, park, never rethrow.
    const err: GuestError = isVirtioError(e)
      ? { code: e.code, clause: e.clause, message: `virtio-blk (queue worker ${data.id}): notify: ${e.message}`, queue: r.q }
      : { code: 'INTERNAL', clause: undefined, message: `virtio-blk (queue worker ${data.id}): notify threw: ${errText(e)}`, queue: r.q };
    reportFor(r, () => queue).guestError(err);
  }
  ctl[C_REQUESTS] = blk!.stats.requests;
}

/** ctx.interrupt from the engine: suppression state first, then the vector's eventfd (or main). */
function interrupt(r: Run): void {
  if (run !== r || Atomics.load(ctl, C_EPOCH) !== r.epoch) return;
  const queue = r.queue;
  if (queue === null || !queue.needsInterrupt()) return;
  if (r.irqFd >= 0) {
    try {
      nat.eventfdWrite(r.irqFd, 1);
      ctl[C_IRQS]++;
      return;
    } catch (e) {
      log('irq eventfd write failed (%s): routing through main', errText(e));
    }
  }
  ctl[C_IRQS_VIA_MAIN]++;
  post({ t: 'irq', epoch: r.epoch });
}

function stop(epoch: number): void {
  const r = run;
  if (r === undefined || r.epoch !== epoch) {
    // Never started (superseded) or already stopped: make sure main is not left waiting.
    if (Atomics.load(ctl, C_ACTIVE) === epoch) {
      Atomics.store(ctl, C_ACTIVE, 0);
      Atomics.notify(ctl, C_ACTIVE);
    }
    return;
  }
  run = undefined;
  r.poll?.stop();
  try {
    blk!.reset(); // completions still in flight belong to the old driver: dropped, no memory access
  } catch (e) {
    log('engine reset threw: %s', errText(e));
  }
  try {
    r.queue?.reset();
  } catch (e) {
    log('queue reset threw: %s', errText(e));
  }
  closeFd(r.irqFd);
  r.irqFd = -1;
  Atomics.store(ctl, C_ACTIVE, 0);
  Atomics.notify(ctl, C_ACTIVE);
  log('queue %d stopped (epoch %d)', r.q, epoch);
  const b = blk!;
  cleanup = cleanup
    .then(() => b.whenIdle())
    .then(() => {
      for (const m of r.maps) m.close();
    });
}

function route(epoch: number, irqFd: number): void {
  const r = run;
  if (r === undefined || r.epoch !== epoch) {
    closeFd(irqFd);
    return;
  }
  closeFd(r.irqFd);
  r.irqFd = irqFd;
}

async function close(): Promise<void> {
  if (run !== undefined) stop(run.epoch);
  await cleanup;
  await blk?.close();
  if (diskMap !== undefined) nat.munmap(diskMap);
  diskMap = undefined;
}

port.on('message', (m: ToWorker) => {
  try {
    switch (m.t) {
      case 'start':
        start(m);
        break;
      case 'stop':
        stop(m.epoch);
        break;
      case 'route':
        route(m.epoch, m.irqFd);
        break;
      case 'close':
        void close().then(
          () => post({ t: 'closed' }),
          (e: unknown) => {
            post({ t: 'log', message: `close failed: ${errText(e)}` });
            post({ t: 'closed' });
          },
        );
        break;
      default:
        break;
    }
  } catch (e) {
    post({ t: 'log', message: `queue worker ${data.id}: ${(m as { t?: string }).t ?? '?'} failed: ${errText(e)}` });
  }
});

init().then(
  () => post({ t: 'ready' }),
  (e: unknown) => post({ t: 'init-error', message: errText(e) }),
);
