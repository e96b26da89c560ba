/**
 * The in-process target: virtiokit's own device models (blk over a RAM disk, net over a direct
 * backend, rng, console with a recording port 0) behind virtio-pci (the embedding API,
 * `createPciDevice`) or virtio-mmio, with a SWIOTLB window (policy 'required') or without.
 *
 * Every {@link InprocTarget.open} builds everything fresh: guest RAM, window, model, transport.
 * Guest RAM is 2 MiB at 0x4000_0000; for MMIO with SWIOTLB the restricted pool is its upper
 * 512 KiB (a device-tree `restricted-dma-pool`), for PCI the window is a 256 KiB BAR.
 */
import { VirtioDeviceCore } from '../../device/core.js';
import type { VirtioDeviceModel } from '../../device/types.js';
import { BlkDevice, RamBackend } from '../../device/blk/index.js';
import { DirectBackend, VirtioNetDevice } from '../../device/net/index.js';
import { RngDevice } from '../../device/rng/index.js';
import { ConsoleDevice, type PortBackend, type PortBackendEvents } from '../../device/console/index.js';
import { createPciDevice } from '../../embed/pci-device.js';
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
} from '../../features/bits.js';
import { AddressSpace } from '../../memory/space.js';
import { createSplitDeviceQueue } from '../../queue/split/device.js';
import { createPackedDeviceQueue } from '../../queue/packed/device.js';
import { SwiotlbWindow } from '../../swiotlb/window.js';
import { createVirtioMmioDevice, MMIO_CORE_OPTIONS } from '../../transport/mmio/mmio-device.js';
import { DEVICE_KINDS, TRANSPORT_KINDS, type DeviceKind, type Dut, type DutBackendIo, type DutVariant } from '../check.js';
import type { DutRequest, Target } from './target.js';

/** Guest RAM base and size of every in-process DUT. */
export const INPROC_RAM_BASE = 0x4000_0000;
export const INPROC_RAM_SIZE = 2 << 20;
/** MMIO restricted pool (inside guest RAM) and PCI window size. */
export const INPROC_POOL_BASE = INPROC_RAM_BASE + (3 << 19);
export const INPROC_POOL_SIZE = 1 << 19;
export const INPROC_PCI_WINDOW_SIZE = 1 << 18;
/** Queue size every model offers (small keeps fresh devices cheap). */
export const INPROC_QUEUE_SIZE = 64;
/** RAM disk size of the blk DUT. */
export const INPROC_DISK_SIZE = 1 << 18;

/** Records what port 0 writes; lets a check feed input. */
class RecordingPort implements PortBackend {
  readonly kind = 'recording';
  readonly connected = true;
  readonly output: number[] = [];
  private events: PortBackendEvents | null = null;
  attach(events: PortBackendEvents): void {
    this.events = events;
  }
  write(data: Uint8Array): boolean {
    for (let i = 0; i < data.length && this.output.length < 1 << 16; i++) this.output.push(data[i]!);
    return true;
  }
  pause(): void {}
  resume(): void {}
  async close(): Promise<void> {}
  input(data: Uint8Array): void {
    this.events?.data(Uint8Array.from(data));
  }
}

function buildModel(kind: DeviceKind, v: DutVariant): { model: VirtioDeviceModel; io: DutBackendIo } {
  switch (kind) {
    case 'blk': {
      const backend = new RamBackend(INPROC_DISK_SIZE);
      const model = new BlkDevice(backend, {
        queueSize: INPROC_QUEUE_SIZE,
        ...(v.blk?.readOnly !== undefined ? { readOnly: v.blk.readOnly } : {}),
        ...(v.blk?.configWce !== undefined ? { configWce: v.blk.configWce } : {}),
        ...(v.blk?.writeback !== undefined ? { writeback: v.blk.writeback } : {}),
        ...(v.blk?.queues !== undefined ? { queues: v.blk.queues } : {}),
      });
      const readDisk = (offset: number, length: number): Uint8Array => {
        return backend.disk.slice(offset, offset + length);
      };
      return { model, io: { readDisk } };
    }
    case 'net': {
      const backend = new DirectBackend();
      const sent: Uint8Array[] = [];
      backend.onSend = (buf, off, len) => {
        if (sent.length < 256) sent.push(buf.slice(off, off + len));
      };
      const model = new VirtioNetDevice({
        backend,
        queueSize: INPROC_QUEUE_SIZE,
        mac: '52:54:00:12:34:56',
        ...(v.net?.queuePairs !== undefined ? { queuePairs: v.net.queuePairs } : {}),
        ...(v.net?.mtu !== undefined ? { mtu: v.net.mtu } : {}),
        ...(v.net?.mergeable !== undefined ? { mergeable: v.net.mergeable } : {}),
        ...(v.net?.ctrlVq !== undefined ? { ctrlVq: v.net.ctrlVq } : {}),
      });
      let up = true;
      return {
        model,
        io: {
          injectFrame: (f) => backend.inject(f),
          sentFrames: sent,
          configChange: () => {
            up = !up;
            model.setLink(up);
          },
          announce: () => model.announce(),
        },
      };
    }
    case 'rng':
      return { model: new RngDevice({ queueSize: INPROC_QUEUE_SIZE }), io: {} };
    case 'console': {
      const port = new RecordingPort();
      const multi = v.console?.multiport === true;
      const model = new ConsoleDevice({
        ports: multi ? [{ backend: port }, {}] : [{ backend: port }],
        queueSize: INPROC_QUEUE_SIZE,
        size: { cols: 80, rows: 25 },
        ...(multi ? { multiport: true, maxNrPorts: v.console?.maxNrPorts ?? 4 } : {}),
      });
      let n = 0;
      return { model, io: { consoleOutput: port.output, consoleInput: (d) => port.input(d), configChange: () => model.resize(80 + ++n, 25) } };
    }
  }
}

function queueBits(v: DutVariant): number[] {
  const bits: number[] = [];
  if (v.indirect ?? true) bits.push(VIRTIO_F_INDIRECT_DESC);
  if (v.eventIdx ?? true) bits.push(VIRTIO_F_EVENT_IDX);
  if (v.packed === true) bits.push(VIRTIO_F_RING_PACKED);
  if (v.inOrder === true) bits.push(VIRTIO_F_IN_ORDER);
  if (v.notificationData === true) bits.push(VIRTIO_F_NOTIFICATION_DATA);
  for (const b of v.extraFeatures ?? []) bits.push(b);
  return bits;
}

/** virtiokit's own devices, in this process. */
export class InprocTarget implements Target {
  readonly name = 'inproc';
  readonly buildsVariants = true;
  readonly devices = DEVICE_KINDS;
  readonly transports = TRANSPORT_KINDS;
  readonly swiotlbModes = [false, true] as const;

  async open(req: DutRequest): Promise<Dut> {
    const v = req.variant ?? {};
    const buf = new SharedArrayBuffer(INPROC_RAM_SIZE);
    const ram = new AddressSpace([{ base: INPROC_RAM_BASE, size: INPROC_RAM_SIZE, buffer: buf, name: 'ram' }], 'guest-ram');
    const { model, io } = buildModel(req.device, v);
    if (req.transport === 'pci') {
      const msix = v.pci?.msixVectors;
      const dev = await createPciDevice({
        model,
        guestRam: ram,
        swiotlb: req.swiotlb ? { policy: 'required', size: INPROC_PCI_WINDOW_SIZE, backing: 'shared' } : { policy: 'off' },
        queue: { indirect: false, eventIdx: false },
        extraFeatures: queueBits(v),
        pci: {
          ...(msix !== undefined ? { msixVectors: msix } : {}),
          ...(v.pci?.vendorCaps === true ? { vendorCaps: [{ vendorId: 0x1234, data: new Uint8Array([1, 2, 3, 4]) }] } : {}),
          ...(v.pci?.sharedMemory === true
            ? { extraBars: [{ index: 3, size: 1 << 16 }], sharedMemory: [{ shmid: 1, bar: 3, offset: 0, length: 1 << 16 }] }
            : {}),
        },
      });
      return { kind: req.device, transport: 'pci', swiotlb: req.swiotlb, ram, pci: dev, io, core: dev.core, close: () => dev.close() };
    }
    const window = req.swiotlb ? new SwiotlbWindow(buf, { offset: INPROC_POOL_BASE - INPROC_RAM_BASE, size: INPROC_POOL_SIZE, base: INPROC_POOL_BASE, name: 'restricted-pool' }) : undefined;
    let core!: VirtioDeviceCore;
    const dev = createVirtioMmioDevice(
      (hooks) =>
        (core = new VirtioDeviceCore({
          model,
          space: ram,
          hooks,
          queueFactories: { split: createSplitDeviceQueue, packed: createPackedDeviceQueue },
          extraFeatures: queueBits(v),
          ...MMIO_CORE_OPTIONS,
          ...(window !== undefined ? { swiotlb: { policy: 'required' as const, space: window.asAddressSpace() } } : {}),
        })),
      { ...(window !== undefined ? { swiotlbWindow: window } : {}) },
    );
    return {
      kind: req.device,
      transport: 'mmio',
      swiotlb: req.swiotlb,
      ram,
      mmio: { access: dev, platform: dev.platformInfo() },
      io,
      core,
      close: () => undefined,
    };
  }
}
