/**
 * The in-process VMM API: a virtio device model behind a modern virtio-pci function.
 *
 * In: configuration-space reads/writes and BAR (or bus-address) reads/writes. Out: MSI-X messages
 * and the INTx level. Plus, for the SWIOTLB window: "this BAR's memory is mappable — here is the
 * buffer, and the fd + offset to mmap it in another process".
 *
 * ```ts
 * const dev = await createPciDevice({ model: new RngDevice(), guestRam, swiotlb: { policy: 'required' } });
 * vmm.onConfigAccess = (off, size, v) => v === undefined ? dev.configRead(off, size) : dev.configWrite(off, size, v);
 * dev.onMsi((addr, data) => vmm.injectMsi(addr, data));
 * const m = dev.barMapping(4); // { fd, fdOffset, size, ... } → map it into the guest at the BAR address
 * ```
 *
 * Wraps {@link VirtioDeviceCore} (split and packed queue factories), {@link createVirtioPciDevice}
 * and {@link SwiotlbWindow.allocate}. The handle satisfies the driver side's
 * {@link PciFunctionAccess}, so a simulated guest driver can be wired straight to it.
 */
import { requireArg } from '../errors.js';
import { VirtioDeviceCore } from '../device/core.js';
import type { SwiotlbPolicy, VirtioDeviceModel } from '../device/types.js';
import type { FeatureSet } from '../features/set.js';
import {
  DEFAULT_SWIOTLB_BIT,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
} from '../features/bits.js';
import type { AddressSpace } from '../memory/space.js';
import { createSplitDeviceQueue } from '../queue/split/device.js';
import { createPackedDeviceQueue } from '../queue/packed/device.js';
import { SwiotlbWindow } from '../swiotlb/window.js';
import type { WindowBackingKind } from '../swiotlb/backing.js';
import { createVirtioPciDevice, type BarMapping, type VirtioPciDevice, type VirtioPciOptions } from '../transport/pci/virtio-pci-device.js';
import type { BarInfo } from '../transport/pci/bar.js';
import type { MsiSink } from '../transport/pci/msix.js';

/** SWIOTLB options of {@link createPciDevice}. */
export interface EmbedSwiotlbOptions {
  /** 'off' (no window), 'preferred' (offer the bit, direct DMA if declined), 'required' (refuse FEATURES_OK without it). */
  policy: SwiotlbPolicy;
  /** Window size in bytes (whole pages; default 4 MiB). */
  size?: number;
  /** Feature bit (default 27, the RFC's). */
  bit?: number;
  /** cfg_type of the capability (default 10, the RFC's). */
  cfgType?: number;
  /** Backing (default 'auto': memfd when the native addon loads, so the window is mappable by fd). */
  backing?: WindowBackingKind;
}

/** Queue features the device offers. */
export interface EmbedQueueOptions {
  /** Offer VIRTIO_F_RING_PACKED (default false). */
  packed?: boolean;
  /** Offer VIRTIO_F_EVENT_IDX (default true). */
  eventIdx?: boolean;
  /** Offer VIRTIO_F_INDIRECT_DESC (default true). */
  indirect?: boolean;
  /** Offer VIRTIO_F_IN_ORDER (default false). */
  inOrder?: boolean;
  /** Offer VIRTIO_F_NOTIFICATION_DATA (default false). */
  notificationData?: boolean;
}

/** Options of {@link createPciDevice}. */
export interface CreatePciDeviceOptions {
  /** The device model (blk, net, rng, console, or your own). */
  model: VirtioDeviceModel;
  /** What the device may DMA into when SWIOTLB is not negotiated (normally all guest RAM). */
  guestRam: AddressSpace;
  /** SWIOTLB bounce window (default: none). */
  swiotlb?: EmbedSwiotlbOptions;
  /** Device-independent queue features to offer. */
  queue?: EmbedQueueOptions;
  /** More device-independent bits to offer. */
  extraFeatures?: Iterable<number>;
  /** Bits the device refuses to run without (besides the model's and SWIOTLB 'required'). */
  required?: FeatureSet;
  /** PCI identity and BAR layout. */
  pci?: Omit<VirtioPciOptions, 'swiotlbWindow' | 'swiotlbCfgType' | 'onMsi' | 'onIntx'>;
  /** MSI-X message sink `(address, data, vector)`. More can be added with `onMsi`. */
  onMsi?: MsiSink;
  /** INTx level sink. */
  onIntx?: (level: boolean) => void;
}

/** The device handle. */
export interface PciDeviceHandle {
  /** Configuration-space read of 1, 2 or 4 bytes. */
  configRead(off: number, size: number): number;
  /** Configuration-space write. */
  configWrite(off: number, size: number, value: number): void;
  /** Read `size` bytes at `off` inside BAR `bar` (all-ones with memory decode off). */
  barRead(bar: number, off: number, size: number): number;
  /** Write inside a BAR. */
  barWrite(bar: number, off: number, size: number, value: number): void;
  /** Read at a bus address (decoded by the programmed BARs). */
  mmioRead(addr: number, size: number): number;
  /** Write at a bus address. */
  mmioWrite(addr: number, size: number, value: number): void;
  /** Implemented BARs with their current addresses. */
  readonly bars: BarInfo[];
  /** The directly mappable range of BAR `bar` (the SWIOTLB window): buffer, and fd + offset when memfd-backed. */
  barMapping(bar: number): BarMapping | undefined;
  /** Subscribe to MSI-X messages; returns an unsubscribe function. */
  onMsi(fn: MsiSink): () => void;
  /** Subscribe to INTx level changes. */
  onIntx(fn: (level: boolean) => void): () => void;
  /** Function-level reset. */
  reset(): void;
  /** The device core (status, features, queues, choke point, trace). */
  readonly core: VirtioDeviceCore;
  /** The PCI function. */
  readonly pci: VirtioPciDevice;
  /** The SWIOTLB window, when configured. */
  readonly window: SwiotlbWindow | undefined;
  /** Release the window's backing memory. Idempotent. */
  close(): void;
}

/** Default window size: 4 MiB. */
export const DEFAULT_EMBED_WINDOW_SIZE = 4 * 1024 * 1024;

/**
 * Build a virtio-pci device around `model`.
 * @throws VirtioError INVALID_ARGUMENT for inconsistent options (e.g. a bad window size)
 */
export async function createPciDevice(o: CreatePciDeviceOptions): Promise<PciDeviceHandle> {
  requireArg(o !== undefined && o.model !== undefined, 'createPciDevice: options.model is required');
  requireArg(o.guestRam !== undefined, 'createPciDevice: options.guestRam (the address space the device may DMA into) is required');
  const sw = o.swiotlb ?? { policy: 'off' as const };
  let window: SwiotlbWindow | undefined;
  if (sw.policy !== 'off') window = await SwiotlbWindow.allocate(sw.size ?? DEFAULT_EMBED_WINDOW_SIZE, { backing: sw.backing ?? 'auto', name: `${o.model.name}-swiotlb` });
  try {
    const q = o.queue ?? {};
    const extra: number[] = [];
    if (q.indirect ?? true) extra.push(VIRTIO_F_INDIRECT_DESC);
    if (q.eventIdx ?? true) extra.push(VIRTIO_F_EVENT_IDX);
    if (q.packed ?? false) extra.push(VIRTIO_F_RING_PACKED);
    if (q.inOrder ?? false) extra.push(VIRTIO_F_IN_ORDER);
    if (q.notificationData ?? false) extra.push(VIRTIO_F_NOTIFICATION_DATA);
    for (const b of o.extraFeatures ?? []) extra.push(b);
    const pciOpts: VirtioPciOptions = { ...(o.pci ?? {}) };
    if (window !== undefined) {
      pciOpts.swiotlbWindow = window;
      if (sw.cfgType !== undefined) pciOpts.swiotlbCfgType = sw.cfgType;
    }
    if (o.onMsi !== undefined) pciOpts.onMsi = o.onMsi;
    if (o.onIntx !== undefined) pciOpts.onIntx = o.onIntx;
    let core!: VirtioDeviceCore;
    const dev = createVirtioPciDevice(
      (hooks) =>
        (core = new VirtioDeviceCore({
          model: o.model,
          space: o.guestRam,
          hooks,
          queueFactories: { split: createSplitDeviceQueue, packed: createPackedDeviceQueue },
          extraFeatures: extra,
          transport: 'pci',
          ...(o.required !== undefined ? { required: o.required } : {}),
          ...(window !== undefined ? { swiotlb: { policy: sw.policy, bit: sw.bit ?? DEFAULT_SWIOTLB_BIT, space: window.asAddressSpace() } } : {}),
        })),
      pciOpts,
    );
    let closed = false;
    return {
      configRead: (off, size) => dev.configRead(off, size),
      configWrite: (off, size, value) => dev.configWrite(off, size, value),
      barRead: (bar, off, size) => dev.barRead(bar, off, size),
      barWrite: (bar, off, size, value) => dev.barWrite(bar, off, size, value),
      mmioRead: (addr, size) => dev.mmioRead(addr, size),
      mmioWrite: (addr, size, value) => dev.mmioWrite(addr, size, value),
      get bars() {
        return dev.bars;
      },
      barMapping: (bar) => dev.barMapping(bar),
      onMsi: (fn) => dev.onMsi(fn),
      onIntx: (fn) => dev.onIntx(fn),
      reset: () => dev.reset(),
      core,
      pci: dev,
      window,
      close: () => {
        if (closed) return;
        closed = true;
        window?.close();
      },
    };
  } catch (e) {
    window?.close();
    throw e;
  }
}
