/**
 * One virtqueue of the simulated driver: a split or packed {@link DriverQueue} plus the DMA layer
 * (direct or SWIOTLB bounce) and the notification register.
 *
 * Two APIs:
 * - allocation-free, for benchmarks: {@link VirtqueueDriver.add} a caller-owned {@link SgList} of
 *   guest-RAM addresses with a numeric token, {@link VirtqueueDriver.kick}, then
 *   {@link VirtqueueDriver.poll} for `lastToken` / `lastLen`. In SWIOTLB mode `add` bounces the list
 *   through the pool and `poll` unbounces it (copy-back of the device-writable segments) — scratch
 *   lists are preallocated per slot and reused. The bounce copies are batched: `add` allocates the
 *   bounce slots and queues the copy-in, `kick` runs all queued copies with one batched copy before it
 *   publishes the ring; completions are collected all at once (every used buffer in the ring), their
 *   copy-backs run as one batched copy, and only then are they handed out.
 * - convenient: {@link VirtqueueDriver.submit} copies `out` buffers into freshly allocated guest RAM,
 *   posts them with `inLens` writable buffers, kicks, and resolves with what the device wrote.
 *
 * Completions are collected by {@link VirtqueueDriver.service} (the driver calls it from its
 * interrupt handler) or by `poll`. Completions of `add`-posted buffers found by the interrupt
 * handler go to {@link VirtqueueDriver.onUsed} when set, else into a FIFO that `poll` drains first.
 */
import { VirtioError, isVirtioError } from '../errors.js';
import { logger } from '../log.js';
import { SgList, type DriverQueue } from '../queue/types.js';
import type { DriverDma } from './dma.js';
import type { GuestRamAllocator } from './ram-alloc.js';

const log = logger('driver:vq');

/** What {@link VirtqueueDriver.submit} resolves with. */
export interface SubmitResult {
  /** Bytes the device reported written (used length). */
  len: number;
  /** Per writable buffer, the bytes written into it (in order, `len` spread over them). */
  data: Uint8Array[];
}

/**
 * Writes a queue notification to the device: the 16-bit value (vq index or
 * queue_notif_config_data) or, with VIRTIO_F_NOTIFICATION_DATA, the 32-bit notification data, at
 * the queue's notify address ({@link NotifyTarget.addr}). `VirtioPciRegs` is one (bus-address
 * writes); the MMIO driver's `MmioQueueNotifier` writes QueueNotify and ignores `addr`.
 */
export interface QueueNotifier {
  notify16(addr: number, v: number): void;
  notify32(addr: number, v: number): void;
}

/** How the queue notifies the device. */
export interface NotifyTarget {
  /** Bus address of this queue's notify register (cap.offset + queue_notify_off × multiplier). */
  addr: number;
  /** 16-bit value: the vq index, or queue_notif_config_data with VIRTIO_F_NOTIF_CONFIG_DATA. */
  value: number;
  /** VIRTIO_F_NOTIFICATION_DATA negotiated: 32-bit writes with next_off/next_wrap. */
  data32: boolean;
}

interface PendingRequest {
  sg: SgList;
  ramAddrs: number[];
  inLens: number[];
  resolve: (r: SubmitResult) => void;
  reject: (e: unknown) => void;
}

/** Counters. */
export interface VirtqueueStats {
  added: number;
  kicks: number;
  /** publish() said the device does not want a notification. */
  suppressedKicks: number;
  completed: number;
  /** add() refused because the ring or the bounce pool was full. */
  full: number;
}

/** A driver-side virtqueue. Built by {@link VirtioPciDriver}. */
export class VirtqueueDriver {
  readonly index: number;
  readonly ring: DriverQueue;
  readonly stats: VirtqueueStats = { added: 0, kicks: 0, suppressedKicks: 0, completed: 0, full: 0 };
  /** Called by {@link service} for completions of buffers posted with {@link add}. */
  onUsed: ((token: number, len: number) => void) | undefined;
  /** Token and written length of the last {@link poll}. */
  lastToken = -1;
  lastLen = 0;

  private readonly notifier: QueueNotifier;
  private readonly dma: DriverDma;
  private readonly ram: GuestRamAllocator;
  /**
   * `[notify address]` in a generic (tagged-element) array. A bus address is above the small-integer
   * range, so a number field holding it is stored unboxed and re-boxed (a 16-byte heap number)
   * every time it is passed to a call that is not inlined — once per kick. Read from here, the
   * number boxed once at construction is passed as it is: kick allocates nothing.
   */
  private readonly notifyAddrBox: number[];
  private readonly notifyValue: number;
  private readonly data32: boolean;
  private readonly bounces: boolean;
  // Slots: the token given to the ring is a slot index.
  private readonly freeSlots: Int32Array;
  private freeTop: number;
  private readonly slotToken: Float64Array;
  private readonly slotReq: Array<PendingRequest | undefined>;
  private readonly slotMapped: SgList[];
  private scratch: SgList;
  // FIFO of add()-completions collected by service() without an onUsed handler.
  private readonly doneToken: Float64Array;
  private readonly doneLen: Float64Array;
  // Completions taken from the ring by collectAll() before they are completed (slot, length).
  private readonly gotSlot: Int32Array;
  private readonly gotLen: Float64Array;
  private doneHead = 0;
  private doneCount = 0;
  private readonly waiting: PendingRequest[] = [];
  private interruptsOn = true;
  private servicing = false;
  private again = false;
  private live = false;
  private dead = false;

  /** @internal built by the driver */
  constructor(index: number, ring: DriverQueue, notifier: QueueNotifier, dma: DriverDma, ram: GuestRamAllocator, notify: NotifyTarget) {
    this.index = index;
    this.ring = ring;
    this.notifier = notifier;
    this.dma = dma;
    this.ram = ram;
    // Filled with a non-number first: the elements kind stays generic for good (never unboxed doubles).
    this.notifyAddrBox = new Array<number>(1).fill(undefined as unknown as number);
    this.notifyAddrBox[0] = notify.addr;
    this.notifyValue = notify.value & 0xffff;
    this.data32 = notify.data32;
    this.bounces = dma.bounces;
    const n = ring.size;
    this.freeSlots = new Int32Array(n);
    for (let i = 0; i < n; i++) this.freeSlots[i] = n - 1 - i;
    this.freeTop = n;
    this.slotToken = new Float64Array(n);
    this.slotReq = new Array<PendingRequest | undefined>(n).fill(undefined);
    const cap = Math.min(n, 16);
    this.slotMapped = [];
    if (this.bounces) for (let i = 0; i < n; i++) this.slotMapped.push(new SgList(cap));
    this.scratch = new SgList(cap);
    this.doneToken = new Float64Array(n);
    this.doneLen = new Float64Array(n);
    this.gotSlot = new Int32Array(n);
    this.gotLen = new Float64Array(n);
  }

  get size(): number {
    return this.ring.size;
  }
  get kind(): 'split' | 'packed' {
    return this.ring.kind;
  }
  /** Buffers posted and not yet completed. */
  get inFlight(): number {
    return this.ring.size - this.freeTop;
  }

  /** @internal DRIVER_OK was set: notifications are allowed (init.dev-init.driver.4). */
  start(): void {
    this.live = true;
  }

  /** @internal the device was reset: fail everything pending. */
  kill(reason: string): void {
    this.dead = true;
    this.live = false;
    const err = new VirtioError('CLOSED', `virtqueue ${this.index}: ${reason}`);
    for (let s = 0; s < this.slotReq.length; s++) {
      const r = this.slotReq[s];
      if (r !== undefined) {
        this.slotReq[s] = undefined;
        this.freeRam(r);
        r.reject(err);
      }
    }
    for (const r of this.waiting.splice(0)) {
      this.freeRam(r);
      r.reject(err);
    }
  }

  // ------------------------------------------------------------------ allocation-free API

  /**
   * Post `sg` (guest-RAM addresses; readable segments first) with `token`. Does not notify.
   * @returns false when the ring (or, in SWIOTLB mode, the bounce pool) has no room
   */
  add(sg: SgList, token: number): boolean {
    return this.post(sg, token, undefined);
  }

  private post(sg: SgList, token: number, req: PendingRequest | undefined): boolean {
    if (this.dead) throw new VirtioError('CLOSED', `virtqueue ${this.index}: the device was reset; build a new driver session`);
    if (this.freeTop === 0) {
      this.stats.full++;
      return false;
    }
    const slot = this.freeSlots[--this.freeTop]!;
    let toRing = sg;
    let mapped: SgList | undefined;
    if (this.bounces) {
      mapped = this.scratch;
      if (mapped.addr.length < sg.count) mapped = this.scratch = new SgList(sg.count);
      try {
        // rfc-swiotlb.feature.driver.1: bounce addresses only; the copy-in runs at kick() (flush).
        this.dma.queueMapSg(sg, mapped);
      } catch (e) {
        this.freeTop++;
        if (isVirtioError(e, 'BOUNCE_POOL_FULL')) {
          this.stats.full++;
          return false;
        }
        throw e;
      }
      toRing = mapped;
    }
    const head = this.ring.add(toRing, slot);
    if (head < 0) {
      if (mapped !== undefined) this.dma.unmapSg(mapped); // (runs the queued copies first)
      this.freeTop++;
      this.stats.full++;
      return false;
    }
    if (mapped !== undefined) {
      this.scratch = this.slotMapped[slot]!;
      this.slotMapped[slot] = mapped;
    }
    this.slotToken[slot] = token;
    this.slotReq[slot] = req;
    this.stats.added++;
    return true;
  }

  /**
   * Publish what was added and notify the device if it wants a notification.
   * @returns true when the notify register was written
   */
  kick(): boolean {
    if (!this.live) {
      // init.dev-init.driver.4: no available-buffer notification before DRIVER_OK.
      throw new VirtioError('QUEUE_NOT_READY', `virtqueue ${this.index}: kick before DRIVER_OK (or after reset)`, { clause: 'init.dev-init.driver.4' });
    }
    // SWIOTLB: the queued copy-ins of everything added reach the window before the device can see it.
    if (this.bounces) this.dma.flush();
    if (!this.ring.publish()) {
      this.stats.suppressedKicks++;
      return false;
    }
    this.stats.kicks++;
    if (this.data32) {
      // pci.available-buffer-notif.driver.2/.3/.4: 32-bit, vq index (or config data) | next_off/next_wrap.
      this.notifier.notify32(this.notifyAddrBox[0]!, (this.notifyValue | this.ring.notificationData()) >>> 0);
    } else {
      // pci.available-buffer-notif.driver.1/.3/.4: 16-bit vq index (or queue_notif_config_data).
      this.notifier.notify16(this.notifyAddrBox[0]!, this.notifyValue);
    }
    return true;
  }

  /**
   * Collect one completion of an {@link add}-posted buffer into {@link lastToken}/{@link lastLen}.
   * Completions of {@link submit} requests met on the way are resolved.
   */
  poll(): boolean {
    if (this.doneCount === 0) {
      if (this.onUsed !== undefined) {
        // onUsed gets the completions service() finds; poll takes them one by one.
        for (;;) {
          const r = this.collect();
          if (r === 0) return false;
          if (r === 1) return true;
        }
      }
      // Take every used buffer at once (one batched copy-back), into the FIFO.
      while (this.doneCount === 0) if (this.collectAll() === 0) return false;
    }
    const h = this.doneHead;
    this.lastToken = this.doneToken[h]!;
    this.lastLen = this.doneLen[h]!;
    this.doneHead = h + 1 === this.doneToken.length ? 0 : h + 1;
    this.doneCount--;
    return true;
  }

  /** 0 = nothing, 1 = an add()-completion in lastToken/lastLen, 2 = a submit request completed. */
  private collect(): number {
    const ring = this.ring;
    if (!ring.getUsed()) return 0;
    const slot = ring.lastToken;
    const len = ring.lastLen;
    if (this.bounces) this.dma.unmapSg(this.slotMapped[slot]!); // copy-back of device-written data
    const req = this.slotReq[slot];
    const token = this.slotToken[slot]!;
    this.slotReq[slot] = undefined;
    this.freeSlots[this.freeTop++] = slot;
    this.stats.completed++;
    if (req !== undefined) {
      this.finish(req, len);
      return 2;
    }
    this.lastToken = token;
    this.lastLen = len;
    return 1;
  }

  /**
   * Take every used buffer now in the ring, queue their unmaps, run the copy-backs as one batched
   * copy, then complete them in ring order (add()-completions through {@link deliver}).
   * @returns completions taken
   */
  private collectAll(): number {
    const ring = this.ring;
    const gotSlot = this.gotSlot;
    const gotLen = this.gotLen;
    const cap = gotSlot.length;
    const bounces = this.bounces;
    let n = 0;
    let err: unknown;
    let failed = false;
    try {
      while (n < cap && ring.getUsed()) {
        const slot = ring.lastToken;
        gotLen[n] = ring.lastLen;
        if (bounces) this.dma.queueUnmapSg(this.slotMapped[slot]!); // copy-back at the flush below
        gotSlot[n++] = slot;
      }
    } catch (e) {
      err = e;
      failed = true;
    }
    if (bounces && n > 0) this.dma.flush();
    for (let i = 0; i < n; i++) {
      const slot = gotSlot[i]!;
      const len = gotLen[i]!;
      const req = this.slotReq[slot];
      const token = this.slotToken[slot]!;
      this.slotReq[slot] = undefined;
      this.freeSlots[this.freeTop++] = slot;
      this.stats.completed++;
      if (req !== undefined) this.finish(req, len);
      else this.deliver(token, len);
    }
    if (failed) throw err;
    return n;
  }

  /**
   * Collect every completion (interrupt handler). add()-completions go to {@link onUsed} or the
   * FIFO {@link poll} drains; waiting submissions are posted when room frees up.
   * @returns completions handled
   */
  service(): number {
    if (this.servicing) {
      // Re-entered (a kick made the device complete at once): the outer call goes round again.
      this.again = true;
      return 0;
    }
    this.servicing = true;
    let n = 0;
    try {
      do {
        this.again = false;
        n += this.drain();
        if (this.waiting.length > 0) this.postWaiting();
      } while (this.again);
    } finally {
      this.servicing = false;
    }
    return n;
  }

  private drain(): number {
    let n = 0;
    for (;;) {
      let r: number;
      while ((r = this.collectAll()) !== 0) n += r;
      if (!this.interruptsOn) return n;
      // Re-arm, then look once more: a buffer used meanwhile would not raise a new interrupt.
      this.ring.enableInterrupts();
      r = this.collectAll();
      if (r === 0) return n;
      n += r;
    }
  }

  private deliver(token: number, len: number): void {
    const f = this.onUsed;
    if (f !== undefined) {
      try {
        f(token, len);
      } catch (e) {
        log('onUsed threw: %O', e);
      }
      return;
    }
    const cap = this.doneToken.length;
    const t = (this.doneHead + this.doneCount) % cap;
    this.doneToken[t] = token;
    this.doneLen[t] = len;
    this.doneCount++;
  }

  /** Ask the device for used-buffer notifications (default on). */
  enableInterrupts(): void {
    this.interruptsOn = true;
    this.ring.enableInterrupts();
  }

  /** Ask the device not to interrupt (poll mode). */
  disableInterrupts(): void {
    this.interruptsOn = false;
    this.ring.disableInterrupts();
  }

  // ------------------------------------------------------------------ convenient API

  /**
   * Send `out` (device-readable) and receive up to `inLens` bytes per device-writable buffer.
   * Buffers are copied into fresh guest RAM (and bounced in SWIOTLB mode). Resolves when the
   * device returns the chain; waits for room when the ring is full.
   */
  submit(out: readonly Uint8Array[], inLens: readonly number[] = []): Promise<SubmitResult> {
    const n = out.length + inLens.length;
    if (n === 0) return Promise.reject(new VirtioError('INVALID_ARGUMENT', `virtqueue ${this.index}: submit needs at least one buffer`));
    for (const b of out) if (b.length === 0) return Promise.reject(new VirtioError('INVALID_ARGUMENT', `virtqueue ${this.index}: zero-length out buffer (the device would reject it)`));
    for (const l of inLens) if (!(Number.isInteger(l) && l > 0)) return Promise.reject(new VirtioError('INVALID_ARGUMENT', `virtqueue ${this.index}: in length ${l} must be a positive integer`));
    const sg = new SgList(n);
    const ramAddrs: number[] = [];
    const space = this.ram.space;
    try {
      for (const b of out) {
        const a = this.ram.alloc(b.length, 16);
        ramAddrs.push(a);
        space.write(a, b);
        sg.out(a, b.length);
      }
      for (const l of inLens) {
        const a = this.ram.allocZeroed(l, 16);
        ramAddrs.push(a);
        sg.in(a, l);
      }
    } catch (e) {
      for (const a of ramAddrs) this.ram.release(a);
      return Promise.reject(e);
    }
    return new Promise<SubmitResult>((resolve, reject) => {
      const req: PendingRequest = { sg, ramAddrs, inLens: [...inLens], resolve, reject };
      if (this.waiting.length > 0) {
        this.waiting.push(req);
        return;
      }
      this.tryPost(req);
    });
  }

  private tryPost(req: PendingRequest): boolean {
    let ok: boolean;
    try {
      ok = this.post(req.sg, -1, req);
    } catch (e) {
      this.freeRam(req);
      req.reject(e);
      return true;
    }
    if (!ok) {
      if (this.inFlight === 0) {
        this.freeRam(req);
        req.reject(new VirtioError('QUEUE_FULL', `virtqueue ${this.index}: a ${req.sg.count}-segment request does not fit an empty ring of ${this.ring.size} (or the bounce pool); use fewer segments, indirect descriptors or a larger window`));
        return true;
      }
      this.waiting.push(req);
      return false;
    }
    this.kick();
    return true;
  }

  private postWaiting(): void {
    while (this.waiting.length > 0) {
      const req = this.waiting.shift()!;
      if (!this.tryPost(req)) {
        // tryPost re-queued it at the end; put it back in front.
        this.waiting.unshift(this.waiting.pop()!);
        return;
      }
    }
  }

  private finish(req: PendingRequest, len: number): void {
    const space = this.ram.space;
    const data: Uint8Array[] = [];
    let left = len;
    const outN = req.sg.readable;
    for (let i = 0; i < req.inLens.length; i++) {
      const take = Math.min(left, req.inLens[i]!);
      const buf = new Uint8Array(take);
      if (take > 0) space.read(req.ramAddrs[outN + i]!, buf);
      data.push(buf);
      left -= take;
    }
    this.freeRam(req);
    req.resolve({ len, data });
  }

  private freeRam(req: PendingRequest): void {
    for (const a of req.ramAddrs) this.ram.release(a);
    req.ramAddrs.length = 0;
  }
}
