/**
 * Guest-memory layout of the queue benchmark: one region of {@link BENCH_MEM_SIZE} bytes at bus
 * address {@link BENCH_GPA_BASE}, holding the rings and every request buffer. The C reference
 * (bench/c/queue_bench.c) uses the same numbers; change both together.
 *
 * | offset   | what                                                        |
 * |----------|-------------------------------------------------------------|
 * | 0x0000   | descriptor table / packed descriptor ring (16 · 256 bytes)  |
 * | 0x1000   | driver area (split: avail ring; packed: driver event supp.) |
 * | 0x2000   | device area (split: used ring; packed: device event supp.)  |
 * | 0x3000   | blk request headers, 16 bytes per token                     |
 * | 0x4000   | blk status bytes, 1 byte per token                          |
 * | 0x5000   | 1-descriptor buffers, 64 bytes per token                    |
 * | 0x10000  | blk data buffers, 4 KiB per token (never copied)            |
 */
import type { QueueConfig } from '../queue/types.js';

/** Queue size of every benchmark queue. */
export const BENCH_QUEUE_SIZE = 256;
/** Chains per batch (driver publish / device used publish). */
export const BENCH_BATCH = 64;
/** Most segments the benchmark device accepts per chain (C: MAX_SEGS). */
export const BENCH_MAX_SEGS = 4;

export const BENCH_GPA_BASE = 0x100000;
export const BENCH_MEM_SIZE = 0x120000;
export const DESC_OFF = 0x0000;
export const DRIVER_OFF = 0x1000;
export const DEVICE_OFF = 0x2000;
export const HDR_OFF = 0x3000;
export const HDR_LEN = 16;
export const STATUS_OFF = 0x4000;
export const BUF1_OFF = 0x5000;
export const BUF1_LEN = 64;
export const DATA_OFF = 0x10000;
export const DATA_LEN = 4096;

/** virtio-blk request type IN (read) and status values (spec-facts.md §7.2). */
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_UNSUPP = 2;
/** What the driver stores in a status byte before posting, so a missing device write is caught. */
export const STATUS_UNSET = 0xff;

/** Split or packed ring. */
export type RingKind = 'split' | 'packed';
/** Descriptors per chain: 1 (one writable buffer) or 3 (virtio-blk read request). */
export type ChainDescs = 1 | 3;
/** 1 = driver and device alternate in one thread; 2 = driver in the main thread, device in a worker. */
export type Agents = 1 | 2;

/** One benchmark cell. */
export interface QueueCell {
  ring: RingKind;
  descs: ChainDescs;
  agents: Agents;
}

/** The queue configuration both sides use (no EVENT_IDX, no indirect, no IN_ORDER). */
export function benchQueueConfig(): QueueConfig {
  return {
    index: 0,
    size: BENCH_QUEUE_SIZE,
    maxSize: BENCH_QUEUE_SIZE,
    desc: BENCH_GPA_BASE + DESC_OFF,
    driver: BENCH_GPA_BASE + DRIVER_OFF,
    device: BENCH_GPA_BASE + DEVICE_OFF,
    eventIdx: false,
    indirect: false,
    inOrder: false,
    maxChainSegments: BENCH_MAX_SEGS,
  };
}

/** Short label such as `split/3d/2a`. */
export function cellLabel(c: QueueCell): string {
  return `${c.ring}/${c.descs}d/${c.agents}a`;
}
