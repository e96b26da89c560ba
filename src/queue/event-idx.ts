/**
 * VIRTIO_F_EVENT_IDX arithmetic shared by the split ring (used_event / avail_event) and the packed
 * ring (desc_event_off), both sides.
 *
 * The rule (split-ring.tex, virtio-queue.h helper `vring_need_event`): after moving a free-running
 * 16-bit index from `oldIdx` to `newIdx`, the other side asked to be notified when the entry with
 * index `eventIdx` is written — i.e. notify iff `eventIdx` lies in `[oldIdx, newIdx)` modulo 2^16.
 * Clauses: basic.split-vq.used-buffer-notif-suppression.device.2 (device, reads used_event from the
 * AVAIL ring) and basic.split-vq.available-buffer-notif-suppression.driver.3 (driver, reads
 * avail_event from the USED ring).
 */

/**
 * True when a notification is needed: `(newIdx - eventIdx - 1) mod 2^16 < (newIdx - oldIdx) mod 2^16`.
 * All three arguments are 16-bit ring indices (higher bits are ignored).
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/**
 * Packed-ring variant on 15-bit offsets with a wrap bit folded in: both indices are given as
 * `offset | wrap << 15` (the `desc_event` layout). Converts to a continuous 16-bit counter over a
 * ring of `size` entries and applies {@link vringNeedEvent}.
 *
 * `eventOffWrap` is the other side's `desc_event` word; `newOffWrap` / `oldOffWrap` are this side's
 * next offset and wrap counter after / before the batch. Valid when at most `size` entries were
 * written since `oldOffWrap`.
 */
export function packedNeedEvent(eventOffWrap: number, newOffWrap: number, oldOffWrap: number, size: number): boolean {
  // Work in "ring positions" modulo 2*size: wrap bit selects the half.
  const period = size * 2;
  const ev = (eventOffWrap & 0x7fff) + (((eventOffWrap >>> 15) & 1) !== 0 ? 0 : size);
  const nw = (newOffWrap & 0x7fff) + (((newOffWrap >>> 15) & 1) !== 0 ? 0 : size);
  const ol = (oldOffWrap & 0x7fff) + (((oldOffWrap >>> 15) & 1) !== 0 ? 0 : size);
  const dNew = (((nw - ev - 1) % period) + period) % period;
  const dOld = (((nw - ol) % period) + period) % period;
  return dNew < dOld;
}
