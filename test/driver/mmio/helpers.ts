/**
 * Test rig for the virtio-mmio driver: virtio-blk over a RAM disk behind a virtio-mmio device with
 * the real split/packed queues, guest RAM (4 MiB at 0x4000_0000) holding an optional restricted
 * DMA pool, an access spy, and virtio-blk request helpers.
 */
import { VirtioDeviceCore } from '../../../src/device/core.js';
import type { SwiotlbPolicy } from '../../../src/device/types.js';
import { BlkDevice, RamBackend } from '../../../src/device/blk/index.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../../src/device/blk/constants.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../../../src/features/bits.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createSplitDeviceQueue } from '../../../src/queue/split/index.js';
import { createPackedDeviceQueue } from '../../../src/queue/packed/index.js';
import { SwiotlbWindow } from '../../../src/swiotlb/window.js';
import { createVirtioMmioDevice, MMIO_CORE_OPTIONS, type VirtioMmioDevice } from '../../../src/transport/mmio/mmio-device.js';
import type { MmioDeviceAccess } from '../../../src/driver/mmio/access.js';
import type { VirtqueueDriver } from '../../../src/driver/virtqueue.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE = 4 << 20;
/** The restricted pool: 1 MiB inside guest RAM. */
export const POOL_BASE = RAM_BASE + 0x30_0000;
export const POOL_SIZE = 1 << 20;

export interface BlkRig {
  dev: VirtioMmioDevice;
  core: VirtioDeviceCore;
  blk: BlkDevice;
  backend: RamBackend;
  guestRam: AddressSpace;
  window: SwiotlbWindow | undefined;
}

export interface BlkRigOptions {
  /** Device SWIOTLB policy (default 'off': no window, no pool). */
  swiotlb?: SwiotlbPolicy;
  /** Extra device-independent bits offered. */
  extra?: number[];
  /** virtio-blk request queues (default 1). */
  queues?: number;
}

/** virtio-blk (1 MiB RAM disk) over virtio-mmio. */
export function blkRig(o: BlkRigOptions = {}): BlkRig {
  const buf = new ArrayBuffer(RAM_SIZE);
  const guestRam = new AddressSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: buf, name: 'ram' }], 'guest-ram');
  const policy = o.swiotlb ?? 'off';
  const window = policy !== 'off' ? new SwiotlbWindow(buf, { offset: POOL_BASE - RAM_BASE, size: POOL_SIZE, base: POOL_BASE, name: 'restricted-pool' }) : undefined;
  const backend = new RamBackend(1 << 20);
  const blk = new BlkDevice(backend, { queues: o.queues ?? 1, queueSize: 128 });
  let core!: VirtioDeviceCore;
  const dev = createVirtioMmioDevice(
    (hooks) =>
      (core = new VirtioDeviceCore({
        model: blk,
        space: guestRam,
        hooks,
        queueFactories: { split: createSplitDeviceQueue, packed: createPackedDeviceQueue },
        extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, ...(o.extra ?? [])],
        ...MMIO_CORE_OPTIONS,
        ...(window !== undefined ? { swiotlb: { policy, space: window.asAddressSpace() } } : {}),
      })),
    { base: 0x0a00_3e00, irq: 0x2f, ...(window !== undefined ? { swiotlbWindow: window } : {}) },
  );
  return { dev, core, blk, backend, guestRam, window };
}

/** One recorded register access. */
export interface Access {
  op: 'r' | 'w';
  off: number;
  size: number;
  value: number;
}

/** Wrap an access object, recording every register access. */
export function spy(inner: MmioDeviceAccess): { access: MmioDeviceAccess; log: Access[] } {
  const log: Access[] = [];
  const access: MmioDeviceAccess = {
    read: (off, size) => {
      const v = inner.read(off, size);
      log.push({ op: 'r', off, size, value: v });
      return v;
    },
    write: (off, size, value) => {
      log.push({ op: 'w', off, size, value });
      inner.write(off, size, value);
    },
    ...(inner.onIrq !== undefined ? { onIrq: (fn: (l: boolean) => void) => inner.onIrq!(fn) } : {}),
  };
  return { access, log };
}

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector >>> 0, true);
  dv.setUint32(12, Math.floor(sector / 2 ** 32), true);
  return h;
}

/** virtio-blk write; resolves with the status byte. */
export async function blkWrite(vq: VirtqueueDriver, sector: number, data: Uint8Array): Promise<number> {
  const r = await vq.submit([header(VIRTIO_BLK_T_OUT, sector), data], [1]);
  return r.data[0]![0]!;
}

/** virtio-blk read; resolves with [status, data]. */
export async function blkRead(vq: VirtqueueDriver, sector: number, len: number): Promise<[number, Uint8Array]> {
  const r = await vq.submit([header(VIRTIO_BLK_T_IN, sector)], [len, 1]);
  return [r.data[1]![0]!, r.data[0]!];
}

/** Deterministic test bytes. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
