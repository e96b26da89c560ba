/**
 * A virtio-mmio (Version 2) device around a {@link VirtioDeviceCore} (virtio 1.4 §4.2).
 *
 * The handle answers register reads and writes at offsets inside its window (from a VMM's memory
 * bus, a test, or the simulated driver in `src/driver/mmio/`), drives a level-triggered interrupt
 * line through callbacks, and describes itself for a device tree ({@link VirtioMmioDevice.dtsSnippet}).
 *
 * Register rules (clause ids beside the checks; the map is `registers.ts`):
 * - MagicValue 0x74726976, Version 2 (mmio.regs.device.1/.2); only the modern interface exists;
 * - control registers take 32-bit aligned accesses only (mmio.regs.driver.2); reads of write-only
 *   registers, writes to read-only ones, undefined offsets and other widths read 0 / are ignored,
 *   counted and traced — nothing throws into the caller;
 * - DeviceFeatures answers for any DeviceFeaturesSel (0 beyond the offer); queue registers go to the
 *   core, which ignores writes while QueueReady is set (mmio.regs.driver.10) and reads QueueSizeMax
 *   0 for unavailable queues; QueueReady = 0 stops the queue (mmio.regs.driver.11: build the core
 *   with `queueDisableAllowed: true`, see {@link MMIO_CORE_OPTIONS});
 * - QueueNotify carries the queue index, or with VIRTIO_F_NOTIFICATION_DATA the le32 notification
 *   data whose low 16 bits are the index;
 * - InterruptStatus / InterruptACK per `interrupt.ts`; Status 0 resets the device, clears
 *   InterruptStatus and every QueueReady (mmio.regs.device.5) and reads 0 afterwards;
 * - SHMSel / SHMLen / SHMBase: a region that does not exist reads length −1 and base all-ones;
 * - config space from 0x100: 8/16/32-bit naturally aligned accesses (mmio.regs.driver.3; 64-bit
 *   fields as two 32-bit accesses), bounds-checked by the core; ConfigGeneration at 0x0fc.
 * - VIRTIO_F_ADMIN_VQ (and the PCI-only SR_IOV / NOTIF_CONFIG_DATA) are never offered on MMIO.
 *
 * SWIOTLB (2025 RFC): when the core offers VIRTIO_F_SWIOTLB the device must be given the window;
 * the device tree then carries it as a `restricted-dma-pool` referenced by `memory-region`
 * (`dt.ts`), and the DMA space switches to the window at FEATURES_OK (`swiotlb.ts`).
 */
import { VirtioError, requireArg } from '../../errors.js';
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import type { TransportHooks } from '../../device/types.js';
import type { QueueArea } from '../../device/queue-regs.js';
import type { StatusWriteResult } from '../../features/status.js';
import { VIRTIO_F_ADMIN_VQ, VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_SR_IOV } from '../../features/bits.js';
import type { SwiotlbWindow } from '../../swiotlb/window.js';
import { bindTransport, type CoreOrFactory, type LateBoundHooks } from '../../device/late-hooks.js';
import { dtsSnippet, type DtsOptions } from './dt.js';
import { MmioInterruptState, type MmioInterruptStats } from './interrupt.js';
import {
  MMIO,
  mmioRegisterAt,
  mmioRegisterName,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_DEFAULT_SIZE,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_VERSION,
} from './registers.js';
import { SwiotlbSpaceSwitch } from '../swiotlb-switch.js';

export { LateBoundHooks } from '../../device/late-hooks.js';

const log = logger('mmio');

/** Default base address (QEMU `virt` places its 32 transports at 0x0a000000 + i × 0x200). */
export const VIRTIO_MMIO_DEFAULT_BASE = 0x0a00_0000;
/** Default interrupt (GIC SPI 16: the first virtio-mmio transport of QEMU `virt`). */
export const VIRTIO_MMIO_DEFAULT_IRQ = 16;
/** Default VendorID (the virtio PCI vendor id; the spec leaves the value open). */
export const VIRTIO_MMIO_DEFAULT_VENDOR = 0x1af4;

/**
 * Core options every virtio-mmio core needs: transport-restricted bits are checked against MMIO
 * and QueueReady = 0 disables a queue (mmio.regs.driver.11).
 */
export const MMIO_CORE_OPTIONS = { transport: 'mmio', queueDisableAllowed: true } as const;

/** A shared memory region (virtio 1.4 §2.10) exposed through SHMSel / SHMLen / SHMBase. */
export interface MmioSharedMemory {
  /** shmid. */
  id: number;
  /** Guest-physical address of the region. */
  base: number;
  /** Bytes. */
  length: number;
}

/** What a platform (device tree, VMM) knows about the device: enough for a driver to bind. */
export interface MmioPlatformInfo {
  /** Register window base and size. */
  readonly base: number;
  readonly size: number;
  /** Interrupt number (GIC SPI in the default DT form). */
  readonly irq: number;
  /** The restricted DMA pool the `memory-region` property names, if any. */
  readonly pool?: { readonly base: number; readonly size: number } | undefined;
}

/** Options of {@link createVirtioMmioDevice}. */
export interface VirtioMmioOptions {
  /** Base address of the register window (default 0x0a000000). */
  base?: number;
  /** Size of the register window (default 0x200, or more when the config space needs it). */
  size?: number;
  /** Interrupt number for the device tree (default 16). */
  irq?: number;
  /** VendorID register (default 0x1af4). */
  vendorId?: number;
  /** The SWIOTLB window (required when the core offers VIRTIO_F_SWIOTLB). */
  swiotlbWindow?: SwiotlbWindow;
  /** Shared memory regions (default none: every SHMSel reads as absent). */
  sharedMemory?: readonly MmioSharedMemory[];
  /** Interrupt line sink (also settable with {@link VirtioMmioDevice.onIrq}). */
  onIrq?: (level: boolean) => void;
}

/** Counters of the MMIO transport (the core counts the virtio-level ones). */
export interface MmioTransportStats {
  /** Accesses ignored: bad width/alignment, undefined offset, wrong direction, outside the window. */
  refusedAccesses: number;
  /** QueueNotify writes passed to the core. */
  notifies: number;
}

const ALL_ONES = 0xffffffff;
const TWO32 = 4294967296;

/** The virtio-mmio device. Build it with {@link createVirtioMmioDevice}. */
export class VirtioMmioDevice implements TransportHooks {
  readonly core: VirtioDeviceCore;
  /** Base address of the register window. */
  readonly base: number;
  /** Size of the register window (bytes). */
  readonly size: number;
  readonly irq: number;
  readonly vendorId: number;
  /** The SWIOTLB window (only when the core offers VIRTIO_F_SWIOTLB). */
  readonly window: SwiotlbWindow | undefined;
  /** The DMA-space switch for the window, when there is one. */
  readonly swiotlb: SwiotlbSpaceSwitch | undefined;
  readonly interrupts: MmioInterruptState;
  readonly stats: MmioTransportStats = { refusedAccesses: 0, notifies: 0 };
  private readonly shm: readonly MmioSharedMemory[];
  private shmSel = 0;
  /** VIRTIO_F_NOTIFICATION_DATA negotiated (cached at FEATURES_OK, cleared on reset). */
  private notifData = false;
  private warnedDisable = false;

  /** @internal use {@link createVirtioMmioDevice} */
  constructor(core: VirtioDeviceCore, o: VirtioMmioOptions) {
    this.core = core;
    const model = core.model;
    // Reserved on MMIO (transport-mmio.tex; spec-facts §4) or PCI-only (features/bits.ts).
    for (const [bit, name] of [
      [VIRTIO_F_ADMIN_VQ, 'VIRTIO_F_ADMIN_VQ'],
      [VIRTIO_F_SR_IOV, 'VIRTIO_F_SR_IOV'],
      [VIRTIO_F_NOTIF_CONFIG_DATA, 'VIRTIO_F_NOTIF_CONFIG_DATA'],
    ] as const) {
      if (core.offered.has(bit)) {
        throw new VirtioError('INVALID_ARGUMENT', `${model.name}: the core offers ${name} (bit ${bit}), which virtio-mmio does not define; build the core with transport: 'mmio' (MMIO_CORE_OPTIONS) and without that bit`);
      }
    }
    const window = o.swiotlbWindow;
    // rfc-swiotlb.feature.device.2: the bit is offered only with a bounce region.
    if (core.swiotlbBit !== null && window === undefined) {
      throw new VirtioError('INVALID_ARGUMENT', `${model.name}: the core offers VIRTIO_F_SWIOTLB (bit ${core.swiotlbBit}) but no swiotlbWindow was given; pass the window or set the core's swiotlb policy to 'off'`);
    }
    this.window = core.swiotlbBit !== null ? window : undefined;
    if (window !== undefined && this.window === undefined) log('%s: swiotlbWindow given but the core does not offer VIRTIO_F_SWIOTLB; no memory-region in the device tree', model.name);

    const cfgEnd = VIRTIO_MMIO_CONFIG + ((model.config.size + 3) & ~3);
    const size = o.size ?? Math.max(VIRTIO_MMIO_DEFAULT_SIZE, cfgEnd);
    requireArg(Number.isInteger(size) && size >= cfgEnd && size % 4 === 0, `${model.name}: virtio-mmio window size ${size} must be a multiple of 4 and at least 0x100 + the ${model.config.size}-byte config space (${cfgEnd})`);
    const base = o.base ?? VIRTIO_MMIO_DEFAULT_BASE;
    requireArg(Number.isSafeInteger(base) && base >= 0 && base % 4 === 0, `${model.name}: virtio-mmio base 0x${base.toString(16)} must be a 4-byte aligned address below 2^53`);
    if (this.window !== undefined) {
      const w = this.window;
      requireArg(w.end <= base || base + size <= w.base, `${model.name}: the SWIOTLB window [0x${w.base.toString(16)}, 0x${w.end.toString(16)}) overlaps the register window at 0x${base.toString(16)}`);
    }
    this.base = base;
    this.size = size;
    this.irq = o.irq ?? VIRTIO_MMIO_DEFAULT_IRQ;
    this.vendorId = (o.vendorId ?? VIRTIO_MMIO_DEFAULT_VENDOR) >>> 0;
    for (const s of o.sharedMemory ?? []) {
      requireArg(Number.isInteger(s.id) && s.id >= 0 && s.id <= 0xff, `${model.name}: shared memory id ${s.id} must be 0..255`);
      requireArg(Number.isSafeInteger(s.base) && s.base >= 0 && Number.isSafeInteger(s.length) && s.length >= 0, `${model.name}: shared memory ${s.id}: base and length must be integers below 2^53`);
    }
    this.shm = [...(o.sharedMemory ?? [])];
    this.interrupts = new MmioInterruptState();
    if (o.onIrq !== undefined) this.interrupts.onLevel(o.onIrq);
    this.swiotlb = this.window !== undefined ? new SwiotlbSpaceSwitch(core, this.window, 'mmio:swiotlb') : undefined;
    log('%s: virtio-mmio at 0x%s (+0x%s), irq %d, %d queues', model.name, base.toString(16), size.toString(16), this.irq, core.numQueues);
  }

  // ------------------------------------------------------------------ driver accesses (never throw)

  /** Read `size` bytes at offset `off` of the register window. Bad accesses read 0. */
  read(off: number, size: number): number {
    if (off >= VIRTIO_MMIO_CONFIG) return this.readConfig(off, size);
    const reg = mmioRegisterAt(off, size);
    if (reg === undefined) {
      this.refused(`read of ${size} bytes at 0x${hex(off)}${describeSlot(off)}: control registers take 32-bit aligned accesses at defined offsets`, badClause(off, size));
      return 0;
    }
    if (reg.dir === 'W') {
      this.refused(`read of write-only ${reg.name}`, 'mmio.regs.driver.1');
      return 0;
    }
    const c = this.core;
    switch (off) {
      case MMIO.MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC; // mmio.regs.device.1
      case MMIO.VERSION:
        return VIRTIO_MMIO_VERSION; // mmio.regs.device.2
      case MMIO.DEVICE_ID:
        return c.model.deviceId >>> 0;
      case MMIO.VENDOR_ID:
        return this.vendorId;
      case MMIO.DEVICE_FEATURES:
        return c.readDeviceFeature() >>> 0; // any DeviceFeaturesSel; 0 beyond the offer
      case MMIO.QUEUE_SIZE_MAX:
        return c.readQueueMaxSize(); // 0: queue unavailable
      case MMIO.QUEUE_READY:
        return c.readQueueEnable(); // mmio.regs.device.5/.12: 0 after reset
      case MMIO.INTERRUPT_STATUS:
        return this.interrupts.status; // mmio.regs.device.3/.4
      case MMIO.STATUS:
        return c.status; // 0 once reset is done
      case MMIO.SHM_LEN_LOW:
      case MMIO.SHM_LEN_HIGH:
      case MMIO.SHM_BASE_LOW:
      case MMIO.SHM_BASE_HIGH:
        return this.readShm(off);
      case MMIO.QUEUE_RESET:
        return c.readQueueReset(); // mmio.regs.device.8/.9/.12: the reset completes within the write
      case MMIO.CONFIG_GENERATION:
        return c.configGeneration >>> 0; // mmio.regs.device.6
      default:
        return 0;
    }
  }

  /** Write `size` bytes at offset `off`. Bad accesses are ignored (and traced). */
  write(off: number, size: number, value: number): void {
    // Hot path first: QueueNotify.
    if (off === MMIO.QUEUE_NOTIFY && size === 4) {
      const v = Number(value) >>> 0;
      this.stats.notifies++;
      // NOTIFICATION_DATA: le32 {vqn:16, next_off:15, next_wrap:1}; the core wants the index.
      this.core.notify(this.notifData ? v & 0xffff : v);
      return;
    }
    if (off >= VIRTIO_MMIO_CONFIG) {
      this.writeConfig(off, size, value);
      return;
    }
    const reg = mmioRegisterAt(off, size);
    if (reg === undefined) {
      this.refused(`write of ${size} bytes at 0x${hex(off)}${describeSlot(off)}: control registers take 32-bit aligned accesses at defined offsets`, badClause(off, size), value);
      return;
    }
    if (reg.dir === 'R') {
      this.refused(`write to read-only ${reg.name}`, 'mmio.regs.driver.1', value);
      return;
    }
    const v = Number(value) >>> 0;
    const c = this.core;
    switch (off) {
      case MMIO.DEVICE_FEATURES_SEL:
        c.writeDeviceFeatureSelect(v);
        return;
      case MMIO.DRIVER_FEATURES:
        c.writeDriverFeature(v);
        return;
      case MMIO.DRIVER_FEATURES_SEL:
        c.writeDriverFeatureSelect(v);
        return;
      case MMIO.QUEUE_SEL:
        c.writeQueueSelect(v);
        return;
      case MMIO.QUEUE_SIZE:
        c.writeQueueSize(v); // mmio.regs.driver.9/.10 checked by the core (not while ready)
        return;
      case MMIO.QUEUE_READY:
        this.writeQueueReady(v);
        return;
      case MMIO.INTERRUPT_ACK:
        this.interrupts.ack(v); // mmio.regs.driver.13
        return;
      case MMIO.STATUS:
        this.afterStatusWrite(c.writeStatus(v & 0xff));
        return;
      case MMIO.QUEUE_DESC_LOW:
      case MMIO.QUEUE_DESC_HIGH:
      case MMIO.QUEUE_DRIVER_LOW:
      case MMIO.QUEUE_DRIVER_HIGH:
      case MMIO.QUEUE_DEVICE_LOW:
      case MMIO.QUEUE_DEVICE_HIGH:
        c.writeQueueAddr(areaOf(off), (off & 4) !== 0, v); // mmio.regs.driver.10: ignored while ready
        return;
      case MMIO.SHM_SEL:
        this.shmSel = v;
        return;
      case MMIO.QUEUE_RESET:
        c.writeQueueReset(v); // mmio.regs.device.10: 1 resets the selected queue
        return;
      default:
        return;
    }
  }

  private writeQueueReady(v: number): void {
    const c = this.core;
    if (v === 0) {
      const wasReady = c.readQueueEnable() !== 0;
      // mmio.regs.driver.11: writing 0 stops the queue.
      if (!c.writeQueueEnable(0) && wasReady && !this.warnedDisable) {
        this.warnedDisable = true;
        log('%s: QueueReady = 0 was refused by the core; build it with queueDisableAllowed: true (MMIO_CORE_OPTIONS)', c.model.name);
      }
      return;
    }
    c.writeQueueEnable(1);
  }

  private readConfig(off: number, size: number): number {
    const rel = off - VIRTIO_MMIO_CONFIG;
    if (!this.configAccessOk(rel, size, off)) {
      this.refused(`config read of ${size} bytes at 0x${hex(off)}: use 8-bit, aligned 16-bit or aligned 32-bit accesses inside the window`, 'mmio.regs.driver.3');
      return 0;
    }
    return this.core.readConfig(rel, size as 1 | 2 | 4); // out of the model's config: 0, traced by the core
  }

  private writeConfig(off: number, size: number, value: number): void {
    const rel = off - VIRTIO_MMIO_CONFIG;
    if (!this.configAccessOk(rel, size, off)) {
      this.refused(`config write of ${size} bytes at 0x${hex(off)}: use 8-bit, aligned 16-bit or aligned 32-bit accesses inside the window`, 'mmio.regs.driver.3', value);
      return;
    }
    this.core.writeConfig(rel, size as 1 | 2 | 4, Number(value) >>> 0);
  }

  /** mmio.regs.driver.3: 8-bit, aligned 16-bit or aligned 32-bit, inside the register window. */
  private configAccessOk(rel: number, size: number, off: number): boolean {
    if (!Number.isInteger(rel) || off + size > this.size) return false;
    return size === 1 || ((size === 2 || size === 4) && (rel & (size - 1)) === 0);
  }

  private readShm(off: number): number {
    const sel = this.shmSel;
    let r: MmioSharedMemory | undefined;
    for (const s of this.shm) if (s.id === sel) r = s;
    if (r === undefined) return ALL_ONES; // absent: length −1, base all-ones
    const v = off === MMIO.SHM_LEN_LOW || off === MMIO.SHM_LEN_HIGH ? r.length : r.base;
    return (off & 4) !== 0 ? Math.floor(v / TWO32) >>> 0 : v % TWO32 >>> 0;
  }

  // ------------------------------------------------------------------ state

  /** Current level of the interrupt line (high while InterruptStatus is non-zero). */
  get irqLevel(): boolean {
    return this.interrupts.level;
  }

  /** Interrupt counters. */
  get irqStats(): MmioInterruptStats {
    return this.interrupts.stats;
  }

  /** Subscribe to interrupt line level changes. Returns an unsubscribe function. */
  onIrq(fn: (level: boolean) => void): () => void {
    return this.interrupts.onLevel(fn);
  }

  /** What a device tree says about this device (for the driver's probe and {@link dtsSnippet}). */
  platformInfo(): MmioPlatformInfo {
    const w = this.window;
    return { base: this.base, size: this.size, irq: this.irq, pool: w !== undefined ? { base: w.base, size: w.size } : undefined };
  }

  /**
   * Device-tree source for this device: the `virtio,mmio` node and, when the core offers
   * VIRTIO_F_SWIOTLB, the `restricted-dma-pool` node for the window with `memory-region`.
   */
  dtsSnippet(extra: Omit<Partial<DtsOptions>, 'base' | 'size' | 'irq'> = {}): string {
    const w = this.window;
    const opts: DtsOptions = { ...extra, base: this.base, size: this.size, irq: this.irq };
    if (w !== undefined) opts.pool = { ...(extra.pool ?? {}), base: w.base, size: w.size };
    return dtsSnippet(opts);
  }

  // ------------------------------------------------------------------ interrupts (TransportHooks)

  /** Used-buffer notification (called by the core): InterruptStatus bit 0. */
  queueInterrupt(_q: number, _vector: number): void {
    this.interrupts.raise(VIRTIO_MMIO_INT_VRING);
  }

  /** Configuration-change notification (called by the core): InterruptStatus bit 1. */
  configInterrupt(_vector: number): void {
    this.interrupts.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  // ------------------------------------------------------------------ reset

  /** Platform reset (VMM reset): virtio reset, InterruptStatus cleared, SHMSel 0. */
  reset(): void {
    this.afterStatusWrite(this.core.writeStatus(0));
    this.shmSel = 0;
  }

  private afterStatusWrite(res: StatusWriteResult): void {
    if (res.kind === 'reset') {
      this.interrupts.clear(); // mmio.regs.device.5 (QueueReady cleared by the core)
      this.notifData = false;
    } else if (res.kind === 'features-ok' && res.accepted) {
      this.notifData = this.core.negotiated?.has(VIRTIO_F_NOTIFICATION_DATA) ?? false;
    }
    this.swiotlb?.afterStatusWrite(res);
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
      ...(value !== undefined ? { value: Number(value) >>> 0 } : {}),
    });
  }
}

function hex(n: number): string {
  return Number.isFinite(n) ? n.toString(16) : String(n);
}

function describeSlot(off: number): string {
  const name = mmioRegisterName(off);
  return name !== undefined ? ` (${name})` : '';
}

/** Clause of a refused control access: wrong width/alignment (driver.2) or undefined offset (driver.1). */
function badClause(off: number, size: number): string {
  return size !== 4 || (off & 3) !== 0 ? 'mmio.regs.driver.2' : 'mmio.regs.driver.1';
}

function areaOf(off: number): QueueArea {
  return off < MMIO.QUEUE_DRIVER_LOW ? 'desc' : off < MMIO.QUEUE_DEVICE_LOW ? 'driver' : 'device';
}

/**
 * Build a virtio-mmio device.
 *
 * @param core the device core, or a function that builds it from the transport hooks (the
 *   simplest way to wire interrupts; spread {@link MMIO_CORE_OPTIONS} into its options). When
 *   passing a built core, construct it with a {@link LateBoundHooks} (bound here via
 *   `options.hooks`) or forward its hooks to the returned device yourself.
 * @param options window base/size, IRQ, SWIOTLB window, shared memory, interrupt sink
 * @throws VirtioError INVALID_ARGUMENT for a bit MMIO does not define, a SWIOTLB offer without a
 *   window, or a bad window
 */
export function createVirtioMmioDevice(core: CoreOrFactory, options: VirtioMmioOptions & { hooks?: LateBoundHooks } = {}): VirtioMmioDevice {
  return bindTransport(core, options.hooks, (c) => new VirtioMmioDevice(c, options));
}
