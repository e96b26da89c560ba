/**
 * Queue workers for the vfio-user device process (`serve blk --vfio-user S --queue-workers`):
 * each virtio-blk request queue is served on its own worker thread, so two queues can use two cores.
 *
 * The main thread keeps everything that is not a request: the vfio-user socket, the PCI function,
 * {@link VirtioDeviceCore} (status, features, queue registers, the choke point), the DMA table and
 * the interrupt state. {@link QueueWorkerModel} sits between the core and the blk model; at
 * DRIVER_OK it hands each enabled queue to its worker ({@link QueueWorkerPool.start}): ring
 * addresses, size, negotiated features, and the memory the queue may touch as (fd, offset, size,
 * base) — the worker maps it itself. That needs fd-backed memory: guest-RAM memfds from DMA_MAP
 * (direct DMA) or the SWIOTLB window memfd. With message DMA (DMA_MAP without fds) there is nothing
 * to map, and the queues run on the main thread as without the option.
 *
 * Per queue:
 *  - kick: the client's write to the notify region arrives on the socket (vfio-user has no
 *    ioeventfds here: DEVICE_GET_REGION_IO_FDS is not offered), the core calls notify(q), and the
 *    main thread writes the worker's kick eventfd — only when no kick is pending already;
 *  - interrupt: the worker writes the MSI-X vector's eventfd itself (a dup it owns; re-sent when
 *    the client changes the vector's eventfd or masks it); without MSI-X, or while the vector is
 *    masked, the worker asks the main thread, which raises it as before (ISR + INTx, or held);
 *  - guest errors: the worker parks its queue and posts the error; the main thread hands it to
 *    the core's choke point (NEEDS_RESET, config interrupt, park) if it is from the current epoch.
 *
 * Reset: device reset, queue reset and client disconnect stop the workers synchronously — the
 * main thread clears the epoch, posts 'stop' and blocks in Atomics.wait until the worker
 * acknowledges, so the reset completes (the status write is answered) only after no worker
 * touches the queue any more (basic.dev-reset.device.2). The wait is bounded
 * ({@link QueueWorkerPoolOptions.stopTimeoutMs}); a worker that does not answer is terminated and replaced.
 *
 * FLUSH across queues (blk.dev-op.device.11, case 3: a write completed before the FLUSH is
 * submitted must be stable when the FLUSH completes): a worker's engine waits only for writes in
 * flight on its own queue. A write completed on another queue has already reached the backend:
 * on a RAM disk (one memfd shared by all workers) there is nothing to make stable; on a file disk
 * each worker has its own fd, and fdatasync on any fd of the file commits every completed write
 * to that file, whichever fd wrote it. Writes still in flight on other queues when the FLUSH
 * arrives are not waited for (the in-process model waits for them too — the spec does not ask it).
 */
import { VirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import type { Worker } from 'node:worker_threads';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import type { MemoryRegion } from '../memory/region.js';
import type { AddressSpace } from '../memory/space.js';
import type { GuestError } from '../device/choke.js';
import type { VirtioDeviceCore } from '../device/core.js';
import type { DeviceContext, ModelHost, VirtioDeviceModel } from '../device/types.js';
import type { FeatureSet } from '../features/set.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../features/bits.js';
import type { DeviceQueue, QueueConfig } from '../queue/types.js';
import { siblingModule, startWorker } from '../bench/launch.js';
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
  CONTROL_WORDS,
  type FromWorker,
  type QueueWorkerData,
  type ToWorker,
  type WorkerBlkOptions,
  type WorkerDisk,
  type WorkerRegion,
} from './queue-worker-protocol.js';

export type { WorkerDisk, WorkerBlkOptions } from './queue-worker-protocol.js';

const log = logger('vfio-user:qworkers');

/** Options of {@link QueueWorkerPool.create}. */
export interface QueueWorkerPoolOptions {
  /** Workers to start: one per request queue. */
  queues: number;
  /** The disk every worker serves (RAM memfd or image file). */
  disk: WorkerDisk;
  /** Options of each worker's blk engine (the same as the main thread's model). */
  blk: WorkerBlkOptions;
  /** Longest synchronous wait for a worker to acknowledge a stop (default 2000 ms). */
  stopTimeoutMs?: number;
  /** Longest wait for a worker to start (default 60000 ms: module loading on a loaded machine). */
  startTimeoutMs?: number;
  native?: NativeApi;
}

/** What the pool needs from the device it serves (wired by the device host). */
export interface QueueWorkerHooks {
  /** A guest error from a worker's queue: the core's choke point. */
  guestError(err: GuestError): void;
  /** Raise queue q's interrupt through the transport (no usable vector eventfd). */
  raise(q: number): void;
  /** The eventfd queue q's worker may write directly (MSI-X on, vector assigned and unmasked), else undefined. */
  irqSource(q: number): number | undefined;
}

/** Counters of one worker. */
export interface QueueWorkerStats {
  /** Worker (= queue) number. */
  id: number;
  /** Worker thread id (`worker.threadId`). */
  threadId: number;
  /** Queue epoch running now (0 = none). */
  epoch: number;
  starts: number;
  wakeups: number;
  requests: number;
  /** Interrupts written straight to the vector eventfd. */
  irqs: number;
  /** Interrupts raised through the main thread. */
  irqsViaMain: number;
  /** Kicks forwarded by the main thread (eventfd writes + coalesced). */
  kicks: number;
  /** Kick eventfd writes (kicks not coalesced with a pending one). */
  kickWrites: number;
}

interface Slot {
  readonly id: number;
  worker: Worker;
  ctl: Int32Array;
  kickFd: number;
  /** Epoch running (0 = none). */
  epoch: number;
  /** Source fd of the worker's current interrupt route (-1: via main). */
  routeSrc: number;
  dead: boolean;
  kicks: number;
  kickWrites: number;
  closed: Promise<void> | undefined;
  onClosed: (() => void) | undefined;
}

const MAX_EPOCH = 0x7fffffff;

/** One worker thread per request queue of a virtio-blk device. */
export class QueueWorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly nat: NativeApi;
  private readonly opts: QueueWorkerPoolOptions;
  private readonly stopTimeout: number;
  private hooks: QueueWorkerHooks | undefined;
  private epochSeq = 0;
  private closing = false;
  private readonly listeners: Array<(line: string) => void> = [];

  private constructor(opts: QueueWorkerPoolOptions, nat: NativeApi) {
    this.opts = opts;
    this.nat = nat;
    this.size = opts.queues;
    this.stopTimeout = opts.stopTimeoutMs ?? 2000;
  }

  /**
   * Start one worker per queue and wait until each has its disk open.
   * @throws NATIVE_UNAVAILABLE without the addon; INVALID_ARGUMENT when a worker cannot open the disk
   */
  static async create(opts: QueueWorkerPoolOptions): Promise<QueueWorkerPool> {
    const nat = opts.native ?? defaultNative;
    if (!nat.available) throw new VirtioError('NATIVE_UNAVAILABLE', `queue workers need the native addon (memfd, eventfd, poll in workers): ${nat.unavailableReason ?? 'not loaded'}; build it with \`npm rebuild\``);
    requireArg(Number.isInteger(opts.queues) && opts.queues >= 1 && opts.queues <= 64, `queue workers: queues must be an integer 1..64 (got ${opts.queues})`);
    const pool = new QueueWorkerPool(opts, nat);
    try {
      await Promise.all(Array.from({ length: opts.queues }, (_, i) => pool.spawn(i)));
    } catch (e) {
      await pool.close();
      throw e;
    }
    log('%d queue workers ready', opts.queues);
    return pool;
  }

  /** Start worker `id` (or replace a dead one) and resolve when it is ready. */
  private spawn(id: number): Promise<void> {
    const nat = this.nat;
    const control = new SharedArrayBuffer(CONTROL_WORDS * 4);
    const kickFd = nat.eventfdCreate(0);
    const wd: QueueWorkerData = { id, control, kickFd, disk: this.opts.disk, blk: this.opts.blk };
    let worker: Worker;
    try {
      worker = startWorker(siblingModule('queue-worker-main', import.meta.url), { workerData: wd, name: `virtiokit-qworker-${id}` });
    } catch (e) {
      nat.close(kickFd);
      throw e;
    }
    const slot: Slot = { id, worker, ctl: new Int32Array(control), kickFd, epoch: 0, routeSrc: -1, dead: false, kicks: 0, kickWrites: 0, closed: undefined, onClosed: undefined };
    this.slots[id] = slot;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(new VirtioError('TIMEOUT', `queue worker ${id} did not start within ${this.opts.startTimeoutMs ?? 60000} ms`)), this.opts.startTimeoutMs ?? 60000);
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        slot.dead = true;
        reject(e);
      };
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          worker.unref(); // the pool's owner decides when the process ends
          resolve();
          return;
        }
        if (m.t === 'init-error') {
          fail(new VirtioError('INVALID_ARGUMENT', `queue worker ${id} cannot open the disk: ${m.message}`));
          return;
        }
        this.onMessage(slot, m);
      });
      worker.on('error', (e) => {
        log('queue worker %d failed: %O', id, e);
        fail(e);
        this.workerDied(slot, `worker error: ${e.message}`);
      });
      worker.on('exit', (code) => {
        fail(new VirtioError('INTERNAL', `queue worker ${id} exited (${code}) before it was ready`));
        this.workerDied(slot, `worker exited (${code})`);
        try {
          nat.close(kickFd);
        } catch {
          /* closed */
        }
      });
    });
  }

  private workerDied(slot: Slot, why: string): void {
    if (slot.dead && slot.epoch === 0) return;
    slot.dead = true;
    slot.onClosed?.();
    const e = slot.epoch;
    if (e !== 0 && !this.closing) {
      slot.epoch = 0;
      this.hooks?.guestError({ code: 'INTERNAL', clause: undefined, message: `queue worker ${slot.id}: ${why}`, queue: slot.id });
    }
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    switch (m.t) {
      case 'guest-error':
        if (m.epoch === slot.epoch && slot.epoch !== 0) this.hooks?.guestError(m.err);
        else log('worker %d: stale guest error of epoch %d dropped: %s', slot.id, m.epoch, m.err.message);
        break;
      case 'irq':
        if (m.epoch === slot.epoch && slot.epoch !== 0) this.hooks?.raise(slot.id);
        break;
      case 'log':
        log('worker %d: %s', slot.id, m.message);
        break;
      case 'closed':
        slot.onClosed?.();
        break;
      default:
        break;
    }
  }

  /** Wire the pool to its device (before the first {@link start}). */
  attach(hooks: QueueWorkerHooks): void {
    this.hooks = hooks;
  }

  /** Be told (one human line) when queues move to workers or stay on the main thread. */
  onEvent(fn: (line: string) => void): void {
    this.listeners.push(fn);
  }

  /** @internal */
  emit(line: string): void {
    log('%s', line);
    for (const l of this.listeners) {
      try {
        l(line);
      } catch {
        /* a listener never breaks the device */
      }
    }
  }

  /** True when every worker is alive (else queues run on the main thread). */
  get healthy(): boolean {
    return !this.closing && this.slots.length === this.size && this.slots.every((s) => !s.dead);
  }

  /** True while queue q runs on its worker. */
  running(q: number): boolean {
    return (this.slots[q]?.epoch ?? 0) !== 0;
  }

  /**
   * Hand queue q to its worker: `cfg` as the core built it, the negotiated features, and the
   * memory regions (every one fd-backed) the queue may touch.
   * @returns false when the queue cannot go to a worker (then the error went to the choke point)
   */
  start(q: number, cfg: QueueConfig, features: FeatureSet, regions: readonly MemoryRegion[]): boolean {
    const s = this.slots[q];
    if (s === undefined || s.dead) return false;
    if (s.epoch !== 0) this.stop(q);
    const nat = this.nat;
    const dups: WorkerRegion[] = [];
    let irqFd = -1;
    try {
      for (const r of regions) {
        if (r.fd === undefined) throw new VirtioError('INTERNAL', `region ${r.name} has no fd`);
        dups.push({ fd: nat.dup(r.fd), fdOffset: r.fdOffset + r.offset, size: r.size, base: r.base, readOnly: r.readOnly, name: r.name });
      }
      const src = this.hooks?.irqSource(q);
      if (src !== undefined) irqFd = nat.dup(src);
      s.routeSrc = src ?? -1;
    } catch (e) {
      for (const d of dups) nat.close(d.fd);
      if (irqFd >= 0) nat.close(irqFd);
      this.hooks?.guestError({ code: 'INTERNAL', clause: undefined, message: `queue ${q}: cannot hand the queue to its worker: ${(e as Error).message}`, queue: q });
      return false;
    }
    this.epochSeq = this.epochSeq >= MAX_EPOCH ? 1 : this.epochSeq + 1;
    const epoch = this.epochSeq;
    Atomics.store(s.ctl, C_PARK, 0);
    Atomics.store(s.ctl, C_EPOCH, epoch);
    s.epoch = epoch;
    const msg: ToWorker = { t: 'start', epoch, q, cfg: { ...cfg }, features: features.toWords(), regions: dups, irqFd };
    s.worker.postMessage(msg);
    this.emit(`queue ${q} on worker thread ${s.worker.threadId} (epoch ${epoch}, ${dups.length} memory region${dups.length === 1 ? '' : 's'}, interrupts ${irqFd >= 0 ? 'by vector eventfd' : 'via the main thread'})`);
    return true;
  }

  /**
   * Stop queue q's worker and wait (synchronously, bounded) until it acknowledges: afterwards it
   * does not touch the queue or guest memory for that epoch.
   */
  stop(q: number): void {
    const s = this.slots[q];
    if (s === undefined || s.epoch === 0) return;
    const e = s.epoch;
    s.epoch = 0;
    s.routeSrc = -1;
    Atomics.store(s.ctl, C_EPOCH, 0);
    if (s.dead) return;
    s.worker.postMessage({ t: 'stop', epoch: e } satisfies ToWorker);
    const deadline = Date.now() + this.stopTimeout;
    while (Atomics.load(s.ctl, C_ACTIVE) === e) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.replace(s, `did not acknowledge the stop of queue ${q} within ${this.stopTimeout} ms`);
        return;
      }
      Atomics.wait(s.ctl, C_ACTIVE, e, left);
    }
  }

  /** Stop every queue (device reset, disconnect). */
  stopAll(): void {
    for (let q = 0; q < this.slots.length; q++) this.stop(q);
  }

  private replace(s: Slot, why: string): void {
    log('queue worker %d %s: terminating and replacing it', s.id, why);
    s.dead = true;
    void s.worker.terminate();
    if (this.closing) return;
    this.spawn(s.id).catch((e: unknown) => log('replacement of queue worker %d failed: %O', s.id, e));
  }

  /** The driver kicked queue q: wake its worker unless a wake-up is pending already. */
  kick(q: number): void {
    const s = this.slots[q];
    if (s === undefined || s.epoch === 0) return;
    s.kicks++;
    if (Atomics.exchange(s.ctl, C_KICK, 1) === 0) {
      s.kickWrites++;
      this.nat.eventfdWrite(s.kickFd, 1);
    }
  }

  /** The choke point parked queue q (all queues when q < 0): the worker parks on its next wake (woken now). */
  park(q: number): void {
    for (const s of q < 0 ? this.slots : [this.slots[q]]) {
      if (s === undefined || s.epoch === 0) continue;
      Atomics.store(s.ctl, C_PARK, s.epoch);
      Atomics.store(s.ctl, C_KICK, 1);
      this.nat.eventfdWrite(s.kickFd, 1);
    }
  }

  /** The client changed interrupt eventfds or masks: give running workers their new route. */
  refreshRoutes(): void {
    for (const s of this.slots) {
      if (s === undefined || s.epoch === 0 || s.dead) continue;
      const src = this.hooks?.irqSource(s.id) ?? -1;
      if (src === s.routeSrc) continue;
      let fd = -1;
      try {
        if (src >= 0) fd = this.nat.dup(src);
      } catch (e) {
        log('dup of irq fd %d failed: %s', src, (e as Error).message);
      }
      s.routeSrc = fd >= 0 ? src : -1;
      s.worker.postMessage({ t: 'route', epoch: s.epoch, irqFd: fd } satisfies ToWorker);
    }
  }

  /** Counters per worker. */
  stats(): QueueWorkerStats[] {
    return this.slots.map((s) => ({
      id: s.id,
      threadId: s.worker.threadId,
      epoch: s.epoch,
      starts: s.ctl[C_STARTS]!,
      wakeups: s.ctl[C_WAKEUPS]!,
      requests: s.ctl[C_REQUESTS]!,
      irqs: s.ctl[C_IRQS]!,
      irqsViaMain: s.ctl[C_IRQS_VIA_MAIN]!,
      kicks: s.kicks,
      kickWrites: s.kickWrites,
    }));
  }

  /** Stop every queue, close the workers' disks and end the threads. Idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.stopAll();
    this.closing = true;
    await Promise.all(
      this.slots.map(async (s) => {
        if (s === undefined) return;
        if (!s.dead) {
          s.closed ??= new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 5000);
            s.onClosed = () => {
              clearTimeout(t);
              resolve();
            };
          });
          s.worker.postMessage({ t: 'close' } satisfies ToWorker);
          await s.closed;
        }
        await s.worker.terminate();
      }),
    );
  }
}

/** Why the queues of a device activated on `space` cannot go to workers (undefined: they can). */
export function workerUnusableReason(pool: QueueWorkerPool, space: AddressSpace, features: FeatureSet): string | undefined {
  if (!pool.healthy) return 'a queue worker is not running';
  if (features.has(VIRTIO_F_RING_PACKED)) return 'packed rings are not served by queue workers';
  if (space.regions.length === 0) return 'the device has no DMA memory';
  const noFd = space.regions.find((r) => r.fd === undefined);
  if (noFd !== undefined) return `DMA region ${noFd.name} has no fd (message DMA: DMA_MAP without an fd)`;
  return undefined;
}

/**
 * The device model the core sees when queue workers are on: delegates everything to the blk model
 * (config space, features, …) and moves the queues to the workers at DRIVER_OK — or, when the
 * memory is not fd-backed (message DMA), lets the model serve them on the main thread as usual.
 */
export class QueueWorkerModel implements VirtioDeviceModel {
  readonly inner: VirtioDeviceModel;
  readonly pool: QueueWorkerPool;
  readonly deviceId: number;
  readonly name: string;
  readonly numQueues: number;
  readonly config: VirtioDeviceModel['config'];
  readonly featureRules: VirtioDeviceModel['featureRules'];
  requiredFeatures?: () => FeatureSet;
  maxChainSegments?: (q: number) => number;
  private core: VirtioDeviceCore | undefined;
  private mode: 'idle' | 'workers' | 'inline' = 'idle';
  private ctx: DeviceContext | undefined;

  constructor(inner: VirtioDeviceModel, pool: QueueWorkerPool) {
    requireArg(inner.numQueues <= pool.size, `queue workers: the model has ${inner.numQueues} queues but the pool ${pool.size} workers`);
    this.inner = inner;
    this.pool = pool;
    this.deviceId = inner.deviceId;
    this.name = inner.name;
    this.numQueues = inner.numQueues;
    this.config = inner.config;
    this.featureRules = inner.featureRules;
    if (inner.requiredFeatures !== undefined) this.requiredFeatures = () => inner.requiredFeatures!();
    if (inner.maxChainSegments !== undefined) this.maxChainSegments = (q) => inner.maxChainSegments!(q);
  }

  /** Wire the core (its queue registers give each worker its ring configuration). */
  bindCore(core: VirtioDeviceCore): void {
    this.core = core;
  }

  /** 'workers' while the queues run on workers, 'inline' when on the main thread, 'idle' before DRIVER_OK. */
  get activeMode(): 'idle' | 'workers' | 'inline' {
    return this.mode;
  }

  maxQueueSize(q: number): number {
    return this.inner.maxQueueSize(q);
  }
  offeredFeatures(): FeatureSet {
    return this.inner.offeredFeatures();
  }
  bind(host: ModelHost): void {
    this.inner.bind?.(host);
  }

  activate(ctx: DeviceContext): void {
    const why = this.core === undefined ? 'the model is not bound to a core' : workerUnusableReason(this.pool, ctx.space, ctx.features);
    if (why !== undefined) {
      this.mode = 'inline';
      this.pool.emit(`queue workers not used: ${why}; queues run on the main thread`);
      this.inner.activate(ctx);
      return;
    }
    this.mode = 'workers';
    this.ctx = ctx;
    for (let q = 0; q < this.numQueues; q++) if (ctx.queues[q] !== null && ctx.queues[q] !== undefined) this.startWorker(q, ctx);
  }

  private startWorker(q: number, ctx: DeviceContext): void {
    const r = this.core!.queueRegs(q);
    if (r === undefined) return;
    const f = ctx.features;
    const cfg: QueueConfig = {
      index: q,
      size: r.size,
      maxSize: r.maxSize,
      desc: r.addr('desc'),
      driver: r.addr('driver'),
      device: r.addr('device'),
      eventIdx: f.has(VIRTIO_F_EVENT_IDX),
      indirect: f.has(VIRTIO_F_INDIRECT_DESC),
      inOrder: f.has(VIRTIO_F_IN_ORDER),
    };
    const seg = this.inner.maxChainSegments?.(q);
    if (seg !== undefined) cfg.maxChainSegments = seg;
    this.pool.start(q, cfg, f, ctx.space.regions);
  }

  notify(q: number): void {
    if (this.mode === 'workers') this.pool.kick(q);
    else this.inner.notify(q);
  }

  reset(): void {
    this.pool.stopAll();
    this.mode = 'idle';
    this.ctx = undefined;
    this.inner.reset();
  }

  queueReset(q: number): void {
    if (this.mode === 'workers') this.pool.stop(q);
    this.inner.queueReset?.(q);
  }

  queueStarted(q: number, queue: DeviceQueue): void {
    if (this.mode === 'workers' && this.ctx !== undefined) this.startWorker(q, this.ctx);
    else this.inner.queueStarted?.(q, queue);
  }
}
