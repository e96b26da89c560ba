/**
 * virtio-blk device model (virtio 1.4 §5.2): IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES over a
 * {@link BlkBackend} (file or RAM), with multiqueue, read-only disks, and the configuration space
 * of `config.ts`. Options are in `options.ts`; `open.ts` opens a file or RAM backend and builds one.
 *
 * Serving requests
 *  - `notify(q)` pops every available chain of queue q and starts it. A synchronous backend (RAM)
 *    completes it on the spot — guest buffers ↔ disk array, no bounce, no allocation. An
 *    asynchronous backend (file) gets the I/O started and the request completes (status byte,
 *    used element, `ctx.interrupt(q)`) when its promise settles, so a slow request on one queue
 *    never holds up another queue or later requests on the same queue.
 *  - With VIRTIO_F_IN_ORDER negotiated, completions are released to the used ring in pop order
 *    (`reserved.reserved-feature-bits.device.5`).
 *  - Used length = bytes written into device-writable buffers: data + status for IN and GET_ID,
 *    1 (the status) otherwise, 0 for a malformed chain (`basic.split-vq.vq-used-ring.device.2`).
 *
 * Durability (`blk.dev-op.device.11`)
 *  - FLUSH waits for every write (and discard / write-zeroes) in flight on any queue when it
 *    arrives, then fdatasyncs the backend, and only then writes its status byte.
 *  - Writes must be stable at completion when FLUSH was offered but neither FLUSH nor CONFIG_WCE
 *    was negotiated (case 1), or CONFIG_WCE was negotiated and writeback is 0 (case 2): such writes
 *    are fdatasync'd before their status is written.
 *  - `durableFlush: false` skips every fdatasync: acknowledged writes then sit in the host page
 *    cache and a host crash can lose them (scratch disks, benchmarks).
 *
 * Reset and close
 *  - Every request remembers its queue's generation; `reset()` / `queueReset(q)` bump it, so a
 *    completion arriving afterwards touches neither the queue nor guest memory (its status byte
 *    and used element are dropped). Asynchronous reads land in a per-request bounce buffer and
 *    are copied into guest memory only if the request is still current — a reset cannot stop a
 *    read the kernel has already started. `zeroCopyReads: true` reads straight into guest
 *    buffers instead (one copy less; then a read in flight at reset may still fill guest memory).
 *    Writes in flight at reset still reach the file (they were never acknowledged), and a later
 *    FLUSH waits for them too.
 *  - `close()` stops taking requests, waits for all backend I/O, then closes the backend.
 *
 * Guest errors: only a chain the device cannot answer at all (no full header, no writable status
 * byte) goes to the choke point (`ctx.sink`, which sets NEEDS_RESET and parks the queue); its head
 * is still returned with used length 0 so it is not leaked. Every other bad request gets
 * VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP with the clause id in the debug log.
 */
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import type { AddressSpace } from '../../memory/space.js';
import { FeatureSet } from '../../features/set.js';
import type { NegotiationRule } from '../../features/negotiate.js';
import { VIRTIO_F_IN_ORDER } from '../../features/bits.js';
import { writeByteToChain, writeToChain } from '../../queue/chain-io.js';
import type { DeviceQueue } from '../../queue/types.js';
import type { DeviceContext, VirtioDeviceModel } from '../types.js';
import type { BlkBackend } from './backend.js';
import { BlkConfig } from './config.js';
import {
  BLK_ID_BYTES,
  BLK_REQ_HEADER_BYTES,
  SECTOR_SIZE,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_CONFIG_WCE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_ID_BLOCK,
  blkTypeName,
} from './constants.js';
import { OrderRing } from './in-order.js';
import { newBlkStats, type BlkDeviceOptions, type BlkStats } from './options.js';
import { BlkRequest, chainToIov, checkDwzSegments, inCapacity, parseHeader, readDwzSegment, type DwzCheck, type DwzLimits, type DwzSegment } from './request.js';

const log = logger('blk');

/** Zoned-device request types (`blk.dev-op.device.16`: UNSUPP without VIRTIO_BLK_F_ZONED). */
function isZoneType(t: number): boolean {
  return t === 15 || t === 16 || t === 18 || t === 20 || t === 22 || t === 24 || t === 26;
}

/** Default seg_max is queueSize - 2 (header + status), capped here (as QEMU does). */
const DEFAULT_SEG_MAX_CAP = 1022;
/** Bounce buffers larger than this are dropped when their request is released. */
const BOUNCE_KEEP = 256 * 1024;

function pow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The virtio-blk device model. */
export class BlkDevice implements VirtioDeviceModel {
  readonly deviceId = VIRTIO_ID_BLOCK;
  readonly name = 'virtio-blk';
  readonly numQueues: number;
  readonly config: BlkConfig;
  readonly featureRules: readonly NegotiationRule[];
  readonly backend: BlkBackend;
  /** The disk is presented read-only (VIRTIO_BLK_F_RO offered). */
  readonly readOnly: boolean;
  readonly stats: BlkStats = newBlkStats();

  private readonly queueSize: number;
  private readonly offered: FeatureSet;
  private readonly chainCap: number;
  private readonly capacitySectors: number;
  private readonly durable: boolean;
  private readonly zeroCopyReads: boolean;
  private readonly wceOffered: boolean;
  private readonly initialWriteback: number;
  private readonly discardLimits: DwzLimits;
  private readonly wzLimits: DwzLimits;
  /** The 20-byte GET_ID answer. */
  private readonly id = new Uint8Array(BLK_ID_BYTES);
  /** Header / segment scratch (16 bytes) and its DataView. */
  private readonly scratch = new Uint8Array(16);
  private readonly scratchDv = new DataView(this.scratch.buffer);
  private readonly seg: DwzSegment = { sector: 0, numSectors: 0, flags: 0 };
  private readonly dwzCheck: DwzCheck = { status: 0, clause: undefined, message: '', segments: 0 };
  /** Per-queue generation: bumped by reset / queueReset; stale completions are dropped. */
  private readonly qgen: Uint32Array;
  private readonly pool: BlkRequest[] = [];
  /** Mutating backend operations in flight (FLUSH waits for them). */
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly idleWaiters: Array<() => void> = [];
  private order: Array<OrderRing | null> = [];

  private ctx: DeviceContext | null = null;
  private inOrder = false;
  private flushNeg = false;
  private wceNeg = false;
  private discardNeg = false;
  private wzNeg = false;
  /** Requests started and not yet finished (backend I/O outstanding or completing). */
  private inflight = 0;
  private closed = false;
  private closing: Promise<void> | undefined;

  /**
   * @param backend the storage (`openBlkDevice` in `open.ts` opens a file or makes a RAM disk)
   * @throws VirtioError INVALID_ARGUMENT for bad options
   */
  constructor(backend: BlkBackend, opts: BlkDeviceOptions = {}) {
    requireArg(backend !== null && typeof backend === 'object' && typeof backend.readv === 'function', 'virtio-blk: a backend is required');
    const queues = opts.queues ?? 1;
    requireArg(Number.isInteger(queues) && queues >= 1 && queues <= 0xffff, `virtio-blk: queues must be an integer 1..65535 (got ${queues})`);
    const queueSize = opts.queueSize ?? 256;
    requireArg(pow2(queueSize) && queueSize >= 2 && queueSize <= 32768, `virtio-blk: queueSize must be a power of 2 in 2..32768 (got ${queueSize})`);
    const blkSize = opts.blkSize ?? SECTOR_SIZE;
    requireArg(pow2(blkSize) && blkSize >= 512 && blkSize <= 65536, `virtio-blk: blkSize must be a power of 2 in 512..65536 (got ${blkSize})`);
    const phys = opts.physicalBlockSize ?? blkSize;
    requireArg(pow2(phys) && phys >= blkSize && Math.log2(phys / blkSize) <= 255, `virtio-blk: physicalBlockSize must be a power of 2 ≥ blkSize ${blkSize} (got ${phys})`);
    const segMax = opts.segMax ?? Math.min(Math.max(1, queueSize - 2), DEFAULT_SEG_MAX_CAP);
    requireArg(Number.isInteger(segMax) && segMax >= 1 && segMax <= 32768, `virtio-blk: segMax must be an integer 1..32768 (got ${segMax})`);
    const sizeMax = opts.sizeMax;
    if (sizeMax !== undefined) requireArg(Number.isInteger(sizeMax) && sizeMax >= 512 && sizeMax <= 0xffffffff, `virtio-blk: sizeMax must be an integer 512..2^32-1 (got ${sizeMax})`);
    const u32 = (name: string, v: number | undefined, dflt: number, min: number): number => {
      const x = v ?? dflt;
      requireArg(Number.isInteger(x) && x >= min && x <= 0xffffffff, `virtio-blk: ${name} must be an integer ${min}..2^32-1 (got ${x})`);
      return x;
    };
    const minIo = u32('minIoSize', opts.minIoSize, 1, 0);
    requireArg(minIo <= 0xffff, `virtio-blk: minIoSize must fit 16 bits (got ${minIo})`);
    const optIo = u32('optIoSize', opts.optIoSize, 0, 0);
    const maxDiscardSectors = u32('maxDiscardSectors', opts.maxDiscardSectors, 65536, 1);
    const maxDiscardSeg = u32('maxDiscardSeg', opts.maxDiscardSeg, 8, 1);
    const maxWzSectors = u32('maxWriteZeroesSectors', opts.maxWriteZeroesSectors, 65536, 1);
    const maxWzSeg = u32('maxWriteZeroesSeg', opts.maxWriteZeroesSeg, 8, 1);
    const serial = opts.serial ?? '';
    requireArg(typeof serial === 'string' && /^[\x20-\x7e]*$/.test(serial) && serial.length <= BLK_ID_BYTES, `virtio-blk: serial must be printable ASCII of at most ${BLK_ID_BYTES} characters (got ${JSON.stringify(serial)})`);
    for (let i = 0; i < serial.length; i++) this.id[i] = serial.charCodeAt(i); // the rest stays NUL

    const capacity = Math.floor(backend.size / SECTOR_SIZE);
    requireArg(capacity >= 1, `virtio-blk: the backend (${backend.name}) is smaller than one 512-byte sector`);
    this.backend = backend;
    this.readOnly = backend.readOnly || opts.readOnly === true;
    this.numQueues = queues;
    this.queueSize = queueSize;
    this.capacitySectors = capacity;
    this.chainCap = segMax + 8; // header + status + slack for split headers (basic.split-vq.message-framing.device.2)
    this.durable = opts.durableFlush ?? true;
    this.zeroCopyReads = opts.zeroCopyReads ?? false;
    this.wceOffered = opts.configWce === true;
    this.initialWriteback = this.wceOffered && opts.writeback === false ? 0 : this.wceOffered ? 1 : 0;
    this.qgen = new Uint32Array(queues);

    const discard = (opts.discard ?? true) && !this.readOnly;
    const writeZeroes = (opts.writeZeroes ?? true) && !this.readOnly;
    const f = new FeatureSet();
    f.set(VIRTIO_BLK_F_SEG_MAX).set(VIRTIO_BLK_F_BLK_SIZE).set(VIRTIO_BLK_F_TOPOLOGY);
    f.set(VIRTIO_BLK_F_FLUSH); // blk.dev-init.device.1: always offer FLUSH (and with CONFIG_WCE it is a MUST)
    if (sizeMax !== undefined) f.set(VIRTIO_BLK_F_SIZE_MAX);
    if (this.readOnly) f.set(VIRTIO_BLK_F_RO);
    if (this.wceOffered) f.set(VIRTIO_BLK_F_CONFIG_WCE);
    if (queues > 1) f.set(VIRTIO_BLK_F_MQ);
    if (discard) f.set(VIRTIO_BLK_F_DISCARD);
    if (writeZeroes) f.set(VIRTIO_BLK_F_WRITE_ZEROES);
    this.offered = f.freeze();

    const alignSectors = blkSize / SECTOR_SIZE;
    this.config = new BlkConfig(
      {
        capacitySectors: capacity,
        sizeMax: sizeMax ?? 0,
        segMax,
        blkSize,
        physicalBlockExp: Math.log2(phys / blkSize),
        alignmentOffset: 0,
        minIoSize: minIo,
        optIoSize: optIo,
        writeback: this.initialWriteback,
        numQueues: queues > 1 ? queues : 0,
        maxDiscardSectors: discard ? maxDiscardSectors : 0,
        maxDiscardSeg: discard ? maxDiscardSeg : 0,
        discardSectorAlignment: discard ? alignSectors : 0,
        maxWriteZeroesSectors: writeZeroes ? maxWzSectors : 0,
        maxWriteZeroesSeg: writeZeroes ? maxWzSeg : 0,
        // blk.dev-op.device.9: write zeroes never deallocates here, so the field is 0.
        writeZeroesMayUnmap: false,
      },
      this.wceOffered,
    );
    this.config.onWriteback = (v) => log('%s: driver set writeback = %d (%s)', this.name, v, v === 0 ? 'writethrough' : 'writeback');
    this.discardLimits = { maxSectors: maxDiscardSectors, maxSeg: maxDiscardSeg, capacitySectors: capacity };
    this.wzLimits = { maxSectors: maxWzSectors, maxSeg: maxWzSeg, capacitySectors: capacity };

    // Observe the accepted set at FEATURES_OK (the model sees features only at DRIVER_OK, but the
    // driver reads `writeback` before that, blk.dev-init.driver.4). Always satisfied.
    this.featureRules = [
      {
        id: 'blk-writeback-init',
        check: (accepted) => {
          if (this.wceOffered) {
            // blk.dev-init.device.2: CONFIG_WCE negotiated without FLUSH → writeback starts at 0.
            this.config.writeback = accepted.has(VIRTIO_BLK_F_CONFIG_WCE) && !accepted.has(VIRTIO_BLK_F_FLUSH) ? 0 : this.initialWriteback;
          }
          return undefined;
        },
      },
    ];
  }

  // ============================================================================================
  // VirtioDeviceModel

  maxQueueSize(q: number): number {
    return q >= 0 && q < this.numQueues ? this.queueSize : 0;
  }

  offeredFeatures(): FeatureSet {
    return this.offered;
  }

  maxChainSegments(_q: number): number {
    return this.chainCap;
  }

  activate(ctx: DeviceContext): void {
    const feats = ctx.features;
    this.ctx = ctx;
    this.inOrder = feats.has(VIRTIO_F_IN_ORDER);
    this.flushNeg = feats.has(VIRTIO_BLK_F_FLUSH);
    this.wceNeg = feats.has(VIRTIO_BLK_F_CONFIG_WCE);
    this.discardNeg = feats.has(VIRTIO_BLK_F_DISCARD);
    this.wzNeg = feats.has(VIRTIO_BLK_F_WRITE_ZEROES);
    this.order = [];
    for (let q = 0; q < this.numQueues; q++) {
      const queue = ctx.queues[q] ?? null;
      this.order.push(this.inOrder && queue !== null ? new OrderRing(queue.size) : null);
    }
    log('%s: active on %s, %d queue(s), capacity %d sectors%s', this.name, this.backend.name, this.numQueues, this.capacitySectors, this.readOnly ? ', read-only' : '');
  }

  notify(q: number): void {
    const ctx = this.ctx;
    if (ctx === null || this.closed) return;
    const queue = ctx.queues[q];
    if (queue === null || queue === undefined) return;
    const space = ctx.space;
    let pushed = false;
    for (;;) {
      queue.disableNotifications();
      for (;;) {
        const req = this.pool.pop() ?? new BlkRequest(this.chainCap);
        if (!queue.pop(req.chain)) {
          this.pool.push(req);
          break;
        }
        this.inflight++;
        req.q = q;
        req.qgen = this.qgen[q]!;
        if (this.inOrder) {
          const ring = this.order[q];
          if (ring !== null && ring !== undefined) req.slot = ring.add(req.chain.head);
        }
        if (this.start(space, q, req)) pushed = true;
      }
      // A parked queue pops nothing: leave rather than spin on enableNotifications().
      if (queue.parked || !queue.enableNotifications()) break;
    }
    if (pushed) ctx.interrupt(q);
  }

  reset(): void {
    // Completions still in flight belong to the old driver: drop them (generation bump).
    const g = this.qgen;
    for (let q = 0; q < g.length; q++) g[q] = (g[q]! + 1) >>> 0;
    this.ctx = null;
    this.order = [];
    this.config.reset();
  }

  queueReset(q: number): void {
    if (q < 0 || q >= this.numQueues) return;
    this.qgen[q] = (this.qgen[q]! + 1) >>> 0;
    if (this.order[q] !== undefined) this.order[q] = null;
  }

  queueStarted(q: number, queue: DeviceQueue): void {
    if (this.inOrder && q >= 0 && q < this.numQueues) this.order[q] = new OrderRing(queue.size);
  }

  // ============================================================================================
  // Host API

  /** Requests whose backend I/O has not finished. */
  get inFlight(): number {
    return this.inflight;
  }

  /** Resolves when no request is in flight (immediately when none is). */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop serving requests, wait for in-flight I/O, close the backend. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.whenIdle();
      if (this.pendingWrites.size > 0) await Promise.allSettled(Array.from(this.pendingWrites));
      await this.backend.close();
    })();
    return this.closing;
  }

  // ============================================================================================
  // Requests

  /** Start `req`; true when it completed synchronously and a used element was pushed. */
  private start(space: AddressSpace, q: number, req: BlkRequest): boolean {
    this.stats.requests++;
    const bad = parseHeader(space, req, this.scratch, this.scratchDv);
    if (bad !== null) {
      this.stats.malformed++;
      const ctx = this.ctx!;
      ctx.sink.guestError({ code: 'DEVICE_REQUEST_INVALID', clause: bad.clause, message: `${this.name} queue ${q} head ${req.chain.head}: ${bad.message}`, queue: q });
      // Return the head (used length 0) so it is not leaked; the queue is parked now.
      return this.finish(req, -1, 0);
    }
    switch (req.type) {
      case VIRTIO_BLK_T_IN:
        return this.startRead(space, req);
      case VIRTIO_BLK_T_OUT:
        return this.startWrite(space, req);
      case VIRTIO_BLK_T_FLUSH:
        return this.startFlush(req);
      case VIRTIO_BLK_T_GET_ID:
        return this.getId(space, req);
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.startDwz(space, req);
      default:
        // GET_LIFETIME (not offered), SECURE_ERASE (not offered), legacy and unknown types → UNSUPP;
        // blk.dev-op.device.16: zone requests without VIRTIO_BLK_F_ZONED → UNSUPP.
        return this.reject(req, VIRTIO_BLK_S_UNSUPP, isZoneType(req.type) ? 'blk.dev-op.device.16' : undefined, `${blkTypeName(req.type)} is not supported`);
    }
  }

  private startRead(space: AddressSpace, req: BlkRequest): boolean {
    const chain = req.chain;
    const len = chain.writableBytes - 1;
    if (len % SECTOR_SIZE !== 0) {
      // blk.dev-op.driver.6: IN data is a multiple of 512 bytes.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.driver.6', `IN with ${len} data bytes, not a multiple of 512`);
    }
    const sector = req.sector;
    if (!inCapacity(sector, len, this.capacitySectors)) {
      // blk.dev-op.driver.2: nothing beyond capacity.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.driver.2', `IN of ${len / SECTOR_SIZE} sectors at ${sector < 0 ? '>= 2^53' : sector} reaches beyond the capacity of ${this.capacitySectors} sectors`);
    }
    this.stats.reads++;
    req.dataBytes = len;
    if (len === 0) return this.finish(req, VIRTIO_BLK_S_OK, 1);
    const backend = this.backend;
    if (!backend.synchronous && !this.zeroCopyReads) {
      req.iov.clear();
      req.iov.push(req.bounceBuffer(len), 0, len);
      req.bounced = true;
    } else {
      chainToIov(space, chain, req.iov, false, 0, len);
      req.bounced = false;
    }
    let p: Promise<void> | undefined;
    try {
      p = backend.readv(req.iov, sector * SECTOR_SIZE);
    } catch (e) {
      return this.ioError(req, e);
    }
    if (p === undefined) {
      this.stats.bytesRead += len;
      return this.finish(req, VIRTIO_BLK_S_OK, len + 1);
    }
    p.then(
      () => this.readDone(req),
      (e: unknown) => this.asyncError(req, e),
    );
    return false;
  }

  private readDone(req: BlkRequest): void {
    const len = req.dataBytes;
    if (req.bounced && this.current(req)) writeToChain(req.space!, req.chain, req.bounce!, 0, len, 0);
    this.stats.bytesRead += len;
    this.complete(req, VIRTIO_BLK_S_OK, len + 1);
  }

  private startWrite(space: AddressSpace, req: BlkRequest): boolean {
    if (this.readOnly) {
      // blk.dev-op.device.3: RO offered → IOERR for a write, and no data written.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.device.3', 'OUT on a read-only disk');
    }
    const chain = req.chain;
    const len = chain.readableBytes - BLK_REQ_HEADER_BYTES;
    if (len % SECTOR_SIZE !== 0) {
      // blk.dev-op.driver.6: OUT data is a multiple of 512 bytes.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.driver.6', `OUT with ${len} data bytes, not a multiple of 512`);
    }
    const sector = req.sector;
    if (!inCapacity(sector, len, this.capacitySectors)) {
      // blk.dev-op.driver.2
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.driver.2', `OUT of ${len / SECTOR_SIZE} sectors at ${sector < 0 ? '>= 2^53' : sector} reaches beyond the capacity of ${this.capacitySectors} sectors`);
    }
    this.stats.writes++;
    req.dataBytes = len;
    if (len === 0) return this.finish(req, VIRTIO_BLK_S_OK, 1);
    chainToIov(space, chain, req.iov, true, BLK_REQ_HEADER_BYTES, len);
    const backend = this.backend;
    const sync = this.writethrough();
    let p: Promise<void> | undefined;
    try {
      p = backend.writev(req.iov, sector * SECTOR_SIZE);
      if (sync) p = p === undefined ? this.syncBackend() : p.then(() => this.syncBackend());
    } catch (e) {
      return this.ioError(req, e);
    }
    if (p === undefined) {
      this.stats.bytesWritten += len;
      return this.finish(req, VIRTIO_BLK_S_OK, 1);
    }
    this.trackWrite(req, p, len);
    return false;
  }

  private startFlush(req: BlkRequest): boolean {
    // blk.dev-op.driver.4/5 (sector 0, no data) bind the driver; the device ignores both fields.
    this.stats.flushes++;
    let p: Promise<void> | undefined;
    try {
      if (this.pendingWrites.size > 0) {
        // Writes on any queue still in flight: the flush covers them too.
        const pending = Array.from(this.pendingWrites);
        p = Promise.allSettled(pending).then(() => this.syncBackend());
      } else {
        p = this.syncBackend();
      }
    } catch (e) {
      return this.ioError(req, e);
    }
    if (p === undefined) return this.finish(req, VIRTIO_BLK_S_OK, 1);
    p.then(
      () => this.complete(req, VIRTIO_BLK_S_OK, 1),
      (e: unknown) => this.asyncError(req, e),
    );
    return false;
  }

  private getId(space: AddressSpace, req: BlkRequest): boolean {
    const len = req.chain.writableBytes - 1;
    if (len !== BLK_ID_BYTES) {
      // blk.dev-op.driver.8: GET_ID data is exactly 20 bytes.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.driver.8', `GET_ID with ${len} data bytes instead of ${BLK_ID_BYTES}`);
    }
    this.stats.getIds++;
    // NUL-padded; exactly 20 characters has no terminator.
    writeToChain(space, req.chain, this.id, 0, BLK_ID_BYTES, 0);
    return this.finish(req, VIRTIO_BLK_S_OK, BLK_ID_BYTES + 1);
  }

  private startDwz(space: AddressSpace, req: BlkRequest): boolean {
    const isDiscard = req.type === VIRTIO_BLK_T_DISCARD;
    if (!(isDiscard ? this.discardNeg : this.wzNeg)) {
      return this.reject(req, VIRTIO_BLK_S_UNSUPP, undefined, `${blkTypeName(req.type)} without VIRTIO_BLK_F_${isDiscard ? 'DISCARD' : 'WRITE_ZEROES'} negotiated`);
    }
    if (this.readOnly) {
      // blk.dev-op.device.3: no data written on a read-only disk.
      return this.reject(req, VIRTIO_BLK_S_IOERR, 'blk.dev-op.device.3', `${blkTypeName(req.type)} on a read-only disk`);
    }
    const scratch = this.scratch;
    const dv = this.scratchDv;
    const seg = this.seg;
    const chk = checkDwzSegments(space, req, isDiscard ? this.discardLimits : this.wzLimits, scratch, dv, seg, this.dwzCheck);
    if (chk.status !== VIRTIO_BLK_S_OK) return this.reject(req, chk.status, chk.clause, chk.message);
    if (isDiscard) this.stats.discards++;
    else this.stats.writeZeroes++;
    const n = chk.segments;
    const backend = this.backend;
    const sync = this.writethrough();
    if (backend.synchronous) {
      try {
        for (let i = 0; i < n; i++) {
          readDwzSegment(space, req.chain, i, scratch, dv, seg);
          const pos = seg.sector * SECTOR_SIZE;
          const len = seg.numSectors * SECTOR_SIZE;
          const r = isDiscard ? backend.discard(pos, len) : backend.writeZeroes(pos, len);
          if (r !== undefined) throw new VirtioError('INTERNAL', `${backend.name} claims to be synchronous but returned a promise`);
        }
        if (sync && this.syncBackend() !== undefined) throw new VirtioError('INTERNAL', `${backend.name} claims to be synchronous but flush returned a promise`);
      } catch (e) {
        return this.ioError(req, e);
      }
      return this.finish(req, VIRTIO_BLK_S_OK, 1);
    }
    // Asynchronous: take the ranges out of guest memory now, then run them one after another.
    const ranges: number[] = [];
    for (let i = 0; i < n; i++) {
      readDwzSegment(space, req.chain, i, scratch, dv, seg);
      ranges.push(seg.sector * SECTOR_SIZE, seg.numSectors * SECTOR_SIZE);
    }
    const run = async (): Promise<void> => {
      for (let i = 0; i < ranges.length; i += 2) {
        const pos = ranges[i]!;
        const len = ranges[i + 1]!;
        await (isDiscard ? backend.discard(pos, len) : backend.writeZeroes(pos, len));
      }
      if (sync) await this.syncBackend();
    };
    this.trackWrite(req, run(), 0);
    return false;
  }

  // ============================================================================================
  // Completion

  /**
   * Writes must be stable at completion (blk.dev-op.device.11): case 1 — FLUSH offered (always)
   * but neither FLUSH nor CONFIG_WCE negotiated; case 2 — CONFIG_WCE negotiated and writeback 0.
   */
  private writethrough(): boolean {
    if (!this.durable || !this.backend.persistent) return false;
    if (this.wceNeg) return this.config.writeback === 0;
    return !this.flushNeg;
  }

  /** fdatasync the backend if flushes are durable (undefined when nothing to wait for). */
  private syncBackend(): Promise<void> | undefined {
    if (!this.durable) return undefined;
    if (this.backend.persistent) this.stats.syncs++;
    return this.backend.flush();
  }

  private trackWrite(req: BlkRequest, p: Promise<void>, bytes: number): void {
    const pending = this.pendingWrites;
    pending.add(p);
    p.then(
      () => {
        pending.delete(p);
        this.stats.bytesWritten += bytes;
        this.complete(req, VIRTIO_BLK_S_OK, 1);
      },
      (e: unknown) => {
        pending.delete(p);
        this.asyncError(req, e);
      },
    );
  }

  /** Is `req` still owned by the current driver / queue instance? */
  private current(req: BlkRequest): boolean {
    return this.ctx !== null && req.qgen === this.qgen[req.q];
  }

  /** Answer with an error status (ordinary bad request: logged, counted, device keeps going). */
  private reject(req: BlkRequest, status: number, clause: string | undefined, why: string): boolean {
    if (status === VIRTIO_BLK_S_UNSUPP) this.stats.unsupported++;
    else this.stats.ioErrors++;
    log('%s queue %d head %d: %s → %s%s', this.name, req.q, req.chain.head, why, status === VIRTIO_BLK_S_UNSUPP ? 'UNSUPP' : 'IOERR', clause !== undefined ? ` [${clause}]` : '');
    return this.finish(req, status, 1);
  }

  private ioError(req: BlkRequest, e: unknown): boolean {
    this.stats.ioErrors++;
    log('%s queue %d head %d: %s failed on %s: %s → IOERR', this.name, req.q, req.chain.head, blkTypeName(req.type), this.backend.name, errText(e));
    return this.finish(req, VIRTIO_BLK_S_IOERR, 1);
  }

  private asyncError(req: BlkRequest, e: unknown): void {
    this.stats.ioErrors++;
    log('%s queue %d head %d: %s failed on %s: %s → IOERR', this.name, req.q, req.chain.head, blkTypeName(req.type), this.backend.name, errText(e));
    this.complete(req, VIRTIO_BLK_S_IOERR, 1);
  }

  /** Asynchronous completion: finish, then interrupt when something was pushed. */
  private complete(req: BlkRequest, status: number, used: number): void {
    const q = req.q;
    const ctx = this.ctx;
    if (this.finish(req, status, used) && ctx !== null) ctx.interrupt(q);
  }

  /**
   * Write the status byte (status ≥ 0) and return the chain with `used` bytes, unless the device
   * or the queue was reset since the request was popped. Releases the request.
   * @returns true when a used element was pushed
   */
  private finish(req: BlkRequest, status: number, used: number): boolean {
    let pushed = false;
    const ctx = this.ctx;
    const q = req.q;
    if (ctx !== null && req.qgen === this.qgen[q]) {
      const queue = ctx.queues[q];
      if (queue !== null && queue !== undefined) {
        if (status >= 0) writeByteToChain(req.space!, req.chain, req.statusOff, status);
        const ring = this.inOrder ? this.order[q] : null;
        if (ring !== null && ring !== undefined) {
          pushed = ring.done(queue, req.slot, used);
        } else {
          queue.pushUsed(req.chain.head, used);
          pushed = true;
        }
      }
    } else {
      this.stats.staleCompletions++;
    }
    this.release(req);
    return pushed;
  }

  private release(req: BlkRequest): void {
    req.space = null;
    if (req.bounce !== null && req.bounce.length > BOUNCE_KEEP) req.bounce = null;
    this.pool.push(req);
    if (--this.inflight === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters.splice(0);
      for (const f of w) f();
    }
  }
}
