/**
 * IN_ORDER completion (`reserved.reserved-feature-bits.device.5`: with VIRTIO_F_IN_ORDER the device
 * uses buffers in the order they were made available). Requests may finish out of order in the
 * backend; this ring holds finished ones until every earlier one has finished, then pushes them to
 * the used ring in pop order. Preallocated per queue; nothing allocates per request.
 */
import type { DeviceQueue } from '../../queue/types.js';

/** Per-queue IN_ORDER completion ring. */
export class OrderRing {
  private readonly heads: Uint16Array;
  /** Used length per slot, -1 while the request is in flight. */
  private readonly lens: Int32Array;
  private readonly mask: number;
  private head = 0;
  private tail = 0;

  /** @param size the queue size (at most this many requests are in flight) */
  constructor(size: number) {
    this.heads = new Uint16Array(size);
    this.lens = new Int32Array(size);
    this.mask = size - 1;
  }

  /** A chain with head id `head` was popped: returns its slot. */
  add(head: number): number {
    const t = this.tail;
    const s = t & this.mask;
    this.heads[s] = head;
    this.lens[s] = -1;
    this.tail = t + 1;
    return t;
  }

  /**
   * The request in `slot` finished with `used` bytes: push it and every finished request after
   * the oldest unfinished one, in order.
   * @returns true when at least one used element was pushed
   */
  done(queue: DeviceQueue, slot: number, used: number): boolean {
    const mask = this.mask;
    const lens = this.lens;
    lens[slot & mask] = used;
    let h = this.head;
    const tail = this.tail;
    let pushed = false;
    while (h !== tail) {
      const s = h & mask;
      const l = lens[s]!;
      if (l < 0) break;
      queue.pushUsed(this.heads[s]!, l);
      pushed = true;
      h++;
    }
    this.head = h;
    return pushed;
  }
}
