/**
 * The transport-independent half of the simulated guest drivers ({@link VirtioPciDriver} and
 * {@link VirtioMmioDriver}): state getters, the accumulated status register, reset with a bounded
 * read-back, feature negotiation up to FEATURES_OK, ring-memory bookkeeping and configuration-change
 * dispatch. Each transport supplies its register access, its DMA choice and its queue setup.
 */
import { VirtioError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GuestErrorSink } from '../device/choke.js';
import type { AddressSpace } from '../memory/space.js';
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_VERSION_1, describeFeatures } from '../features/bits.js';
import { FeatureSet } from '../features/set.js';
import { STATUS_FAILED, STATUS_FEATURES_OK, describeStatus } from '../features/status.js';
import type { BouncePool, BouncePoolOptions } from '../swiotlb/pool.js';
import type { SwiotlbWindow } from '../swiotlb/window.js';
import { SwiotlbDma, type DriverDma } from './dma.js';
import { chooseDriverFeatures, type DriverFeatureOptions } from './features.js';
import type { QueueSizeOption } from './queue-setup.js';
import type { GuestRamAllocator } from './ram-alloc.js';
import type { VirtqueueDriver } from './virtqueue.js';

/** The registers every transport's driver needs for status and feature negotiation. */
export interface DriverStatusRegs {
  /** device_status / Status. */
  status: number;
  /** Device feature window `i` (32 bits). */
  deviceFeatureWord(i: number): number;
  /** Write driver feature window `i` (32 bits). */
  writeDriverFeatureWord(i: number, v: number): void;
}

/** Options both drivers share. */
export interface BaseDriverOptions {
  /** Guest RAM as the driver (the guest CPU) sees it. */
  guestRam: AddressSpace;
  /** Feature choice. */
  features?: DriverFeatureOptions;
  /** Queue size: a number (capped at the device maximum) or `(q, max) => size`. Default min(max, 256). */
  queueSize?: QueueSizeOption;
  /** Use an indirect table for chains of at least this many segments (0 = never, default). */
  indirectThreshold?: number;
  /** Bounce pool tuning: min_align_mask, copiers. */
  bounce?: Omit<BouncePoolOptions, 'window' | 'ram'>;
  /** Where device misbehaviour found by the driver queues goes (default: a RecordingSink). */
  sink?: GuestErrorSink;
  /** Reads of the status register after writing 0 before giving up (default 16). */
  resetPolls?: number;
  /** Feature select windows read and written (default 4 = 128 bits). */
  featureWords?: number;
}

/** Transport wording used in the shared error messages. */
export interface DriverTexts {
  /** Register name in the reset TIMEOUT message ('device_status', 'Status'). */
  resetStatus: string;
  /** Clause of the reset TIMEOUT. */
  resetClause: string;
  /** Register name in the FEATURES_OK refusal message ('status', 'Status'). */
  featuresStatus: string;
  /** Reason used when the bounce path was usable but the bit declined anyway is unknown. */
  declinedFallback: string;
  /** What to do, at the end of the SWIOTLB hint (' accept it ... or relax the device policy.'). */
  advice: string;
}

/** Error codes the drivers use when giving up during initialization. */
export type FailCode = 'FEATURE_REQUIRED' | 'PROTOCOL' | 'INVALID_ARGUMENT' | 'QUEUE_SIZE_INVALID';

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** Shared state and steps of the simulated guest drivers. */
export abstract class VirtioDriverBase<R extends DriverStatusRegs, O extends BaseDriverOptions, S extends { configChanges: number }> {
  readonly regs: R;
  readonly ram: GuestRamAllocator;
  readonly sink: GuestErrorSink;
  abstract readonly stats: S;
  /** Called on a configuration-change interrupt. */
  onConfigChange: (() => void) | undefined;

  protected readonly o: O;
  protected readonly log: Logger;
  protected offeredSet: FeatureSet | undefined;
  protected negotiatedSet: FeatureSet | undefined;
  protected dmaLayer: DriverDma | undefined;
  protected driverWindow: SwiotlbWindow | undefined;
  protected queueList: Array<VirtqueueDriver | undefined> = [];
  /** Ring memory per queue index (in setup order). */
  protected rings = new Map<number, number[]>();
  protected statusBits = 0;
  /** Why the bounce path (SWIOTLB window / restricted pool) is unusable, if so. */
  protected unusableWhy: string | undefined;
  protected readonly unsubscribe: Array<() => void> = [];

  protected constructor(regs: R, ram: GuestRamAllocator, sink: GuestErrorSink, opts: O, log: Logger, private readonly texts: DriverTexts) {
    this.regs = regs;
    this.ram = ram;
    this.sink = sink;
    this.o = opts;
    this.log = log;
  }

  // ------------------------------------------------------------------ state

  /** Features the device offered (after init). */
  get offered(): FeatureSet | undefined {
    return this.offeredSet;
  }
  /** Features negotiated (after FEATURES_OK). */
  get negotiated(): FeatureSet | undefined {
    return this.negotiatedSet;
  }
  /** True when VIRTIO_F_SWIOTLB was negotiated. */
  get swiotlb(): boolean {
    return this.negotiatedSet?.has(this.swiotlbBit) ?? false;
  }
  /** Why the driver could not use the SWIOTLB window / restricted pool, if so. */
  get swiotlbUnusableReason(): string | undefined {
    return this.unusableWhy;
  }
  /** The DMA layer in use (after init). */
  get dma(): DriverDma | undefined {
    return this.dmaLayer;
  }
  /** The bounce pool (when bouncing). */
  get pool(): BouncePool | undefined {
    return this.dmaLayer instanceof SwiotlbDma ? this.dmaLayer.pool : undefined;
  }
  /** The driver's own view of the bounce window (when bouncing). */
  get window(): SwiotlbWindow | undefined {
    return this.driverWindow;
  }
  /** Status as read from the device. */
  get status(): number {
    return this.regs.status;
  }
  /** Queues set up (index = virtqueue index; undefined for queues not set up). */
  get queues(): ReadonlyArray<VirtqueueDriver | undefined> {
    return this.queueList;
  }
  protected get swiotlbBit(): number {
    return this.o.features?.swiotlbBit ?? DEFAULT_SWIOTLB_BIT;
  }

  /** The driver-side virtqueue `q`. @throws VirtioError INVALID_ARGUMENT when it was not set up */
  queue(q: number): VirtqueueDriver {
    const v = this.queueList[q];
    if (v === undefined) throw new VirtioError('INVALID_ARGUMENT', `queue ${q} was not set up (set up: ${this.queueList.map((x, i) => (x ? i : -1)).filter((i) => i >= 0).join(', ') || 'none'}); call init() first`);
    return v;
  }

  // ------------------------------------------------------------------ init

  protected setStatus(bits: number): void {
    // basic.dev-status-field.driver.2: never clear a bit; write the accumulated value.
    this.statusBits |= bits;
    this.regs.status = this.statusBits;
  }

  protected fail(code: FailCode, message: string, clause?: string): never {
    // init.dev-init.driver.2/.3: give up with FAILED and stop initializing.
    try {
      this.setStatus(STATUS_FAILED);
    } catch (e) {
      this.log('setting FAILED threw: %O', e);
    }
    throw new VirtioError(code, message, clause !== undefined ? { clause } : {});
  }

  /** Reset the device and wait (boundedly) for the status to read 0 (pci.common-cfg.driver.5, basic.dev-reset.device.1). */
  resetDevice(): void {
    for (const v of this.queueList) v?.kill('device reset by the driver');
    this.queueList = [];
    this.regs.status = 0;
    this.statusBits = 0;
    const polls = this.o.resetPolls ?? 16;
    let st = this.regs.status;
    for (let i = 1; i < polls && st !== 0; i++) st = this.regs.status;
    if (st !== 0) {
      throw new VirtioError('TIMEOUT', `reset: ${this.texts.resetStatus} still reads ${hex(st)} (${describeStatus(st)}) after ${polls} reads; the device did not complete the reset`, { clause: this.texts.resetClause });
    }
    // The device forgot the rings: release their memory and every bounce mapping.
    for (const parts of this.rings.values()) for (const a of parts) this.safeFree(a);
    this.rings.clear();
    this.dmaLayer?.reset();
    this.dmaLayer = undefined;
    this.negotiatedSet = undefined;
    this.afterReset();
  }

  /** Transport state to forget after a reset. */
  protected afterReset(): void {}

  protected safeFree(addr: number): void {
    try {
      this.dmaLayer?.freeCoherent(addr);
    } catch (e) {
      this.log('free of ring memory %s failed: %O', hex(addr), e);
    }
  }

  /** Can the driver bounce (SWIOTLB window / restricted pool)? Sets {@link unusableWhy} when not. */
  protected abstract bounceUsable(offered: FeatureSet): boolean;

  /** Check the chosen features before they are written (default: nothing). */
  protected checkChosen(_accepted: FeatureSet, _usable: boolean): void {}

  /**
   * Feature negotiation (init.dev-init.driver.1 steps 3–4): read the device windows
   * (mmio.regs.driver.7), require VERSION_1, choose, write the driver windows (mmio.regs.driver.8),
   * set FEATURES_OK and read it back. Stores {@link offered} and {@link negotiated}.
   * @returns the accepted set and whether bouncing is usable
   */
  protected negotiateFeatures(devType: number): { accepted: FeatureSet; usable: boolean } {
    const words = this.o.featureWords ?? 4;
    const offered = new FeatureSet();
    for (let i = 0; i < words; i++) offered.setWord(i, this.regs.deviceFeatureWord(i));
    this.offeredSet = offered.freeze();
    if (!offered.has(VIRTIO_F_VERSION_1)) {
      // reserved.reserved-feature-bits.driver.2: this modern-only driver gives up.
      this.fail('FEATURE_REQUIRED', `the device does not offer VIRTIO_F_VERSION_1 (offered: ${describeFeatures(offered, devType).join(', ') || 'nothing'}); this driver has no legacy mode`, 'reserved.reserved-feature-bits.driver.2');
    }
    const swBit = this.swiotlbBit;
    const usable = this.bounceUsable(offered);
    const accepted = chooseDriverFeatures(offered, this.o.features, offered.has(swBit) && usable).freeze();
    this.checkChosen(accepted, usable);
    for (let i = 0; i < Math.max(words, accepted.storedWords); i++) this.regs.writeDriverFeatureWord(i, accepted.word(i));
    this.setStatus(STATUS_FEATURES_OK);
    const st = this.regs.status;
    if ((st & STATUS_FEATURES_OK) === 0) {
      const t = this.texts;
      const names = (s: FeatureSet): string => describeFeatures(s, devType, { swiotlbBit: swBit }).join(', ') || 'none';
      let hint = '';
      if (offered.has(swBit) && !accepted.has(swBit)) {
        hint = ` The driver declined VIRTIO_F_SWIOTLB (bit ${swBit}) — ${usable ? 'acceptSwiotlb is false' : (this.unusableWhy ?? t.declinedFallback)} — and a device with SWIOTLB policy 'required' refuses to run without it (rfc-swiotlb.feature.device.1);${t.advice}`;
      }
      this.fail('FEATURE_REQUIRED', `the device refused FEATURES_OK (${t.featuresStatus} read back ${hex(st)}: ${describeStatus(st)}) for accepted features [${names(accepted)}]; offered but not accepted: [${names(offered.minus(accepted))}].${hint}`, 'init.dev-init.driver.2');
    }
    this.negotiatedSet = accepted;
    return { accepted, usable };
  }

  // ------------------------------------------------------------------ interrupts

  private inLine = false;
  private lineAgain = false;

  /**
   * The interrupt line was asserted: run {@link serviceLine} — once more for each assertion that
   * arrives while it runs (a handler that re-asserts the line is not re-entered).
   */
  protected lineAsserted(): void {
    if (this.inLine) {
      this.lineAgain = true;
      return;
    }
    this.inLine = true;
    try {
      do {
        this.lineAgain = false;
        this.serviceLine();
      } while (this.lineAgain);
    } finally {
      this.inLine = false;
    }
  }

  /** Read and handle the transport's interrupt status once (INTx ISR / InterruptStatus). */
  protected serviceLine(): void {}

  /** Transport bookkeeping on a configuration change, before the handler runs. */
  protected noteConfigChange(): void {}

  protected configChanged(): void {
    this.stats.configChanges++;
    this.noteConfigChange();
    try {
      this.onConfigChange?.();
    } catch (e) {
      this.log('onConfigChange threw: %O', e);
    }
  }

  // ------------------------------------------------------------------ teardown

  /** Reset the device, release memory and unsubscribe from interrupts. */
  close(): void {
    try {
      this.resetDevice();
    } finally {
      for (const u of this.unsubscribe.splice(0)) u();
    }
  }
}
