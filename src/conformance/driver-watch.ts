/**
 * `virtiokit serve … --vfio-user SOCK --check-driver REPORT.json`: judge the REAL driver that
 * drives a served device. A {@link DriverWatch} sits between the vfio-user server and the
 * virtio-pci function (a proxy around {@link DeviceHost.pci}) and records what the driver does:
 * every register access through the PCI transport (decoded and judged with `driver-judge.ts`),
 * the status sequence, the feature words offered and accepted, the queues it set up and how many
 * notifications each got, and — sampled from the descriptor tables every 250 ms while the device
 * runs — the buffer addresses it handed over (with VIRTIO_F_SWIOTLB: are they all inside the
 * window?). Guest errors the device reported go in too.
 *
 * The report is written (overwritten, cumulative) when the driver resets the device after using
 * it, when the vfio-user client disconnects, and on SIGTERM ({@link DriverWatch.writeReport}).
 * Recording is bounded: notifications after the first {@link NOTIFY_KEEP} per queue and session
 * are counted, not stored (once DRIVER_OK is set a notification cannot break a judged clause).
 */
import { writeFileSync } from 'node:fs';
import { CC } from '../driver/pci-regs.js';
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_RING_PACKED } from '../features/bits.js';
import { describeStatus } from '../features/status.js';
import { logger } from '../log.js';
import type { AddressSpace } from '../memory/space.js';
import type { DeviceHost } from '../vfio-user/device-host.js';
import type { VirtioPciDevice } from '../transport/pci/virtio-pci-device.js';
import { decodePci, judgeDriver, judgedClauses, type DriverRecording, type Judgement, type PciLayoutInfo, type RawAccess } from './driver-judge.js';

const log = logger('check-driver');

const TWO32 = 4294967296;
/** Notifications kept per queue and session (the rest are counted). */
export const NOTIFY_KEEP = 64;
/** Register accesses kept at most (the rest are counted). */
const LOG_MAX = 200_000;
/** Out-of-window buffer addresses kept as examples. */
const OUTSIDE_KEEP = 32;
const SAMPLE_MS = 250;

/** Synthetic address of a BAR access in the recording: BAR index × 2^32 + offset. */
function barAddr(bar: number, off: number): number {
  return bar * TWO32 + off;
}

/** What the driver did to one queue in one session. */
export interface QueueUse {
  readonly index: number;
  size: number;
  desc: number;
  driver: number;
  device: number;
  enabled: boolean;
  notifies: number;
  /** Split ring: used idx when last sampled (buffers the device completed, mod 2^16). */
  usedIdx?: number;
}

/** One driver session: from a reset to the next reset. */
export interface DriverSession {
  readonly index: number;
  /** Status values written (in order; 0 = reset). */
  readonly statusWrites: number[];
  /** The same, as names. */
  statusSequence: string;
  featuresAccepted: string;
  readonly queues: QueueUse[];
  notifies: number;
  accesses: number;
  /** Bus address of the SWIOTLB window while this session ran (the BAR the driver programmed). */
  windowBase?: string;
}

/** The report `--check-driver` writes. */
export interface DriverCheckReport {
  readonly kind: 'virtiokit-driver-check';
  readonly device: string;
  readonly transport: 'pci (vfio-user)';
  readonly written: string;
  /** What triggered this write. */
  readonly reason: 'reset' | 'disconnect' | 'sigterm' | 'final';
  readonly summary: { PASS: number; FAIL: number; SKIP: number };
  /** Driver-side clause verdicts over everything recorded so far. */
  readonly clauses: readonly Judgement[];
  readonly featuresOffered: string;
  readonly sessions: readonly DriverSession[];
  readonly swiotlb: {
    readonly window: { base: string; size: number } | null;
    readonly negotiatedInLastSession: boolean;
    readonly bufferAddressesSampled: number;
    readonly insideWindow: number;
    readonly outsideWindow: readonly string[];
  };
  readonly guestErrors: readonly string[];
  readonly recording: { readonly accessesKept: number; readonly accessesCounted: number; readonly samples: number; readonly unreadableSamples: number };
}

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Watches the driver of one hosted device. */
export class DriverWatch {
  /** The host to hand to the vfio-user server (its `pci` records every access). */
  readonly host: DeviceHost;
  private readonly inner: DeviceHost;
  private readonly lay: PciLayoutInfo;
  private readonly vbar: number;
  private readonly log: RawAccess[] = [];
  private counted = 0;
  private readonly sessions: DriverSession[] = [];
  private cur: DriverSession;
  private status = 0;
  private qsel = 0;
  private drvSel = 0;
  private readonly accepted = [0, 0, 0, 0];
  private used = false;
  private readonly guestErrors: string[] = [];
  private sampled = 0;
  private inside = 0;
  private readonly outside: number[] = [];
  private readonly seenAddrs = new Set<number>();
  private samples = 0;
  private unreadable = 0;
  private timer: NodeJS.Timeout | undefined;
  private written = 0;

  constructor(
    host: DeviceHost,
    private readonly reportPath: string,
    private readonly say: (line: string) => void = () => undefined,
  ) {
    this.inner = host;
    const l = host.pci.layout;
    this.vbar = l.common.bar;
    this.lay = { common: barAddr(l.common.bar, l.common.offset), notify: barAddr(l.notify.bar, l.notify.offset), notifyLength: l.notify.length, notifyMultiplier: l.notifyMultiplier };
    this.cur = this.newSession();
    const pci = host.pci;
    const self = this;
    const proxy = new Proxy(pci, {
      get(target, prop, receiver) {
        switch (prop) {
          case 'barRead':
            return (bar: number, off: number, size: number): number => {
              const v = target.barRead(bar, off, size);
              self.onBar(bar, off, size, false, v);
              return v;
            };
          case 'barWrite':
            return (bar: number, off: number, size: number, value: number): void => {
              self.beforeBarWrite(bar, off, size, value);
              target.barWrite(bar, off, size, value);
              self.onBar(bar, off, size, true, value);
            };
          case 'configRead':
            return (off: number, size: number): number => {
              const v = target.configRead(off, size);
              self.keep({ space: 'cfg', addr: off, size, write: false, value: v });
              return v;
            };
          case 'configWrite':
            return (off: number, size: number, value: number): void => {
              self.keep({ space: 'cfg', addr: off, size, write: true, value });
              target.configWrite(off, size, value);
            };
          default: {
            const v: unknown = Reflect.get(target, prop, receiver === proxy ? target : receiver);
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          }
        }
      },
    }) as VirtioPciDevice;
    this.host = { ...host, pci: proxy };
    host.core.trace.onEvent((e) => {
      if (e.kind === 'guest-error' && this.guestErrors.length < 50) this.guestErrors.push(`${e.detail}${e.clause !== undefined ? ` [${e.clause}]` : ''}`);
    });
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  /** Index into the access log where each session starts (parallel to {@link sessions}). */
  private readonly starts: number[] = [];

  private newSession(logStart = this.log.length): DriverSession {
    this.starts.push(logStart);
    const s: DriverSession = { index: this.sessions.length, statusWrites: [], statusSequence: '', featuresAccepted: '', queues: [], notifies: 0, accesses: 0 };
    this.sessions.push(s);
    return s;
  }

  private keep(a: RawAccess): void {
    this.cur.accesses++;
    if (this.log.length < LOG_MAX) this.log.push(a);
    else this.counted++;
  }

  private queue(q: number): QueueUse {
    let u = this.cur.queues.find((x) => x.index === q);
    if (u === undefined) {
      u = { index: q, size: 0, desc: 0, driver: 0, device: 0, enabled: false, notifies: 0 };
      this.cur.queues.push(u);
    }
    return u;
  }

  /** A driver reset after the device was used ends a session: sample, report, start the next. */
  private beforeBarWrite(bar: number, off: number, size: number, value: number): void {
    if (bar !== this.vbar || off !== this.lay.common - barAddr(bar, 0) + CC.DEVICE_STATUS || size !== 1) return;
    if ((value & 0xff) === 0 && this.used) {
      this.sample();
      this.used = false;
      this.pendingReset = true;
    }
  }
  private pendingReset = false;

  private onBar(bar: number, off: number, size: number, write: boolean, value: number): void {
    const addr = barAddr(bar, off);
    const inNotify = addr >= this.lay.notify && addr < this.lay.notify + this.lay.notifyLength;
    const c = addr - this.lay.common;
    if (inNotify) {
      if (!write) return;
      const q = value & 0xffff;
      this.cur.notifies++;
      const u = this.queue(q);
      u.notifies++;
      if ((this.status & 4) === 0 || u.notifies <= NOTIFY_KEEP) this.keep({ space: 'mem', addr, size, write, value });
      else this.counted++;
      return;
    }
    if (c < 0 || c >= 64) return; // ISR, device config, MSI-X table: not judged
    this.keep({ space: 'mem', addr, size, write, value });
    if (!write) {
      // A driver may keep the device's maximum queue size without writing queue_size.
      if (c === CC.QUEUE_SIZE && size === 2) {
        const u = this.queue(this.qsel);
        if (u.size === 0) u.size = value & 0xffff;
      }
      return;
    }
    switch (c) {
      case CC.DEVICE_STATUS: {
        const v = value & 0xff;
        if (v === 0 && this.pendingReset) {
          this.pendingReset = false;
          this.cur.statusSequence = this.cur.statusWrites.map((x) => (x === 0 ? 'reset' : describeStatus(x))).join(' → ');
          this.writeReport('reset');
          this.cur = this.newSession(this.log.length - 1); // the reset write opens the next session
        }
        this.cur.statusWrites.push(v);
        this.status = v;
        this.noteWindow();
        if (v === 0) this.accepted.fill(0);
        if ((v & 4) !== 0) this.used = true;
        break;
      }
      case CC.DRIVER_FEATURE_SELECT:
        this.drvSel = value >>> 0;
        break;
      case CC.DRIVER_FEATURE:
        if (this.drvSel < 4) this.accepted[this.drvSel] = value >>> 0;
        break;
      case CC.QUEUE_SELECT:
        this.qsel = value & 0xffff;
        break;
      case CC.QUEUE_SIZE:
        this.queue(this.qsel).size = value & 0xffff;
        break;
      case CC.QUEUE_ENABLE:
        this.queue(this.qsel).enabled = (value & 0xffff) === 1;
        break;
      default:
        if (c >= CC.QUEUE_DESC && c < CC.QUEUE_NOTIF_CONFIG_DATA && size === 4) {
          const u = this.queue(this.qsel);
          const field = c < CC.QUEUE_DRIVER ? 'desc' : c < CC.QUEUE_DEVICE ? 'driver' : 'device';
          const prev = u[field];
          u[field] = (c & 4) !== 0 ? (prev % TWO32) + (value >>> 0) * TWO32 : Math.floor(prev / TWO32) * TWO32 + (value >>> 0);
        } else if (c >= CC.QUEUE_DESC && c < CC.QUEUE_NOTIF_CONFIG_DATA && size === 8) {
          const u = this.queue(this.qsel);
          const field = c < CC.QUEUE_DRIVER ? 'desc' : c < CC.QUEUE_DEVICE ? 'driver' : 'device';
          u[field] = value;
        }
    }
  }

  /** Remember where the window is now (a disconnect resets the BARs before the report). */
  private noteWindow(): void {
    const w = this.inner.window;
    if (w !== undefined && w.base !== 0) this.cur.windowBase = hex(w.base);
  }

  private acceptedBit(b: number): boolean {
    return ((this.accepted[Math.floor(b / 32)]! >>> b % 32) & 1) === 1;
  }

  /** Read the descriptor tables of the running queues: buffer addresses and used idx. */
  private sample(): void {
    if ((this.status & 4) === 0) return;
    this.samples++;
    this.noteWindow();
    let space: AddressSpace;
    try {
      space = this.inner.core.space;
    } catch {
      this.unreadable++;
      return;
    }
    const packed = this.acceptedBit(VIRTIO_F_RING_PACKED);
    const w = this.inner.window;
    const record = (a: number): void => {
      if (this.seenAddrs.has(a)) return;
      if (this.seenAddrs.size < 65536) this.seenAddrs.add(a);
      this.sampled++;
      if (w === undefined || w.contains(a, 1)) this.inside++;
      else if (this.outside.length < OUTSIDE_KEEP) this.outside.push(a);
    };
    try {
      for (const u of this.cur.queues) {
        if (!u.enabled || u.size === 0) continue;
        for (let i = 0; i < u.size; i++) {
          const d = u.desc + 16 * i;
          const addr = space.readU32(d) + space.readU32(d + 4) * TWO32;
          const len = space.readU32(d + 8);
          const flags = space.readU16(d + (packed ? 14 : 12));
          if (len === 0 || addr === 0) continue;
          record(addr);
          if ((flags & 4) !== 0) {
            for (let k = 0; k < Math.min(64, Math.floor(len / 16)); k++) {
              const t = addr + 16 * k;
              const ta = space.readU32(t) + space.readU32(t + 4) * TWO32;
              if (space.readU32(t + 8) > 0 && ta !== 0) record(ta);
            }
          }
        }
        if (!packed) u.usedIdx = space.readU16(u.device + 2);
      }
    } catch (e) {
      // Message DMA (no mapping) or an address the device cannot read: nothing to sample.
      this.unreadable++;
      log('sample failed: %O', e);
    }
  }

  /**
   * Judge everything recorded so far, one session (reset to reset) at a time — a driver that
   * resets at the end must not hide what it negotiated before — and combine per clause: FAIL when
   * any session failed it, PASS when a session that did more than reset passed it, else SKIP.
   */
  judge(): Judgement[] {
    const core = this.inner.core;
    const w = this.inner.window;
    const offered = [0, 1, 2, 3].map((i) => core.offered.word(i));

    const out = new Map<string, Judgement>();
    const rank = { FAIL: 3, PASS: 2, SKIP: 1 } as const;
    this.sessions.forEach((s, i) => {
      const from = this.starts[i]!;
      const to = i + 1 < this.starts.length ? this.starts[i + 1]! : this.log.length;
      if (to <= from) return;
      const base = s.windowBase !== undefined ? Number(s.windowBase) : w?.base;
      const sw = w !== undefined && base !== undefined ? { swiotlb: { bit: core.swiotlbBit ?? DEFAULT_SWIOTLB_BIT, base, size: w.size } } : {};
      const rec: DriverRecording = { transport: 'pci', events: decodePci(this.log.slice(from, to), this.lay), offered, ...sw, bufferAddrs: this.outside };
      const active = s.statusWrites.some((v) => v !== 0);
      for (const j0 of judgeDriver(rec)) {
        let j: Judgement = j0.verdict === 'PASS' && !active ? { clause: j0.clause, verdict: 'SKIP', detail: 'only a reset in this session' } : j0;
        // Notifications past NOTIFY_KEEP were counted, not stored — and only ever after DRIVER_OK.
        if (j.clause === 'init.dev-init.driver.4' && j.verdict === 'PASS') j = { ...j, detail: `${s.notifies} notification(s), all after DRIVER_OK` };
        const prev = out.get(j.clause);
        const tagged: Judgement = { ...j, detail: this.sessions.length > 1 ? `${j.detail} (session ${s.index})` : j.detail };
        if (prev === undefined || rank[j.verdict] > rank[prev.verdict]) out.set(j.clause, tagged);
      }
    });
    if (out.size === 0) for (const j of judgeDriver({ transport: 'pci', events: [], offered })) out.set(j.clause, { ...j, verdict: 'SKIP', detail: 'no driver access recorded' });
    return [...out.values()];
  }

  /** Build the report (without writing it). */
  report(reason: DriverCheckReport['reason']): DriverCheckReport {
    this.sample();
    const js = this.judge();
    const summary = { PASS: 0, FAIL: 0, SKIP: 0 };
    for (const j of js) summary[j.verdict]++;
    for (const s of this.sessions) {
      s.statusSequence = s.statusWrites.map((x) => (x === 0 ? 'reset' : describeStatus(x))).join(' → ');
      if (s === this.cur) s.featuresAccepted = hex(this.accepted[0]! + this.accepted[1]! * TWO32);
    }
    const core = this.inner.core;
    const w = this.inner.window;
    const swBit = core.swiotlbBit;
    return {
      kind: 'virtiokit-driver-check',
      device: this.inner.model.name,
      transport: 'pci (vfio-user)',
      written: new Date().toISOString(),
      reason,
      summary,
      clauses: js,
      featuresOffered: hex(core.offered.word(0) + core.offered.word(1) * TWO32),
      sessions: this.sessions.filter((s) => s.accesses > 0),
      swiotlb: {
        window: w !== undefined ? { base: hex(w.base), size: w.size } : null,
        negotiatedInLastSession: swBit !== null && this.acceptedBit(swBit),
        bufferAddressesSampled: this.sampled,
        insideWindow: w !== undefined ? this.inside : 0,
        outsideWindow: this.outside.map(hex),
      },
      guestErrors: this.guestErrors.slice(),
      recording: { accessesKept: this.log.length, accessesCounted: this.counted, samples: this.samples, unreadableSamples: this.unreadable },
    };
  }

  /** Write the report to the path given at construction; returns it. Never throws. */
  writeReport(reason: DriverCheckReport['reason']): DriverCheckReport | undefined {
    try {
      if (this.sessions.every((s) => s.accesses === 0)) {
        this.say(`virtiokit serve: --check-driver: no driver accesses recorded yet (${reason}); report not written`);
        return undefined;
      }
      const r = this.report(reason);
      writeFileSync(this.reportPath, `${JSON.stringify(r, null, 2)}\n`);
      this.written++;
      if (reason === 'disconnect') {
        // The next client starts from scratch.
        this.status = 0;
        this.used = false;
        this.pendingReset = false;
        this.accepted.fill(0);
        this.cur = this.newSession();
      }
      const fails = r.clauses.filter((c) => c.verdict === 'FAIL');
      this.say(`virtiokit serve: --check-driver (${reason}): ${r.summary.PASS} PASS, ${r.summary.FAIL} FAIL, ${r.summary.SKIP} SKIP → ${this.reportPath}${fails.length > 0 ? `; FAIL ${fails.map((f) => `[${f.clause}] ${f.detail}`).join('; ')}` : ''}`);
      return r;
    } catch (e) {
      this.say(`virtiokit serve: --check-driver: writing ${this.reportPath} failed: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  }

  /** Reports written so far. */
  get reportsWritten(): number {
    return this.written;
  }

  /** Stop sampling. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Clause ids a `--check-driver` report judges. */
export const CHECK_DRIVER_CLAUSES = judgedClauses('pci');
