/**
 * The "model" dimension of the DMA benchmark, pluggable: each {@link DmaModel} opens a session —
 * a RAM-backed virtio-blk device (2 request queues, queue size 256) reachable through a
 * {@link PciFunctionAccess} — and the scenario runner drives it with the simulated guest driver.
 * `inproc*` live in `model-inproc.ts`, the vfio-user models in `model-vfio.ts`.
 */
import type { PciFunctionAccess } from '../../driver/access.js';
import type { GuestRamAllocator } from '../../driver/ram-alloc.js';
import type { AddressSpace } from '../../memory/space.js';
import { KiB, type DriverConfig, type ModelName, type SessionPlan } from './scenario.js';
import type { NegotiatedInfo } from './session.js';
import type { LoopDriver } from './workload.js';

/** Guest-physical base of guest RAM (below the driver's 32-bit BAR window at 0xE000_0000). */
export const RAM_BASE = 0x10_0000;
/** Request queues every benchmark device has (the driver uses 1 or 2). */
export const DEVICE_QUEUES = 2;
/** Queue size offered and used. */
export const QUEUE_SIZE = 256;

const MiB = 1024 * KiB;

/** Memory sizes a session needs. */
export interface SessionSizing {
  /** Guest RAM bytes (buffers, rings, indirect tables). */
  ramSize: number;
  /** RAM disk bytes. */
  diskSize: number;
  /** SWIOTLB window bytes (bounce models). */
  windowSize: number;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/**
 * Sizes for a plan: one data buffer per queue and slot, plus rings. The window holds twice the
 * bytes in flight — a 256 KiB mapping needs a whole free 128-slot segment (reference/swiotlb.md §8),
 * and the small header / status mappings fragment segments.
 */
export function sizingFor(plan: Pick<SessionPlan, 'maxSize' | 'maxDepth'>): SessionSizing {
  const inFlight = DEVICE_QUEUES * plan.maxDepth * (plan.maxSize + 4 * KiB);
  const ramSize = roundUp(inFlight + 8 * MiB, MiB);
  const diskSize = roundUp(Math.max(MiB, DEVICE_QUEUES * plan.maxDepth * plan.maxSize), MiB);
  let windowSize = 4 * MiB;
  while (windowSize < 2 * inFlight + 2 * MiB) windowSize *= 2;
  return { ramSize, diskSize, windowSize };
}

/** An open device + transport, ready for a driver. */
export interface ModelSession {
  readonly model: ModelName;
  /** The PCI function as the driver reaches it (undefined: the model brings its own driver, see {@link openOwnDriver}). */
  readonly access: PciFunctionAccess | undefined;
  /**
   * Models without a PCI function (vhost-user: the front-end talks to the back-end directly) bring
   * their own driver: one per session step, negotiated for `cfg`, closed by the session.
   */
  openOwnDriver?(cfg: DriverConfig): Promise<OwnDriver>;
  /** Guest RAM as the driver (guest CPU) sees it. */
  readonly guestRam: AddressSpace;
  /** True when a kick completes the requests before it returns (device in this thread). */
  readonly synchronous: boolean;
  /** Device process id (undefined: the device runs in this process). */
  readonly devicePid: number | undefined;
  /** Facts about the set-up (window size, backing, socket …), recorded in the JSON. */
  readonly info: Record<string, string | number | boolean>;
  /** DMA_READ + DMA_WRITE messages and their data bytes so far (undefined: no message DMA). */
  messageStats(): { messages: number; bytes: number } | undefined;
  /** Stop the device (process) and release memory. */
  close(): Promise<void>;
}

/** A driver a model brings itself (see {@link ModelSession.openOwnDriver}). */
export interface OwnDriver {
  readonly driver: LoopDriver;
  /** Allocator over guest RAM for the slot buffers (fresh per driver, as for the PCI driver). */
  readonly ram: GuestRamAllocator;
  readonly negotiated: NegotiatedInfo;
  /** Resolves at the driver's next interrupt; rejects with TIMEOUT after `timeoutMs`. */
  waitInterrupt(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link DmaModel.open}. */
export interface OpenOptions {
  /** Write a V8 CPU profile of the device process into this directory (vfio-user models). */
  deviceProfileDir?: string;
  /** vfio-user models: start the device with `--queue-workers` (one worker thread per queue). */
  queueWorkers?: boolean;
}

/** One implementation of the model dimension. */
export interface DmaModel {
  readonly name: ModelName;
  /** Why this model cannot run here (undefined when it can). */
  unavailable(): Promise<string | undefined>;
  open(sizing: SessionSizing, opts?: OpenOptions): Promise<ModelSession>;
}
