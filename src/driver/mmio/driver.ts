/**
 * The simulated guest driver for a virtio-mmio (Version 2) device — what Linux `virtio_mmio` +
 * `virtio_ring` do, in a test-sized form, with the same shape as {@link VirtioPciDriver}.
 *
 * Init sequence (init.dev-init.driver.1, mmio.dev-init.driver.4; status bits only ever added):
 *  0. probe: MagicValue, Version 2, DeviceID (0 → placeholder, ignored silently) — `probe.ts`;
 *  1. reset: Status 0, read back until 0 — a bounded number of reads, then a TIMEOUT error;
 *  2. ACKNOWLEDGE, DRIVER;
 *  3. device feature windows through DeviceFeaturesSel (mmio.regs.driver.7), choice per
 *     `features.ts`, driver windows through DriverFeaturesSel (mmio.regs.driver.8);
 *  4. FEATURES_OK and read it back: clear means refused — set FAILED and throw FEATURE_REQUIRED;
 *  5. DMA: when the device tree gives the device a `restricted-dma-pool` (`platform.pool`), the
 *     driver bounces through it — always with VIRTIO_F_SWIOTLB negotiated
 *     (rfc-swiotlb.mmio.driver.2), and by default also without it, as Linux does for any device
 *     with a restricted pool (rfc-swiotlb.mmio.driver.1 SHOULD). Rings, indirect tables and
 *     buffers then all live in the pool; otherwise guest RAM;
 *  6. queues (MMIO has no queue count register: `queues` or scan until QueueSizeMax reads 0):
 *     QueueSel; QueueReady must read 0; QueueSizeMax (0 = unavailable); QueueSize ≤ max
 *     (mmio.regs.driver.9; a power of 2 for split rings); ring addresses Low/High; QueueReady 1 —
 *     the addresses are never touched again while the queue is ready (mmio.regs.driver.10);
 *  7. DRIVER_OK; only now may queues be kicked (init.dev-init.driver.4).
 *
 * Notifications: a 32-bit write to QueueNotify of the queue index, or with
 * VIRTIO_F_NOTIFICATION_DATA of the notification data. Interrupts: on the line going high, read
 * InterruptStatus (mmio.notif-dev.driver.1), acknowledge exactly the defined bits that were set
 * (mmio.regs.driver.13, mmio.notif-dev.driver.3), then handle a configuration change (bit 1)
 * and service every queue on bit 0 (mmio.notif-dev.driver.2).
 */
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import { RecordingSink } from '../../device/choke.js';
import type { AddressSpace } from '../../memory/space.js';
import { VIRTIO_F_RING_RESET, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import type { FeatureSet } from '../../features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK } from '../../features/status.js';
import type { DriverQueue } from '../../queue/types.js';
import { BouncePool, type BouncePoolOptions } from '../../swiotlb/pool.js';
import { SwiotlbWindow } from '../../swiotlb/window.js';
import { VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING } from '../../transport/mmio/registers.js';
import { VirtioDriverBase, hex, type BaseDriverOptions, type DriverTexts } from '../base-driver.js';
import { DirectDma, SwiotlbDma } from '../dma.js';
import { allocRingAreas, buildDriverQueue, chooseQueueSize } from '../queue-setup.js';
import { GuestRamAllocator, type RamRange } from '../ram-alloc.js';
import { VirtqueueDriver } from '../virtqueue.js';
import type { MmioDeviceAccess, MmioPlatformDescription } from './access.js';
import { probeVirtioMmio, type VirtioMmioProbe } from './probe.js';
import { MmioQueueNotifier, MR, VirtioMmioRegs } from './regs.js';

const log = logger('driver:mmio');

/** Options of {@link VirtioMmioDriver}. */
export interface VirtioMmioDriverOptions extends BaseDriverOptions {
  /** Guest RAM as the driver (the guest CPU) sees it; contains the restricted pool, if any. */
  guestRam: AddressSpace;
  /** Allocator over guest RAM (default: one over all of `guestRam` except the pool). */
  ram?: GuestRamAllocator;
  /** What the device tree says (pool for SWIOTLB / restricted DMA). `VirtioMmioDevice.platformInfo()` gives it. */
  platform?: MmioPlatformDescription;
  /** An earlier probe result (skips probing). */
  probe?: VirtioMmioProbe;
  /**
   * Bounce through `platform.pool` even when VIRTIO_F_SWIOTLB is not negotiated (default true,
   * Linux's behaviour for a device with a restricted-dma-pool; rfc-swiotlb.mmio.driver.1).
   */
  preferPool?: boolean;
  /** Queues to set up (default: queues 0, 1, ... until QueueSizeMax reads 0). */
  queues?: number;
  /** Upper bound of the queue scan (default 64). */
  maxQueues?: number;
  /** Bounce pool tuning: min_align_mask, copiers. */
  bounce?: Omit<BouncePoolOptions, 'window' | 'ram'>;
  /** Reads of Status after writing 0 before giving up (default 16). */
  resetPolls?: number;
  /** Subscribe to `access.onIrq` (default true). */
  connectInterrupts?: boolean;
}

/** Driver counters. */
export interface MmioDriverStats {
  /** Interrupt line assertions handled. */
  irqs: number;
  /** InterruptStatus reads. */
  statusReads: number;
  /** Assertions that found InterruptStatus 0 (shared line, or already handled). */
  spurious: number;
  configChanges: number;
}

const MMIO_TEXTS: DriverTexts = {
  resetStatus: 'Status',
  resetClause: 'basic.dev-reset.device.1',
  featuresStatus: 'Status',
  declinedFallback: 'no pool',
  advice: ' accept it (give the driver the restricted-dma-pool) or relax the device policy.',
};

/** A simulated guest driver bound to one virtio-mmio device. */
export class VirtioMmioDriver extends VirtioDriverBase<VirtioMmioRegs, VirtioMmioDriverOptions, MmioDriverStats> {
  readonly access: MmioDeviceAccess;
  readonly probe: VirtioMmioProbe;
  readonly stats: MmioDriverStats = { irqs: 0, statusReads: 0, spurious: 0, configChanges: 0 };

  private readonly notifier: MmioQueueNotifier;

  /**
   * Probe the device (unless a probe result is given). Call {@link init} next.
   * @throws VirtioError PROTOCOL for a bad magic value, a legacy (Version 1) device, or a
   *   placeholder (DeviceID 0) — use {@link VirtioMmioDriver.open} to skip placeholders silently
   */
  constructor(access: MmioDeviceAccess, opts: VirtioMmioDriverOptions) {
    requireArg(opts !== undefined && opts.guestRam !== undefined, 'VirtioMmioDriver: options.guestRam (the guest RAM address space) is required');
    const p = opts.probe ?? probeVirtioMmio(access);
    if (p === null) {
      throw new VirtioError('PROTOCOL', 'DeviceID 0: a placeholder virtio-mmio transport with no device behind it; use VirtioMmioDriver.open() (returns null) or probeVirtioMmio() to skip it', { clause: 'mmio.regs.driver.6' });
    }
    super(new VirtioMmioRegs(access), opts.ram ?? new GuestRamAllocator(opts.guestRam, ramRanges(opts.guestRam, opts.platform?.pool)), opts.sink ?? new RecordingSink(), opts, log, MMIO_TEXTS);
    this.access = access;
    this.probe = p;
    this.notifier = new MmioQueueNotifier(access);
    if ((opts.connectInterrupts ?? true) && access.onIrq !== undefined) {
      this.unsubscribe.push(access.onIrq((l) => this.handleIrq(l)));
    }
  }

  /**
   * Probe and {@link init}.
   * @returns the driver, or null for a placeholder device (DeviceID 0), ignored without error
   *   (mmio.regs.driver.6)
   */
  static open(access: MmioDeviceAccess, opts: VirtioMmioDriverOptions): VirtioMmioDriver | null {
    const p = opts.probe ?? probeVirtioMmio(access);
    if (p === null) return null;
    return new VirtioMmioDriver(access, { ...opts, probe: p }).init();
  }

  // ------------------------------------------------------------------ init

  /**
   * Run the full initialization sequence. Returns `this`.
   * @throws VirtioError FEATURE_REQUIRED when the device refuses FEATURES_OK (status FAILED is set),
   *   TIMEOUT when reset does not complete, PROTOCOL for device bugs (a queue ready after reset)
   */
  init(): this {
    this.resetDevice(); // init.dev-init.driver.1 step 1
    this.setStatus(STATUS_ACKNOWLEDGE);
    this.setStatus(STATUS_DRIVER);

    // --- features (mmio.regs.driver.7/.8)
    const devType = this.probe.deviceId;
    const { accepted, usable: poolOk } = this.negotiateFeatures(devType);
    const swBit = this.swiotlbBit;

    // --- DMA (rfc-swiotlb.mmio.driver.2: with the bit, only the pool; .1: prefer the pool anyway)
    const bounce = accepted.has(swBit) || (poolOk && (this.o.preferPool ?? true));
    this.dmaLayer = bounce ? this.buildPoolDma() : new DirectDma(this.ram);

    // --- queues
    const data32 = accepted.has(VIRTIO_F_NOTIFICATION_DATA);
    const limit = this.o.queues ?? this.o.maxQueues ?? 64;
    const scanning = this.o.queues === undefined;
    const built: Array<{ q: number; ring: DriverQueue }> = [];
    for (let q = 0; q < limit; q++) {
      const ring = this.setupQueue(q, accepted);
      if (ring === undefined) {
        if (scanning) break;
        continue;
      }
      built.push({ q, ring });
    }
    this.queueList = [];
    const dma = this.dmaLayer;
    for (const b of built) this.queueList[b.q] = this.wrap(b.q, b.ring, data32);

    this.setStatus(STATUS_DRIVER_OK);
    for (const v of this.queueList) v?.start(); // init.dev-init.driver.4: kicks only from here on
    log('driver up: device %d, features %s, %s DMA, queues %s', devType, accepted.toString(), dma.mode, built.map((b) => b.q).join(','));
    return this;
  }

  private wrap(q: number, ring: DriverQueue, data32: boolean): VirtqueueDriver {
    return new VirtqueueDriver(q, ring, this.notifier, this.dmaLayer!, this.ram, { addr: MR.QUEUE_NOTIFY, value: q, data32 });
  }

  /**
   * Reset one queue and set it up again (VIRTIO_F_RING_RESET): QueueReset = 1, read back until it
   * reads 0 (mmio.regs.driver.14, bounded), release its rings, then configure it afresh — possibly
   * with another size (mmio.regs.driver.15/.16). Pending submissions on the old queue fail.
   * @returns the new driver-side queue
   * @throws VirtioError FEATURE_NOT_OFFERED without RING_RESET, TIMEOUT when the reset does not complete
   */
  resetQueue(q: number, size?: number): VirtqueueDriver {
    const feats = this.negotiatedSet;
    if (feats === undefined || !feats.has(VIRTIO_F_RING_RESET)) {
      throw new VirtioError('FEATURE_NOT_OFFERED', `resetQueue(${q}): VIRTIO_F_RING_RESET was not negotiated; accept it (features.select) or reset the whole device`);
    }
    const old = this.queue(q);
    old.kill('queue reset by the driver');
    this.regs.selectQueue(q);
    this.regs.w32(MR.QUEUE_RESET, 1); // mmio.regs.device.10
    const polls = this.o.resetPolls ?? 16;
    let v = this.regs.r32(MR.QUEUE_RESET);
    for (let i = 1; i < polls && v !== 0; i++) v = this.regs.r32(MR.QUEUE_RESET);
    if (v !== 0) {
      throw new VirtioError('TIMEOUT', `queue ${q}: QueueReset still reads ${v} after ${polls} reads; the device did not complete the queue reset`, { clause: 'mmio.regs.driver.14' });
    }
    // mmio.regs.device.12: QueueReady reads 0 now; the old rings are the driver's again.
    for (const a of this.rings.get(q) ?? []) this.safeFree(a);
    this.rings.delete(q);
    const ring = this.setupQueue(q, feats, size);
    if (ring === undefined) throw new VirtioError('PROTOCOL', `queue ${q}: QueueSizeMax reads 0 after the queue reset`, { clause: 'mmio.regs.driver.15' });
    const vq = this.wrap(q, ring, feats.has(VIRTIO_F_NOTIFICATION_DATA));
    this.queueList[q] = vq;
    vq.start();
    return vq;
  }

  protected override bounceUsable(): boolean {
    return this.poolUsable();
  }

  protected override checkChosen(accepted: FeatureSet, poolOk: boolean): void {
    const swBit = this.swiotlbBit;
    if (accepted.has(swBit) && !poolOk) {
      // A `features.select` forced the bit without a pool: the driver could not keep its promise.
      this.fail('FEATURE_REQUIRED', `VIRTIO_F_SWIOTLB (bit ${swBit}) was chosen (features.select) but ${this.unusableWhy ?? 'the pool is unusable'}; the driver could not pass only pool addresses`, 'rfc-swiotlb.mmio.driver.2');
    }
  }

  /** Can the driver bounce through the restricted pool? Sets {@link swiotlbUnusableReason} when not. */
  private poolUsable(): boolean {
    this.unusableWhy = undefined;
    const pool = this.o.platform?.pool;
    if (pool === undefined) {
      this.unusableWhy = 'the device tree gives the device no restricted-dma-pool (options.platform.pool)';
      return false;
    }
    if (!this.o.guestRam.check(pool.base, pool.size, true)) {
      this.unusableWhy = `the restricted-dma-pool [${hex(pool.base)}, +${hex(pool.size)}) is not one writable range of guest RAM (${this.o.guestRam.describe()})`;
      return false;
    }
    return true;
  }

  /** The driver's view of the pool (a range of guest RAM) and a bounce pool over it. */
  private buildPoolDma(): SwiotlbDma {
    const pool = this.o.platform!.pool!;
    const space = this.o.guestRam;
    const i = space.resolveOrThrow(pool.base, pool.size, true);
    const region = space.regions[i]!;
    this.driverWindow = new SwiotlbWindow(region.buffer, { offset: space.off, size: pool.size, base: pool.base, name: 'driver-restricted-pool' });
    return new SwiotlbDma(new BouncePool({ ...(this.o.bounce ?? {}), window: this.driverWindow, ram: space }));
  }

  private setupQueue(q: number, feats: FeatureSet, sizeOverride?: number): DriverQueue | undefined {
    const regs = this.regs;
    const dma = this.dmaLayer!;
    regs.selectQueue(q);
    if (regs.r32(MR.QUEUE_READY) !== 0) {
      // mmio.regs.device.5: reset clears QueueReady; a ready queue now is a device bug.
      this.fail('PROTOCOL', `queue ${q}: QueueReady reads 1 right after reset; the device did not clear it`, 'mmio.regs.device.5');
    }
    const max = regs.r32(MR.QUEUE_SIZE_MAX);
    if (max === 0) return undefined; // queue unavailable
    const packed = feats.has(VIRTIO_F_RING_PACKED);
    // mmio.regs.driver.9: at most QueueSizeMax; a power of 2 for split rings
    const size = chooseQueueSize(q, Math.min(max, 32768), packed, sizeOverride ?? this.o.queueSize, (m) => this.fail('QUEUE_SIZE_INVALID', m));
    regs.w32(MR.QUEUE_SIZE, size);
    const addrs = allocRingAreas(dma, size, packed);
    this.rings.set(q, addrs);
    const [desc, driverArea, deviceArea] = addrs;
    regs.w64(MR.QUEUE_DESC, desc);
    regs.w64(MR.QUEUE_DRIVER, driverArea);
    regs.w64(MR.QUEUE_DEVICE, deviceArea);
    regs.w32(MR.QUEUE_READY, 1); // after every other queue field (mmio.regs.driver.10 from here on)
    return buildDriverQueue(dma, this.sink, feats, { index: q, size, maxSize: max, desc, driver: driverArea, device: deviceArea }, this.o.indirectThreshold);
  }

  // ------------------------------------------------------------------ interrupts

  /**
   * The interrupt line changed. On assertion: read InterruptStatus, acknowledge what was set,
   * then handle a configuration change and service every queue.
   */
  handleIrq(level: boolean): void {
    if (!level) return;
    this.lineAsserted();
  }

  protected override serviceLine(): void {
    this.stats.irqs++;
    this.stats.statusReads++;
    const st = this.regs.r32(MR.INTERRUPT_STATUS) & (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG); // mmio.notif-dev.driver.1; mmio.regs.driver.12
    if (st === 0) {
      this.stats.spurious++;
      return;
    }
    this.regs.w32(MR.INTERRUPT_ACK, st); // mmio.regs.driver.13, mmio.notif-dev.driver.3: only the handled, defined bits
    if ((st & VIRTIO_MMIO_INT_CONFIG) !== 0) this.configChanged();
    if ((st & VIRTIO_MMIO_INT_VRING) !== 0) for (const v of this.queueList) v?.service(); // mmio.notif-dev.driver.2
  }

  // ------------------------------------------------------------------ device config and shared memory

  /** Read the device-specific config (1, 2 or 4 bytes at `off`; mmio.regs.driver.3). */
  readConfig(off: number, width: 1 | 2 | 4): number {
    return this.regs.readConfig(off, width);
  }
  /** Write the device-specific config. */
  writeConfig(off: number, width: 1 | 2 | 4, value: number): void {
    this.regs.writeConfig(off, width, value);
  }
  /** ConfigGeneration. */
  get configGeneration(): number {
    return this.regs.r32(MR.CONFIG_GENERATION);
  }

  /**
   * Read a 64-bit config field as two 32-bit accesses (mmio.regs.driver.3), retrying until
   * ConfigGeneration is the same before and after (at most `tries` times).
   * @throws VirtioError PROTOCOL when the generation keeps changing
   */
  readConfig64(off: number, tries = 8): number {
    for (let i = 0; i < tries; i++) {
      const g = this.configGeneration;
      const lo = this.regs.readConfig(off, 4);
      const hi = this.regs.readConfig(off + 4, 4);
      if (this.configGeneration === g) return hi * 4294967296 + lo;
    }
    throw new VirtioError('PROTOCOL', `config at ${off}: ConfigGeneration changed on each of ${tries} reads; the device keeps changing its configuration`, { clause: 'mmio.regs.device.6' });
  }

  /**
   * Shared memory region `id` (SHMSel / SHMLen / SHMBase), or undefined when the device has none
   * with that id (length reads −1). Only for drivers that expect shared memory (mmio.dev-init.driver.3).
   */
  sharedMemory(id: number): { base: number; length: number } | undefined {
    this.regs.w32(MR.SHM_SEL, id);
    const lenLo = this.regs.r32(MR.SHM_LEN);
    const lenHi = this.regs.r32(MR.SHM_LEN + 4);
    if (lenLo === 0xffffffff && lenHi === 0xffffffff) return undefined;
    return { base: this.regs.r64(MR.SHM_BASE), length: lenHi * 4294967296 + lenLo };
  }

}

/** Guest RAM minus the restricted pool (reserved memory is not handed out by the allocator). */
function ramRanges(space: AddressSpace, pool: { base: number; size: number } | undefined): RamRange[] | undefined {
  if (pool === undefined) return undefined;
  const out: RamRange[] = [];
  const ps = pool.base;
  const pe = pool.base + pool.size;
  for (const r of space.regions) {
    const s = r.base;
    const e = r.base + r.size;
    if (pe <= s || ps >= e) {
      out.push({ start: s, end: e });
      continue;
    }
    if (ps > s) out.push({ start: s, end: ps });
    if (pe < e) out.push({ start: pe, end: e });
  }
  return out;
}
