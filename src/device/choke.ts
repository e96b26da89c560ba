/**
 * The guest-error choke point.
 *
 * Everything a guest driver can get wrong — a looping chain, an address outside the device's
 * address space, an avail index running ahead — is reported here and nowhere else. The reaction is
 * always the same (virtio 1.4 §2.1 "Device Status Field", `basic.device-status.device.*`): set
 * DEVICE_NEEDS_RESET, request a configuration-change interrupt, and park the queue (it stops
 * processing until the driver resets the device or the queue). Nothing is thrown out of a notify
 * handler, nothing spins, and the caller can read the error code.
 */
import type { VirtioErrorCode } from '../errors.js';
import { logger } from '../log.js';

const log = logger('guest-error');

/** One guest-caused error. */
export interface GuestError {
  /** Machine-readable code. */
  readonly code: VirtioErrorCode;
  /** Normative clause id the guest broke (from ../shared/spec/normative.json), if one applies. */
  readonly clause: string | undefined;
  /** What happened, with numbers, for a human. */
  readonly message: string;
  /** Queue index, when the error came from a queue (-1 otherwise). */
  readonly queue: number;
}

/** Where queues and devices report guest errors. */
export interface GuestErrorSink {
  /** Report an error. Must not throw. */
  guestError(err: GuestError): void;
}

/** Hooks the choke point drives; a device core or a test supplies them. */
export interface ChokeHooks {
  /** Set DEVICE_NEEDS_RESET in the device status. */
  setNeedsReset(): void;
  /** Raise a configuration-change interrupt (MSI-X config vector, or ISR bit 1 + INTx). */
  configInterrupt(): void;
  /** Park queue `q` (or all queues when q < 0) until reset. */
  park(q: number): void;
}

/**
 * The standard choke point: records errors, sets NEEDS_RESET once, raises one config interrupt
 * per transition into NEEDS_RESET, parks the queue. Further errors while already broken are
 * counted but raise nothing more.
 */
export class ChokePoint implements GuestErrorSink {
  /** Every error seen since the last {@link reset} (bounded to the last 64). */
  readonly errors: GuestError[] = [];
  /** Total number of errors since the last reset. */
  count = 0;
  /** True once an error has put the device into NEEDS_RESET. */
  broken = false;
  private readonly hooks: ChokeHooks;
  private readonly listeners: Array<(e: GuestError) => void> = [];

  constructor(hooks: ChokeHooks) {
    this.hooks = hooks;
  }

  guestError(err: GuestError): void {
    try {
      this.count++;
      if (this.errors.length >= 64) this.errors.shift();
      this.errors.push(err);
      log('%s%s: %s%s', err.code, err.queue >= 0 ? ` (queue ${err.queue})` : '', err.message, err.clause ? ` [${err.clause}]` : '');
      this.hooks.park(err.queue);
      if (!this.broken) {
        this.broken = true;
        this.hooks.setNeedsReset();
        this.hooks.configInterrupt();
      }
      for (const l of this.listeners) l(err);
    } catch (e) {
      // A hook failing must not turn a guest error into a host crash.
      log('choke point hook failed: %O', e);
    }
  }

  /** Call `fn` for every error (for CLIs, conformance checks and tests). */
  onError(fn: (e: GuestError) => void): void {
    this.listeners.push(fn);
  }

  /** The most recent error, if any. */
  get last(): GuestError | undefined {
    return this.errors[this.errors.length - 1];
  }

  /** Forget errors (device reset by the driver). */
  reset(): void {
    this.errors.length = 0;
    this.count = 0;
    this.broken = false;
  }
}

/** A sink that only records (for queue unit tests and the driver side). */
export class RecordingSink implements GuestErrorSink {
  readonly errors: GuestError[] = [];
  guestError(err: GuestError): void {
    this.errors.push(err);
  }
  get last(): GuestError | undefined {
    return this.errors[this.errors.length - 1];
  }
}
