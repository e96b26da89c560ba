/** Shared fixtures for the packed-ring tests: one guest RAM region, rings, a bump allocator. */
import { AddressSpace } from '../../../src/memory/space.js';
import { RecordingSink } from '../../../src/device/choke.js';
import { type QueueConfig, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED } from '../../../src/queue/types.js';
import { createPackedDeviceQueue, type PackedDeviceQueue } from '../../../src/queue/packed/device.js';
import { PackedDriverQueue } from '../../../src/queue/packed/driver.js';
import { layoutPackedRings, type PackedRingLayout } from '../../../src/queue/packed/layout.js';

/**
 * Which code path the fixtures' queues use, so one test file can run the same cases through several:
 * - 'fast': as built (popBatch / pushUsedBatch / addBatch / getUsedBatch take their fast paths);
 * - 'slow': those fast paths switched off (the complete walkers only).
 * Set it at the top of a test file, before the tests run (each test file has its own module instance).
 */
export type PathMode = 'fast' | 'slow';
let pathMode: PathMode = 'fast';
export function setPathMode(m: PathMode): void {
  pathMode = m;
}

/** Switch a queue's fast paths off (test hook: the private `fastOk` flag of the packed queues). */
export function disableFastPath(q: PackedDeviceQueue | PackedDriverQueue): void {
  (q as unknown as { fastOk: boolean }).fastOk = false;
}

export const RAM_BASE = 0x10000;
export const RAM_SIZE = 1 << 20;

/** An AddressSpace that records every resolve and its result. */
export class RecordingSpace extends AddressSpace {
  readonly log: Array<{ addr: number; len: number; write: boolean; result: number }> = [];
  recording = true;
  override resolve(addr: number, len: number, write: boolean): number {
    const result = super.resolve(addr, len, write);
    if (this.recording) this.log.push({ addr, len, write, result });
    return result;
  }
}

export interface Fixture {
  space: RecordingSpace;
  /** The whole backing buffer (bigger than the region: canaries around it). */
  backing: ArrayBuffer;
  u8: Uint8Array;
  cfg: QueueConfig;
  layout: PackedRingLayout;
  sink: RecordingSink;
  drvSink: RecordingSink;
  dev: PackedDeviceQueue;
  drv: PackedDriverQueue;
  alloc(bytes: number, align?: number): number;
  /** Byte index in `u8` of a bus address. */
  at(addr: number): number;
}

/** Bytes of padding before and after the region inside its backing buffer. */
export const PAD = 4096;

export interface FixtureOpts {
  size?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  inOrder?: boolean;
  maxChainSegments?: number;
  indirectThreshold?: number;
  /** QueueConfig.concurrent (order flags accesses with Atomics even on a non-shared buffer). */
  concurrent?: boolean;
}

export function makeFixture(o: FixtureOpts = {}): Fixture {
  const size = o.size ?? 8;
  const backing = new ArrayBuffer(RAM_SIZE + 2 * PAD);
  const u8 = new Uint8Array(backing);
  u8.fill(0xa5); // canaries outside the region; the region is zeroed below
  u8.fill(0, PAD, PAD + RAM_SIZE);
  const space = new RecordingSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: backing, offset: PAD, name: 'ram' }], 'guest');
  const layout = layoutPackedRings(RAM_BASE, size);
  let next = RAM_BASE + layout.bytes;
  const alloc = (bytes: number, align = 16): number => {
    next = Math.ceil(next / align) * align;
    const a = next;
    next += bytes;
    if (next > RAM_BASE + RAM_SIZE) throw new Error('fixture RAM exhausted');
    return a;
  };
  const cfg: QueueConfig = {
    index: 3,
    size,
    maxSize: 32768,
    desc: layout.desc,
    driver: layout.driver,
    device: layout.device,
    eventIdx: o.eventIdx ?? false,
    indirect: o.indirect ?? false,
    inOrder: o.inOrder ?? false,
  };
  if (o.maxChainSegments !== undefined) cfg.maxChainSegments = o.maxChainSegments;
  if (o.concurrent !== undefined) cfg.concurrent = o.concurrent;
  const sink = new RecordingSink();
  const drvSink = new RecordingSink();
  const drv = new PackedDriverQueue(space, cfg, drvSink, { indirectThreshold: o.indirectThreshold ?? 0, allocIndirect: (b) => alloc(b) });
  const dev = createPackedDeviceQueue(space, cfg, sink) as PackedDeviceQueue;
  if (dev === null) throw new Error(`fixture: queue setup failed: ${sink.last?.message}`);
  if (pathMode === 'slow') {
    disableFastPath(dev);
    disableFastPath(drv);
  }
  return { space, backing, u8, cfg, layout, sink, drvSink, dev, drv, alloc, at: (addr) => PAD + (addr - RAM_BASE) };
}

/** Flags that make a descriptor available for driver wrap counter `wrap`. */
export function availFlags(wrap: number): number {
  return wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
}

/** Write a raw descriptor at ring slot `i` (flags last). */
export function writeDesc(f: Fixture, i: number, d: { addr: number; len: number; id: number; flags: number }): void {
  const a = f.layout.desc + 16 * i;
  f.space.recording = false;
  f.space.writeU64(a, d.addr);
  f.space.writeU32(a + 8, d.len);
  f.space.writeU16(a + 12, d.id);
  f.space.writeU16(a + 14, d.flags);
  f.space.recording = true;
}

/** Write a raw descriptor with a 64-bit address given as two halves. */
export function writeDescHiLo(f: Fixture, i: number, d: { lo: number; hi: number; len: number; id: number; flags: number }): void {
  const a = f.layout.desc + 16 * i;
  f.space.recording = false;
  f.space.writeU32(a, d.lo);
  f.space.writeU32(a + 4, d.hi);
  f.space.writeU32(a + 8, d.len);
  f.space.writeU16(a + 12, d.id);
  f.space.writeU16(a + 14, d.flags);
  f.space.recording = true;
}

/** Write an indirect table entry. */
export function writeIndirect(f: Fixture, table: number, i: number, d: { addr: number; len: number; flags: number; id?: number }): void {
  const a = table + 16 * i;
  f.space.recording = false;
  f.space.writeU64(a, d.addr);
  f.space.writeU32(a + 8, d.len);
  f.space.writeU16(a + 12, d.id ?? 0);
  f.space.writeU16(a + 14, d.flags);
  f.space.recording = true;
}

/** Fill `n` bytes at `addr` with a pattern derived from `seed`. */
export function fillPattern(f: Fixture, addr: number, n: number, seed: number): void {
  const o = f.at(addr);
  for (let i = 0; i < n; i++) f.u8[o + i] = (seed * 31 + i * 7) & 0xff;
}

/** Snapshot of the region bytes plus canaries. */
export function snapshot(f: Fixture): Uint8Array {
  return f.u8.slice();
}

/** True when two snapshots are byte-identical (fast; vitest's deep equality is slow on MiB arrays). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
