/**
 * The transport-independent virtio device core.
 *
 * Transports decode register accesses onto this class: virtio-pci common config
 * (`device_feature_select`, `device_status`, `queue_select`, `queue_size`, ...) and virtio-mmio
 * registers (`DeviceFeaturesSel`, `Status`, `QueueSel`, `QueueNum`, ...) map one-to-one onto the
 * `read*` / `write*` methods below. The core owns:
 *
 *  - the status machine (`src/features/status.ts`) and feature negotiation (`negotiate.ts`);
 *  - feature windows for any select index (beyond the defined bits they read 0);
 *  - per-queue registers, and the device queues built from them at DRIVER_OK by the split or
 *    packed factory (per VIRTIO_F_RING_PACKED), passed in as options so this file does not
 *    depend on their implementations;
 *  - config_generation and configuration-change interrupts;
 *  - the guest-error choke point, wired to: set DEVICE_NEEDS_RESET, raise a config interrupt,
 *    park the queue(s);
 *  - a bounded trace of everything a conformance check wants to see.
 *
 * Rules kept here (clause ids beside each check in the code):
 *  - queue configuration is written after FEATURES_OK and before DRIVER_OK, only while the queue
 *    is disabled; after DRIVER_OK only for a queue that was reset with VIRTIO_F_RING_RESET.
 *    Other writes are ignored and recorded (not guest errors: the driver can read back and see).
 *  - queue_select out of range: reads as an unavailable queue (size 0), writes are ignored.
 *  - notify before DRIVER_OK, on a parked or disabled queue, or while suspended does nothing.
 *  - nothing a model throws escapes to the transport: it becomes a report to the choke point
 *    (code INTERNAL, or the code of a thrown VirtioError) which parks the queue and sets NEEDS_RESET.
 *
 * The core implements the modern interface only (no legacy register layout). That is also what
 * lets VIRTIO_F_SWIOTLB sit on the RFC's bit 27 (legacy ANY_LAYOUT): see `bits.ts`.
 */
import { VirtioError, isVirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import type { AddressSpace } from '../memory/space.js';
import type { DeviceQueue, DeviceQueueFactory, QueueConfig } from '../queue/types.js';
import { ChokePoint, type GuestError } from './choke.js';
import {
  DEFAULT_SWIOTLB_BIT,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_SUSPEND,
  VIRTIO_F_VERSION_1,
  describeFeatures,
  featureDefs,
} from '../features/bits.js';
import { FeatureSet, MAX_FEATURE_WORDS } from '../features/set.js';
import { checkOffer, negotiate, type NegotiationResult } from '../features/negotiate.js';
import {
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  STATUS_NEEDS_RESET,
  StatusMachine,
  describeStatus,
  type StatusWriteResult,
} from '../features/status.js';
import { NO_VECTOR, QueueRegs, type QueueArea } from './queue-regs.js';
import { TraceBuffer, type TraceEvent } from './trace.js';
import type { DeviceContext, DeviceCoreOptions, ModelHost, QueueFactories, TransportHooks, VirtioDeviceModel } from './types.js';
import type { VirtioErrorCode } from '../errors.js';

export { NO_VECTOR } from './queue-regs.js';

const log = logger('device');

/** Counters (plain numbers; cheap enough for hot paths). */
export interface DeviceCoreStats {
  /** Notifies delivered to the model. */
  notifies: number;
  /** Notifies ignored (queue parked/disabled, before DRIVER_OK, suspended). */
  ignoredNotifies: number;
  /** Notifies naming a queue that does not exist. */
  badNotifies: number;
  /** Queue interrupts raised. */
  queueInterrupts: number;
  /** Config interrupts raised. */
  configInterrupts: number;
}

/** The transport-independent device core. See the module doc. */
export class VirtioDeviceCore {
  readonly model: VirtioDeviceModel;
  /** The guest-error choke point of this device. */
  readonly choke: ChokePoint;
  /** Status register and its transition table. */
  readonly statusMachine: StatusMachine;
  /** Recent control-path events (status writes, feature acks, refusals, resets, guest errors). */
  readonly trace: TraceBuffer;
  /** Every bit offered (device-specific + device-independent), frozen. */
  readonly offered: FeatureSet;
  /** Bits FEATURES_OK requires, frozen. */
  readonly required: FeatureSet;
  /** The bit VIRTIO_F_SWIOTLB is offered on, or null when it is not offered. */
  readonly swiotlbBit: number | null;
  readonly stats: DeviceCoreStats = { notifies: 0, ignoredNotifies: 0, badNotifies: 0, queueInterrupts: 0, configInterrupts: 0 };

  private readonly hooks: TransportHooks;
  private readonly factories: QueueFactories;
  private readonly swiotlbSpace: AddressSpace | undefined;
  private readonly queueDisableAllowed: boolean;
  private readonly transportName: string;
  private readonly regs: QueueRegs[];
  /** Live queues by index (DeviceContext.queues). */
  private readonly live: Array<DeviceQueue | null>;
  private readonly driverFeat = new FeatureSet();
  /** The driver wrote non-zero bits in a window beyond MAX_FEATURE_WORDS. */
  private driverFeatBeyond = -1;
  private negotiatedSet: FeatureSet | null = null;
  private baseSpace: AddressSpace;
  private activeSpace: AddressSpace;
  private ctx: DeviceContext | null = null;

  private devFeatSel = 0;
  private drvFeatSel = 0;
  private queueSel = 0;
  private configVector = NO_VECTOR;
  private generation = 0;
  /** DRIVER_OK was set since the last reset (queues exist). */
  private activated = false;
  /** Activated and not suspended: queues may be processed and interrupts sent. */
  private running = false;
  private suspended = false;
  private pendingConfigInterrupt = false;
  private tracedEarlyNotify = false;
  private tracedBadNotify = false;

  constructor(opts: DeviceCoreOptions) {
    const model = opts.model;
    requireArg(model !== undefined && model !== null, 'VirtioDeviceCore: options.model is required');
    requireArg(Number.isInteger(model.numQueues) && model.numQueues >= 0 && model.numQueues <= 0xffff, `${model.name}: numQueues must be an integer 0..65535 (got ${model.numQueues})`);
    requireArg(typeof opts.queueFactories?.split === 'function', `${model.name}: options.queueFactories.split is required`);
    this.model = model;
    this.hooks = opts.hooks;
    this.factories = opts.queueFactories;
    this.baseSpace = opts.space;
    this.activeSpace = opts.space;
    this.queueDisableAllowed = opts.queueDisableAllowed ?? false;
    this.transportName = opts.transport ?? 'transport';
    this.trace = new TraceBuffer(opts.traceCapacity ?? 256);

    // --- offered features
    const offered = model.offeredFeatures().clone();
    offered.set(VIRTIO_F_VERSION_1); // reserved.reserved-feature-bits.device.1: a device MUST offer VERSION_1
    for (const b of opts.extraFeatures ?? [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX]) offered.set(b);
    if (offered.has(VIRTIO_F_RING_PACKED) && typeof this.factories.packed !== 'function') {
      throw new VirtioError('INVALID_ARGUMENT', `${model.name}: VIRTIO_F_RING_PACKED is offered but options.queueFactories.packed is missing`);
    }

    // --- SWIOTLB (2025 RFC)
    const sw = opts.swiotlb ?? { policy: 'off' as const };
    const swBit = sw.bit ?? DEFAULT_SWIOTLB_BIT;
    const hasRegion = sw.hasRegion ?? sw.space !== undefined;
    this.swiotlbSpace = sw.space;
    let swiotlbBit: number | null = null;
    if (sw.policy !== 'off') {
      requireArg(Number.isInteger(swBit) && swBit >= 0 && swBit < 128, `${model.name}: swiotlb.bit must be an integer 0..127 (got ${swBit})`);
      const clash = featureDefs(swBit, model.deviceId, { swiotlbBit: null }).filter((d) => d.legacyOnly !== true);
      if (clash.length > 0 || offered.has(swBit)) {
        throw new VirtioError('INVALID_ARGUMENT', `${model.name}: swiotlb.bit ${swBit} is already ${clash.map((d) => d.name).join('/') || 'offered'}; pick an unallocated bit (27 per the RFC, or 25, 26, 31, 44-49)`);
      }
      if (!hasRegion) {
        // rfc-swiotlb.feature.device.2: never offer VIRTIO_F_SWIOTLB without a bounce region.
        if (sw.policy === 'required') {
          throw new VirtioError('INVALID_ARGUMENT', `${model.name}: swiotlb policy 'required' needs a bounce region (options.swiotlb.space), and without one VIRTIO_F_SWIOTLB must not be offered`);
        }
        log('%s: swiotlb preferred but the transport has no region; VIRTIO_F_SWIOTLB not offered', model.name);
      } else {
        offered.set(swBit);
        swiotlbBit = swBit;
      }
    }
    this.swiotlbBit = swiotlbBit;

    const problems = checkOffer(offered, {
      deviceType: model.deviceId,
      transitional: false,
      ...(opts.transport !== undefined ? { transport: opts.transport } : {}),
      swiotlbBit,
    });
    if (problems.length > 0) {
      throw new VirtioError('INVALID_ARGUMENT', `${model.name}: invalid feature offer: ${problems.map((p) => `${p.message} [${p.clause}]`).join('; ')}`);
    }
    this.offered = offered.freeze();

    const required = model.requiredFeatures?.().clone() ?? new FeatureSet();
    if (opts.required !== undefined) for (const b of opts.required.toBits()) required.set(b);
    if (sw.policy === 'required' && swiotlbBit !== null) required.set(swiotlbBit);
    const notOffered = required.minus(this.offered);
    if (!notOffered.isEmpty()) {
      throw new VirtioError('INVALID_ARGUMENT', `${model.name}: required features are not offered: ${describeFeatures(notOffered, model.deviceId, { swiotlbBit }).join(', ')}`);
    }
    this.required = required.freeze();

    // --- queues
    this.regs = [];
    this.live = [];
    for (let q = 0; q < model.numQueues; q++) {
      const max = model.maxQueueSize(q);
      requireArg(Number.isInteger(max) && max >= 0 && max <= 32768, `${model.name}: maxQueueSize(${q}) must be 0..32768 (got ${max})`);
      this.regs.push(new QueueRegs(q, max, opts.queueNotifyOff?.(q) ?? q));
      this.live.push(null);
    }

    // --- choke point: NEEDS_RESET, config interrupt, park
    this.choke = new ChokePoint({
      setNeedsReset: () => {
        // basic.dev-status-field.device.2: set DEVICE_NEEDS_RESET on an error that needs a reset.
        this.statusMachine.deviceSet(STATUS_NEEDS_RESET);
      },
      configInterrupt: () => {
        // basic.dev-status-field.device.3: after setting NEEDS_RESET, send a config change notification.
        this.raiseConfigInterrupt();
      },
      park: (q) => this.park(q),
    });
    this.choke.onError((e) => this.record('guest-error', e.message, { clause: e.clause, code: e.code, index: e.queue }));

    this.statusMachine = new StatusMachine({
      negotiate: () => this.negotiateNow(),
      suspendNegotiated: () => this.negotiatedSet?.has(VIRTIO_F_SUSPEND) ?? false,
    });

    const host: ModelHost = { configChanged: () => this.configChanged(), sink: this.choke };
    model.bind?.(host);
  }

  // ============================================================================================
  // Status

  /** device_status as the driver reads it. */
  get status(): number {
    return this.statusMachine.status;
  }

  /** A driver write to device_status / MMIO Status. Never throws. */
  writeStatus(value: number): StatusWriteResult {
    const before = this.statusMachine.status;
    const res = this.statusMachine.write(value);
    this.record('status-write', `${describeStatus(before)} <- 0x${(value & 0xff).toString(16)}: ${res.kind}${res.reason !== undefined ? ` (${res.reason})` : ''}`, {
      value: value & 0xff,
      accepted: res.accepted,
      clause: res.clause,
    });
    switch (res.kind) {
      case 'reset':
        this.doReset();
        break;
      case 'features-ok':
        this.afterFeaturesOk(res.negotiation ?? { ok: res.accepted });
        break;
      case 'driver-ok':
        this.activate();
        break;
      case 'suspend':
        this.doSuspend();
        break;
      case 'resume':
        this.doResume();
        break;
      case 'failed':
        log('%s: driver set FAILED (status %s)', this.model.name, describeStatus(res.status));
        break;
      default:
        break;
    }
    return res;
  }

  // ============================================================================================
  // Features

  /** device_feature_select / DeviceFeaturesSel. */
  get deviceFeatureSelect(): number {
    return this.devFeatSel;
  }
  writeDeviceFeatureSelect(v: number): void {
    this.devFeatSel = v >>> 0;
  }

  /** device_feature / DeviceFeatures: bits 32*select .. +31 of the offer, 0 beyond (`pci.common-cfg.device.3`). */
  readDeviceFeature(): number {
    return this.offered.word(this.devFeatSel);
  }

  /** driver_feature_select / DriverFeaturesSel. */
  get driverFeatureSelect(): number {
    return this.drvFeatSel;
  }
  writeDriverFeatureSelect(v: number): void {
    this.drvFeatSel = v >>> 0;
  }

  /** driver_feature: the window the driver wrote (`pci.common-cfg.device.4`; invalid bits may be presented, `…device.5`). */
  readDriverFeature(): number {
    return this.driverFeat.word(this.drvFeatSel);
  }

  /**
   * driver_feature / DriverFeatures write. Accepted only after DRIVER and before FEATURES_OK
   * (`init.dev-init.driver.1` step 4); otherwise ignored and recorded.
   * @returns whether the write was taken
   */
  writeDriverFeature(v: number): boolean {
    v = v >>> 0;
    const st = this.statusMachine.status;
    const sel = this.drvFeatSel;
    if ((st & STATUS_FEATURES_OK) !== 0 || (st & STATUS_DRIVER) === 0 || (st & STATUS_FAILED) !== 0) {
      const locked = (st & STATUS_FEATURES_OK) !== 0;
      this.refuse(`driver_feature[${sel}] = 0x${v.toString(16)} ${locked ? 'after FEATURES_OK (features are locked)' : `in status ${describeStatus(st)} (write features after DRIVER, before FEATURES_OK)`}`, 'init.dev-init.driver.1', locked ? 'FEATURES_LOCKED' : 'STATUS_TRANSITION', v, sel);
      return false;
    }
    if (sel < MAX_FEATURE_WORDS) this.driverFeat.setWord(sel, v);
    else if (v !== 0) this.driverFeatBeyond = sel;
    this.record('feature-ack', `driver_feature[${sel}] = 0x${v.toString(16)}`, { value: v, index: sel, accepted: true });
    return true;
  }

  /** The driver's accepted features so far (a copy). */
  driverFeatures(): FeatureSet {
    return this.driverFeat.clone();
  }

  /** The negotiated features (frozen), or null before FEATURES_OK. */
  get negotiated(): FeatureSet | null {
    return this.negotiatedSet;
  }

  /** True when VIRTIO_F_SWIOTLB was negotiated. */
  get swiotlbNegotiated(): boolean {
    return this.swiotlbBit !== null && (this.negotiatedSet?.has(this.swiotlbBit) ?? false);
  }

  private negotiateNow(): NegotiationResult {
    if (this.driverFeatBeyond >= 0) {
      // basic.feature-bits.driver.1: nothing is offered beyond the stored windows.
      return { ok: false, code: 'FEATURE_NOT_OFFERED', clause: 'basic.feature-bits.driver.1', message: `driver accepted bits in feature window ${this.driverFeatBeyond}, where the device offers none` };
    }
    return negotiate(this.driverFeat, this.offered, {
      deviceType: this.model.deviceId,
      required: this.required,
      ...(this.model.featureRules !== undefined ? { rules: this.model.featureRules } : {}),
      swiotlbBit: this.swiotlbBit,
    });
  }

  private afterFeaturesOk(neg: NegotiationResult): void {
    const opts = { swiotlbBit: this.swiotlbBit };
    if (neg.ok) {
      this.negotiatedSet = this.driverFeat.clone().freeze();
      this.record('features-ok', describeFeatures(this.negotiatedSet, this.model.deviceId, opts).join(' '), { accepted: true, clause: 'basic.feature-bits.device.2' });
    } else {
      this.record('negotiation-refused', neg.message ?? 'feature negotiation failed', { accepted: false, ...(neg.clause !== undefined ? { clause: neg.clause } : {}), ...(neg.code !== undefined ? { code: neg.code } : {}) });
    }
  }

  // ============================================================================================
  // Device configuration space

  /** config_generation / ConfigGeneration (PCI reads the low 8 bits). */
  get configGeneration(): number {
    return this.generation;
  }

  /** Device-specific config read; out of range or bad width reads 0 and is recorded. */
  readConfig(off: number, width: 1 | 2 | 4): number {
    const c = this.model.config;
    if (!(off >= 0) || !Number.isInteger(off) || (width !== 1 && width !== 2 && width !== 4) || off + width > c.size) {
      this.refuse(`config read of ${width} bytes at ${off} (config space is ${c.size} bytes)`, undefined, 'BAD_ACCESS', undefined, off);
      return 0;
    }
    try {
      return c.read(off, width) >>> 0;
    } catch (e) {
      this.modelThrew(-1, `config read at ${off}`, e);
      return 0;
    }
  }

  /** Device-specific config write; out of range, bad width, or while suspended: ignored and recorded. */
  writeConfig(off: number, width: 1 | 2 | 4, value: number): void {
    const c = this.model.config;
    if (!(off >= 0) || !Number.isInteger(off) || (width !== 1 && width !== 2 && width !== 4) || off + width > c.size) {
      this.refuse(`config write of ${width} bytes at ${off} (config space is ${c.size} bytes)`, undefined, 'BAD_ACCESS', value >>> 0, off);
      return;
    }
    if (this.suspended) {
      // init.dev-suspend.device.2: ignore config writes while suspended.
      this.refuse(`config write at ${off} while suspended`, 'init.dev-suspend.device.2', 'BAD_ACCESS', value >>> 0, off);
      return;
    }
    try {
      c.write(off, width, value >>> 0);
    } catch (e) {
      this.modelThrew(-1, `config write at ${off}`, e);
    }
  }

  /** The model changed its config: bump config_generation and notify the driver. */
  configChanged(): void {
    // pci.common-cfg.device.6 / mmio.regs.device.6: present a changed generation.
    this.generation = (this.generation + 1) >>> 0;
    this.record('config-change', `config_generation -> ${this.generation}`, { value: this.generation });
    if ((this.statusMachine.status & STATUS_DRIVER_OK) !== 0 || this.suspended) this.raiseConfigInterrupt();
  }

  /** config_msix_vector (the transport validates the vector and writes NO_VECTOR on failure). */
  readConfigMsixVector(): number {
    return this.configVector;
  }
  writeConfigMsixVector(v: number): void {
    this.configVector = v & 0xffff;
  }

  private raiseConfigInterrupt(): void {
    const st = this.statusMachine.status;
    if (st === 0) return; // basic.dev-reset.device.2: no notifications after reset
    if (this.suspended) {
      // init.dev-suspend.device.4/5: hold it until the device resumes.
      this.pendingConfigInterrupt = true;
      return;
    }
    this.stats.configInterrupts++;
    try {
      this.hooks.configInterrupt(this.configVector);
    } catch (e) {
      log('%s: transport configInterrupt hook threw: %O', this.model.name, e);
    }
  }

  // ============================================================================================
  // Queues: registers

  /** num_queues. */
  get numQueues(): number {
    return this.regs.length;
  }

  /** queue_select / QueueSel. Any value is stored; out of range selects an unavailable queue. */
  get queueSelect(): number {
    return this.queueSel;
  }
  writeQueueSelect(v: number): void {
    this.queueSel = v >>> 0;
  }

  private selected(): QueueRegs | undefined {
    const r = this.regs[this.queueSel];
    return r !== undefined && r.maxSize > 0 ? r : undefined;
  }

  /** queue_size / QueueNum read: 0 when the selected queue is unavailable (`pci.common-cfg.device.14`). */
  readQueueSize(): number {
    return this.selected()?.size ?? 0;
  }

  /** QueueNumMax (MMIO): the selected queue's maximum, 0 when unavailable. */
  readQueueMaxSize(): number {
    return this.selected()?.maxSize ?? 0;
  }

  /** queue_size / QueueNum write (value checked when the queue is created). */
  writeQueueSize(v: number): boolean {
    const r = this.writableQueue('queue_size', v);
    if (r === undefined) return false;
    r.size = v & 0xffff;
    return true;
  }

  /** queue_msix_vector read (NO_VECTOR when unavailable). */
  readQueueMsixVector(): number {
    return this.selected()?.msixVector ?? NO_VECTOR;
  }

  /** queue_msix_vector write: allowed in any state (Linux unmaps vectors after reset); ignored out of range. */
  writeQueueMsixVector(v: number): boolean {
    const r = this.selected();
    if (r === undefined) {
      this.refuse(`queue_msix_vector write with queue_select ${this.queueSel} out of range`, 'pci.common-cfg.device.14', 'QUEUE_SELECT_OUT_OF_RANGE', v, this.queueSel);
      return false;
    }
    r.msixVector = v & 0xffff;
    return true;
  }

  /** queue_notify_off (0 when unavailable). */
  readQueueNotifyOff(): number {
    return this.selected()?.notifyOff ?? 0;
  }

  /** queue_notif_config_data: the value the driver writes in notifications (the queue index). */
  readQueueNotifConfigData(): number {
    return this.selected()?.index ?? 0;
  }

  /** One 32-bit half of queue_desc / queue_driver / queue_device (0 when unavailable). */
  readQueueAddr(area: QueueArea, high: boolean): number {
    return this.selected()?.readAddr(area, high) ?? 0;
  }

  /** Write one 32-bit half of queue_desc / queue_driver / queue_device. */
  writeQueueAddr(area: QueueArea, high: boolean, v: number): boolean {
    const r = this.writableQueue(`queue_${area}${high ? '_hi' : '_lo'}`, v);
    if (r === undefined) return false;
    r.writeAddr(area, high, v);
    return true;
  }

  /** queue_enable / QueueReady read (0 when unavailable; `pci.common-cfg.device.8`: 0 after reset). */
  readQueueEnable(): number {
    return this.selected()?.enabled === true ? 1 : 0;
  }

  /**
   * queue_enable / QueueReady write. 1 enables (after DRIVER_OK, i.e. re-enable after a queue
   * reset, the queue is created at once). 0 disables only when `queueDisableAllowed` (MMIO).
   */
  writeQueueEnable(v: number): boolean {
    if ((v & 0xffff) === 0) {
      if (!this.queueDisableAllowed) {
        this.refuse(`queue_enable = 0 for queue ${this.queueSel}`, 'pci.common-cfg.driver.6', 'BAD_ACCESS', 0, this.queueSel);
        return false;
      }
      const r = this.selected();
      if (r === undefined) {
        this.refuse(`QueueReady = 0 with queue_select ${this.queueSel} out of range`, 'pci.common-cfg.device.14', 'QUEUE_SELECT_OUT_OF_RANGE', 0, this.queueSel);
        return false;
      }
      if (r.enabled) this.stopQueue(r, 'disabled by the driver');
      return true;
    }
    const r = this.selected();
    if (r !== undefined && r.enabled) return true; // already enabled: nothing changes
    const w = this.writableQueue('queue_enable', v);
    if (w === undefined) return false;
    w.enabled = true;
    this.record('queue-enable', `queue ${w.index} enabled (size ${w.size})`, { index: w.index, value: 1, accepted: true });
    if (this.activated) this.startQueue(w, true);
    return true;
  }

  /** queue_reset / QueueReset read: always 0 — a queue reset completes within the write. */
  readQueueReset(): number {
    return 0;
  }

  /** queue_reset / QueueReset write (VIRTIO_F_RING_RESET). */
  writeQueueReset(v: number): boolean {
    if ((v & 0xffff) !== 1) return true; // only 1 means anything
    const r = this.selected();
    if (r === undefined) {
      this.refuse(`queue_reset with queue_select ${this.queueSel} out of range`, 'pci.common-cfg.device.14', 'QUEUE_SELECT_OUT_OF_RANGE', v, this.queueSel);
      return false;
    }
    if (!(this.negotiatedSet?.has(VIRTIO_F_RING_RESET) ?? false)) {
      this.refuse(`queue_reset for queue ${r.index} without VIRTIO_F_RING_RESET negotiated`, 'pci.common-cfg.device.11', 'BAD_ACCESS', v, r.index);
      return false;
    }
    this.resetQueue(r);
    return true;
  }

  /**
   * The queue registers for the selected queue if the driver may configure it now, else
   * undefined (the refusal is recorded).
   */
  private writableQueue(field: string, v: number): QueueRegs | undefined {
    const r = this.selected();
    if (r === undefined) {
      this.refuse(`${field} write with queue_select ${this.queueSel} (device has ${this.regs.length} queues)`, 'pci.common-cfg.device.14', 'QUEUE_SELECT_OUT_OF_RANGE', v, this.queueSel);
      return undefined;
    }
    const st = this.statusMachine.status;
    if ((st & STATUS_FEATURES_OK) === 0 || (st & STATUS_FAILED) !== 0) {
      // init.dev-init.driver.1 step 7: virtqueues are set up after FEATURES_OK.
      this.refuse(`${field} write for queue ${r.index} in status ${describeStatus(st)}: queues are configured after FEATURES_OK`, 'init.dev-init.driver.1', 'STATUS_TRANSITION', v, r.index);
      return undefined;
    }
    if (r.enabled) {
      // pci.common-cfg.driver.4 / mmio.regs.driver.10: configure before enabling; not while enabled.
      this.refuse(`${field} write for queue ${r.index} while it is enabled`, this.transportName === 'mmio' ? 'mmio.regs.driver.10' : 'pci.common-cfg.driver.4', 'BAD_ACCESS', v, r.index);
      return undefined;
    }
    if (this.activated && !(this.negotiatedSet?.has(VIRTIO_F_RING_RESET) ?? false)) {
      // init.dev-init.driver.1: set up queues before DRIVER_OK (afterwards only with RING_RESET, basic.vq-re-enable.driver.1).
      this.refuse(`${field} write for queue ${r.index} after DRIVER_OK without VIRTIO_F_RING_RESET`, 'init.dev-init.driver.1', 'STATUS_TRANSITION', v, r.index);
      return undefined;
    }
    return r;
  }

  // ============================================================================================
  // Queues: runtime

  /** Registers of queue `q` (inspection and transports). */
  queueRegs(q: number): QueueRegs | undefined {
    return this.regs[q];
  }

  /** The live device queue `q`, or null. */
  queue(q: number): DeviceQueue | null {
    return this.live[q] ?? null;
  }

  /** True when queue `q` is parked by the choke point or by its own error. */
  isParked(q: number): boolean {
    const r = this.regs[q];
    return r !== undefined && (r.parked || (r.queue?.parked ?? false));
  }

  /**
   * The driver kicked queue `q` (the transport decoded the index; with NOTIFICATION_DATA it
   * strips next_off/next_wrap first). Never throws.
   */
  notify(q: number): void {
    const r = this.regs[q];
    if (r === undefined) {
      this.stats.badNotifies++;
      if (!this.tracedBadNotify) {
        this.tracedBadNotify = true;
        this.refuse(`notify for queue ${q}, but the device has ${this.regs.length} queues`, undefined, 'BAD_NOTIFY', q, q);
      }
      return;
    }
    const queue = r.queue;
    if (queue === null || !this.running || r.parked || queue.parked) {
      this.stats.ignoredNotifies++;
      if (!this.activated && !this.tracedEarlyNotify) {
        this.tracedEarlyNotify = true;
        // init.dev-init.driver.4: no available-buffer notifications before DRIVER_OK.
        this.refuse(`notify for queue ${q} before DRIVER_OK`, 'init.dev-init.driver.4', 'QUEUE_NOT_READY', q, q);
      }
      return;
    }
    this.stats.notifies++;
    try {
      this.model.notify(q);
    } catch (e) {
      this.modelThrew(q, 'notify', e);
    }
  }

  /** DeviceContext.interrupt: raise queue `q`'s interrupt if the queue's suppression state wants one. */
  interrupt(q: number): void {
    const r = this.regs[q];
    if (r === undefined || !this.running) return; // basic.dev-status-field.device.1, basic.dev-reset.device.2
    const queue = r.queue;
    if (queue === null) return;
    if (queue.needsInterrupt()) {
      this.stats.queueInterrupts++;
      this.hooks.queueInterrupt(q, r.msixVector);
    }
  }

  private factoryFor(): DeviceQueueFactory | undefined {
    return this.negotiatedSet?.has(VIRTIO_F_RING_PACKED) === true ? this.factories.packed : this.factories.split;
  }

  /** Create the device queue for `r` (at DRIVER_OK or on re-enable). */
  private startQueue(r: QueueRegs, notifyModel: boolean): void {
    const feats = this.negotiatedSet ?? new FeatureSet();
    const factory = this.factoryFor();
    const cfg: QueueConfig = {
      index: r.index,
      size: r.size,
      maxSize: r.maxSize,
      desc: r.addr('desc'),
      driver: r.addr('driver'),
      device: r.addr('device'),
      eventIdx: feats.has(VIRTIO_F_EVENT_IDX),
      indirect: feats.has(VIRTIO_F_INDIRECT_DESC),
      inOrder: feats.has(VIRTIO_F_IN_ORDER),
    };
    let seg: number | undefined;
    try {
      seg = this.model.maxChainSegments?.(r.index);
    } catch (e) {
      this.modelThrew(r.index, 'maxChainSegments', e);
      return;
    }
    if (seg !== undefined) cfg.maxChainSegments = seg;
    let queue: DeviceQueue | null = null;
    try {
      if (factory === undefined) throw new VirtioError('INTERNAL', 'no queue factory for the negotiated ring layout');
      queue = factory(this.activeSpace, cfg, this.choke);
    } catch (e) {
      this.modelThrew(r.index, 'queue factory', e);
      queue = null;
    }
    // A null queue means the configuration was invalid and the factory reported it to the choke point.
    r.queue = queue;
    this.live[r.index] = queue;
    if (queue !== null && notifyModel && this.model.queueStarted !== undefined) {
      try {
        this.model.queueStarted(r.index, queue);
      } catch (e) {
        this.modelThrew(r.index, 'queueStarted', e);
      }
    }
  }

  /** Stop using queue `r`: the model lets go, the queue forgets its state. Registers keep their values. */
  private stopQueue(r: QueueRegs, why: string): void {
    if (r.queue !== null && this.model.queueReset !== undefined) {
      try {
        this.model.queueReset(r.index);
      } catch (e) {
        log('%s: queueReset(%d) threw: %O', this.model.name, r.index, e);
      }
    }
    try {
      r.queue?.reset();
    } catch (e) {
      log('%s: queue %d reset threw: %O', this.model.name, r.index, e);
    }
    r.queue = null;
    r.enabled = false;
    this.live[r.index] = null;
    this.record('queue-reset', `queue ${r.index} stopped: ${why}`, { index: r.index });
  }

  /** basic.vq-reset.device.1/2: stop the queue and return every register to its default. */
  private resetQueue(r: QueueRegs): void {
    this.stopQueue(r, 'queue reset (VIRTIO_F_RING_RESET)');
    r.reset(); // pci.common-cfg.device.13: queue_reset and queue_enable read 0 afterwards
  }

  private park(q: number): void {
    if (q >= 0) {
      const r = this.regs[q];
      if (r !== undefined) {
        r.parked = true;
        r.queue?.park(); // the model sees it too: pop() returns false from now on
      }
    } else {
      for (const r of this.regs) {
        r.parked = true;
        r.queue?.park();
      }
    }
  }

  // ============================================================================================
  // Lifecycle

  /** The address space DMA may touch now. */
  get space(): AddressSpace {
    return this.activeSpace;
  }

  /**
   * Replace the DMA address space (e.g. the transport moved a BAR or switched to the SWIOTLB
   * window). Queues created afterwards use it; live queues keep theirs until reset.
   */
  setAddressSpace(space: AddressSpace): void {
    this.baseSpace = space;
    if (!this.swiotlbNegotiated || this.swiotlbSpace === undefined) this.activeSpace = space;
    this.record('space-changed', `DMA space -> ${space.name}`, {});
  }

  /** The context handed to the model at DRIVER_OK (null before). */
  get context(): DeviceContext | null {
    return this.ctx;
  }

  private activate(): void {
    const feats = this.negotiatedSet;
    if (feats === null) {
      // Cannot happen through the status table (DRIVER_OK needs FEATURES_OK); guard anyway.
      this.choke.guestError({ code: 'STATUS_TRANSITION', clause: 'init.dev-init.driver.1', message: 'DRIVER_OK without negotiated features', queue: -1 });
      return;
    }
    this.activeSpace = this.swiotlbNegotiated && this.swiotlbSpace !== undefined ? this.swiotlbSpace : this.baseSpace;
    this.activated = true;
    this.running = true;
    for (const r of this.regs) if (r.enabled && r.maxSize > 0) this.startQueue(r, false);
    const core = this;
    const ctx: DeviceContext = {
      features: feats,
      queues: this.live,
      get space(): AddressSpace {
        return core.activeSpace;
      },
      interrupt: (q: number) => this.interrupt(q),
      configChanged: () => this.configChanged(),
      sink: this.choke,
    };
    this.ctx = ctx;
    const enabled = this.regs.filter((r) => r.queue !== null).map((r) => r.index);
    this.record('driver-ok', `activated with queues [${enabled.join(', ')}] in ${this.activeSpace.name}`, { accepted: true });
    try {
      this.model.activate(ctx);
    } catch (e) {
      this.modelThrew(-1, 'activate', e);
    }
  }

  private doSuspend(): void {
    // init.dev-suspend.device.6/8: finish in-flight work (the model may still interrupt), then stop.
    if (this.model.suspend !== undefined) {
      try {
        this.model.suspend();
      } catch (e) {
        this.modelThrew(-1, 'suspend', e);
      }
    }
    this.running = false;
    this.suspended = true;
    this.record('suspend', 'device suspended', { accepted: true, clause: 'init.dev-suspend.device.6' });
  }

  private doResume(): void {
    this.suspended = false;
    this.running = this.activated;
    this.record('resume', 'device resumed', { accepted: true, clause: 'init.dev-suspend.device.7' });
    if (this.model.resume !== undefined) {
      try {
        this.model.resume();
      } catch (e) {
        this.modelThrew(-1, 'resume', e);
      }
    }
    if (this.pendingConfigInterrupt) {
      this.pendingConfigInterrupt = false;
      this.raiseConfigInterrupt(); // init.dev-suspend.device.5
    }
  }

  /** Device reset (status 0 written): `basic.dev-reset.device.1`, `pci.common-cfg.device.7/8`, `pci.msix.device.7`. */
  private doReset(): void {
    this.running = false;
    this.activated = false;
    this.suspended = false;
    try {
      this.model.reset();
    } catch (e) {
      log('%s: model reset threw: %O', this.model.name, e);
      this.record('guest-error', `model reset threw: ${errMessage(e)}`, { code: 'INTERNAL' });
    }
    for (const r of this.regs) {
      try {
        r.queue?.reset();
      } catch (e) {
        log('%s: queue %d reset threw: %O', this.model.name, r.index, e);
      }
      r.reset();
      this.live[r.index] = null;
    }
    this.driverFeat.clearAll();
    this.driverFeatBeyond = -1;
    this.negotiatedSet = null;
    this.devFeatSel = 0;
    this.drvFeatSel = 0;
    this.queueSel = 0;
    this.configVector = NO_VECTOR;
    this.pendingConfigInterrupt = false;
    this.tracedEarlyNotify = false;
    this.tracedBadNotify = false;
    this.activeSpace = this.baseSpace;
    this.ctx = null;
    this.choke.reset();
    this.record('reset', 'device reset', { accepted: true, clause: 'basic.dev-reset.device.1' });
  }

  // ============================================================================================
  // Helpers

  /** A model (or factory, or hook) threw: report through the choke point; never rethrow. */
  private modelThrew(q: number, what: string, e: unknown): void {
    const err: GuestError = isVirtioError(e)
      ? { code: e.code, clause: e.clause, message: `${this.model.name}: ${what}: ${e.message}`, queue: q }
      : { code: 'INTERNAL', clause: undefined, message: `${this.model.name}: ${what} threw: ${errMessage(e)}`, queue: q };
    log('%s: %s threw: %O', this.model.name, what, e);
    this.choke.guestError(err);
  }

  private refuse(detail: string, clause: string | undefined, code: VirtioErrorCode, value?: number, index?: number): void {
    log('%s: refused %s%s', this.model.name, detail, clause !== undefined ? ` [${clause}]` : '');
    this.record('refused', detail, {
      accepted: false,
      code,
      ...(clause !== undefined ? { clause } : {}),
      ...(value !== undefined ? { value } : {}),
      ...(index !== undefined ? { index } : {}),
    });
  }

  private record(kind: TraceEvent['kind'], detail: string, extra: Partial<Omit<TraceEvent, 'seq' | 'kind' | 'detail' | 'status'>>): void {
    const ev: { -readonly [K in keyof Omit<TraceEvent, 'seq'>]: Omit<TraceEvent, 'seq'>[K] } = { kind, status: this.statusMachine.status, detail };
    if (extra.clause !== undefined) ev.clause = extra.clause;
    if (extra.code !== undefined) ev.code = extra.code;
    if (extra.value !== undefined) ev.value = extra.value;
    if (extra.index !== undefined) ev.index = extra.index;
    if (extra.accepted !== undefined) ev.accepted = extra.accepted;
    this.trace.push(ev);
  }
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
