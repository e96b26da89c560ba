/**
 * One model session: open the model's device once, then for each driver configuration of the plan
 * bring a fresh simulated guest driver up (reset, negotiation, rings), and measure its points.
 * Runs inside a fresh process per model and round (`session-main.ts`).
 */
import { VirtioError, isVirtioError } from '../../errors.js';
import { describeFeatures, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { VirtioPciDriver } from '../../driver/driver.js';
import { GuestRamAllocator } from '../../driver/ram-alloc.js';
import { native } from '../../native/index.js';
import { nativeCopiers } from '../../swiotlb/copy.js';
import { VIRTIO_ID_BLOCK } from '../../device/blk/constants.js';
import { QUEUE_SIZE, sizingFor, type ModelSession, type OpenOptions, type OwnDriver } from './models.js';
import { DMA_MODELS } from './registry.js';
import type { DriverConfig, ModelName, PointMeasure, PointSpec, SessionPlan } from './scenario.js';
import { LATENCY_CAPACITY, runPoint, SlotBuffers, type PointRaw } from './workload.js';

/** Models whose multi-queue steps run on a device with `--queue-workers` (fd-backed DMA memory). */
const QUEUE_WORKER_MODELS: readonly ModelName[] = ['direct', 'swiotlb'];

/** Negotiation result of one driver configuration. */
export interface NegotiatedInfo {
  /** Feature bits as a hex string. */
  mask: string;
  /** Feature names. */
  names: string[];
  dma: 'direct' | 'swiotlb';
  interrupts: string;
  queueSize: number;
  bounceCopier: 'native' | 'js' | null;
}

/** One measured point of a session. */
export interface SessionPoint {
  driver: DriverConfig;
  point: PointSpec;
  negotiated: NegotiatedInfo;
  raw: PointRaw;
}

/** What a session returns. */
export type SessionResult =
  | { model: ModelName; skipped: string }
  | { model: ModelName; skipped?: undefined; info: Record<string, string | number | boolean>; points: SessionPoint[]; failures: Array<{ driver: DriverConfig; point?: PointSpec; error: string }> };

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Bring a driver up under `cfg` on `sess`. */
export function openDriver(sess: ModelSession, cfg: DriverConfig): VirtioPciDriver {
  if (sess.access === undefined) throw new VirtioError('INTERNAL', `${sess.model}: the model has no PCI function (it brings its own driver)`);
  const bounce = native.available ? nativeCopiers(native) : undefined;
  const drv = new VirtioPciDriver(sess.access, {
    guestRam: sess.guestRam,
    ram: new GuestRamAllocator(sess.guestRam),
    features: { packed: cfg.ring === 'packed', eventIdx: cfg.eventIdx, indirect: true },
    queueSize: QUEUE_SIZE,
    queues: cfg.queues,
    interrupts: 'msix',
    indirectThreshold: cfg.indirect ? 1 : 0,
    ...(bounce !== undefined ? { bounce: { copy: bounce.copy, copyBatch: bounce.copyBatch } } : {}),
  });
  drv.init();
  const neg = drv.negotiated!;
  if ((cfg.ring === 'packed') !== neg.has(VIRTIO_F_RING_PACKED)) throw new VirtioError('FEATURE_REQUIRED', `ring ${cfg.ring} requested but VIRTIO_F_RING_PACKED ${neg.has(VIRTIO_F_RING_PACKED) ? 'was' : 'was not'} negotiated (does the device offer it?)`);
  if (cfg.indirect && !neg.has(VIRTIO_F_INDIRECT_DESC)) throw new VirtioError('FEATURE_REQUIRED', 'indirect descriptors requested but VIRTIO_F_INDIRECT_DESC was not negotiated');
  return drv;
}

function negotiatedInfo(drv: VirtioPciDriver): NegotiatedInfo {
  const neg = drv.negotiated!;
  return {
    mask: neg.toString(),
    names: describeFeatures(neg, VIRTIO_ID_BLOCK),
    dma: drv.swiotlb ? 'swiotlb' : 'direct',
    interrupts: drv.interruptMode ?? 'unknown',
    queueSize: drv.queue(0).size,
    bounceCopier: drv.swiotlb ? (native.available ? 'native' : 'js') : null,
  };
}

/** Run `plan` with measurement options `m`. Failures of single points are recorded, not thrown. */
export async function runSession(plan: SessionPlan, m: PointMeasure, opts: OpenOptions = {}, progress?: (done: number) => void, hooks?: { start(): Promise<void>; stop(): Promise<void> }): Promise<SessionResult> {
  const model = DMA_MODELS[plan.model];
  const why = await model.unavailable();
  if (why !== undefined) return { model: plan.model, skipped: why };
  let sess: ModelSession;
  try {
    sess = await model.open(sizingFor(plan), opts);
  } catch (e) {
    return { model: plan.model, skipped: `could not start: ${errText(e)}` };
  }
  const points: SessionPoint[] = [];
  const failures: Array<{ driver: DriverConfig; point?: PointSpec; error: string }> = [];
  const lat = new Float64Array(LATENCY_CAPACITY);
  let done = 0;
  // Multi-queue steps of the vfio-user models with fd-backed memory run on a second device
  // process started with --queue-workers (one worker thread per queue); the other steps keep the
  // plain device, so the queues comparison is "2 queues on 2 workers" vs "1 queue, main thread".
  const main = sess;
  let withWorkers: ModelSession | undefined;
  try {
    await hooks?.start();
    for (const step of plan.steps) {
      if (step.driver.queues > 1 && QUEUE_WORKER_MODELS.includes(plan.model)) {
        try {
          withWorkers ??= await model.open(sizingFor(plan), { ...opts, queueWorkers: true });
        } catch (e) {
          failures.push({ driver: step.driver, error: `device with --queue-workers: ${errText(e)}` });
          done += step.points.length;
          progress?.(done);
          continue;
        }
        sess = withWorkers;
      } else {
        sess = main;
      }
      let drv: VirtioPciDriver | undefined;
      let own: OwnDriver | undefined;
      try {
        if (sess.openOwnDriver !== undefined) own = await sess.openOwnDriver(step.driver);
        else drv = openDriver(sess, step.driver);
      } catch (e) {
        failures.push({ driver: step.driver, error: errText(e) });
        done += step.points.length;
        progress?.(done);
        continue;
      }
      // MSI → wake the loop (after the driver's own handler has collected the completions).
      let wake: (() => void) | undefined;
      const unsub = own === undefined ? sess.access?.onMsi?.(() => {
        const w = wake;
        wake = undefined;
        w?.();
      }) : undefined;
      const waitMsi = (timeoutMs: number): Promise<void> =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            wake = undefined;
            reject(new VirtioError('TIMEOUT', `${plan.model}: no interrupt within ${timeoutMs} ms (device stalled?)`));
          }, timeoutMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      const waitInterrupt = own !== undefined ? own.waitInterrupt.bind(own) : waitMsi;
      const loopDriver = own !== undefined ? own.driver : drv!;
      const bufs = new SlotBuffers(own !== undefined ? own.ram : drv!.ram, step.driver.queues, plan.maxDepth, plan.maxSize);
      const negotiated = own !== undefined ? own.negotiated : negotiatedInfo(drv!);
      try {
        for (const point of step.points) {
          try {
            // The session's first point also warms up the JIT for the whole session (4x warm-up).
            const pm = points.length === 0 && failures.length === 0 ? { ...m, warmupMs: m.warmupMs * 4 } : m;
            const raw = await runPoint({ driver: loopDriver, guestRam: sess.guestRam, synchronous: sess.synchronous, devicePid: sess.devicePid, waitInterrupt, messageStats: () => sess.messageStats() }, bufs, point, pm, lat);
            points.push({ driver: step.driver, point, negotiated, raw });
          } catch (e) {
            failures.push({ driver: step.driver, point, error: errText(e) });
            if (isVirtioError(e, 'TIMEOUT') || isVirtioError(e, 'CLOSED')) throw e; // the device is gone: stop this step
          } finally {
            progress?.(++done);
          }
        }
      } catch {
        done = plan.steps.slice(0, plan.steps.indexOf(step) + 1).reduce((a, s) => a + s.points.length, 0);
        progress?.(done);
      } finally {
        unsub?.();
        try {
          if (own !== undefined) await own.close();
          else drv!.close();
        } catch (e) {
          failures.push({ driver: step.driver, error: `driver close: ${errText(e)}` });
        }
      }
    }
    await hooks?.stop();
  } finally {
    sess = main;
    await withWorkers?.close();
    await sess.close();
  }
  return { model: plan.model, info: withWorkers !== undefined ? { ...sess.info, multiQueueDevice: withWorkers.info.deviceArgs ?? 'queue workers' } : sess.info, points, failures };
}
