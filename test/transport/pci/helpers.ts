/**
 * Test doubles for the virtio-pci transport: a tiny device model, fake queue factories, and a
 * driver-ish helper that programs BARs and walks the virtio init sequence through BAR accesses.
 */
import { VirtioDeviceCore } from '../../../src/device/core.js';
import type { DeviceContext, DeviceCoreOptions, ModelHost, VirtioDeviceModel } from '../../../src/device/types.js';
import type { DeviceQueue, DeviceQueueFactory, QueueConfig } from '../../../src/queue/types.js';
import { FeatureSet } from '../../../src/features/set.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createVirtioPciDevice, type VirtioPciDevice, type VirtioPciOptions } from '../../../src/transport/pci/virtio-pci-device.js';
import { COMMON_CFG } from '../../../src/transport/pci/common-cfg.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../../../src/features/bits.js';

/** A net-typed model (device id 1) with three queues (the third unavailable) and 8 bytes of config. */
export class FakeModel implements VirtioDeviceModel {
  readonly deviceId = 1;
  readonly name = 'fake-net';
  readonly numQueues = 3;
  readonly notified: number[] = [];
  host: ModelHost | undefined;
  ctx: DeviceContext | undefined;
  resets = 0;
  readonly cfg = new Uint8Array(8);
  private readonly cfgDv = new DataView(this.cfg.buffer);
  readonly config = {
    size: 8,
    read: (off: number, width: 1 | 2 | 4): number => (width === 1 ? this.cfg[off]! : width === 2 ? this.cfgDv.getUint16(off, true) : this.cfgDv.getUint32(off, true)),
    write: (off: number, width: 1 | 2 | 4, value: number): void => {
      if (width === 1) this.cfg[off] = value;
      else if (width === 2) this.cfgDv.setUint16(off, value, true);
      else this.cfgDv.setUint32(off, value, true);
    },
  };
  maxQueueSize(q: number): number {
    return [256, 128, 0][q] ?? 0;
  }
  /** MAC (5), OUT_NET_HEADER (69) and IPSEC (70): bits in windows 0 and 2. */
  offeredFeatures(): FeatureSet {
    return FeatureSet.fromBits([5, 69, 70]);
  }
  bind(host: ModelHost): void {
    this.host = host;
  }
  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
  }
  notify(q: number): void {
    this.notified.push(q);
  }
  reset(): void {
    this.resets++;
  }
  /** Change the config (as a link-status change would) and tell the core. */
  changeConfig(off: number, v: number): void {
    this.cfg[off] = v;
    this.host?.configChanged();
  }
}

/** A queue that does nothing and always wants an interrupt. */
export class FakeQueue implements DeviceQueue {
  readonly kind = 'split' as const;
  parked = false;
  park(): void {
    this.parked = true;
  }
  inFlight = 0;
  constructor(
    readonly index: number,
    readonly size: number,
    readonly cfg: QueueConfig,
    readonly space: AddressSpace,
  ) {}
  pop(): boolean {
    return false;
  }
  pushUsed(): void {}
  pushUsedBatch(): void {}
  needsInterrupt(): boolean {
    return true;
  }
  enableNotifications(): boolean {
    return false;
  }
  disableNotifications(): void {}
  hasAvailable(): boolean {
    return false;
  }
  reset(): void {}
  getBase(): number {
    return 0;
  }
  setBase(): void {}
}

/** Factory recording every queue it creates. */
export function fakeFactory(created: FakeQueue[]): DeviceQueueFactory {
  return (space, cfg) => {
    const q = new FakeQueue(cfg.index, cfg.size, cfg, space);
    created.push(q);
    return q;
  };
}

/** Guest RAM for tests (1 MiB at 0). */
export function ram(): AddressSpace {
  return new AddressSpace([{ base: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20), name: 'ram' }], 'guest-ram');
}

export interface Rig {
  dev: VirtioPciDevice;
  core: VirtioDeviceCore;
  model: FakeModel;
  queues: FakeQueue[];
  msis: Array<[number, number, number]>;
  intx: boolean[];
  space: AddressSpace;
}

/** Build model + core + PCI function. */
export function rig(opts: { core?: Partial<DeviceCoreOptions>; pci?: VirtioPciOptions; extra?: number[] } = {}): Rig {
  const model = new FakeModel();
  const queues: FakeQueue[] = [];
  const msis: Array<[number, number, number]> = [];
  const intx: boolean[] = [];
  const space = ram();
  let core!: VirtioDeviceCore;
  const dev = createVirtioPciDevice(
    (hooks) =>
      (core = new VirtioDeviceCore({
        model,
        space,
        hooks,
        queueFactories: { split: fakeFactory(queues) },
        extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, ...(opts.extra ?? [])],
        transport: 'pci',
        ...opts.core,
      })),
    { ...opts.pci, onMsi: (a, d, v) => msis.push([a, d, v]), onIntx: (l) => intx.push(l) },
  );
  return { dev, core, model, queues, msis, intx, space };
}

/** Bus addresses the tests program into the BARs. */
export const BAR_ADDR: Record<number, number> = { 0: 0xe000_0000, 2: 0xfebf_0000, 4: 0x8_0000_0000 };

/** Program every BAR at {@link BAR_ADDR} and enable memory + bus master. */
export function enable(dev: VirtioPciDevice): void {
  for (const b of dev.bars) {
    const a = BAR_ADDR[b.index]!;
    dev.configWrite(0x10 + b.index * 4, 4, a % 0x1_0000_0000);
    if (b.is64) dev.configWrite(0x10 + b.index * 4 + 4, 4, Math.floor(a / 0x1_0000_0000));
  }
  dev.configWrite(0x04, 2, 0x0006);
}

/** Common cfg access helpers (BAR 0, offset 0 in the default layout). */
export function cc(dev: VirtioPciDevice) {
  const bar = dev.layout.common.bar;
  const base = dev.layout.common.offset;
  return {
    r: (off: number, size: number) => dev.barRead(bar, base + off, size),
    w: (off: number, size: number, v: number) => dev.barWrite(bar, base + off, size, v),
  };
}

/** Walk ACKNOWLEDGE → DRIVER → features → FEATURES_OK. Returns the status read back. */
export function negotiate(dev: VirtioPciDevice, featureWords: number[]): number {
  const c = cc(dev);
  c.w(COMMON_CFG.DEVICE_STATUS, 1, 1);
  c.w(COMMON_CFG.DEVICE_STATUS, 1, 3);
  featureWords.forEach((w, i) => {
    c.w(COMMON_CFG.DRIVER_FEATURE_SELECT, 4, i);
    c.w(COMMON_CFG.DRIVER_FEATURE, 4, w);
  });
  c.w(COMMON_CFG.DEVICE_STATUS, 1, 0xb);
  return c.r(COMMON_CFG.DEVICE_STATUS, 1);
}

/** Configure queue `q` at some addresses and enable it. */
export function setupQueue(dev: VirtioPciDevice, q: number, base = 0x10000 * (q + 1)): void {
  const c = cc(dev);
  c.w(COMMON_CFG.QUEUE_SELECT, 2, q);
  c.w(COMMON_CFG.QUEUE_DESC_LO, 4, base);
  c.w(COMMON_CFG.QUEUE_DESC_HI, 4, 0);
  c.w(COMMON_CFG.QUEUE_DRIVER_LO, 4, base + 0x1000);
  c.w(COMMON_CFG.QUEUE_DRIVER_HI, 4, 0);
  c.w(COMMON_CFG.QUEUE_DEVICE_LO, 4, base + 0x2000);
  c.w(COMMON_CFG.QUEUE_DEVICE_HI, 4, 0);
  c.w(COMMON_CFG.QUEUE_ENABLE, 2, 1);
}

/** VERSION_1 is bit 32: word 1, bit 0. */
export const V1 = [0, 1];
