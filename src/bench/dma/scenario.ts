/**
 * What the DMA benchmark measures: the dimensions of one measurement point, the driver
 * configurations a model session runs, the quick / full presets and the comparisons (exactly one
 * dimension changed, everything else held and recorded — the virtio-villain `run-perf` method,
 * reference/anchors.md §5).
 */
import { VirtioError } from '../../errors.js';

/** How the device reaches the driver's buffers. */
export type ModelName = 'inproc' | 'inproc-swiotlb' | 'direct' | 'swiotlb' | 'message' | 'vhost-qsd' | 'vhost-ours';

/** Every model, in plot / table order. */
export const MODEL_NAMES: readonly ModelName[] = ['inproc', 'inproc-swiotlb', 'direct', 'swiotlb', 'message', 'vhost-qsd', 'vhost-ours'];

/** The vhost-user models: the benchmark's own vhost-user front-end against two back-ends (model-vhost.ts). */
export const VHOST_MODELS: readonly ModelName[] = ['vhost-qsd', 'vhost-ours'];

/** One-line description per model (table legend, JSON). */
export const MODEL_INFO: Readonly<Record<ModelName, string>> = {
  inproc: 'device and driver in one process, device DMAs straight into guest RAM (no process boundary)',
  'inproc-swiotlb': 'one process, VIRTIO_F_SWIOTLB: the driver bounces every buffer through the window',
  direct: 'vfio-user device process, guest RAM shared by DMA_MAP with the memfd',
  swiotlb: 'vfio-user device process that sees only its bounce window (BAR 4, mmapped by the VMM)',
  message: 'vfio-user device process without a mapping: every byte by DMA_READ / DMA_WRITE messages',
  'vhost-qsd': 'vhost-user: this process as front-end (memfd guest RAM, eventfds) driving qemu-storage-daemon (libvhost-user), disk file on tmpfs',
  'vhost-ours': 'vhost-user: the same front-end driving virtiokit\'s back-end process (`serve blk --vhost-user`), disk file on tmpfs',
};

/** virtio-blk request direction. */
export type Op = 'read' | 'write';

/** Ring layout. */
export type RingKind = 'split' | 'packed';

/** Driver-side configuration of one session step (the device is the same for every step of a model). */
export interface DriverConfig {
  /** Ring layout negotiated (packed needs the device to offer it). */
  ring: RingKind;
  /** The driver puts the 3-segment blk chains into indirect tables. */
  indirect: boolean;
  /** VIRTIO_F_EVENT_IDX accepted. */
  eventIdx: boolean;
  /** Request queues the driver sets up and drives (the device always has 2). */
  queues: number;
}

/** One measurement under a driver configuration. */
export interface PointSpec {
  /** Data bytes per request. */
  size: number;
  /** Requests in flight per queue. */
  depth: number;
  op: Op;
  /** Notification batching: one kick per refill round (true) or one kick per request (false). */
  batch: boolean;
}

/** All dimensions of a point. */
export interface Scenario extends DriverConfig, PointSpec {
  model: ModelName;
}

/** The dimensions a comparison may change. */
export type Dimension = 'model' | 'ring' | 'indirect' | 'eventIdx' | 'batch' | 'queues' | 'depth' | 'op' | 'size';

/** Warm-up and measuring time of one point. */
export interface PointMeasure {
  /** Untimed warm-up (ms). */
  warmupMs: number;
  /** Timed part (ms). */
  ms: number;
  /** At least this many timed requests (the point runs longer if needed). */
  minRequests: number;
  /** Give up when no completion arrives for this long (ms). */
  stallMs: number;
}

/** A preset. */
export interface Preset {
  name: 'quick' | 'full' | 'tiny';
  rounds: number;
  sizes: number[];
  /** Sizes measured at depth 1 as well (latency). */
  depth1Sizes: number[];
  /** Sizes measured as writes as well. */
  writeSizes: number[];
  /** Models that also run the feature comparisons (ring, indirect, event idx, batching, queues). */
  variantModels: ModelName[] | 'all';
  measure: PointMeasure;
  /** Sizes of the copy-bandwidth comparison (bounce pool vs C memcpy). */
  copySizes: number[];
  /** Milliseconds per copy size and repetition. */
  copyMs: number;
  /** Repetitions per copy size and round. */
  copyReps: number;
}

export const KiB = 1024;

/** Held values of every comparison. */
export const BASE_DRIVER: DriverConfig = { ring: 'split', indirect: false, eventIdx: true, queues: 1 };
export const BASE_POINT: PointSpec = { size: 4 * KiB, depth: 32, op: 'read', batch: true };

const ALL_SIZES = [512, KiB, 2 * KiB, 4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB];

/** Under a minute on the 2-core VM. */
export const QUICK: Preset = {
  name: 'quick',
  rounds: 3,
  sizes: [512, 4 * KiB, 64 * KiB, 256 * KiB],
  depth1Sizes: [4 * KiB],
  writeSizes: [4 * KiB],
  variantModels: ['inproc', 'inproc-swiotlb', 'direct', 'swiotlb'],
  measure: { warmupMs: 25, ms: 80, minRequests: 20, stallMs: 5000 },
  copySizes: [512, 4 * KiB, 64 * KiB, 256 * KiB],
  copyMs: 30,
  copyReps: 2,
};

/** Every size, depth 1 and 32, reads and writes, every comparison on every model. */
export const FULL: Preset = {
  name: 'full',
  rounds: 5,
  sizes: ALL_SIZES,
  depth1Sizes: ALL_SIZES,
  writeSizes: ALL_SIZES,
  variantModels: 'all',
  measure: { warmupMs: 150, ms: 400, minRequests: 100, stallMs: 10000 },
  copySizes: ALL_SIZES,
  copyMs: 120,
  copyReps: 3,
};

/** For tests: a handful of requests. */
export function tinyPreset(sizes: number[] = [512, 4 * KiB]): Preset {
  return {
    name: 'tiny',
    rounds: 1,
    sizes,
    depth1Sizes: [],
    writeSizes: [],
    variantModels: [],
    measure: { warmupMs: 0, ms: 1, minRequests: 8, stallMs: 5000 },
    copySizes: sizes,
    copyMs: 2,
    copyReps: 1,
  };
}

/** A driver configuration and the points measured under it. */
export interface SessionStep {
  driver: DriverConfig;
  points: PointSpec[];
}

/** What one model session runs (one fresh process per model and round). */
export interface SessionPlan {
  model: ModelName;
  steps: SessionStep[];
  /** Largest size and depth over the steps (sizes guest RAM, disk and bounce window). */
  maxSize: number;
  maxDepth: number;
  maxQueues: number;
}

/** True when the model can offer packed rings (the vfio-user device host has split queues only). */
export function modelOffersPacked(m: ModelName): boolean {
  return m === 'inproc' || m === 'inproc-swiotlb';
}

function checkSize(s: number): void {
  if (!(Number.isInteger(s) && s >= 512 && s <= 256 * KiB && s % 512 === 0)) {
    throw new VirtioError('INVALID_ARGUMENT', `request size ${s} must be a multiple of 512 between 512 and 262144 bytes`);
  }
}

const sameDriver = (a: DriverConfig, b: DriverConfig): boolean => a.ring === b.ring && a.indirect === b.indirect && a.eventIdx === b.eventIdx && a.queues === b.queues;
const samePoint = (a: PointSpec, b: PointSpec): boolean => a.size === b.size && a.depth === b.depth && a.op === b.op && a.batch === b.batch;

function addPoint(steps: SessionStep[], driver: DriverConfig, p: PointSpec): void {
  let st = steps.find((s) => sameDriver(s.driver, driver));
  if (st === undefined) steps.push((st = { driver: { ...driver }, points: [] }));
  if (!st.points.some((q) => samePoint(q, p))) st.points.push({ ...p });
}

/** The session plan of `model` under `preset`. */
export function planSession(model: ModelName, preset: Preset): SessionPlan {
  for (const s of [...preset.sizes, ...preset.depth1Sizes, ...preset.writeSizes]) checkSize(s);
  const steps: SessionStep[] = [];
  const B = BASE_DRIVER;
  for (const size of preset.sizes) addPoint(steps, B, { ...BASE_POINT, size });
  for (const size of preset.depth1Sizes) addPoint(steps, B, { ...BASE_POINT, size, depth: 1 });
  for (const size of preset.writeSizes) addPoint(steps, B, { ...BASE_POINT, size, op: 'write' });
  const variants = preset.variantModels === 'all' || preset.variantModels.includes(model);
  if (variants) {
    addPoint(steps, B, { ...BASE_POINT, batch: false });
    addPoint(steps, { ...B, queues: 2 }, BASE_POINT);
    addPoint(steps, { ...B, indirect: true }, BASE_POINT);
    addPoint(steps, { ...B, eventIdx: false }, BASE_POINT);
    if (modelOffersPacked(model)) addPoint(steps, { ...B, ring: 'packed' }, BASE_POINT);
  }
  // Points in ascending size inside a step: the RSS high-water mark is reset before each point,
  // but the allocator keeps what larger requests grew.
  for (const s of steps) s.points.sort((a, b) => a.size - b.size || a.depth - b.depth || (a.op < b.op ? -1 : a.op > b.op ? 1 : 0) || Number(b.batch) - Number(a.batch));
  let maxSize = 0;
  let maxDepth = 0;
  let maxQueues = 0;
  for (const s of steps) {
    maxQueues = Math.max(maxQueues, s.driver.queues);
    for (const p of s.points) {
      maxSize = Math.max(maxSize, p.size);
      maxDepth = Math.max(maxDepth, p.depth);
    }
  }
  return { model, steps, maxSize, maxDepth, maxQueues };
}

/** Stable key of a scenario (joins rows across rounds). */
export function scenarioKey(s: Scenario): string {
  return `${s.model}|${s.ring}|${s.indirect ? 'ind' : 'dir'}|${s.eventIdx ? 'evi' : 'noevi'}|q${s.queues}|${s.size}|d${s.depth}|${s.op}|${s.batch ? 'batch' : 'nobatch'}`;
}

/** The value of dimension `d` in `s`. */
export function dimValue(s: Scenario, d: Dimension): string | number | boolean {
  return s[d];
}

const ALL_DIMS: readonly Dimension[] = ['model', 'ring', 'indirect', 'eventIdx', 'batch', 'queues', 'depth', 'op', 'size'];

/** The dimensions in which `a` and `b` differ. */
export function differingDims(a: Scenario, b: Scenario): Dimension[] {
  return ALL_DIMS.filter((d) => dimValue(a, d) !== dimValue(b, d));
}
