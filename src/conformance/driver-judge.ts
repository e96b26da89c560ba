/**
 * Judging a driver from the device side: record every register access a driver makes (a spy
 * around {@link PciFunctionAccess} or {@link MmioDeviceAccess}, or the accesses a vfio-user /
 * vhost-user server sees), decode them into virtio-level events, and check the driver-side
 * clauses those events can prove or refute: the initialization order, status bits never
 * cleared, features acked ⊆ offered, FEATURES_OK re-read, queue fields set before enable and
 * never while enabled, queue sizes, no notification before DRIVER_OK, access widths, and — with
 * VIRTIO_F_SWIOTLB negotiated — ring addresses inside the bounce window.
 *
 * Used by the conformance suite against the simulated driver, and meant for
 * `virtiokit serve … --check-driver REPORT.json` against real guest drivers.
 */
import type { PciFunctionAccess, BarMemory } from '../driver/access.js';
import type { MmioDeviceAccess } from '../driver/mmio/access.js';
import { CC } from '../driver/pci-regs.js';
import { MR } from '../driver/mmio/regs.js';
import { VIRTIO_F_RING_PACKED } from '../features/bits.js';

/** One raw register access. */
export interface RawAccess {
  /** 'cfg' = PCI configuration space; 'mem' = bus address (PCI BAR) or MMIO window offset. */
  readonly space: 'cfg' | 'mem';
  readonly addr: number;
  readonly size: number;
  readonly write: boolean;
  /** Value written or read. */
  readonly value: number;
}

/** Records every access to a PCI function (pass-through). */
export class PciAccessRecorder implements PciFunctionAccess {
  readonly log: RawAccess[] = [];
  constructor(private readonly inner: PciFunctionAccess) {}
  configRead(off: number, size: number): number {
    const v = this.inner.configRead(off, size);
    this.log.push({ space: 'cfg', addr: off, size, write: false, value: v });
    return v;
  }
  configWrite(off: number, size: number, value: number): void {
    this.log.push({ space: 'cfg', addr: off, size, write: true, value });
    this.inner.configWrite(off, size, value);
  }
  mmioRead(addr: number, size: number): number {
    const v = this.inner.mmioRead(addr, size);
    this.log.push({ space: 'mem', addr, size, write: false, value: v });
    return v;
  }
  mmioWrite(addr: number, size: number, value: number): void {
    this.log.push({ space: 'mem', addr, size, write: true, value });
    this.inner.mmioWrite(addr, size, value);
  }
  barMapping(bar: number): BarMemory | undefined {
    return this.inner.barMapping?.(bar);
  }
  onMsi(fn: (a: number, d: number, v: number) => void): () => void {
    return this.inner.onMsi?.(fn) ?? (() => undefined);
  }
  onIntx(fn: (l: boolean) => void): () => void {
    return this.inner.onIntx?.(fn) ?? (() => undefined);
  }
}

/** Records every access to a virtio-mmio window (pass-through). */
export class MmioAccessRecorder implements MmioDeviceAccess {
  readonly log: RawAccess[] = [];
  constructor(private readonly inner: MmioDeviceAccess) {}
  read(off: number, size: number): number {
    const v = this.inner.read(off, size);
    this.log.push({ space: 'mem', addr: off, size, write: false, value: v });
    return v;
  }
  write(off: number, size: number, value: number): void {
    this.log.push({ space: 'mem', addr: off, size, write: true, value });
    this.inner.write(off, size, value);
  }
  onIrq(fn: (l: boolean) => void): () => void {
    return this.inner.onIrq?.(fn) ?? (() => undefined);
  }
}

/** Decoded driver actions. */
export type DriverEvent =
  | { readonly k: 'status-w'; readonly v: number }
  | { readonly k: 'status-r'; readonly v: number }
  | { readonly k: 'dfeat-sel'; readonly v: number }
  | { readonly k: 'dfeat-r'; readonly v: number }
  | { readonly k: 'drvfeat-sel'; readonly v: number }
  | { readonly k: 'drvfeat-w'; readonly v: number }
  | { readonly k: 'qsel'; readonly v: number }
  | { readonly k: 'qmax-r'; readonly v: number }
  | { readonly k: 'qsize-w'; readonly v: number }
  | { readonly k: 'qaddr-w'; readonly area: 'desc' | 'driver' | 'device'; readonly high: boolean; readonly v: number }
  | { readonly k: 'qenable-w'; readonly v: number }
  | { readonly k: 'ro-w'; readonly field: string }
  | { readonly k: 'notify'; readonly q: number }
  | { readonly k: 'width'; readonly what: string; readonly clause: string }
  | { readonly k: 'magic-r' }
  | { readonly k: 'version-r' }
  | { readonly k: 'other'; readonly what: string };

/** Where the virtio structures of a PCI function are (bus addresses). */
export interface PciLayoutInfo {
  readonly common: number;
  readonly notify: number;
  readonly notifyLength: number;
  readonly notifyMultiplier: number;
}

const COMMON_FIELDS: ReadonlyArray<[number, number, string, boolean]> = [
  // offset, width, name, read-only
  [CC.DEVICE_FEATURE_SELECT, 4, 'device_feature_select', false],
  [CC.DEVICE_FEATURE, 4, 'device_feature', true],
  [CC.DRIVER_FEATURE_SELECT, 4, 'driver_feature_select', false],
  [CC.DRIVER_FEATURE, 4, 'driver_feature', false],
  [CC.CONFIG_MSIX_VECTOR, 2, 'config_msix_vector', false],
  [CC.NUM_QUEUES, 2, 'num_queues', true],
  [CC.DEVICE_STATUS, 1, 'device_status', false],
  [CC.CONFIG_GENERATION, 1, 'config_generation', true],
  [CC.QUEUE_SELECT, 2, 'queue_select', false],
  [CC.QUEUE_SIZE, 2, 'queue_size', false],
  [CC.QUEUE_MSIX_VECTOR, 2, 'queue_msix_vector', false],
  [CC.QUEUE_ENABLE, 2, 'queue_enable', false],
  [CC.QUEUE_NOTIFY_OFF, 2, 'queue_notify_off', true],
  [CC.QUEUE_DESC, 4, 'queue_desc_lo', false],
  [CC.QUEUE_DESC + 4, 4, 'queue_desc_hi', false],
  [CC.QUEUE_DRIVER, 4, 'queue_driver_lo', false],
  [CC.QUEUE_DRIVER + 4, 4, 'queue_driver_hi', false],
  [CC.QUEUE_DEVICE, 4, 'queue_device_lo', false],
  [CC.QUEUE_DEVICE + 4, 4, 'queue_device_hi', false],
  [CC.QUEUE_NOTIF_CONFIG_DATA, 2, 'queue_notif_config_data', true],
  [58, 2, 'queue_reset', false],
];

/** Decode PCI accesses (bus addresses) into driver events. */
export function decodePci(log: readonly RawAccess[], lay: PciLayoutInfo): DriverEvent[] {
  const out: DriverEvent[] = [];
  for (const a of log) {
    if (a.space !== 'mem') continue;
    if (a.addr >= lay.notify && a.addr < lay.notify + lay.notifyLength) {
      if (a.write) out.push({ k: 'notify', q: a.value & 0xffff });
      continue;
    }
    const off = a.addr - lay.common;
    if (off < 0 || off >= 64) continue;
    const f = COMMON_FIELDS.find(([o, w]) => off >= o && off < o + w);
    if (f === undefined) {
      out.push({ k: 'other', what: `common cfg offset ${off}` });
      continue;
    }
    const [o, w, name, ro] = f;
    if (off !== o || a.size !== w) {
      out.push({ k: 'width', what: `${a.write ? 'write' : 'read'} of ${a.size} bytes at ${name}${off !== o ? `+${off - o}` : ''} (field is ${w} bytes)`, clause: 'pci.layout.driver.1' });
      continue;
    }
    if (a.write && ro) {
      out.push({ k: 'ro-w', field: name });
      continue;
    }
    switch (o) {
      case CC.DEVICE_STATUS:
        out.push(a.write ? { k: 'status-w', v: a.value & 0xff } : { k: 'status-r', v: a.value & 0xff });
        break;
      case CC.DEVICE_FEATURE_SELECT:
        if (a.write) out.push({ k: 'dfeat-sel', v: a.value >>> 0 });
        break;
      case CC.DEVICE_FEATURE:
        out.push({ k: 'dfeat-r', v: a.value >>> 0 });
        break;
      case CC.DRIVER_FEATURE_SELECT:
        if (a.write) out.push({ k: 'drvfeat-sel', v: a.value >>> 0 });
        break;
      case CC.DRIVER_FEATURE:
        if (a.write) out.push({ k: 'drvfeat-w', v: a.value >>> 0 });
        break;
      case CC.QUEUE_SELECT:
        if (a.write) out.push({ k: 'qsel', v: a.value & 0xffff });
        break;
      case CC.QUEUE_SIZE:
        out.push(a.write ? { k: 'qsize-w', v: a.value & 0xffff } : { k: 'qmax-r', v: a.value & 0xffff });
        break;
      case CC.QUEUE_ENABLE:
        if (a.write) out.push({ k: 'qenable-w', v: a.value & 0xffff });
        break;
      default:
        if (a.write && o >= CC.QUEUE_DESC && o < CC.QUEUE_NOTIF_CONFIG_DATA) {
          const area = o < CC.QUEUE_DRIVER ? 'desc' : o < CC.QUEUE_DEVICE ? 'driver' : 'device';
          out.push({ k: 'qaddr-w', area, high: (o & 4) !== 0, v: a.value >>> 0 });
        }
    }
  }
  return out;
}

/** Decode virtio-mmio window accesses into driver events. */
export function decodeMmio(log: readonly RawAccess[]): DriverEvent[] {
  const out: DriverEvent[] = [];
  for (const a of log) {
    const off = a.addr;
    if (off >= MR.CONFIG) {
      if (a.size === 2 || a.size === 4 ? (off & (a.size - 1)) !== 0 : a.size !== 1) out.push({ k: 'width', what: `config access of ${a.size} bytes at 0x${off.toString(16)}`, clause: 'mmio.regs.driver.3' });
      continue;
    }
    if (a.size !== 4 || (off & 3) !== 0) {
      out.push({ k: 'width', what: `control access of ${a.size} bytes at 0x${off.toString(16)}`, clause: 'mmio.regs.driver.2' });
      continue;
    }
    const v = a.value >>> 0;
    switch (off) {
      case MR.MAGIC_VALUE:
        out.push({ k: 'magic-r' });
        break;
      case MR.VERSION:
        out.push({ k: 'version-r' });
        break;
      case MR.STATUS:
        out.push(a.write ? { k: 'status-w', v: v & 0xff } : { k: 'status-r', v: v & 0xff });
        break;
      case MR.DEVICE_FEATURES_SEL:
        out.push({ k: 'dfeat-sel', v });
        break;
      case MR.DEVICE_FEATURES:
        if (a.write) out.push({ k: 'ro-w', field: 'DeviceFeatures' });
        else out.push({ k: 'dfeat-r', v });
        break;
      case MR.DRIVER_FEATURES_SEL:
        out.push({ k: 'drvfeat-sel', v });
        break;
      case MR.DRIVER_FEATURES:
        out.push({ k: 'drvfeat-w', v });
        break;
      case MR.QUEUE_SEL:
        out.push({ k: 'qsel', v });
        break;
      case MR.QUEUE_SIZE_MAX:
        if (a.write) out.push({ k: 'ro-w', field: 'QueueSizeMax' });
        else out.push({ k: 'qmax-r', v });
        break;
      case MR.QUEUE_SIZE:
        out.push({ k: 'qsize-w', v });
        break;
      case MR.QUEUE_READY:
        if (a.write) out.push({ k: 'qenable-w', v });
        break;
      case MR.QUEUE_NOTIFY:
        out.push({ k: 'notify', q: v & 0xffff });
        break;
      case MR.QUEUE_DESC:
      case MR.QUEUE_DESC + 4:
      case MR.QUEUE_DRIVER:
      case MR.QUEUE_DRIVER + 4:
      case MR.QUEUE_DEVICE:
      case MR.QUEUE_DEVICE + 4:
        out.push({ k: 'qaddr-w', area: off < MR.QUEUE_DRIVER ? 'desc' : off < MR.QUEUE_DEVICE ? 'driver' : 'device', high: (off & 4) !== 0, v });
        break;
      default:
        if (a.write && ([MR.MAGIC_VALUE, MR.VERSION, MR.DEVICE_ID, MR.VENDOR_ID, MR.INTERRUPT_STATUS, MR.CONFIG_GENERATION] as number[]).includes(off)) out.push({ k: 'ro-w', field: `0x${off.toString(16)}` });
    }
  }
  return out;
}

/** Everything the judge needs besides the events. */
export interface DriverRecording {
  readonly transport: 'pci' | 'mmio';
  readonly events: readonly DriverEvent[];
  /** Offered feature words (device_feature windows 0..n). */
  readonly offered: readonly number[];
  /** The SWIOTLB bit and window, when the device has one. */
  readonly swiotlb?: { readonly bit: number; readonly base: number; readonly size: number };
  /** Addresses the device was handed for buffers (device-side view), to check against the window. */
  readonly bufferAddrs?: readonly number[];
}

/** One judged clause. */
export interface Judgement {
  readonly clause: string;
  readonly verdict: 'PASS' | 'FAIL' | 'SKIP';
  readonly detail: string;
}

const A = 1;
const D = 2;
const K = 4;
const F = 8;

/** Judge the recorded driver. Returns one judgement per clause it can speak about. */
export function judgeDriver(rec: DriverRecording): Judgement[] {
  const problems = new Map<string, string>();
  const bad = (clause: string, what: string): void => {
    if (!problems.has(clause)) problems.set(clause, what);
  };
  const pci = rec.transport === 'pci';
  let status = 0;
  let sawReset = false;
  let resetPending = false;
  let featuresOkWritten = false;
  let featuresOkReread = false;
  let drvSel = -1;
  let devSelSet = false;
  let sel = 0;
  const accepted: number[] = [];
  const enabled = new Set<number>();
  const configured = new Map<number, Set<string>>();
  const qmax = new Map<number, number>();
  const addrs = new Map<string, number>();
  let sawMagic = false;
  let firstOther = true;
  let notifies = 0;
  for (const e of rec.events) {
    if (!pci && firstOther && e.k !== 'magic-r' && e.k !== 'version-r') {
      firstOther = false;
      if (!sawMagic) bad('mmio.dev-init.driver.1', `first access is ${e.k}, before MagicValue/Version were read`);
    }
    switch (e.k) {
      case 'magic-r':
        sawMagic = true;
        break;
      case 'status-w': {
        if (e.v === 0) {
          status = 0;
          sawReset = true;
          resetPending = true;
          featuresOkWritten = false;
          featuresOkReread = false;
          enabled.clear();
          configured.clear();
          accepted.length = 0;
          break;
        }
        if (resetPending && pci) bad('pci.common-cfg.driver.5', 'status written again after reset without reading back 0');
        if (!sawReset) bad('init.dev-init.driver.1', 'initialization did not start with a reset');
        if ((e.v & status) !== status) bad('basic.dev-status-field.driver.2', `status write 0x${e.v.toString(16)} clears bits of 0x${status.toString(16)}`);
        const added = e.v & ~status;
        if ((added & D) !== 0 && (e.v & A) === 0) bad('init.dev-init.driver.1', 'DRIVER set without ACKNOWLEDGE');
        if ((added & F) !== 0 && (e.v & (A | D)) !== (A | D)) bad('init.dev-init.driver.1', 'FEATURES_OK set before ACKNOWLEDGE|DRIVER');
        if ((added & K) !== 0) {
          if ((e.v & F) === 0) bad('init.dev-init.driver.1', 'DRIVER_OK set without FEATURES_OK');
          if (!featuresOkReread) bad('init.dev-init.driver.1', 'DRIVER_OK set without re-reading FEATURES_OK');
        }
        if ((added & F) !== 0) featuresOkWritten = true;
        status = e.v;
        break;
      }
      case 'status-r':
        if (resetPending && e.v === 0) resetPending = false;
        if (featuresOkWritten && !featuresOkReread) featuresOkReread = true;
        break;
      case 'dfeat-sel':
        devSelSet = true;
        break;
      case 'dfeat-r':
        if (!pci && !devSelSet) bad('mmio.regs.driver.7', 'DeviceFeatures read before DeviceFeaturesSel was written');
        break;
      case 'drvfeat-sel':
        drvSel = e.v;
        break;
      case 'drvfeat-w':
        if (drvSel < 0) bad(pci ? 'init.dev-init.driver.1' : 'mmio.regs.driver.8', 'DriverFeatures written before selecting a window');
        if ((status & (A | D)) !== (A | D) || (status & F) !== 0) bad('init.dev-init.driver.1', `features written in status 0x${status.toString(16)}`);
        accepted[Math.max(0, drvSel)] = e.v;
        break;
      case 'qsel':
        sel = e.v;
        break;
      case 'qmax-r':
        if (!qmax.has(sel)) qmax.set(sel, e.v);
        break;
      case 'qsize-w':
      case 'qaddr-w': {
        if ((status & F) === 0 || (status & K) !== 0) bad('init.dev-init.driver.1', `queue ${sel} configured in status 0x${status.toString(16)}`);
        if (featuresOkWritten && !featuresOkReread) bad('init.dev-init.driver.1', 'queues configured before FEATURES_OK was re-read');
        if (enabled.has(sel)) bad(pci ? 'pci.common-cfg.driver.4' : 'mmio.regs.driver.10', `queue ${sel} field written while the queue is enabled`);
        const set = configured.get(sel) ?? new Set<string>();
        if (e.k === 'qsize-w') {
          const packed = ((accepted[1] ?? 0) & (1 << (VIRTIO_F_RING_PACKED - 32))) !== 0;
          if (e.v === 0) bad(pci ? 'pci.common-cfg.driver.2' : 'mmio.regs.driver.9', `queue ${sel}: size 0 written`);
          else if (!packed && (e.v & (e.v - 1)) !== 0) bad('pci.common-cfg.driver.3', `queue ${sel}: size ${e.v} is not a power of 2`);
          const m = qmax.get(sel);
          if (!pci && m !== undefined && e.v > m) bad('mmio.regs.driver.9', `queue ${sel}: QueueSize ${e.v} > QueueSizeMax ${m}`);
          set.add('size');
        } else {
          set.add(e.area);
          const key = `${sel}:${e.area}`;
          const prev = addrs.get(key) ?? 0;
          addrs.set(key, e.high ? (prev % 4294967296) + e.v * 4294967296 : Math.floor(prev / 4294967296) * 4294967296 + e.v);
        }
        configured.set(sel, set);
        break;
      }
      case 'qenable-w':
        if (e.v === 0) {
          if (pci) bad('pci.common-cfg.driver.6', `0 written to queue_enable of queue ${sel}`);
          enabled.delete(sel);
          break;
        }
        if ((status & K) !== 0) bad('init.dev-init.driver.1', `queue ${sel} enabled after DRIVER_OK`);
        for (const area of ['desc', 'driver', 'device']) if (!(configured.get(sel)?.has(area) ?? false)) bad(pci ? 'pci.common-cfg.driver.4' : 'mmio.dev-init.driver.4', `queue ${sel} enabled before its ${area} address was set`);
        enabled.add(sel);
        break;
      case 'ro-w':
        bad(pci ? 'pci.common-cfg.driver.1' : 'mmio.regs.driver.1', `write to read-only ${e.field}`);
        break;
      case 'notify':
        notifies++;
        if ((status & K) === 0) bad('init.dev-init.driver.4', `notification for queue ${e.q} before DRIVER_OK`);
        break;
      case 'width':
        bad(e.clause, e.what);
        break;
      default:
        break;
    }
  }
  // Features acked ⊆ offered.
  for (let i = 0; i < accepted.length; i++) {
    const extra = ((accepted[i] ?? 0) & ~(rec.offered[i] ?? 0)) >>> 0;
    if (extra !== 0) bad('basic.feature-bits.driver.1', `acked bits 0x${extra.toString(16)} in window ${i} that were not offered`);
  }
  // SWIOTLB: every ring address (and every buffer address seen) inside the window.
  const sw = rec.swiotlb;
  const swAcked = sw !== undefined && ((accepted[Math.floor(sw.bit / 32)] ?? 0) & (1 << sw.bit % 32)) !== 0;
  const swClause = pci ? 'rfc-swiotlb.pci.driver.2' : 'rfc-swiotlb.mmio.driver.2';
  if (swAcked) {
    const inside = (a: number): boolean => a >= sw.base && a < sw.base + sw.size;
    for (const [key, a] of addrs) if (!inside(a)) bad(swClause, `ring address ${key} = 0x${a.toString(16)} outside the window`);
    for (const a of rec.bufferAddrs ?? []) if (!inside(a)) bad(swClause, `buffer address 0x${a.toString(16)} outside the window`);
    if (problems.has(swClause)) bad('rfc-swiotlb.feature.driver.1', problems.get(swClause)!);
  }
  const out: Judgement[] = [];
  const judge = (clause: string, ok: string, applicable = true, why = ''): void => {
    const p = problems.get(clause);
    out.push(p !== undefined ? { clause, verdict: 'FAIL', detail: p } : applicable ? { clause, verdict: 'PASS', detail: ok } : { clause, verdict: 'SKIP', detail: why });
  };
  judge('init.dev-init.driver.1', 'reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK re-read, queues, DRIVER_OK in order');
  judge('basic.dev-status-field.driver.2', 'no status write cleared a bit');
  judge('basic.feature-bits.driver.1', 'acked bits ⊆ offered bits');
  judge('init.dev-init.driver.4', `${notifies} notification(s), all after DRIVER_OK`);
  if (pci) {
    judge('pci.common-cfg.driver.1', 'no write to a read-only field');
    judge('pci.common-cfg.driver.2', 'no queue size 0 written');
    judge('pci.common-cfg.driver.3', 'split queue sizes are powers of 2');
    judge('pci.common-cfg.driver.4', 'queue fields set before queue_enable, never while enabled');
    judge('pci.common-cfg.driver.5', 'status read back 0 after every reset');
    judge('pci.common-cfg.driver.6', 'queue_enable never written 0');
    judge('pci.layout.driver.1', 'common cfg accessed at field width');
  } else {
    judge('mmio.dev-init.driver.1', 'MagicValue and Version read first');
    judge('mmio.regs.driver.1', 'no write to a read-only register');
    judge('mmio.regs.driver.2', 'control registers accessed 32-bit aligned');
    judge('mmio.regs.driver.3', 'config space accessed at field width');
    judge('mmio.regs.driver.7', 'DeviceFeaturesSel written before DeviceFeatures reads');
    judge('mmio.regs.driver.8', 'DriverFeaturesSel written before DriverFeatures writes');
    judge('mmio.regs.driver.9', 'QueueSize ≤ QueueSizeMax and not 0');
    judge('mmio.regs.driver.10', 'queue registers untouched while ready');
  }
  judge(swClause, 'every ring and buffer address inside the bounce window', swAcked, sw === undefined ? 'device has no SWIOTLB window' : 'VIRTIO_F_SWIOTLB not acked');
  judge('rfc-swiotlb.feature.driver.1', 'SWIOTLB acked and only window addresses used', swAcked, sw === undefined ? 'device has no SWIOTLB window' : 'VIRTIO_F_SWIOTLB not acked');
  return out;
}

/** Clause ids {@link judgeDriver} speaks about, per transport. */
export function judgedClauses(transport: 'pci' | 'mmio'): string[] {
  const common = ['init.dev-init.driver.1', 'basic.dev-status-field.driver.2', 'basic.feature-bits.driver.1', 'init.dev-init.driver.4', 'rfc-swiotlb.feature.driver.1'];
  return transport === 'pci'
    ? [...common, 'pci.common-cfg.driver.1', 'pci.common-cfg.driver.2', 'pci.common-cfg.driver.3', 'pci.common-cfg.driver.4', 'pci.common-cfg.driver.5', 'pci.common-cfg.driver.6', 'pci.layout.driver.1', 'rfc-swiotlb.pci.driver.2']
    : [...common, 'mmio.dev-init.driver.1', 'mmio.regs.driver.1', 'mmio.regs.driver.2', 'mmio.regs.driver.3', 'mmio.regs.driver.7', 'mmio.regs.driver.8', 'mmio.regs.driver.9', 'mmio.regs.driver.10', 'rfc-swiotlb.mmio.driver.2'];
}
