/**
 * Builds the library's real queues for the benchmark: device side through the DeviceQueueFactory
 * of each ring (createSplitDeviceQueue / createPackedDeviceQueue), driver side through
 * SplitDriverQueue / PackedDriverQueue, each over its own {@link AddressSpace} on the same guest
 * memory (as a device and a guest would have).
 */
import { VirtioError } from '../errors.js';
import { AddressSpace } from '../memory/space.js';
import { RecordingSink } from '../device/choke.js';
import type { DeviceQueue, DeviceQueueFactory, DriverQueue } from '../queue/types.js';
import { createSplitDeviceQueue } from '../queue/split/device.js';
import { SplitDriverQueue } from '../queue/split/driver.js';
import { createPackedDeviceQueue } from '../queue/packed/device.js';
import { PackedDriverQueue } from '../queue/packed/driver.js';
import { BENCH_GPA_BASE, BENCH_MEM_SIZE, benchQueueConfig, type RingKind } from './queue-layout.js';

/** An address space with one region: the whole benchmark guest memory. */
export function benchSpace(guest: ArrayBufferLike, name: string): AddressSpace {
  if (guest.byteLength < BENCH_MEM_SIZE) {
    throw new VirtioError('INVALID_ARGUMENT', `benchmark guest memory must be at least ${BENCH_MEM_SIZE} bytes (got ${guest.byteLength})`);
  }
  return new AddressSpace([{ base: BENCH_GPA_BASE, size: BENCH_MEM_SIZE, buffer: guest, name: 'bench-ram' }], name);
}

/** Device queue plus the sink it reports to. */
export interface BenchDeviceQueue {
  dq: DeviceQueue;
  space: AddressSpace;
  sink: RecordingSink;
}

/** Driver queue plus the sink it reports to. */
export interface BenchDriverQueue {
  drv: DriverQueue;
  space: AddressSpace;
  sink: RecordingSink;
}

/** Device-side queue over `guest` (the library's createSplitDeviceQueue / createPackedDeviceQueue). */
export function makeDeviceQueue(ring: RingKind, guest: ArrayBufferLike): BenchDeviceQueue {
  const space = benchSpace(guest, 'bench-device');
  const sink = new RecordingSink();
  const factory: DeviceQueueFactory = ring === 'split' ? createSplitDeviceQueue : createPackedDeviceQueue;
  const dq = factory(space, benchQueueConfig(), sink);
  if (dq === null) {
    throw new VirtioError('INTERNAL', `cannot create the ${ring} device queue for the benchmark: ${sink.last?.message ?? 'unknown error'}`);
  }
  return { dq, space, sink };
}

/** Driver-side queue over `guest`. Create it before the device queue: it zeroes the rings. */
export function makeDriverQueue(ring: RingKind, guest: ArrayBufferLike): BenchDriverQueue {
  const space = benchSpace(guest, 'bench-driver');
  const sink = new RecordingSink();
  const cfg = benchQueueConfig();
  const drv: DriverQueue = ring === 'split' ? new SplitDriverQueue(space, cfg, sink) : new PackedDriverQueue(space, cfg, sink);
  return { drv, space, sink };
}

/** First guest error recorded by either side, as text (for failure messages). */
export function describeSinks(dev: RecordingSink, drv: RecordingSink): string {
  const e = dev.errors[0] ?? drv.errors[0];
  return e === undefined ? 'no guest error recorded' : `${e.code}${e.clause ? ` [${e.clause}]` : ''}: ${e.message}`;
}
