/**
 * Contracts between a device model (blk, net, rng, console, ...), the transport-independent
 * device core ({@link VirtioDeviceCore} in `core.ts`) and the transports (virtio-pci common
 * config, virtio-mmio registers) that decode register accesses onto the core.
 *
 *   transport ──register access──▶ VirtioDeviceCore ──activate/notify/reset──▶ VirtioDeviceModel
 *   transport ◀──interrupt hooks── VirtioDeviceCore ◀──interrupt(q)/configChanged── model
 *
 * A model never sees registers, status bits or feature windows; the core never looks inside
 * requests. Guest errors found by a model go to {@link DeviceContext.sink} (the choke point).
 */
import type { GuestErrorSink } from './choke.js';
import type { AddressSpace } from '../memory/space.js';
import type { DeviceQueue, DeviceQueueFactory } from '../queue/types.js';
import type { FeatureSet } from '../features/set.js';
import type { NegotiationRule } from '../features/negotiate.js';
import type { FeatureTransport } from '../features/bits.js';

/** Device-specific configuration space (virtio 1.4 §2.5), as the model exposes it. */
export interface DeviceConfigSpace {
  /** Size in bytes (PCI device cfg length / MMIO config window). */
  readonly size: number;
  /**
   * Read `width` (1, 2 or 4) bytes at `off`, little-endian. The core only calls this with
   * `off + width <= size`.
   */
  read(off: number, width: 1 | 2 | 4): number;
  /** Driver write (most fields are read-only: ignore those). Same bounds guarantee as read. */
  write(off: number, width: 1 | 2 | 4, value: number): void;
}

/** What the core gives a model once, at construction ({@link VirtioDeviceModel.bind}). */
export interface ModelHost {
  /**
   * The model changed its config space: the core bumps `config_generation` and raises a
   * configuration-change interrupt (when the driver is up and the device not suspended).
   */
  configChanged(): void;
  /** Report a guest error outside a notify (e.g. a backend completion). Never throws. */
  readonly sink: GuestErrorSink;
}

/** What a model gets when the driver sets DRIVER_OK ({@link VirtioDeviceModel.activate}). */
export interface DeviceContext extends ModelHost {
  /** The negotiated features (frozen). */
  readonly features: FeatureSet;
  /**
   * Queue `q` (index = virtqueue index), or null when the driver did not enable it or its
   * configuration was invalid (then the error already went to the choke point). The array is
   * live: with VIRTIO_F_RING_RESET a queue can be reset and re-created — read `queues[q]` on each
   * notify rather than caching it across {@link VirtioDeviceModel.queueReset}.
   */
  readonly queues: ReadonlyArray<DeviceQueue | null>;
  /** The address space DMA may touch (all guest RAM, or only the SWIOTLB window). */
  readonly space: AddressSpace;
  /**
   * Signal used buffers on queue `q`: raises the transport's queue interrupt only when
   * `queue.needsInterrupt()` says so (and never before DRIVER_OK, while suspended or after reset).
   */
  interrupt(q: number): void;
}

/** A virtio device type implementation (transport-independent). */
export interface VirtioDeviceModel {
  /** Virtio device ID (1 net, 2 block, 3 console, 4 rng, 19 vsock, ...). */
  readonly deviceId: number;
  /** Human name for logs ("virtio-blk"). */
  readonly name: string;
  /** Number of virtqueues (excluding admin queues). */
  readonly numQueues: number;
  /** Largest size queue `q` supports (a power of two ≤ 32768); 0 = queue unavailable. */
  maxQueueSize(q: number): number;
  /** Device-specific feature bits offered (the core adds the device-independent ones). */
  offeredFeatures(): FeatureSet;
  /** Bits the model refuses to run without (FEATURES_OK is refused when one is not accepted). */
  requiredFeatures?(): FeatureSet;
  /** Extra acceptance rules (e.g. {@link blkFeatureRules}). */
  readonly featureRules?: readonly NegotiationRule[];
  /** Most segments a chain on queue `q` may have (default: the queue size). */
  maxChainSegments?(q: number): number;
  /** Device-specific configuration space. */
  readonly config: DeviceConfigSpace;
  /** Called once when the core is built, before any other call. */
  bind?(host: ModelHost): void;
  /** The driver set DRIVER_OK: start using the queues. */
  activate(ctx: DeviceContext): void;
  /** The driver kicked queue `q` (only called for an active, unparked queue). */
  notify(q: number): void;
  /** Device reset: drop every request and per-driver state; config back to defaults. */
  reset(): void;
  /** Queue `q` is about to be reset (VIRTIO_F_RING_RESET): stop using it. */
  queueReset?(q: number): void;
  /** Queue `q` was (re-)enabled after DRIVER_OK (VIRTIO_F_RING_RESET). */
  queueStarted?(q: number, queue: DeviceQueue): void;
  /** The driver suspended the device (VIRTIO_F_SUSPEND): finish in-flight work, then stop. */
  suspend?(): void;
  /** The driver resumed the device. */
  resume?(): void;
}

/**
 * Hooks into the transport. Both are called on hot paths with plain numbers (no allocation).
 * The vector is the MSI-X vector the driver mapped (0xffff = NO_VECTOR; MMIO ignores it).
 */
export interface TransportHooks {
  /** Used-buffer notification for queue `q`. */
  queueInterrupt(q: number, vector: number): void;
  /** Configuration-change notification (PCI: config vector or ISR bit 1; MMIO: InterruptStatus bit 1). */
  configInterrupt(vector: number): void;
}

/** SWIOTLB policy (2025 RFC). */
export type SwiotlbPolicy = 'off' | 'preferred' | 'required';

/** SWIOTLB options of a device core. */
export interface SwiotlbOptions {
  /**
   * 'off': never offer VIRTIO_F_SWIOTLB. 'preferred': offer it; if the driver declines, DMA goes
   * to the normal space. 'required': offer it and refuse FEATURES_OK unless accepted
   * (`rfc-swiotlb.feature.device.1`).
   */
  policy: SwiotlbPolicy;
  /** Bit number (default 27 = the RFC's; 27 forces a modern-only device). */
  bit?: number;
  /**
   * The bounce window as an address space. Its presence is what "the transport has a region"
   * means: without it the bit is never offered (`rfc-swiotlb.feature.device.2`), and 'required'
   * is a configuration error. When the driver accepts the bit, queues use this space.
   */
  space?: AddressSpace;
  /** The transport advertises a region but supplies the space later via setAddressSpace (default: space !== undefined). */
  hasRegion?: boolean;
}

/** Queue factories (split always; packed needed only when VIRTIO_F_RING_PACKED is offered). */
export interface QueueFactories {
  split: DeviceQueueFactory;
  packed?: DeviceQueueFactory;
}

/** Options of {@link VirtioDeviceCore}. */
export interface DeviceCoreOptions {
  model: VirtioDeviceModel;
  /** What DMA may touch (the transport may replace it with setAddressSpace). */
  space: AddressSpace;
  /** Transport interrupt hooks. */
  hooks: TransportHooks;
  /** Split (and packed) queue factories from src/queue/split and src/queue/packed. */
  queueFactories: QueueFactories;
  /**
   * Device-independent bits to offer besides VERSION_1 (always) and SWIOTLB (per `swiotlb`).
   * Default: INDIRECT_DESC, EVENT_IDX. RING_PACKED needs `queueFactories.packed`.
   */
  extraFeatures?: Iterable<number>;
  /** Bits to require in addition to the model's (device policy). */
  required?: FeatureSet;
  /** SWIOTLB options (default policy 'off'). */
  swiotlb?: SwiotlbOptions;
  /** Transport kind, for transport-restricted bits (RING_RESET not on CCW, SR_IOV PCI only ...). */
  transport?: FeatureTransport;
  /**
   * Writing 0 to queue_enable / QueueReady disables the queue (MMIO, `mmio.regs.driver.11`).
   * Default false: PCI forbids the write (`pci.common-cfg.driver.6`), so it is ignored and recorded.
   */
  queueDisableAllowed?: boolean;
  /** queue_notify_off for queue q (default q). */
  queueNotifyOff?: (q: number) => number;
  /** Capacity of the trace ring buffer (default 256 events). */
  traceCapacity?: number;
}
