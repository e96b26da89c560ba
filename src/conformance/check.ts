/**
 * The check contract of the conformance suite.
 *
 * A check names the clauses it covers, the side it judges (`device` or `driver`), the device types
 * and transports it applies to and the feature bits it needs offered. The runner builds a FRESH
 * device under test ({@link Dut}) for every check run — through a {@link Target} — and calls
 * {@link Check.run} with a time limit; a check that does not settle in time is WEDGED.
 *
 * Device-side checks drive the device as a driver would (see `raw.ts`: register accesses, rings
 * and descriptors written straight into guest memory, valid or deliberately broken) and judge
 * what it does: status bits, interrupts, used-ring contents, sentinels in memory it must not
 * touch, whether it keeps answering. Driver-side checks run the simulated driver against the
 * device and judge its recorded accesses (`driver-judge.ts`).
 */
import type { AddressSpace } from '../memory/space.js';
import type { PciFunctionAccess } from '../driver/access.js';
import type { MmioDeviceAccess, MmioPlatformDescription } from '../driver/mmio/access.js';
import type { VirtioDeviceCore } from '../device/core.js';
import type { CheckResult } from './verdict.js';
import type { TransportRegs } from './raw.js';

/**
 * A vhost-user back-end seen through a register-shaped adapter (targets/vhost-user-regs.ts):
 * status/feature/queue "register" writes become vhost-user requests (SET_FEATURES, SET_MEM_TABLE,
 * SET_VRING_*), notifications are kick-eventfd writes, used-buffer notifications arrive on the
 * call eventfds, and the back-end's error signals (err eventfd, NACK, closed connection) show as
 * DEVICE_NEEDS_RESET.
 */
export interface VhostUserLink {
  /** The register view the raw driver drives. */
  readonly regs: TransportRegs;
  /** Used-buffer notifications (`queue`, from a call eventfd) and error signals (`error`). */
  onSignal(fn: (kind: 'queue' | 'error', q: number) => void): () => void;
  /**
   * Wait (at most `ms`) until every request sent so far was answered or failed, then refresh the
   * cached device config (GET_CONFIG). Register reads are synchronous; this makes them current.
   */
  sync(ms: number): Promise<void>;
  /** Why the back-end is in an error state (undefined when it is not). */
  readonly errorReason: string | undefined;
}

/** Device types the suite knows. */
export type DeviceKind = 'blk' | 'net' | 'rng' | 'console';
/** All device kinds. */
export const DEVICE_KINDS: readonly DeviceKind[] = ['blk', 'net', 'rng', 'console'];
/** Virtio device id per kind. */
export const DEVICE_IDS: Readonly<Record<DeviceKind, number>> = { net: 1, blk: 2, console: 3, rng: 4 };

/**
 * Transports. `vhost-user` is a back-end reached over a vhost-user socket: it has no registers,
 * so a check runs there only when it lists `vhost-user` in {@link Check.transports}.
 */
export type TransportKind = 'pci' | 'mmio' | 'vhost-user';
/** The register transports (what a check without `transports` applies to). */
export const TRANSPORT_KINDS: readonly TransportKind[] = ['pci', 'mmio'];
/** Every transport: for checks that only need rings, buffers, notifications and device config. */
export const ANY_TRANSPORT: readonly TransportKind[] = ['pci', 'mmio', 'vhost-user'];

/**
 * A device configuration a check asks for (an in-process target builds it; a remote target
 * cannot, and the check then SKIPs when what it needs is not offered).
 */
export interface DutVariant {
  /** Offer VIRTIO_F_RING_PACKED. */
  packed?: boolean;
  /** Offer VIRTIO_F_IN_ORDER. */
  inOrder?: boolean;
  /** Offer VIRTIO_F_NOTIFICATION_DATA. */
  notificationData?: boolean;
  /** Offer VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_F_INDIRECT_DESC (default true). */
  indirect?: boolean;
  /** More device-independent bits to offer (RING_RESET, SUSPEND, ...). */
  extraFeatures?: readonly number[];
  /** blk model options (readOnly, configWce, ...). */
  blk?: { readOnly?: boolean; configWce?: boolean; writeback?: boolean; queues?: number };
  /** net model options. */
  net?: { queuePairs?: number; mtu?: number; mergeable?: boolean; ctrlVq?: boolean };
  /** console model options. */
  console?: { multiport?: boolean; maxNrPorts?: number };
  /** PCI extras: vendor data capabilities and shared memory regions. */
  pci?: { vendorCaps?: boolean; sharedMemory?: boolean; msixVectors?: number };
}

/** Host-side hooks of the device's backend (in-process targets only). */
export interface DutBackendIo {
  /** net: deliver a frame to the device (as if it came from the wire). */
  injectFrame?(frame: Uint8Array): void;
  /** net: frames the device transmitted (copies). */
  readonly sentFrames?: Uint8Array[];
  /** console: bytes port 0 wrote to its host side. */
  readonly consoleOutput?: number[];
  /** console: feed host input to port 0. */
  consoleInput?(data: Uint8Array): void;
  /** Make the device change its configuration (net: link flap; console: resize). */
  configChange?(): void;
  /** net: ask for a gratuitous announcement (sets VIRTIO_NET_S_ANNOUNCE). */
  announce?(): boolean;
  /** blk: read the disk contents directly. */
  readDisk?(offset: number, length: number): Uint8Array;
}

/** The device under test, as a driver sees it. One per check run; closed by the runner. */
export interface Dut {
  readonly kind: DeviceKind;
  readonly transport: TransportKind;
  /** The target was configured with a SWIOTLB window (policy required). */
  readonly swiotlb: boolean;
  /** Guest RAM, the driver's (CPU's) view. */
  readonly ram: AddressSpace;
  /** The PCI function (pci transport). */
  readonly pci?: PciFunctionAccess;
  /** The MMIO register window and what the device tree says about it (mmio transport). */
  readonly mmio?: { readonly access: MmioDeviceAccess; readonly platform: MmioPlatformDescription };
  /** The vhost-user adapter (vhost-user transport). */
  readonly vhostUser?: VhostUserLink;
  /** Backend hooks (in-process only). */
  readonly io: DutBackendIo;
  /** Device internals (in-process only): used by driver-side checks to read the device's trace. */
  readonly core?: VirtioDeviceCore;
  /** Release everything. */
  close(): void | Promise<void>;
}

/** What a check's run gets. */
export interface CheckContext {
  /** The fresh device under test. */
  readonly dut: Dut;
  /** Aborted when the time limit passes (helpers that wait stop then). */
  readonly signal: AbortSignal;
  /** Milliseconds a single wait for the device may take (a fraction of the check's limit). */
  readonly waitMs: number;
  /** Free-form notes the check wants in the report. */
  note(text: string): void;
}

/** One check. */
export interface Check {
  /** Check name, unique (e.g. `split.indirect-write-flag`). */
  readonly id: string;
  /** Clause ids it covers (each gets the check's verdict unless the result overrides it). */
  readonly clauses: readonly string[];
  /** Which side it judges. */
  readonly role: 'device' | 'driver';
  /** One line: what it does. */
  readonly title: string;
  /** Device kinds it applies to (default all). */
  readonly devices?: readonly DeviceKind[];
  /** Transports it applies to (default the register transports pci and mmio; {@link ANY_TRANSPORT} adds vhost-user). */
  readonly transports?: readonly TransportKind[];
  /** Only with (true) / without (false) a SWIOTLB window (default either). */
  readonly swiotlb?: boolean;
  /** Feature bits the device must offer (else SKIP). */
  readonly needs?: readonly number[];
  /** The device configuration to build. */
  readonly variant?: DutVariant;
  /** Time limit in ms (default the runner's). */
  readonly timeoutMs?: number;
  run(ctx: CheckContext): Promise<CheckResult>;
}

/** Identity helper that keeps the literal types of a check definition. */
export function defineCheck(c: Check): Check {
  return c;
}
