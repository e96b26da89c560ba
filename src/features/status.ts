/**
 * The device status state machine, as a data table.
 *
 * Like Firecracker's `VALID_TRANSITIONS`, the legal driver writes are rows of a table
 * ({@link STATUS_TRANSITIONS}), each next to the clause that defines it. A write is matched in
 * this order:
 *
 *  1. value 0 → reset (`pci.common-cfg.device.7`, `basic.dev-reset.device.1`);
 *  2. value with FAILED → FAILED is added, whatever the state (`init.dev-init.driver.2`);
 *  3. value equal to the current status → no change (drivers write `status | bit` after reading);
 *  4. an exact (from, to) row of the table;
 *  5. anything else is refused.
 *
 * DEVICE_NEEDS_RESET is device-owned: it is ignored in the written value and kept in the status
 * (the driver cannot set or clear it; only reset clears it).
 *
 * **Refused writes** (a driver clearing bits, skipping a step, setting SUSPEND too early...) are
 * ignored: the status does not change, the write is logged and returned as `accepted: false` with
 * the clause, so the device core records it in its trace for conformance checks. They are *not*
 * guest errors: the spec gives the device no reaction beyond not honouring the write, the driver
 * can observe the refusal by reading the status back, and routing them to the choke point would
 * set NEEDS_RESET for something reset cannot fix anyway (Firecracker ignores and logs the same
 * way; QEMU stores whatever is written). The driver's obligation broken is usually
 * `basic.dev-status-field.driver.2` (MUST NOT clear a status bit) or `init.dev-init.driver.1`
 * (the initialization order).
 *
 * FEATURES_OK only sticks when negotiation succeeds (`basic.feature-bits.device.2`); otherwise the
 * status stays ACKNOWLEDGE|DRIVER and the driver sees FEATURES_OK clear when it re-reads.
 * SUSPEND is honoured only with VIRTIO_F_SUSPEND negotiated and DRIVER_OK set
 * (`init.dev-suspend.device.1`); suspending completes at once (DRIVER_OK cleared), resuming (the
 * driver sets DRIVER_OK again) clears SUSPEND (`init.dev-suspend.device.6/7`).
 */
import { logger } from '../log.js';
import { VirtioError } from '../errors.js';
import type { NegotiationResult } from './negotiate.js';

const log = logger('status');

/** Device status bits (content.tex:29-56). */
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_SUSPEND = 16;
export const STATUS_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

/** Bits only the device sets. */
export const DEVICE_OWNED_STATUS = STATUS_NEEDS_RESET;

const A = STATUS_ACKNOWLEDGE;
const D = STATUS_DRIVER;
const F = STATUS_FEATURES_OK;
const K = STATUS_DRIVER_OK;
const S = STATUS_SUSPEND;

/** What a transition does. */
export type StatusTransitionKind =
  | 'reset'
  | 'failed'
  | 'unchanged'
  | 'acknowledge'
  | 'driver'
  | 'features-ok'
  | 'driver-ok'
  | 'suspend'
  | 'resume'
  | 'refused';

/** One legal driver write: status `from` (device-owned bits masked), written value `to`. */
export interface StatusTransition {
  readonly from: number;
  readonly to: number;
  /** Status after the device completed the step (default `to`). */
  readonly result?: number;
  readonly kind: StatusTransitionKind;
  /** Clause that defines this step. */
  readonly clause: string;
  /** Condition beyond the bits (checked through {@link StatusHooks}). */
  readonly needs?: 'negotiation' | 'suspend-negotiated';
}

/** The legal step-by-step transitions (rules 1–3 of the module doc are not rows: they apply from any state). */
export const STATUS_TRANSITIONS: readonly StatusTransition[] = [
  { from: 0, to: A, kind: 'acknowledge', clause: 'init.dev-init.driver.1' },
  { from: A, to: A | D, kind: 'driver', clause: 'init.dev-init.driver.1' },
  // SeaBIOS (QEMU's default firmware) sets ACKNOWLEDGE and DRIVER in one write; the end state is the
  // same as two steps, and refusing it leaves the firmware without the disk (seen over vfio-user).
  { from: 0, to: A | D, kind: 'driver', clause: 'init.dev-init.driver.1' },
  { from: A | D, to: A | D | F, kind: 'features-ok', clause: 'basic.feature-bits.device.2', needs: 'negotiation' },
  { from: A | D | F, to: A | D | F | K, kind: 'driver-ok', clause: 'init.dev-init.driver.1' },
  { from: A | D | F | K, to: A | D | F | K | S, result: A | D | F | S, kind: 'suspend', clause: 'init.dev-suspend.device.6', needs: 'suspend-negotiated' },
  { from: A | D | F | S, to: A | D | F | S | K, result: A | D | F | K, kind: 'resume', clause: 'init.dev-suspend.device.7' },
];

/** The rules that apply from any state, with their clauses (for documentation and tests). */
export const STATUS_ANY_STATE_RULES: readonly { readonly kind: StatusTransitionKind; readonly clause: string; readonly rule: string }[] = [
  { kind: 'reset', clause: 'pci.common-cfg.device.7', rule: 'writing 0 resets the device; status reads 0 afterwards' },
  { kind: 'failed', clause: 'init.dev-init.driver.2', rule: 'the driver may set FAILED at any time; FAILED is added to the status' },
  { kind: 'unchanged', clause: 'basic.dev-status-field.driver.1', rule: 'writing the current status back changes nothing' },
];

/** Result of a driver write. */
export interface StatusWriteResult {
  /** The write was honoured (for FEATURES_OK: negotiation succeeded). */
  readonly accepted: boolean;
  /** Status after the write. */
  readonly status: number;
  /** Which rule matched. */
  readonly kind: StatusTransitionKind;
  /** Why it was refused (absent when accepted). */
  readonly reason?: string;
  /** Clause of the matched row, or of the rule the driver broke. */
  readonly clause?: string;
  /** The negotiation outcome, for a FEATURES_OK write. */
  readonly negotiation?: NegotiationResult;
}

/** Callbacks the machine consults for conditional rows. */
export interface StatusHooks {
  /** Validate the driver's features when it sets FEATURES_OK. Default: ok. */
  negotiate?(): NegotiationResult;
  /** VIRTIO_F_SUSPEND was negotiated. Default: false. */
  suspendNegotiated?(): boolean;
}

/** Find the table row for (from, to), masking device-owned bits. */
export function findTransition(from: number, to: number): StatusTransition | undefined {
  const f = from & ~DEVICE_OWNED_STATUS;
  const t = to & ~DEVICE_OWNED_STATUS;
  return STATUS_TRANSITIONS.find((r) => r.from === f && r.to === t);
}

/** Human form of a status value, e.g. `ACKNOWLEDGE|DRIVER (0x3)`. */
export function describeStatus(v: number): string {
  const names: string[] = [];
  const all: Array<[number, string]> = [
    [A, 'ACKNOWLEDGE'],
    [D, 'DRIVER'],
    [F, 'FEATURES_OK'],
    [K, 'DRIVER_OK'],
    [S, 'SUSPEND'],
    [STATUS_NEEDS_RESET, 'NEEDS_RESET'],
    [STATUS_FAILED, 'FAILED'],
  ];
  for (const [b, n] of all) if ((v & b) !== 0) names.push(n);
  if ((v & 32) !== 0) names.push('bit5');
  return `${names.length > 0 ? names.join('|') : 'RESET'} (0x${v.toString(16)})`;
}

/** The device status register and its legal transitions. */
export class StatusMachine {
  private value = 0;
  private readonly hooks: StatusHooks;

  constructor(hooks: StatusHooks = {}) {
    this.hooks = hooks;
  }

  /** Current status as the driver reads it. */
  get status(): number {
    return this.value;
  }

  /** True when every bit of `bits` is set. */
  has(bits: number): boolean {
    return (this.value & bits) === bits;
  }

  /** Back to 0 (the core calls this on a reset write; also usable by a transport's hard reset). */
  reset(): void {
    this.value = 0;
  }

  /**
   * Set device-owned bits. Only DEVICE_NEEDS_RESET may be set this way
   * (`basic.dev-status-field.device.2`); anything else is a host programming error and throws.
   */
  deviceSet(bits: number): void {
    if ((bits & ~DEVICE_OWNED_STATUS) !== 0) {
      throw new VirtioError('INVALID_ARGUMENT', `deviceSet: only DEVICE_NEEDS_RESET (0x40) is device-owned; got 0x${bits.toString(16)}`);
    }
    this.value = (this.value | bits) & 0xff;
  }

  /** A driver write of `value` (8 bits). */
  write(value: number): StatusWriteResult {
    value &= 0xff;
    const cur = this.value;
    const owned = cur & DEVICE_OWNED_STATUS;
    const from = cur & ~DEVICE_OWNED_STATUS;
    const to = value & ~DEVICE_OWNED_STATUS;

    // pci.common-cfg.device.7 / basic.dev-reset.device.1: 0 resets.
    if (value === 0) {
      this.value = 0;
      return { accepted: true, status: 0, kind: 'reset', clause: 'pci.common-cfg.device.7' };
    }
    // init.dev-init.driver.2: the driver may give up at any time by setting FAILED.
    if ((to & STATUS_FAILED) !== 0) {
      if (to !== (from | STATUS_FAILED)) log('FAILED written with other bit changes (0x%s -> 0x%s); only FAILED is added', cur.toString(16), value.toString(16));
      this.value = cur | STATUS_FAILED;
      return { accepted: true, status: this.value, kind: 'failed', clause: 'init.dev-init.driver.2' };
    }
    if (to === from) return { accepted: true, status: cur, kind: 'unchanged', clause: 'basic.dev-status-field.driver.1' };

    const row = (from & STATUS_FAILED) !== 0 ? undefined : findTransition(from, to);
    if (row === undefined) return this.refuse(cur, value, from, to);

    if (row.needs === 'negotiation') {
      const neg = this.hooks.negotiate?.() ?? { ok: true };
      if (!neg.ok) {
        // basic.feature-bits.device.2: the device MUST fail to set FEATURES_OK.
        log('FEATURES_OK refused: %s', neg.message ?? neg.code);
        const res: StatusWriteResult = { accepted: false, status: cur, kind: 'features-ok', reason: neg.message ?? 'feature negotiation failed', clause: neg.clause ?? row.clause, negotiation: neg };
        return res;
      }
      this.value = (row.result ?? row.to) | owned;
      return { accepted: true, status: this.value, kind: row.kind, clause: row.clause, negotiation: neg };
    }
    if (row.needs === 'suspend-negotiated' && !(this.hooks.suspendNegotiated?.() ?? false)) {
      // init.dev-suspend.device.1 / init.dev-suspend.driver.1: ignore SUSPEND without VIRTIO_F_SUSPEND.
      log('SUSPEND ignored: VIRTIO_F_SUSPEND not negotiated');
      return { accepted: false, status: cur, kind: 'refused', reason: 'SUSPEND written but VIRTIO_F_SUSPEND was not negotiated', clause: 'init.dev-suspend.driver.1' };
    }
    this.value = (row.result ?? row.to) | owned;
    return { accepted: true, status: this.value, kind: row.kind, clause: row.clause };
  }

  private refuse(cur: number, value: number, from: number, to: number): StatusWriteResult {
    let clause: string;
    let reason: string;
    if ((from & STATUS_FAILED) !== 0) {
      clause = 'basic.dev-status-field.driver.3';
      reason = 'the driver set FAILED and must reset the device before re-initializing it';
    } else if ((from & ~to) !== 0) {
      clause = 'basic.dev-status-field.driver.2';
      reason = `the write clears status bits (${describeStatus(from & ~to)}); only a reset (0) clears them`;
    } else if ((to & STATUS_SUSPEND) !== 0) {
      clause = 'init.dev-suspend.device.1';
      reason = 'SUSPEND is only honoured after initialization completed (DRIVER_OK set)';
    } else {
      clause = 'init.dev-init.driver.1';
      reason = `status ${describeStatus(from)} cannot go to ${describeStatus(to)}: set ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK one at a time, in that order`;
    }
    log('refused status write 0x%s at 0x%s: %s [%s]', value.toString(16), cur.toString(16), reason, clause);
    return { accepted: false, status: cur, kind: 'refused', reason, clause };
  }
}
