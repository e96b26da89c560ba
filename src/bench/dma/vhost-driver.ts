/**
 * The vhost-user models' driver: this process plays QEMU and the guest at once. It connects a
 * {@link VhostUserFrontend} to the back-end's socket, negotiates, announces guest RAM (one memfd
 * region) with SET_MEM_TABLE and sets up split rings ({@link SplitDriverQueue}) with a kick
 * eventfd per ring and one call eventfd for all of them. A kick is an eventfd write; the call
 * eventfd is watched through libuv (`native.poll`) and wakes the request loop — the same loop
 * (`workload.ts` runPoint) every other model runs, through the {@link LoopDriver} interface.
 *
 * The same driver runs against qemu-storage-daemon (libvhost-user) and against virtiokit's own
 * back-end, so the two differ only in the back-end process.
 */
import { RecordingSink } from '../../device/choke.js';
import { VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_SEG_MAX, VIRTIO_ID_BLOCK } from '../../device/blk/constants.js';
import { GuestRamAllocator } from '../../driver/ram-alloc.js';
import { VirtioError } from '../../errors.js';
import { describeFeatures, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1 } from '../../features/bits.js';
import { FeatureSet } from '../../features/set.js';
import type { GuestRam } from '../../memory/ram.js';
import { native as defaultNative } from '../../native/index.js';
import { POLL_READABLE, type NativeApi, type PollHandle } from '../../native/types.js';
import { layoutSplitRings } from '../../queue/split/layout.js';
import { SplitDriverQueue } from '../../queue/split/driver.js';
import type { QueueConfig, SgList } from '../../queue/types.js';
import { VhostUserFrontend } from '../../vhost-user/frontend.js';
import {
  type Mask64,
  maskHas,
  maskHex,
  maskOf,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
} from '../../vhost-user/protocol.js';
import type { OwnDriver } from './models.js';
import type { DriverConfig } from './scenario.js';
import type { NegotiatedInfo } from './session.js';
import type { LoopDriver, LoopQueue } from './workload.js';

/** Front-end user address of guest-physical 0 (SET_VRING_ADDR carries front-end addresses, as QEMU's would). */
export const VHOST_UADDR_OFFSET = 0x7f00_0000_0000;

/** Indirect tables handed out per ring slot (a blk request needs 3 descriptors; 16 fit). */
const INDIRECT_SLOT = 256;

/** Options of {@link VhostBenchDriver.open}. */
export interface VhostBenchDriverOptions {
  /** Back-end socket path. */
  socketPath: string;
  /** Guest RAM: one memfd-backed region (the back-end maps it from the fd). */
  ram: GuestRam;
  cfg: DriverConfig;
  /** Ring size. */
  queueSize: number;
  /** Reply timeout of the control channel (default 10 s). */
  timeoutMs?: number;
  native?: NativeApi;
}

/** One ring as the request loop sees it. */
export class VhostBenchQueue implements LoopQueue {
  readonly index: number;
  readonly ring: SplitDriverQueue;
  readonly stats = { added: 0, kicks: 0, suppressedKicks: 0, completed: 0, full: 0 };
  lastToken = -1;
  lastLen = 0;
  private readonly kickFd: number;
  private readonly nat: NativeApi;

  constructor(index: number, ring: SplitDriverQueue, kickFd: number, nat: NativeApi) {
    this.index = index;
    this.ring = ring;
    this.kickFd = kickFd;
    this.nat = nat;
  }

  add(sg: SgList, token: number): boolean {
    if (this.ring.add(sg, token) < 0) {
      this.stats.full++;
      return false;
    }
    this.stats.added++;
    return true;
  }

  /** Publish; write the kick eventfd when the back-end wants a notification. */
  kick(): boolean {
    if (!this.ring.publish()) {
      this.stats.suppressedKicks++;
      return false;
    }
    this.stats.kicks++;
    this.nat.eventfdWrite(this.kickFd, 1);
    return true;
  }

  poll(): boolean {
    const r = this.ring;
    if (!r.getUsed()) return false;
    this.lastToken = r.lastToken;
    this.lastLen = r.lastLen;
    this.stats.completed++;
    return true;
  }

  enableInterrupts(): void {
    this.ring.enableInterrupts();
  }

  disableInterrupts(): void {
    this.ring.disableInterrupts();
  }
}

/** A fixed pool of indirect tables (no allocation per request). */
class IndirectPool {
  private readonly free: Float64Array;
  private top: number;
  constructor(ram: GuestRamAllocator, n: number) {
    this.free = new Float64Array(n);
    const base = ram.alloc(n * INDIRECT_SLOT, 4096);
    for (let i = 0; i < n; i++) this.free[i] = base + i * INDIRECT_SLOT;
    this.top = n;
  }
  alloc(bytes: number): number {
    if (bytes > INDIRECT_SLOT) throw new VirtioError('INVALID_ARGUMENT', `vhost bench driver: an indirect table of ${bytes} bytes exceeds the ${INDIRECT_SLOT}-byte slots`);
    if (this.top === 0) throw new VirtioError('QUEUE_FULL', 'vhost bench driver: no free indirect table');
    return this.free[--this.top]!;
  }
  release(addr: number): void {
    this.free[this.top++] = addr;
  }
}

function pick(offered: Mask64, bits: readonly number[]): Mask64 {
  return maskOf(bits.filter((b) => maskHas(offered, b)));
}

/** The driver of one session step over a vhost-user back-end. */
export class VhostBenchDriver implements LoopDriver, OwnDriver {
  readonly ram: GuestRamAllocator;
  readonly stats = { msi: 0, spuriousMsi: 0 };
  readonly pool = undefined;
  readonly negotiated: NegotiatedInfo;
  /** Device misbehaviour the driver queues saw (a ring that parks stops completing). */
  readonly sink = new RecordingSink();
  readonly fe: VhostUserFrontend;
  /** {@link OwnDriver.driver}: this object. */
  readonly driver: LoopDriver = this;
  private readonly nat: NativeApi;
  private readonly queues: VhostBenchQueue[] = [];
  private readonly kickFds: number[] = [];
  private readonly callFd: number;
  private callPoll: PollHandle | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  private constructor(fe: VhostUserFrontend, ram: GuestRamAllocator, nat: NativeApi, callFd: number, negotiated: NegotiatedInfo) {
    this.fe = fe;
    this.ram = ram;
    this.nat = nat;
    this.callFd = callFd;
    this.negotiated = negotiated;
  }

  /**
   * Connect, negotiate for `cfg` and start `cfg.queues` split rings.
   * @throws VirtioError FEATURE_REQUIRED when the back-end lacks what `cfg` asks (packed, indirect,
   *   event idx, enough queues); PROTOCOL / TIMEOUT / CLOSED when the back-end refuses a step
   */
  static async open(o: VhostBenchDriverOptions): Promise<VhostBenchDriver> {
    const nat = o.native ?? defaultNative;
    const cfg = o.cfg;
    if (cfg.ring !== 'split') throw new VirtioError('FEATURE_REQUIRED', `ring ${cfg.ring}: the vhost-user bench driver drives split rings only (qemu-storage-daemon does not offer packed rings)`);
    const region = o.ram.regions[0];
    if (o.ram.regions.length !== 1 || region === undefined || region.fd === undefined) throw new VirtioError('INVALID_ARGUMENT', 'vhost bench driver: guest RAM must be one memfd-backed region');
    const fe = VhostUserFrontend.connect(o.socketPath, { timeoutMs: o.timeoutMs ?? 10_000, native: nat });
    const fds: number[] = [];
    try {
      const offered = await fe.getFeatures();
      if (!maskHas(offered, VIRTIO_F_VERSION_1)) throw new VirtioError('FEATURE_REQUIRED', `the back-end does not offer VIRTIO_F_VERSION_1 (offered ${maskHex(offered)})`);
      if (cfg.eventIdx && !maskHas(offered, VIRTIO_F_EVENT_IDX)) throw new VirtioError('FEATURE_REQUIRED', 'event idx requested but the back-end does not offer VIRTIO_F_EVENT_IDX');
      if (cfg.indirect && !maskHas(offered, VIRTIO_F_INDIRECT_DESC)) throw new VirtioError('FEATURE_REQUIRED', 'indirect descriptors requested but the back-end does not offer VIRTIO_F_INDIRECT_DESC');
      const want = [VIRTIO_F_VERSION_1, VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_F_INDIRECT_DESC, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ];
      if (cfg.eventIdx) want.push(VIRTIO_F_EVENT_IDX);
      const feats = pick(offered, want);
      let proto: Mask64 = { lo: 0, hi: 0 };
      if (maskHas(offered, VHOST_USER_F_PROTOCOL_FEATURES)) {
        proto = pick(await fe.getProtocolFeatures(), [VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_CONFIG]);
        await fe.setProtocolFeatures(proto);
        if (maskHas(proto, VHOST_USER_PROTOCOL_F_MQ)) {
          const n = await fe.getQueueNum();
          if (n < cfg.queues) throw new VirtioError('FEATURE_REQUIRED', `${cfg.queues} queues requested but the back-end has ${n}`);
        }
      }
      await fe.setOwner();
      await fe.setFeatures(feats);
      await fe.setMemTable([{ gpa: region.base, size: region.size, uaddr: region.base + VHOST_UADDR_OFFSET, mmapOffset: 0, fd: region.fd }]);

      const ram = new GuestRamAllocator(o.ram.space);
      const callFd = nat.eventfdCreate(0);
      fds.push(callFd);
      const fset = new FeatureSet([feats.lo, feats.hi]);
      fset.clear(VHOST_USER_F_PROTOCOL_FEATURES); // a vhost-user bit, not a device feature
      const negotiated: NegotiatedInfo = {
        mask: fset.toString(),
        names: describeFeatures(fset, VIRTIO_ID_BLOCK),
        dma: 'direct',
        interrupts: 'vhost-user call eventfd',
        queueSize: o.queueSize,
        bounceCopier: null,
      };
      const drv = new VhostBenchDriver(fe, ram, nat, callFd, negotiated);
      const span = layoutSplitRings(0, o.queueSize).bytes;
      for (let q = 0; q < cfg.queues; q++) {
        const lay = layoutSplitRings(ram.alloc(span, 4096), o.queueSize);
        const qc: QueueConfig = { index: q, size: o.queueSize, maxSize: o.queueSize, desc: lay.desc, driver: lay.driver, device: lay.device, eventIdx: cfg.eventIdx, indirect: maskHas(feats, VIRTIO_F_INDIRECT_DESC), inOrder: false };
        let opts = {};
        if (cfg.indirect) {
          const pool = new IndirectPool(ram, o.queueSize);
          opts = { indirectThreshold: 1, allocIndirect: (b: number) => pool.alloc(b), freeIndirect: (a: number) => pool.release(a) };
        }
        const ring = new SplitDriverQueue(o.ram.space, qc, drv.sink, opts);
        const kickFd = nat.eventfdCreate(0);
        drv.kickFds.push(kickFd);
        await fe.setVringNum(q, o.queueSize);
        await fe.setVringBase(q, 0);
        await fe.setVringAddr({ index: q, flags: 0, desc: lay.desc + VHOST_UADDR_OFFSET, used: lay.device + VHOST_UADDR_OFFSET, avail: lay.driver + VHOST_UADDR_OFFSET, log: 0 });
        await fe.setVringCall(q, callFd);
        await fe.setVringKick(q, kickFd);
        drv.queues.push(new VhostBenchQueue(q, ring, kickFd, nat));
      }
      if (maskHas(feats, VHOST_USER_F_PROTOCOL_FEATURES)) for (let q = 0; q < cfg.queues; q++) await fe.setVringEnable(q, true);
      // Without REPLY_ACK nothing above was acknowledged: a request with a reply orders them.
      if (!maskHas(proto, VHOST_USER_PROTOCOL_F_REPLY_ACK)) await fe.getFeatures();
      drv.callPoll = nat.poll(callFd, POLL_READABLE, () => drv.onCall());
      fds.length = 0; // owned by the driver now
      return drv;
    } catch (e) {
      fe.close();
      for (const fd of fds) nat.close(fd);
      throw e;
    }
  }

  queue(q: number): VhostBenchQueue {
    const v = this.queues[q];
    if (v === undefined) throw new VirtioError('INVALID_ARGUMENT', `vhost bench driver: queue ${q} was not set up (${this.queues.length} queues)`);
    return v;
  }

  private onCall(): void {
    if (this.nat.eventfdRead(this.callFd) === 0) {
      this.stats.spuriousMsi++;
      return;
    }
    this.stats.msi++;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  waitInterrupt(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        const why = this.sink.last !== undefined ? `; the driver saw: ${this.sink.last.message}` : this.fe.isClosedNow ? `; the back-end closed the connection${this.fe.closeError !== undefined ? `: ${this.fe.closeError.message}` : ''}` : '';
        reject(new VirtioError('TIMEOUT', `vhost-user back-end: no call within ${timeoutMs} ms (stalled?)${why}`));
      }, timeoutMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Stop the rings (GET_VRING_BASE, which waits for the back-end's in-flight requests), disconnect, free the eventfds. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.callPoll?.stop();
    this.callPoll = undefined;
    try {
      if (!this.fe.isClosedNow) for (const q of this.queues) await this.fe.getVringBase(q.index);
    } finally {
      this.fe.close();
      await this.fe.closed;
      for (const fd of this.kickFds) this.nat.close(fd);
      this.nat.close(this.callFd);
      this.kickFds.length = 0;
    }
  }
}
