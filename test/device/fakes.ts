/** Test doubles for the device core: a tiny model and fake queue factories (no real rings). */
import type { GuestErrorSink } from '../../src/device/choke.js';
import type { DeviceContext, ModelHost, TransportHooks, VirtioDeviceModel } from '../../src/device/types.js';
import { FeatureSet } from '../../src/features/set.js';
import { AddressSpace } from '../../src/memory/space.js';
import type { DescChain, DeviceQueue, DeviceQueueFactory, QueueConfig } from '../../src/queue/types.js';

/** A DeviceQueue that touches no memory; tests drive `wantInterrupt` and read `resets`. */
export class FakeQueue implements DeviceQueue {
  readonly kind: 'split' | 'packed';
  readonly index: number;
  readonly size: number;
  parked = false;
  park(): void {
    this.parked = true;
  }
  inFlight = 0;
  wantInterrupt = true;
  resets = 0;
  readonly cfg: QueueConfig;
  readonly space: AddressSpace;
  readonly sink: GuestErrorSink;
  constructor(kind: 'split' | 'packed', space: AddressSpace, cfg: QueueConfig, sink: GuestErrorSink) {
    this.kind = kind;
    this.index = cfg.index;
    this.size = cfg.size;
    this.cfg = cfg;
    this.space = space;
    this.sink = sink;
  }
  pop(_chain: DescChain): boolean {
    return false;
  }
  pushUsed(_head: number, _len: number): void {}
  pushUsedBatch(_h: ArrayLike<number>, _l: ArrayLike<number>, _n: number): void {}
  needsInterrupt(): boolean {
    return this.wantInterrupt;
  }
  enableNotifications(): boolean {
    return false;
  }
  disableNotifications(): void {}
  hasAvailable(): boolean {
    return false;
  }
  reset(): void {
    this.resets++;
    this.parked = false;
  }
  getBase(): number {
    return 0;
  }
  setBase(_b: number): void {}
}

/** Fake split/packed factories: size 0 or above max is reported to the sink (like the real ones) and yields null. */
export function fakeFactories(): { split: DeviceQueueFactory; packed: DeviceQueueFactory; made: FakeQueue[] } {
  const made: FakeQueue[] = [];
  const mk =
    (kind: 'split' | 'packed'): DeviceQueueFactory =>
    (space, cfg, sink) => {
      if (cfg.size === 0 || cfg.size > cfg.maxSize) {
        sink.guestError({ code: 'QUEUE_SIZE_INVALID', clause: 'pci.common-cfg.driver.3', message: `size ${cfg.size}`, queue: cfg.index });
        return null;
      }
      const q = new FakeQueue(kind, space, cfg, sink);
      made.push(q);
      return q;
    };
  return { split: mk('split'), packed: mk('packed'), made };
}

/** A tiny model: `numQueues` queues of size 256, an 8-byte config (u32 counter @0, u32 writable @4). */
export class FakeModel implements VirtioDeviceModel {
  readonly deviceId: number;
  readonly name = 'fake';
  readonly numQueues: number;
  offer: FeatureSet;
  require: FeatureSet | undefined;
  host: ModelHost | undefined;
  ctx: DeviceContext | undefined;
  calls: string[] = [];
  notifies: number[] = [];
  throwOnNotify: unknown = undefined;
  throwOnActivate = false;
  private counter = 0;
  private scratch = 0;
  readonly config = {
    size: 8,
    read: (off: number, width: 1 | 2 | 4): number => {
      const v = off < 4 ? this.counter : this.scratch;
      const shift = (off & 3) * 8;
      const mask = width === 4 ? 0xffffffff : (1 << (width * 8)) - 1;
      return (v >>> shift) & mask;
    },
    write: (off: number, _width: 1 | 2 | 4, value: number): void => {
      if (off === 4) this.scratch = value;
    },
  };
  constructor(opts: { deviceId?: number; numQueues?: number; offer?: number[]; require?: number[] } = {}) {
    this.deviceId = opts.deviceId ?? 0x7f; // no table: any device-specific bit is fine
    this.numQueues = opts.numQueues ?? 2;
    this.offer = FeatureSet.fromBits(opts.offer ?? [0, 1]);
    this.require = opts.require === undefined ? undefined : FeatureSet.fromBits(opts.require);
  }
  maxQueueSize(_q: number): number {
    return 256;
  }
  offeredFeatures(): FeatureSet {
    return this.offer;
  }
  requiredFeatures(): FeatureSet {
    return this.require ?? new FeatureSet();
  }
  bind(host: ModelHost): void {
    this.host = host;
  }
  activate(ctx: DeviceContext): void {
    this.calls.push('activate');
    this.ctx = ctx;
    if (this.throwOnActivate) throw new Error('activate failed');
  }
  notify(q: number): void {
    this.notifies.push(q);
    if (this.throwOnNotify !== undefined) throw this.throwOnNotify;
  }
  reset(): void {
    this.calls.push('reset');
    this.ctx = undefined;
  }
  queueReset(q: number): void {
    this.calls.push(`queueReset ${q}`);
  }
  queueStarted(q: number): void {
    this.calls.push(`queueStarted ${q}`);
  }
  /** Change the config (counter) and tell the core. */
  bump(): void {
    this.counter++;
    this.host?.configChanged();
  }
}

/** Recording transport hooks. */
export class FakeTransport implements TransportHooks {
  queueIrqs: Array<[number, number]> = [];
  configIrqs: number[] = [];
  queueInterrupt(q: number, vector: number): void {
    this.queueIrqs.push([q, vector]);
  }
  configInterrupt(vector: number): void {
    this.configIrqs.push(vector);
  }
}

/** A 1 MiB RAM space at 0 and a 64 KiB "bounce window" space. */
export function spaces(): { ram: AddressSpace; window: AddressSpace } {
  const ram = new AddressSpace([{ base: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20), name: 'ram' }], 'guest-ram');
  const window = new AddressSpace([{ base: 0x4000_0000, size: 1 << 16, buffer: new ArrayBuffer(1 << 16), name: 'swiotlb' }], 'swiotlb-window');
  return { ram, window };
}
