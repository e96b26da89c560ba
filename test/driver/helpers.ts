/**
 * Test rig for the simulated driver: a tiny echo device model (copies the readable bytes of each
 * chain into its writable bytes and records every segment address it was given), a spy around
 * PciFunctionAccess, and a builder wiring device (embedding API) and driver together.
 */
import { FeatureSet } from '../../src/features/set.js';
import { AddressSpace } from '../../src/memory/space.js';
import { DescChain } from '../../src/queue/types.js';
import type { DeviceContext, ModelHost, SwiotlbPolicy, VirtioDeviceModel } from '../../src/device/types.js';
import { createPciDevice, type CreatePciDeviceOptions, type PciDeviceHandle } from '../../src/embed/index.js';
import type { PciFunctionAccess } from '../../src/driver/access.js';
import { VirtioPciDriver, type VirtioPciDriverOptions } from '../../src/driver/driver.js';

/** Device id used by the echo model (no feature table defined for it). */
export const ECHO_DEVICE_ID = 42;

/** Echo: for each chain, the concatenated readable bytes are written into the writable segments. */
export class EchoModel implements VirtioDeviceModel {
  readonly deviceId = ECHO_DEVICE_ID;
  readonly name = 'virtio-echo';
  readonly numQueues: number;
  readonly config = { size: 4, read: (_o: number, _w: 1 | 2 | 4): number => this.cfgValue, write: (): void => undefined };
  cfgValue = 0x1234;
  /** Every segment [addr, len] the device was handed. */
  readonly seen: Array<[number, number]> = [];
  requests = 0;
  host: ModelHost | undefined;
  private ctx: DeviceContext | null = null;
  private readonly chain = new DescChain(64);
  private readonly scratch = new Uint8Array(1 << 16);

  constructor(numQueues = 2, private readonly maxSize = 256) {
    this.numQueues = numQueues;
  }
  maxQueueSize(): number {
    return this.maxSize;
  }
  offeredFeatures(): FeatureSet {
    return new FeatureSet();
  }
  bind(host: ModelHost): void {
    this.host = host;
  }
  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }
  reset(): void {
    this.ctx = null;
  }
  /** Change the config value and tell the core (config-change interrupt). */
  changeConfig(v: number): void {
    this.cfgValue = v;
    this.host?.configChanged();
  }
  notify(q: number): void {
    const ctx = this.ctx;
    const queue = ctx?.queues[q];
    if (ctx === null || ctx === undefined || queue === null || queue === undefined) return;
    const c = this.chain;
    const regions = ctx.space.regions;
    let any = false;
    for (;;) {
      queue.disableNotifications();
      if (!queue.pop(c)) {
        // Ask for notifications again; a buffer that arrived meanwhile is processed now.
        if (queue.parked || !queue.enableNotifications()) break;
        continue;
      }
      let n = 0;
      for (let i = 0; i < c.count; i++) {
        if (this.seen.length < 100000) this.seen.push([c.addr[i]!, c.len[i]!]);
        const r = regions[c.region[i]!]!;
        if (i < c.readable) {
          const take = Math.min(c.len[i]!, this.scratch.length - n);
          this.scratch.set(r.u8.subarray(c.offset[i]!, c.offset[i]! + take), n);
          n += take;
        }
      }
      let w = 0;
      for (let i = c.readable; i < c.count && w < n; i++) {
        const r = regions[c.region[i]!]!;
        const take = Math.min(c.len[i]!, n - w);
        r.u8.set(this.scratch.subarray(w, w + take), c.offset[i]!);
        w += take;
      }
      queue.pushUsed(c.head, w);
      this.requests++;
      any = true;
    }
    if (any) ctx.interrupt(q);
  }
}

/** Records MMIO writes; `readHook` may override reads. */
export class SpyAccess implements PciFunctionAccess {
  readonly writes: Array<[number, number, number]> = [];
  readonly reads: Array<[number, number]> = [];
  readHook: ((addr: number, size: number, value: number) => number) | undefined;
  writeHook: ((addr: number, size: number, value: number) => boolean) | undefined;
  constructor(readonly inner: PciDeviceHandle) {}
  configRead(off: number, size: number): number {
    return this.inner.configRead(off, size);
  }
  configWrite(off: number, size: number, value: number): void {
    this.inner.configWrite(off, size, value);
  }
  mmioRead(addr: number, size: number): number {
    const v = this.inner.mmioRead(addr, size);
    this.reads.push([addr, size]);
    return this.readHook !== undefined ? this.readHook(addr, size, v) : v;
  }
  mmioWrite(addr: number, size: number, value: number): void {
    this.writes.push([addr, size, value]);
    if (this.writeHook !== undefined && this.writeHook(addr, size, value)) return;
    this.inner.mmioWrite(addr, size, value);
  }
  barMapping(bar: number) {
    return this.inner.barMapping(bar);
  }
  onMsi(fn: (a: number, d: number, v: number) => void): () => void {
    return this.inner.onMsi(fn);
  }
  onIntx(fn: (l: boolean) => void): () => void {
    return this.inner.onIntx(fn);
  }
}

/** Guest RAM for the driver: 4 MiB at 1 MiB. */
export function guestRam(): AddressSpace {
  const size = 4 << 20;
  return new AddressSpace([{ base: 0x10_0000, size, buffer: new SharedArrayBuffer(size), name: 'ram' }], 'guest-ram');
}

export interface RigOptions {
  policy?: SwiotlbPolicy;
  /** 'ram' (default): the device may DMA to guest RAM; 'none': an empty space (SWIOTLB proof). */
  deviceSpace?: 'ram' | 'none';
  packed?: boolean;
  notificationData?: boolean;
  msixVectors?: number;
  numQueues?: number;
  windowSize?: number;
  device?: Partial<CreatePciDeviceOptions>;
  driver?: Partial<VirtioPciDriverOptions>;
  spy?: boolean;
}

export interface Rig {
  dev: PciDeviceHandle;
  model: EchoModel;
  ram: AddressSpace;
  access: PciFunctionAccess;
  spy: SpyAccess | undefined;
  /** Driver built (probed) but not initialized. */
  drv: VirtioPciDriver;
}

/** Device (echo model through the embedding API) + probed driver. */
export async function rig(o: RigOptions = {}): Promise<Rig> {
  const model = new EchoModel(o.numQueues ?? 2);
  const ram = guestRam();
  const deviceSpace = o.deviceSpace === 'none' ? new AddressSpace([], 'nothing') : ram;
  const dev = await createPciDevice({
    model,
    guestRam: deviceSpace,
    swiotlb: { policy: o.policy ?? 'off', size: o.windowSize ?? 1 << 20, backing: 'shared' },
    queue: { packed: o.packed ?? false, notificationData: o.notificationData ?? false },
    ...(o.msixVectors !== undefined ? { pci: { msixVectors: o.msixVectors } } : {}),
    ...o.device,
  });
  const spy = o.spy === true ? new SpyAccess(dev) : undefined;
  const access: PciFunctionAccess = spy ?? dev;
  const drv = new VirtioPciDriver(access, { guestRam: ram, ...o.driver });
  return { dev, model, ram, access, spy, drv };
}

/** `n` bytes of a recognisable pattern. */
export function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}
