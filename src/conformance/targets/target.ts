/**
 * Where the devices under test come from. A target builds one fresh {@link Dut} per check run.
 *
 * - `inproc`: virtiokit's own device models in this process over virtio-pci or virtio-mmio,
 *   SWIOTLB on or off (`inproc.ts`); builds any {@link DutVariant}.
 * - `vfio-user:SOCKET` / `vhost-user:SOCKET`: a device in another process (`remote.ts`); one fixed
 *   configuration, so variants are not built and checks needing other features SKIP.
 */
import type { DeviceKind, Dut, DutVariant, TransportKind } from '../check.js';

/** What to build. */
export interface DutRequest {
  readonly device: DeviceKind;
  readonly transport: TransportKind;
  readonly swiotlb: boolean;
  readonly variant?: DutVariant;
}

/** A source of devices under test. */
export interface Target {
  /** Name in reports (`inproc`, `vfio-user:/tmp/sock`). */
  readonly name: string;
  /** True when {@link DutRequest.variant} is honoured. */
  readonly buildsVariants: boolean;
  /** Device kinds / transports / SWIOTLB settings this target can provide. */
  readonly devices: readonly DeviceKind[];
  readonly transports: readonly TransportKind[];
  readonly swiotlbModes: readonly boolean[];
  /**
   * Build a fresh device. Throws VirtioError (NOT_SUPPORTED, INVALID_ARGUMENT) when the request
   * cannot be met; the runner reports that as SKIP with the message.
   */
  open(req: DutRequest): Promise<Dut>;
  /** Release shared resources (connections). */
  close?(): Promise<void>;
}
