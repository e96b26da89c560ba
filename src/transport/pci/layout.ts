/**
 * Where the virtio structures live: the BAR plan of a virtio-pci function.
 *
 * Default (like QEMU's modern layout, page per structure so each can be mapped alone,
 * pci.caps.driver.5):
 *
 * | BAR | type | contents |
 * |---|---|---|
 * | 0 | 64-bit memory | common cfg @0x0000, ISR @0x1000, device cfg @0x2000 (when the model has config), notify after |
 * | 2 | 32-bit memory | MSI-X table @0, PBA after the table (when MSI-X vectors > 0) |
 * | 4 | 64-bit prefetchable | SWIOTLB window @0 (when a window is given) |
 *
 * Every BAR size is a power of two, at least 4 KiB.
 */
import { requireArg } from '../../errors.js';
import type { BarSpec } from './bar.js';
import type { CapRegion } from './capabilities.js';
import { PCI_MSIX_ENTRY_SIZE, PCI_MSIX_MAX_VECTORS, pbaBytes } from './msix.js';

const PAGE = 0x1000;

/** Layout knobs (all optional). */
export interface PciLayoutOptions {
  /** BAR holding common/ISR/device/notify (default 0). */
  virtioBar?: number;
  /** Make that BAR 64-bit (default true). */
  virtioBar64?: boolean;
  /** Mark it prefetchable (default false: ISR reads have side effects). */
  virtioBarPrefetchable?: boolean;
  /** notify_off_multiplier (default 4; 0 = one notify address for every queue). */
  notifyMultiplier?: number;
  /** MSI-X vectors (default num_queues + 1, at most 2048; 0 = no MSI-X capability). */
  msixVectors?: number;
  /** BAR of the MSI-X table and PBA (default 2, 32-bit). */
  msixBar?: number;
  /** BAR of the SWIOTLB window (default 4, 64-bit prefetchable). */
  swiotlbBar?: number;
  /** Offset of the window inside its BAR (default 0; page aligned). */
  swiotlbOffset?: number;
}

/** The computed plan. */
export interface PciLayout {
  readonly bars: BarSpec[];
  readonly common: CapRegion;
  readonly isr: CapRegion;
  /** Device config region; undefined when the model has no config space. */
  readonly device: CapRegion | undefined;
  /** Router span of the device config region (page-rounded). */
  readonly deviceSpan: number;
  readonly notify: CapRegion;
  readonly notifyMultiplier: number;
  readonly msix: { vectors: number; bar: number; tableOffset: number; pbaOffset: number } | undefined;
  readonly swiotlb: CapRegion | undefined;
}

/** Smallest power of two ≥ n (and ≥ 4 KiB). */
export function barSizeFor(n: number): number {
  let s = PAGE;
  while (s < n) s *= 2;
  return s;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Inputs the plan depends on. */
export interface LayoutInputs {
  numQueues: number;
  /** Highest queue_notify_off. */
  maxNotifyOff: number;
  /** Size of the model's config space. */
  configSize: number;
  /** SWIOTLB window size, when there is a window. */
  swiotlbSize: number | undefined;
}

/** Compute the BAR plan. Throws INVALID_ARGUMENT for inconsistent options. */
export function computeLayout(inp: LayoutInputs, o: PciLayoutOptions = {}): PciLayout {
  const vbar = o.virtioBar ?? 0;
  const mult = o.notifyMultiplier ?? 4;
  requireArg(Number.isInteger(mult) && mult >= 0, `notifyMultiplier must be a non-negative integer (got ${mult})`);
  const common: CapRegion = { bar: vbar, offset: 0, length: PAGE };
  const isr: CapRegion = { bar: vbar, offset: PAGE, length: PAGE };
  let next = 2 * PAGE;
  let device: CapRegion | undefined;
  let deviceSpan = 0;
  if (inp.configSize > 0) {
    deviceSpan = roundUp(inp.configSize, PAGE);
    device = { bar: vbar, offset: next, length: inp.configSize };
    next += deviceSpan;
  }
  const notifyLen = roundUp(Math.max(4, inp.maxNotifyOff * mult + 4), PAGE);
  const notify: CapRegion = { bar: vbar, offset: next, length: notifyLen };
  next += notifyLen;
  const bars: BarSpec[] = [{ index: vbar, size: barSizeFor(next), is64: o.virtioBar64 ?? true, prefetchable: o.virtioBarPrefetchable ?? false }];

  const vectors = o.msixVectors ?? Math.min(PCI_MSIX_MAX_VECTORS, inp.numQueues + 1);
  requireArg(Number.isInteger(vectors) && vectors >= 0 && vectors <= PCI_MSIX_MAX_VECTORS, `msixVectors must be 0..2048 (got ${vectors})`);
  let msix: PciLayout['msix'];
  if (vectors > 0) {
    const mbar = o.msixBar ?? 2;
    const tableBytes = vectors * PCI_MSIX_ENTRY_SIZE;
    const pbaOffset = roundUp(tableBytes, 0x800);
    bars.push({ index: mbar, size: barSizeFor(pbaOffset + pbaBytes(vectors)), is64: false, prefetchable: false });
    msix = { vectors, bar: mbar, tableOffset: 0, pbaOffset };
  }

  let swiotlb: CapRegion | undefined;
  if (inp.swiotlbSize !== undefined) {
    const sbar = o.swiotlbBar ?? 4;
    const soff = o.swiotlbOffset ?? 0;
    requireArg(Number.isInteger(soff) && soff >= 0 && soff % PAGE === 0, `swiotlbOffset must be page aligned (got ${soff})`);
    swiotlb = { bar: sbar, offset: soff, length: inp.swiotlbSize };
    bars.push({ index: sbar, size: barSizeFor(soff + inp.swiotlbSize), is64: true, prefetchable: true });
  }
  return { bars, common, isr, device, deviceSpan, notify, notifyMultiplier: mult, msix, swiotlb };
}
