/**
 * A modern (non-transitional) virtio-pci function around a {@link VirtioDeviceCore}.
 *
 * The handle answers configuration-space and BAR accesses (from a vfio-user server, a test, or an
 * in-process VMM), sends MSI-X messages and drives the INTx level through callbacks, and describes
 * its BARs — including "this BAR is backed by that buffer / fd" for the SWIOTLB window, so a VMM
 * can map it directly while barRead/barWrite keep working.
 *
 * PCI rules kept here (clause ids beside the checks):
 * - ids: vendor 0x1AF4, device 0x1040 + virtio id, revision ≥ 1, subsystem id ≥ 0x40
 *   (pci.discovery.device.1/.2/.4/.5/.6);
 * - at least one common, notify, ISR and PCI_CFG capability (pci.common-cfg.device.2,
 *   pci.notify.device.1, pci.isr.device.1, pci.pci-cfg-access.device.1), device cfg when the model
 *   has config;
 * - Memory Space Enable gates BAR accesses: when clear, reads return all-ones and writes are
 *   dropped (the cfg_type 5 window is not gated);
 * - Bus Master Enable gates DMA: while clear, notifications are not passed to the core (processing
 *   a queue is DMA) and MSI-X messages (memory writes) are dropped. {@link VirtioPciDevice.busMaster}
 *   exposes the bit so a model completing work asynchronously can check it before touching memory.
 *
 * SWIOTLB (2025 RFC): when the core offers VIRTIO_F_SWIOTLB (its policy is not 'off' and it was told
 * a region exists) the function must be given the window; it then presents the SWIOTLB capability
 * (cfg_type 10 by default) naming the window's BAR/offset/length. The window's bus address is
 * BAR base + offset and follows BAR reprogramming (`window.moveTo`). When the driver negotiates the
 * bit, the device's DMA space becomes `window.asAddressSpace()` at FEATURES_OK
 * (core.setAddressSpace) and goes back to the original space on reset.
 */
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import type { TransportHooks } from '../../device/types.js';
import { NO_VECTOR } from '../../device/queue-regs.js';
import { bindTransport, type CoreOrFactory, type LateBoundHooks } from '../../device/late-hooks.js';
import type { StatusWriteResult } from '../../features/status.js';
import type { SwiotlbWindow } from '../../swiotlb/window.js';
import { VIRTIO_F_NOTIFICATION_DATA } from '../../features/bits.js';
import {
  PciConfigSpace,
  initType0Header,
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_CONFIG_SPACE_SIZE,
  PCI_STATUS,
} from './config-space.js';
import { PciBars, type BarChange, type BarInfo, type BarSpec } from './bar.js';
import { BarRouter } from './bar-router.js';
import { CapabilityList, VIRTIO_PCI_CAP_PCI_CFG, VIRTIO_PCI_CAP_SWIOTLB_DEFAULT, VIRTIO_PCI_VENDOR_ID } from './capabilities.js';
import { Msix, type MsiSink } from './msix.js';
import { IsrState, isrRegion, VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_QUEUE } from './isr.js';
import { CommonCfg } from './common-cfg.js';
import { NotifyRegion } from './notify.js';
import { DeviceCfgRegion } from './device-cfg.js';
import { PciCfgAccess } from './pci-cfg-access.js';
import { computeLayout, type PciLayout, type PciLayoutOptions } from './layout.js';
import { SwiotlbBar, type BarMapping } from './swiotlb-bar.js';

export type { BarMapping } from './swiotlb-bar.js';
/** Moved to `src/device/late-hooks.ts` (shared by every transport); re-exported here for compatibility. */
export { LateBoundHooks } from '../../device/late-hooks.js';

const log = logger('pci');

/** PCI Device ID base of modern virtio devices (pci.discovery.device.2). */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** Default subsystem id (QEMU's); ≥ 0x40 so legacy drivers do not bind (pci.discovery.device.6). */
export const VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID = 0x1100;

/** PCI class code per virtio device id (as QEMU presents them); others 0x00ff00. */
const CLASS_BY_DEVICE: Readonly<Record<number, number>> = { 1: 0x020000, 2: 0x010000, 3: 0x078000, 4: 0x00ff00 };

/** A shared-memory region capability (cfg_type 8) in one of `extraBars`. */
export interface SharedMemorySpec {
  shmid: number;
  bar: number;
  offset: number;
  length: number;
}

/** Options of {@link createVirtioPciDevice}. */
export interface VirtioPciOptions extends PciLayoutOptions {
  /** Revision ID (default 1; pci.discovery.device.5 asks ≥ 1). */
  revisionId?: number;
  /** 24-bit class code (default per device type). */
  classCode?: number;
  /** Subsystem vendor id (default 0x1AF4). */
  subsystemVendorId?: number;
  /** Subsystem id (default 0x1100; pci.discovery.device.6 asks ≥ 0x40). */
  subsystemId?: number;
  /** 256 (conventional) or 4096 (PCIe extended, default) bytes of config space. */
  configSpaceSize?: 256 | 4096;
  /** The SWIOTLB window (required when the core offers VIRTIO_F_SWIOTLB). */
  swiotlbWindow?: SwiotlbWindow;
  /** cfg_type of the SWIOTLB capability (default 10, the RFC's). */
  swiotlbCfgType?: number;
  /** Vendor data capabilities (cfg_type 9); vendorId must not be 0x1AF4. */
  vendorCaps?: ReadonlyArray<{ vendorId: number; data?: Uint8Array }>;
  /** Additional BARs (e.g. for shared memory regions). Their contents read 0. */
  extraBars?: readonly BarSpec[];
  /** Shared memory capabilities (cfg_type 8), in BARs declared in `extraBars`. */
  sharedMemory?: readonly SharedMemorySpec[];
  /** MSI-X message sink (also settable with {@link VirtioPciDevice.onMsi}). */
  onMsi?: MsiSink;
  /** INTx level sink (also settable with {@link VirtioPciDevice.onIntx}). */
  onIntx?: (level: boolean) => void;
}

/** Counters of the PCI transport (the core counts the virtio-level ones). */
export interface PciTransportStats {
  /** BAR accesses while Memory Space Enable was clear. */
  memoryDisabledAccesses: number;
  /** BAR accesses to an unimplemented BAR. */
  unimplementedBarAccesses: number;
  /** Common cfg accesses refused (wrong width/offset, read-only field, vector mapping failure). */
  refusedAccesses: number;
  /** MSI-X messages dropped because Bus Master Enable was clear. */
  msiDroppedNoBusMaster: number;
  /** Interrupts for an event whose MSI-X vector is NO_VECTOR (none sent; pci.used-buffer-notif.device.1). */
  noVectorInterrupts: number;
  /** SWIOTLB window moves that failed (BAR at an address the window cannot take). */
  windowMoveFailures: number;
}

const TWO32 = 4294967296;

/** The virtio-pci function. Build it with {@link createVirtioPciDevice}. */
export class VirtioPciDevice implements TransportHooks {
  readonly core: VirtioDeviceCore;
  /** Configuration space (host-side inspection; the driver goes through {@link configRead}). */
  readonly config: PciConfigSpace;
  readonly capabilities: CapabilityList;
  readonly msix: Msix | undefined;
  readonly isr: IsrState;
  readonly layout: PciLayout;
  readonly notifyRegion: NotifyRegion;
  readonly cfgAccess: PciCfgAccess;
  readonly window: SwiotlbWindow | undefined;
  /** The SWIOTLB window's BAR range (when the capability is presented). */
  readonly swiotlb: SwiotlbBar | undefined;
  readonly stats: PciTransportStats = { memoryDisabledAccesses: 0, unimplementedBarAccesses: 0, refusedAccesses: 0, msiDroppedNoBusMaster: 0, noVectorInterrupts: 0, windowMoveFailures: 0 };
  private readonly barSet: PciBars;
  private readonly router: BarRouter;
  private readonly msiListeners: MsiSink[] = [];
  private readonly barListeners: Array<(c: BarChange) => void> = [];
  private command = 0;
  private readonly notifySpan: { bar: number; offset: number; end: number };

  /** @internal use {@link createVirtioPciDevice} */
  constructor(core: VirtioDeviceCore, o: VirtioPciOptions) {
    this.core = core;
    const model = core.model;
    const window = o.swiotlbWindow;
    // rfc-swiotlb.feature.device.2: the bit is offered only with a bounce region.
    if (core.swiotlbBit !== null && window === undefined) {
      throw new VirtioError('INVALID_ARGUMENT', `${model.name}: the core offers VIRTIO_F_SWIOTLB (bit ${core.swiotlbBit}) but no swiotlbWindow was given; pass the window or set the core's swiotlb policy to 'off'`);
    }
    // The capability is presented only together with the bit (rfc-swiotlb.pci.device.1).
    this.window = core.swiotlbBit !== null ? window : undefined;
    if (window !== undefined && this.window === undefined) log('%s: swiotlbWindow given but the core does not offer VIRTIO_F_SWIOTLB; no SWIOTLB capability', model.name);

    // --- identity (pci.discovery.device.1/.2/.4/.5/.6)
    requireArg(Number.isInteger(model.deviceId) && model.deviceId >= 1 && model.deviceId <= 0x3f, `${model.name}: virtio device id ${model.deviceId} has no modern PCI device id (0x1040 + id must be ≤ 0x107f)`);
    const revisionId = o.revisionId ?? 1;
    const subsystemId = o.subsystemId ?? VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID;
    requireArg(Number.isInteger(revisionId) && revisionId >= 1 && revisionId <= 0xff, `revisionId must be 1..255 for a non-transitional device (got ${revisionId})`); // pci.discovery.device.5
    requireArg(Number.isInteger(subsystemId) && subsystemId >= 0x40 && subsystemId <= 0xffff, `subsystemId must be 0x40..0xffff (got ${subsystemId})`); // pci.discovery.device.6
    this.config = new PciConfigSpace(o.configSpaceSize ?? PCI_CONFIG_SPACE_SIZE);
    initType0Header(this.config, {
      vendorId: VIRTIO_PCI_VENDOR_ID, // pci.discovery.device.1
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + model.deviceId, // pci.discovery.device.2/.4
      revisionId,
      classCode: o.classCode ?? CLASS_BY_DEVICE[model.deviceId] ?? 0x00ff00,
      subsystemVendorId: o.subsystemVendorId ?? VIRTIO_PCI_VENDOR_ID,
      subsystemId,
    });

    // --- BARs
    this.notifyRegion = new NotifyRegion(core, o.notifyMultiplier ?? 4, () => this.busMaster);
    this.layout = computeLayout(
      { numQueues: core.numQueues, maxNotifyOff: this.notifyRegion.maxNotifyOff, configSize: model.config.size, swiotlbSize: this.window?.size },
      o,
    );
    const L = this.layout;
    this.barSet = new PciBars(this.config, [...L.bars, ...(o.extraBars ?? [])]);
    this.router = new BarRouter();

    // --- capabilities, in preference order
    const caps = new CapabilityList(this.config, (b) => this.barSet.size(b));
    this.capabilities = caps;
    const common = new CommonCfg(core, {
      msixVectors: () => this.msix?.vectors ?? 0,
      afterStatusWrite: (res) => this.afterStatusWrite(res),
      refused: (detail, clause, value) => this.refused(detail, clause, value),
    });
    caps.addCommonCfg(L.common); // pci.common-cfg.device.2
    this.router.add(L.common.bar, L.common.offset, L.common.length, common, 'common cfg');
    caps.addNotifyCfg(L.notify, { multiplier: L.notifyMultiplier, maxNotifyOff: this.notifyRegion.maxNotifyOff, notificationData: core.offered.has(VIRTIO_F_NOTIFICATION_DATA) }); // pci.notify.device.1
    this.router.add(L.notify.bar, L.notify.offset, L.notify.length, this.notifyRegion, 'notify');
    this.notifySpan = { bar: L.notify.bar, offset: L.notify.offset, end: L.notify.offset + L.notify.length };
    this.isr = new IsrState(this.config, () => this.msix?.enabled ?? false);
    caps.addIsrCfg(L.isr); // pci.isr.device.1
    this.router.add(L.isr.bar, L.isr.offset, L.isr.length, isrRegion(this.isr), 'isr');
    if (L.device !== undefined) {
      caps.addDeviceCfg(L.device);
      this.router.add(L.device.bar, L.device.offset, L.deviceSpan, new DeviceCfgRegion(core), 'device cfg');
    }
    const cfgCap = caps.addPciCfg(); // pci.pci-cfg-access.device.1
    let sw: SwiotlbBar | undefined;
    if (L.swiotlb !== undefined && this.window !== undefined) {
      caps.addSwiotlb(L.swiotlb, o.swiotlbCfgType ?? VIRTIO_PCI_CAP_SWIOTLB_DEFAULT); // rfc-swiotlb.pci.device.1
      sw = new SwiotlbBar(core, this.window, L.swiotlb);
      this.router.add(L.swiotlb.bar, L.swiotlb.offset, L.swiotlb.length, sw, 'swiotlb window');
    }
    this.swiotlb = sw;
    for (const v of o.vendorCaps ?? []) caps.addVendorData(v.vendorId, v.data);
    for (const s of o.sharedMemory ?? []) caps.addSharedMemory(s.shmid, s.bar, s.offset, s.length);
    let msix: Msix | undefined;
    if (L.msix !== undefined) {
      const m = L.msix;
      msix = new Msix(this.config, caps, { vectors: m.vectors, tableBar: m.bar, tableOffset: m.tableOffset, pbaBar: m.bar, pbaOffset: m.pbaOffset }, (a, d, v) => this.sendMsi(a, d, v));
      const mm = msix;
      this.router.add(m.bar, m.tableOffset, m.vectors * 16, { read: (off, size) => mm.tableRead(off, size), write: (off, size, value) => mm.tableWrite(off, size, value) }, 'msix table');
      this.router.add(m.bar, m.pbaOffset, Math.ceil(m.vectors / 64) * 8, { read: (off, size) => mm.pbaRead(off, size), write: (off, size, value) => mm.pbaWrite(off, size, value) }, 'msix pba');
      msix.onEnableChange(() => this.isr.update());
    }
    this.msix = msix;
    this.cfgAccess = new PciCfgAccess(this.config, cfgCap, {
      read: (bar, off, size) => this.router.read(bar, off, size),
      write: (bar, off, size, value) => this.router.write(bar, off, size, value),
      allowed: (bar, off, len) => caps.records.some((c) => c.region !== undefined && c.cfgType !== VIRTIO_PCI_CAP_PCI_CFG && c.region.bar === bar && off >= c.region.offset && off + len <= c.region.offset + c.region.length), // pci.pci-cfg-access.driver.2
    });

    // --- register side effects
    this.config.watch(PCI_COMMAND, 2, () => this.commandWritten());
    this.barSet.onChange((c) => this.barChanged(c));
    if (o.onMsi !== undefined) this.msiListeners.push(o.onMsi);
    if (o.onIntx !== undefined) this.isr.onIntx(o.onIntx);
    log('%s: virtio-pci %s:%s, %d queues, BARs %s', model.name, VIRTIO_PCI_VENDOR_ID.toString(16), (VIRTIO_PCI_DEVICE_ID_BASE + model.deviceId).toString(16), core.numQueues, L.bars.map((b) => `${b.index}:0x${b.size.toString(16)}`).join(' '));
  }

  // ------------------------------------------------------------------ driver accesses (never throw)

  /** Configuration-space read of 1, 2 or 4 bytes. */
  configRead(off: number, size: number): number {
    return this.config.read(off, size);
  }

  /** Configuration-space write of 1, 2 or 4 bytes. */
  configWrite(off: number, size: number, value: number): void {
    this.config.write(off, size, value);
  }

  /**
   * BAR read of 1, 2, 4 (or 8, as two 4-byte halves) bytes at `off` inside BAR `bar`. All-ones
   * when Memory Space Enable is clear or the BAR is not implemented.
   */
  barRead(bar: number, off: number, size: number): number {
    if ((this.command & PCI_COMMAND_MEMORY) === 0) {
      this.stats.memoryDisabledAccesses++;
      return allOnes(size);
    }
    if (!this.barSet.has(bar) || !(off >= 0 && off + size <= this.barSet.size(bar))) {
      this.stats.unimplementedBarAccesses++;
      return allOnes(size);
    }
    return this.router.read(bar, off, size);
  }

  /** BAR write; dropped when Memory Space Enable is clear or the BAR is not implemented. */
  barWrite(bar: number, off: number, size: number, value: number): void {
    if ((this.command & PCI_COMMAND_MEMORY) === 0) {
      this.stats.memoryDisabledAccesses++;
      return;
    }
    // Fast path for the hot notify region (a direct, monomorphic call).
    const n = this.notifySpan;
    if (bar === n.bar && off >= n.offset && off + size <= n.end) {
      this.notifyRegion.write(off - n.offset, size, Number(value) >>> 0);
      return;
    }
    if (!this.barSet.has(bar) || !(off >= 0 && off + size <= this.barSet.size(bar))) {
      this.stats.unimplementedBarAccesses++;
      return;
    }
    this.router.write(bar, off, size, value);
  }

  /**
   * Bus-address access: decode `addr` against the programmed BARs (memory enable required).
   * @returns the value, or all-ones when no BAR decodes the address
   */
  mmioRead(addr: number, size: number): number {
    const b = this.barSet.decode(addr, size);
    if (b < 0) return allOnes(size);
    return this.barRead(b, addr - this.barSet.address(b), size);
  }

  /** Bus-address write (see {@link mmioRead}). */
  mmioWrite(addr: number, size: number, value: number): void {
    const b = this.barSet.decode(addr, size);
    if (b >= 0) this.barWrite(b, addr - this.barSet.address(b), size, value);
  }

  // ------------------------------------------------------------------ state

  /** Implemented BARs with their current addresses. */
  get bars(): BarInfo[] {
    return this.barSet.list();
  }

  /** Memory Space Enable (command bit 1). */
  get memoryEnabled(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0;
  }

  /**
   * Bus Master Enable (command bit 2). While false the device must not DMA: notifications are not
   * processed and MSI-X messages are dropped; asynchronous completions should check this first.
   */
  get busMaster(): boolean {
    return (this.command & PCI_COMMAND_MASTER) !== 0;
  }

  /** Current INTx level. */
  get intxLevel(): boolean {
    return this.isr.intxLevel;
  }

  /** The BAR range that is plain memory and may be mapped directly (the SWIOTLB window), if `bar` has one. */
  barMapping(bar: number): BarMapping | undefined {
    const sw = this.swiotlb;
    return sw !== undefined && sw.region.bar === bar ? sw.mapping() : undefined;
  }

  /** Subscribe to MSI-X messages `(address, data, vector)`. */
  onMsi(fn: MsiSink): () => void {
    this.msiListeners.push(fn);
    return () => remove(this.msiListeners, fn);
  }

  /** Subscribe to INTx level changes. */
  onIntx(fn: (level: boolean) => void): () => void {
    return this.isr.onIntx(fn);
  }

  /** Subscribe to BAR address changes. */
  onBarChange(fn: (c: BarChange) => void): () => void {
    this.barListeners.push(fn);
    return () => remove(this.barListeners, fn);
  }

  // ------------------------------------------------------------------ interrupts (TransportHooks)

  /** Used-buffer notification for queue `q` through `vector` (called by the core). */
  queueInterrupt(_q: number, vector: number): void {
    const msix = this.msix;
    if (msix !== undefined && msix.enabled) {
      if (vector === NO_VECTOR) {
        this.stats.noVectorInterrupts++; // pci.used-buffer-notif.device.1
        return;
      }
      msix.notify(vector);
      return;
    }
    this.isr.raise(VIRTIO_PCI_ISR_QUEUE); // pci.isr.device.3
  }

  /** Configuration-change notification through `vector` (called by the core). */
  configInterrupt(vector: number): void {
    this.isr.raise(VIRTIO_PCI_ISR_CONFIG); // pci.isr.device.2: set before notifying
    const msix = this.msix;
    if (msix !== undefined && msix.enabled) {
      if (vector === NO_VECTOR) {
        this.stats.noVectorInterrupts++; // pci.notif-dev-cfg-changes.device.1
        return;
      }
      msix.notify(vector);
    }
  }

  private sendMsi(address: number, data: number, vector: number): void {
    if (!this.busMaster) {
      this.stats.msiDroppedNoBusMaster++;
      return;
    }
    for (const l of this.msiListeners) {
      try {
        l(address, data, vector);
      } catch (e) {
        log('MSI listener threw: %O', e);
      }
    }
  }

  // ------------------------------------------------------------------ resets and side effects

  /**
   * Function-level reset (PCI FLR / vfio-user DEVICE_RESET): virtio reset, command register,
   * status error bits, BARs and MSI-X back to power-on values.
   */
  reset(): void {
    this.afterStatusWrite(this.core.writeStatus(0));
    this.config.set(PCI_COMMAND, 2, 0);
    this.command = 0;
    this.config.set(PCI_STATUS, 2, this.config.get(PCI_STATUS, 2) & 0x00ff);
    for (const b of this.barSet.list()) {
      const off = PCI_BASE_ADDRESS_0 + b.index * 4;
      this.config.write(off, 4, 0);
      if (b.is64) this.config.write(off + 4, 4, 0);
    }
    this.msix?.reset();
    this.isr.clear();
  }

  private afterStatusWrite(res: StatusWriteResult): void {
    if (res.kind === 'reset') this.isr.clear();
    this.swiotlb?.afterStatusWrite(res);
  }

  private commandWritten(): void {
    const old = this.command;
    this.command = this.config.get(PCI_COMMAND, 2);
    if (((old ^ this.command) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) !== 0) {
      log('command: memory %s, bus master %s', this.memoryEnabled ? 'on' : 'off', this.busMaster ? 'on' : 'off');
    }
    this.isr.update(); // Interrupt Disable may have changed
  }

  private barChanged(c: BarChange): void {
    if (this.swiotlb !== undefined && !this.swiotlb.barChanged(c)) this.stats.windowMoveFailures++;
    for (const l of this.barListeners) {
      try {
        l(c);
      } catch (e) {
        log('BAR listener threw: %O', e);
      }
    }
  }

  private refused(detail: string, clause: string | undefined, value?: number): void {
    this.stats.refusedAccesses++;
    log('%s: refused %s%s', this.core.model.name, detail, clause !== undefined ? ` [${clause}]` : '');
    this.core.trace.push({
      kind: 'refused',
      status: this.core.status,
      detail,
      accepted: false,
      code: 'BAD_ACCESS',
      ...(clause !== undefined ? { clause } : {}),
      ...(value !== undefined ? { value } : {}),
    });
  }
}

function allOnes(size: number): number {
  if (size === 1) return 0xff;
  if (size === 2) return 0xffff;
  if (size === 8) return 0xffffffff * TWO32 + 0xffffffff;
  return 0xffffffff;
}

function remove<T>(arr: T[], x: T): void {
  const i = arr.indexOf(x);
  if (i >= 0) arr.splice(i, 1);
}

/**
 * Build a virtio-pci function.
 *
 * @param core the device core, or a function that builds it from the transport hooks (the
 *   simplest way to wire interrupts). When passing a built core, construct it with a
 *   {@link LateBoundHooks} (bound here) or forward its hooks to the returned device yourself.
 * @param options identity, layout, SWIOTLB window, interrupt sinks
 * @throws VirtioError INVALID_ARGUMENT for an inconsistent layout or a SWIOTLB offer without window
 */
export function createVirtioPciDevice(core: CoreOrFactory, options: VirtioPciOptions & { hooks?: LateBoundHooks } = {}): VirtioPciDevice {
  return bindTransport(core, options.hooks, (c) => new VirtioPciDevice(c, options));
}
