/**
 * Queue set-up steps both simulated drivers (virtio-pci `driver.ts`, virtio-mmio `mmio/driver.ts`)
 * share: choosing the queue size, allocating the three ring areas, and building the driver-side
 * split or packed ring over them. The transport-specific register writes (queue select, size,
 * addresses, enable/ready, notify offsets) stay in each driver.
 */
import type { GuestErrorSink } from '../device/choke.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_IN_ORDER, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../features/bits.js';
import type { FeatureSet } from '../features/set.js';
import type { DriverQueue, DriverQueueOptions, QueueConfig } from '../queue/types.js';
import { SplitDriverQueue } from '../queue/split/driver.js';
import { splitAvailBytes, splitDescBytes, splitUsedBytes } from '../queue/split/layout.js';
import { PackedDriverQueue } from '../queue/packed/driver.js';
import type { DriverDma } from './dma.js';

/** The `queueSize` option of both drivers: a number (capped at the device maximum) or `(q, max) => size`. */
export type QueueSizeOption = number | ((q: number, max: number) => number);

/**
 * The size to configure for queue `q`: the option (default min(max, 256)), capped at `max`
 * (pci.common-cfg.driver.2 / mmio.regs.driver.9), rounded down to a power of 2 for split rings
 * (pci.common-cfg.driver.3). Never 0.
 * @param invalid called (and must throw) when the option gives no integer ≥ 1
 */
export function chooseQueueSize(q: number, max: number, packed: boolean, option: QueueSizeOption | undefined, invalid: (message: string) => never): number {
  let s = typeof option === 'function' ? option(q, max) : Math.min(max, option ?? 256);
  if (!(Number.isInteger(s) && s >= 1)) invalid(`queue ${q}: queueSize gave ${s}; need an integer 1..${max}`);
  s = Math.min(s, max);
  if (!packed) s = 2 ** Math.floor(Math.log2(s)); // split rings: a power of 2
  return s;
}

/**
 * Allocate the three ring areas of a queue of `size` entries as separately allocated, aligned,
 * zeroed coherent memory (inside the bounce window or pool when the DMA layer bounces).
 * @returns bus addresses `[descriptor area, driver area, device area]`
 */
export function allocRingAreas(dma: DriverDma, size: number, packed: boolean): [number, number, number] {
  const parts = packed ? [[16 * size, 16], [4, 4], [4, 4]] : [[splitDescBytes(size), 16], [splitAvailBytes(size), 2], [splitUsedBytes(size), 4]];
  return parts.map(([bytes, align]) => dma.allocCoherent(bytes!, align!)) as [number, number, number];
}

/** Where a queue's rings are and how big it is. */
export interface RingPlacement {
  index: number;
  size: number;
  maxSize: number;
  desc: number;
  driver: number;
  device: number;
}

/**
 * The driver-side ring (split, or packed with VIRTIO_F_RING_PACKED) over allocated areas, with
 * the negotiated EVENT_IDX / INDIRECT_DESC / IN_ORDER. Indirect tables (for chains of at least
 * `indirectThreshold` segments, 0 = never) come from the DMA layer's coherent memory.
 */
export function buildDriverQueue(dma: DriverDma, sink: GuestErrorSink, feats: FeatureSet, at: RingPlacement, indirectThreshold: number | undefined): DriverQueue {
  const cfg: QueueConfig = {
    index: at.index,
    size: at.size,
    maxSize: at.maxSize,
    desc: at.desc,
    driver: at.driver,
    device: at.device,
    eventIdx: feats.has(VIRTIO_F_EVENT_IDX),
    indirect: feats.has(VIRTIO_F_INDIRECT_DESC),
    inOrder: feats.has(VIRTIO_F_IN_ORDER),
  };
  const threshold = cfg.indirect ? (indirectThreshold ?? 0) : 0;
  const qo: DriverQueueOptions = threshold > 0 ? { indirectThreshold: threshold, allocIndirect: (bytes) => dma.allocCoherent(bytes, 16), freeIndirect: (a) => dma.freeCoherent(a) } : {};
  return feats.has(VIRTIO_F_RING_PACKED) ? new PackedDriverQueue(dma.ringSpace, cfg, sink, qo) : new SplitDriverQueue(dma.ringSpace, cfg, sink, qo);
}
