/**
 * SWIOTLB numbers. The slot allocator copies Linux's (`reference/swiotlb.md` §8) so that the
 * guest-visible limits (largest mapping, alignment) match a Linux guest in the bounce-vs-direct
 * benchmark. The window limits follow the RFC's PCI capability (`reference/swiotlb.md` §4.3):
 * a plain `virtio_pci_cap`, so offset and length are le32 and the window is BAR-relative.
 */

/** log2 of the slot size (Linux `IO_TLB_SHIFT`). */
export const IO_TLB_SHIFT = 11;
/** Slot size in bytes: 2 KiB (Linux `IO_TLB_SIZE`). */
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
/** Slots per segment ("slot set"): 128; no allocation crosses a segment (Linux `IO_TLB_SEGSIZE`). */
export const IO_TLB_SEGSIZE = 128;
/** Bytes per segment: 256 KiB. */
export const IO_TLB_SEGMENT_BYTES = IO_TLB_SIZE * IO_TLB_SEGSIZE;
/** Page size assumed for the guest (x86-64, arm64 4K). Mappings of at least this size start page-aligned. */
export const PAGE_SIZE = 4096;
/** Largest mapping with min_align_mask 0: 256 KiB (Linux `swiotlb_max_mapping_size()`). */
export const MAX_MAPPING_SIZE = IO_TLB_SEGMENT_BYTES;

/** Smallest window: one page (two slots). Windows are whole pages, like Linux pools. */
export const MIN_WINDOW_SIZE = PAGE_SIZE;
/**
 * Largest window: the largest page multiple a le32 capability `length` can describe
 * (0xFFFFF000 bytes, just under 4 GiB).
 */
export const MAX_WINDOW_SIZE = 0xfffff000;
/** Largest mask accepted for min_align_mask / alloc_align_mask (masks are applied with 32-bit ops). */
export const MAX_ALIGN_MASK = 0x7fffffff;

/**
 * Largest single mapping for a device with the given min_align_mask:
 * 256 KiB − roundup(min_align_mask, 2 KiB) when the mask is non-zero (Linux `swiotlb_max_mapping_size()`,
 * `reference/swiotlb.md` §8). E.g. 256 KiB for mask 0, 252 KiB for NVMe's 0xfff.
 */
export function maxMappingSize(minAlignMask: number): number {
  if (minAlignMask === 0) return MAX_MAPPING_SIZE;
  const roundUp = Math.ceil(minAlignMask / IO_TLB_SIZE) * IO_TLB_SIZE;
  return Math.max(0, MAX_MAPPING_SIZE - roundUp);
}

/** True when `m` is 2^n − 1 (including 0) and not above {@link MAX_ALIGN_MASK}. */
export function isAlignMask(m: number): boolean {
  return Number.isInteger(m) && m >= 0 && m <= MAX_ALIGN_MASK && (m & (m + 1)) === 0;
}
