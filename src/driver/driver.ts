/**
 * The simulated guest driver for a modern virtio-pci function (what Linux `virtio_pci_modern` +
 * `virtio_ring` do, in a test-sized form).
 *
 * Init sequence (init.dev-init.driver.1; status bits only ever added, basic.dev-status-field.driver.1/.2):
 *  1. reset: write 0, read back until 0 — a bounded number of reads, then a TIMEOUT error
 *     (pci.common-cfg.driver.5); never spins;
 *  2. ACKNOWLEDGE, DRIVER;
 *  3. read the device feature windows, choose (see features.ts), write the driver feature windows;
 *  4. FEATURES_OK and read it back: a device that leaves it clear refused the features — set FAILED
 *     and throw FEATURE_REQUIRED explaining why (init.dev-init.driver.2/.3);
 *  5. DMA: with VIRTIO_F_SWIOTLB the driver maps the window BAR and builds a bounce pool over it;
 *     rings, indirect tables and buffers then all live in the window
 *     (rfc-swiotlb.feature.driver.1, rfc-swiotlb.pci.driver.2); otherwise guest RAM;
 *  6. queues: size (power of two for split, pci.common-cfg.driver.3; never 0 for packed, …driver.2),
 *     rings allocated and zeroed, addresses written, then MSI-X vectors with read-back and fallback
 *     (pci.msix.driver.4/.5/.6), and only then queue_enable = 1 for every queue
 *     (pci.common-cfg.driver.4; never 0, …driver.6);
 *  7. DRIVER_OK; only now may queues be kicked (init.dev-init.driver.4).
 *
 * Interrupts: MSI-X messages (address/data programmed by the driver) are routed by data to the
 * vector's queues; INTx reads ISR (never with MSI-X on, pci.isr.driver.1). Wire them with
 * {@link VirtioPciDriver.handleMsi}/{@link VirtioPciDriver.handleIntx}, or let the driver subscribe
 * through the access object's `onMsi`/`onIntx` (default).
 */
import { VirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import { RecordingSink } from '../device/choke.js';
import type { AddressSpace } from '../memory/space.js';
import { VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED } from '../features/bits.js';
import type { FeatureSet } from '../features/set.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, describeStatus } from '../features/status.js';
import type { DriverQueue } from '../queue/types.js';
import { BouncePool, type BouncePoolOptions } from '../swiotlb/pool.js';
import { SwiotlbWindow } from '../swiotlb/window.js';
import { PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE } from '../transport/pci/layout-constants.js';
import type { PciFunctionAccess } from './access.js';
import { VirtioDriverBase, hex, type BaseDriverOptions, type DriverTexts } from './base-driver.js';
import { DirectDma, SwiotlbDma } from './dma.js';
import { vectorPlans, VIRTIO_MSI_NO_VECTOR, type InterruptMode, type VectorPlan } from './msix-plan.js';
import { CC, PciConfigIo, VirtioPciRegs, type VirtioRegAddrs } from './pci-regs.js';
import { barAddress, probeVirtioPci, relocateBar as relocate, type ProbeOptions, type VirtioPciProbe } from './probe.js';
import { allocRingAreas, buildDriverQueue, chooseQueueSize } from './queue-setup.js';
import { GuestRamAllocator } from './ram-alloc.js';
import { VirtqueueDriver, type NotifyTarget } from './virtqueue.js';

const log = logger('driver');

/** x86 MSI address (LAPIC window); the driver's "interrupt controller" accepts only this. */
export const DEFAULT_MSI_ADDRESS = 0xfee0_0000;
/** First message data value (the "interrupt vector" number of vector 0). */
export const DEFAULT_MSI_DATA_BASE = 0x40;

/** Options of {@link VirtioPciDriver}. */
export interface VirtioPciDriverOptions extends BaseDriverOptions {
  /** Guest RAM as the driver (the guest CPU) sees it. */
  guestRam: AddressSpace;
  /** Allocator over guest RAM (default: one over all of `guestRam`). */
  ram?: GuestRamAllocator;
  /** Probe options (BAR address allocator, SWIOTLB cfg_type ...), or an earlier probe result. */
  probe?: ProbeOptions | VirtioPciProbe;
  /** Set up only the first N queues (default: every available queue). */
  queues?: number;
  /** 'auto' (MSI-X with fallback, default), 'msix' (fail rather than use INTx), 'intx'. */
  interrupts?: 'auto' | 'msix' | 'intx';
  /** Try a single MSI-X vector for everything before INTx (default true). */
  singleVector?: boolean;
  /** MSI address programmed into the table (default 0xFEE0_0000). */
  msiAddress?: number;
  /** Data of vector 0 (vector v sends base + v; default 0x40). */
  msiDataBase?: number;
  /** Bounce pool tuning (SWIOTLB mode): min_align_mask, copiers. */
  bounce?: Omit<BouncePoolOptions, 'window' | 'ram'>;
  /** Reads of device_status after writing 0 before giving up (default 16). */
  resetPolls?: number;
  /** Subscribe to `access.onMsi` / `access.onIntx` (default true). */
  connectInterrupts?: boolean;
}

/** Driver counters. */
export interface DriverStats {
  msi: number;
  /** MSI messages not addressed to this driver (wrong address or data). */
  spuriousMsi: number;
  intx: number;
  isrReads: number;
  configChanges: number;
  /** Queue vector read back as NO_VECTOR (mapping failures). */
  vectorFailures: number;
}

const PCI_TEXTS: DriverTexts = {
  resetStatus: 'device_status',
  resetClause: 'pci.common-cfg.driver.5',
  featuresStatus: 'status',
  declinedFallback: 'acceptSwiotlb is false',
  advice: ' accept it or relax the device policy.',
};

/** A simulated guest driver bound to one virtio-pci function. */
export class VirtioPciDriver extends VirtioDriverBase<VirtioPciRegs, VirtioPciDriverOptions, DriverStats> {
  readonly access: PciFunctionAccess;
  readonly probe: VirtioPciProbe;
  readonly stats: DriverStats = { msi: 0, spuriousMsi: 0, intx: 0, isrReads: 0, configChanges: 0, vectorFailures: 0 };

  private readonly cfg: PciConfigIo;
  private readonly msiAddress: number;
  private readonly msiDataBase: number;
  private plan: VectorPlan | undefined;
  /** vector → queues it serves. */
  private vectorQueues: number[][] = [];
  private lastGeneration = -1;

  /** Probe the function (unless a probe result is given). Call {@link init} next. */
  constructor(access: PciFunctionAccess, opts: VirtioPciDriverOptions) {
    requireArg(opts !== undefined && opts.guestRam !== undefined, 'VirtioPciDriver: options.guestRam (the guest RAM address space) is required');
    const p = opts.probe;
    const probe = p !== undefined && 'common' in p ? p : probeVirtioPci(access, (p as ProbeOptions | undefined) ?? {});
    super(new VirtioPciRegs(access, addrsOf(probe)), opts.ram ?? new GuestRamAllocator(opts.guestRam), opts.sink ?? new RecordingSink(), opts, log, PCI_TEXTS);
    this.access = access;
    this.cfg = new PciConfigIo(access);
    this.probe = probe;
    this.msiAddress = opts.msiAddress ?? DEFAULT_MSI_ADDRESS;
    this.msiDataBase = opts.msiDataBase ?? DEFAULT_MSI_DATA_BASE;
    if (opts.connectInterrupts ?? true) {
      if (access.onMsi !== undefined) this.unsubscribe.push(access.onMsi((a, d) => this.handleMsi(a, d)));
      if (access.onIntx !== undefined) this.unsubscribe.push(access.onIntx((l) => this.handleIntx(l)));
    }
  }

  /** Probe, then {@link init}. */
  static open(access: PciFunctionAccess, opts: VirtioPciDriverOptions): VirtioPciDriver {
    return new VirtioPciDriver(access, opts).init();
  }

  /** Interrupt delivery chosen at init. */
  get interruptMode(): InterruptMode | undefined {
    return this.plan?.mode;
  }

  protected override afterReset(): void {
    this.plan = undefined;
  }

  // ------------------------------------------------------------------ init

  /**
   * Run the full initialization sequence. Returns `this`.
   * @throws VirtioError FEATURE_REQUIRED when the device refuses FEATURES_OK (status FAILED is set),
   *   TIMEOUT when reset does not complete, PROTOCOL for device bugs (notify address outside the
   *   capability, no usable interrupt mode with `interrupts: 'msix'`)
   */
  init(): this {
    this.resetDevice(); // init.dev-init.driver.1 step 1 (basic.dev-status-field.driver.3 after FAILED)
    this.setStatus(STATUS_ACKNOWLEDGE);
    this.setStatus(STATUS_DRIVER);

    // --- features (init.dev-init.driver.2 on refusal)
    const { accepted } = this.negotiateFeatures(this.probe.virtioDeviceId);
    const swBit = this.swiotlbBit;

    // --- DMA
    this.dmaLayer = accepted.has(swBit) ? this.buildSwiotlbDma() : new DirectDma(this.ram);

    // --- queues: configure, then vectors, then enable
    const nq = this.regs.cc16(CC.NUM_QUEUES);
    const want = Math.min(nq, this.o.queues ?? nq);
    const setUp: number[] = [];
    const built: Array<{ q: number; ring: DriverQueue; notify: NotifyTarget }> = [];
    for (let q = 0; q < want; q++) {
      const b = this.setupQueue(q, accepted);
      if (b !== undefined) {
        setUp.push(q);
        built.push(b);
      }
    }
    this.assignVectors(setUp);
    for (const q of setUp) {
      this.regs.selectQueue(q);
      this.regs.ccW16(CC.QUEUE_ENABLE, 1); // pci.common-cfg.driver.4 (after the other fields), .6 (never 0)
    }
    this.queueList = [];
    const dma = this.dmaLayer;
    for (const b of built) this.queueList[b.q] = new VirtqueueDriver(b.q, b.ring, this.regs, dma, this.ram, b.notify);

    this.setStatus(STATUS_DRIVER_OK);
    for (const v of this.queueList) v?.start(); // init.dev-init.driver.4: kicks only from here on
    this.lastGeneration = this.regs.cc8(CC.CONFIG_GENERATION);
    log('driver up: features %s, %s DMA, interrupts %s, queues %s', accepted.toString(), dma.mode, this.plan?.mode, setUp.join(','));
    return this;
  }

  protected override bounceUsable(offered: FeatureSet): boolean {
    return offered.has(this.swiotlbBit) ? this.swiotlbUsable() : false;
  }

  /** Can the driver use the window? Sets {@link swiotlbUnusableReason} when not. */
  private swiotlbUsable(): boolean {
    this.unusableWhy = undefined;
    const cap = this.probe.swiotlb;
    if (cap === undefined) {
      this.unusableWhy = 'the device offers VIRTIO_F_SWIOTLB but presents no SWIOTLB capability (check swiotlbCfgType)';
      return false;
    }
    const m = this.access.barMapping?.(cap.bar);
    if (m === undefined || cap.offset < m.barOffset || cap.offset + cap.length > m.barOffset + m.size) {
      this.unusableWhy = `BAR ${cap.bar} range ${hex(cap.offset)}+${hex(cap.length)} is not mappable through this access object (no barMapping)`;
      return false;
    }
    return true;
  }

  /** Map the window BAR (the driver's CPU view) and build the bounce pool over it. */
  private buildSwiotlbDma(): SwiotlbDma {
    const cap = this.probe.swiotlb!;
    const m = this.access.barMapping!(cap.bar)!;
    const base = barAddress(this.probe, cap.bar)! + cap.offset;
    this.driverWindow = new SwiotlbWindow(m.buffer, { offset: m.bufferOffset + (cap.offset - m.barOffset), size: cap.length, base, name: 'driver-swiotlb' });
    const pool = new BouncePool({ ...(this.o.bounce ?? {}), window: this.driverWindow, ram: this.o.guestRam });
    return new SwiotlbDma(pool);
  }

  private setupQueue(q: number, feats: FeatureSet): { q: number; ring: DriverQueue; notify: NotifyTarget } | undefined {
    const regs = this.regs;
    const dma = this.dmaLayer!;
    regs.selectQueue(q);
    const max = regs.cc16(CC.QUEUE_SIZE);
    if (max === 0) return undefined; // unavailable queue
    const packed = feats.has(VIRTIO_F_RING_PACKED);
    // pci.common-cfg.driver.3 (a power of 2 for split rings), .2 (never 0)
    const size = chooseQueueSize(q, max, packed, this.o.queueSize, (m) => this.fail('QUEUE_SIZE_INVALID', m));
    if (size !== max) regs.ccW16(CC.QUEUE_SIZE, size);
    // Ring memory: three separately allocated, aligned parts (inside the window with SWIOTLB).
    const addrs = allocRingAreas(dma, size, packed);
    this.rings.set(q, addrs);
    const [desc, driverArea, deviceArea] = addrs;
    regs.ccW64(CC.QUEUE_DESC, desc);
    regs.ccW64(CC.QUEUE_DRIVER, driverArea);
    regs.ccW64(CC.QUEUE_DEVICE, deviceArea);
    // Notify address (transport-pci "Notification structure layout").
    const notifyOff = regs.cc16(CC.QUEUE_NOTIFY_OFF);
    const data32 = feats.has(VIRTIO_F_NOTIFICATION_DATA);
    const n = this.probe.notify;
    const rel = notifyOff * n.multiplier;
    if (rel + (data32 ? 4 : 2) > n.length) {
      this.fail('PROTOCOL', `queue ${q}: queue_notify_off ${notifyOff} × multiplier ${n.multiplier} is outside the ${n.length}-byte notify structure`, 'pci.notify.device.3');
    }
    const value = feats.has(VIRTIO_F_NOTIF_CONFIG_DATA) ? regs.cc16(CC.QUEUE_NOTIF_CONFIG_DATA) : q; // pci.available-buffer-notif.driver.3/.4
    const ring = buildDriverQueue(dma, this.sink, feats, { index: q, size, maxSize: max, desc, driver: driverArea, device: deviceArea }, this.o.indirectThreshold);
    return { q, ring, notify: { addr: this.regs.addrs.notify + rel, value, data32 } };
  }

  /** Try vector plans until the device accepts one (pci.msix.driver.4/.5/.6). */
  private assignVectors(queues: number[]): void {
    const msix = this.probe.msix;
    const mode = this.o.interrupts ?? 'auto';
    const plans = vectorPlans(msix?.tableSize ?? 0, queues.length, mode !== 'intx' && msix !== undefined, this.o.singleVector ?? true);
    for (const plan of plans) {
      if (plan.mode === 'intx' && mode === 'msix') {
        this.fail('PROTOCOL', `no MSI-X vector assignment was accepted by the device (table size ${msix?.tableSize ?? 0}) and interrupts: 'msix' forbids INTx`, 'pci.msix.driver.6');
      }
      if (this.tryPlan(plan, queues)) {
        this.plan = plan;
        return;
      }
      log('vector plan %s refused by the device; falling back', plan.mode);
    }
  }

  private tryPlan(plan: VectorPlan, queues: number[]): boolean {
    const regs = this.regs;
    const msix = this.probe.msix;
    if (plan.mode === 'intx') {
      regs.ccW16(CC.CONFIG_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
      for (const q of queues) {
        regs.selectQueue(q);
        regs.ccW16(CC.QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
      }
      if (msix !== undefined) this.cfg.w16(msix.capOffset + 2, this.cfg.r16(msix.capOffset + 2) & ~PCI_MSIX_FLAGS_ENABLE);
      this.vectorQueues = [];
      return true;
    }
    // Program the table (pci.msix.driver.4: only vectors inside it), then enable MSI-X.
    for (let v = 0; v < plan.vectorsUsed; v++) regs.writeMsixEntry(v, this.msiAddress, this.msiDataBase + v, false);
    this.cfg.w16(msix!.capOffset + 2, (this.cfg.r16(msix!.capOffset + 2) | PCI_MSIX_FLAGS_ENABLE) & ~PCI_MSIX_FLAGS_MASKALL);
    // pci.msix.driver.5: write, then read back; NO_VECTOR means the mapping failed.
    regs.ccW16(CC.CONFIG_MSIX_VECTOR, plan.configVector);
    if (regs.cc16(CC.CONFIG_MSIX_VECTOR) !== plan.configVector) {
      this.stats.vectorFailures++;
      return false;
    }
    const vq: number[][] = Array.from({ length: plan.vectorsUsed }, () => []);
    for (let i = 0; i < queues.length; i++) {
      const q = queues[i]!;
      const v = plan.queueVectors[i]!;
      regs.selectQueue(q);
      regs.ccW16(CC.QUEUE_MSIX_VECTOR, v);
      if (regs.cc16(CC.QUEUE_MSIX_VECTOR) !== v) {
        this.stats.vectorFailures++;
        return false;
      }
      vq[v]!.push(q);
    }
    this.vectorQueues = vq;
    return true;
  }

  // ------------------------------------------------------------------ interrupts

  /**
   * An MSI-X message arrived (address/data as programmed). Routes by data to the vector's queues
   * and/or the configuration-change handler.
   */
  handleMsi(address: number, data: number): void {
    const v = data - this.msiDataBase;
    const plan = this.plan;
    if (address !== this.msiAddress || plan === undefined || plan.mode === 'intx' || !(v >= 0 && v < plan.vectorsUsed)) {
      this.stats.spuriousMsi++;
      return;
    }
    this.stats.msi++;
    const qs = this.vectorQueues[v];
    if (qs !== undefined) for (const q of qs) this.queueList[q]?.service();
    if (v === plan.configVector) {
      if (plan.mode === 'single') {
        // pci.notif-dev-cfg-changes.driver.1: one vector for queues and config — look at the generation.
        const g = this.regs.cc8(CC.CONFIG_GENERATION);
        if (g !== this.lastGeneration) {
          this.lastGeneration = g;
          this.configChanged();
        }
      } else {
        this.configChanged();
      }
    }
  }

  /** The INTx line changed. On assertion: read ISR (clears it), service queues / config. */
  handleIntx(level: boolean): void {
    if (!level || this.plan?.mode !== 'intx') return; // pci.isr.driver.1: with MSI-X, ISR is not read
    this.lineAsserted();
  }

  protected override serviceLine(): void {
    this.stats.intx++;
    this.stats.isrReads++;
    const isr = this.regs.readIsr();
    if ((isr & VIRTIO_PCI_ISR_QUEUE) !== 0) for (const v of this.queueList) v?.service();
    if ((isr & VIRTIO_PCI_ISR_CONFIG) !== 0) this.configChanged();
  }

  protected override noteConfigChange(): void {
    this.lastGeneration = this.regs.cc8(CC.CONFIG_GENERATION);
  }

  // ------------------------------------------------------------------ device config

  /** Read the device-specific config (1, 2 or 4 bytes at `off`). */
  readConfig(off: number, width: 1 | 2 | 4): number {
    return this.regs.readDeviceConfig(off, width);
  }
  /** Write the device-specific config. */
  writeConfig(off: number, width: 1 | 2 | 4, value: number): void {
    this.regs.writeDeviceConfig(off, width, value);
  }
  /** config_generation. */
  get configGeneration(): number {
    return this.regs.cc8(CC.CONFIG_GENERATION);
  }

  // ------------------------------------------------------------------ BARs and teardown

  /**
   * Reprogram BAR `bar` to `address` (decode off, write, decode on) and use the new bus addresses
   * from then on. Only while the device is reset (no queues, nothing mapped): call {@link resetDevice}
   * first, then {@link init} again — rings and bounce buffers are allocated at the new addresses.
   */
  relocateBar(bar: number, address: number): void {
    if (this.queueList.some((v) => v !== undefined) || this.statusBits !== 0) {
      throw new VirtioError('INVALID_ARGUMENT', `relocateBar: the device is initialized (status ${describeStatus(this.statusBits)}); call resetDevice() first, move the BAR, then init()`);
    }
    const b = this.probe.bars.find((x) => x.index === bar);
    requireArg(b !== undefined, `relocateBar: BAR ${bar} is not an implemented memory BAR`);
    relocate(this.access, b, address);
    this.regs.rebase(addrsOf(this.probe));
    this.driverWindow = undefined;
    log('BAR %d moved to %s', bar, hex(address));
  }
}

/** Bus addresses of the probed structures. */
function addrsOf(p: VirtioPciProbe): VirtioRegAddrs {
  const at = (bar: number, off: number): number => {
    const a = barAddress(p, bar);
    if (a === undefined) throw new VirtioError('PROTOCOL', `BAR ${bar} is not implemented`);
    return a + off;
  };
  return {
    common: at(p.common.bar, p.common.offset),
    isr: at(p.isr.bar, p.isr.offset),
    device: p.device !== undefined ? at(p.device.bar, p.device.offset) : undefined,
    deviceLength: p.device?.length ?? 0,
    notify: at(p.notify.bar, p.notify.offset),
    msixTable: p.msix !== undefined ? at(p.msix.tableBar, p.msix.tableOffset) : undefined,
  };
}
