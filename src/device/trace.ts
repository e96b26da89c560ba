/**
 * A bounded record of what a driver did to a device — status writes, feature acknowledgements,
 * negotiation outcomes, refused register writes, resets, guest errors — for the conformance suite,
 * `--check-driver` and tests. Control-path only: notify and interrupt hot paths record nothing
 * (except when they refuse something).
 */
import type { VirtioErrorCode } from '../errors.js';

/** Event kinds. */
export type TraceKind =
  | 'status-write' // a driver status write (accepted or refused)
  | 'feature-ack' // a driver_feature window written
  | 'features-ok' // negotiation succeeded
  | 'negotiation-refused' // FEATURES_OK left clear
  | 'refused' // a register write ignored because the driver was not allowed to make it
  | 'reset' // device reset
  | 'queue-enable'
  | 'queue-reset'
  | 'driver-ok' // queues created, model activated
  | 'suspend'
  | 'resume'
  | 'guest-error' // reported to the choke point
  | 'config-change'
  | 'space-changed';

/** One recorded event. */
export interface TraceEvent {
  /** Monotonic sequence number (counts events dropped from the ring too). */
  readonly seq: number;
  readonly kind: TraceKind;
  /** Device status when it happened (after the event for status writes). */
  readonly status: number;
  /** Human detail. */
  readonly detail: string;
  /** Clause id involved. */
  readonly clause?: string;
  readonly code?: VirtioErrorCode;
  /** Value written / feature window value. */
  readonly value?: number;
  /** Queue index or feature select, when relevant. */
  readonly index?: number;
  /** False for refusals. */
  readonly accepted?: boolean;
}

/** Ring buffer of the last `capacity` events. */
export class TraceBuffer {
  readonly capacity: number;
  private readonly ring: Array<TraceEvent | undefined>;
  private next = 0;
  private held = 0;
  /** Total events ever pushed. */
  total = 0;
  private readonly listeners: Array<(e: TraceEvent) => void> = [];

  constructor(capacity = 256) {
    this.capacity = Math.max(1, Math.floor(capacity));
    this.ring = new Array<TraceEvent | undefined>(this.capacity);
  }

  /** Record an event (seq is assigned here). */
  push(e: Omit<TraceEvent, 'seq'>): TraceEvent {
    const ev: TraceEvent = { seq: this.total, ...e };
    this.ring[this.next] = ev;
    this.next = (this.next + 1) % this.capacity;
    this.total++;
    if (this.held < this.capacity) this.held++;
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch {
        // a listener must not break the device
      }
    }
    return ev;
  }

  /** Events still held, oldest first. */
  events(): TraceEvent[] {
    const out: TraceEvent[] = [];
    const n = this.held;
    const start = (this.next - n + this.capacity) % this.capacity;
    for (let i = 0; i < n; i++) out.push(this.ring[(start + i) % this.capacity]!);
    return out;
  }

  /** Events of one kind, oldest first. */
  ofKind(kind: TraceKind): TraceEvent[] {
    return this.events().filter((e) => e.kind === kind);
  }

  /** Call `fn` for every new event (the full stream, not bounded). */
  onEvent(fn: (e: TraceEvent) => void): void {
    this.listeners.push(fn);
  }

  /** Drop held events (the sequence keeps counting). */
  clear(): void {
    this.ring.fill(undefined);
    this.next = 0;
    this.held = 0;
  }
}
