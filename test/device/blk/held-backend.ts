/**
 * A test backend whose operations stay pending until the test releases them: an asynchronous
 * RAM disk with an event log. Each operation is performed on the RAM disk at release time.
 */
import type { BlkBackend, IoVec } from '../../../src/device/blk/backend.js';
import { RamBackend } from '../../../src/device/blk/ram-backend.js';

export type HeldKind = 'read' | 'write' | 'flush' | 'discard' | 'zeroes';

export interface HeldOp {
  kind: HeldKind;
  pos: number;
  len: number;
  release(): void;
  fail(e?: Error): void;
}

export class HeldBackend implements BlkBackend {
  readonly name = 'held';
  readonly size: number;
  readonly readOnly = false;
  readonly persistent = true;
  readonly synchronous = false;
  readonly inner: RamBackend;
  /** Operations not yet released, in submission order. */
  readonly pending: HeldOp[] = [];
  /** `start <kind>` / `done <kind>` events in order. */
  readonly log: string[] = [];
  /** Kinds that complete at once instead of being held. */
  readonly passThrough = new Set<HeldKind>();
  closed = false;

  constructor(size: number) {
    this.size = size;
    this.inner = new RamBackend(size);
  }

  private hold(kind: HeldKind, pos: number, len: number, fn: () => void): Promise<void> {
    this.log.push(`start ${kind}`);
    return new Promise<void>((resolve, reject) => {
      const op: HeldOp = {
        kind,
        pos,
        len,
        release: () => {
          this.remove(op);
          try {
            fn();
            this.log.push(`done ${kind}`);
            resolve();
          } catch (e) {
            reject(e);
          }
        },
        fail: (e = new Error('injected I/O error')) => {
          this.remove(op);
          this.log.push(`fail ${kind}`);
          reject(e);
        },
      };
      this.pending.push(op);
      if (this.passThrough.has(kind)) op.release();
    });
  }

  private remove(op: HeldOp): void {
    const i = this.pending.indexOf(op);
    if (i >= 0) this.pending.splice(i, 1);
  }

  /** Release the oldest pending op of `kind` (or any). */
  release(kind?: HeldKind): HeldOp {
    const op = this.pending.find((o) => kind === undefined || o.kind === kind);
    if (op === undefined) throw new Error(`no pending ${kind ?? ''} op`);
    op.release();
    return op;
  }

  readv(iov: IoVec, pos: number): Promise<void> {
    return this.hold('read', pos, iov.bytes, () => this.inner.readv(iov, pos));
  }
  writev(iov: IoVec, pos: number): Promise<void> {
    return this.hold('write', pos, iov.bytes, () => this.inner.writev(iov, pos));
  }
  flush(): Promise<void> {
    return this.hold('flush', 0, 0, () => undefined);
  }
  discard(pos: number, len: number): Promise<void> {
    return this.hold('discard', pos, len, () => this.inner.discard(pos, len));
  }
  writeZeroes(pos: number, len: number): Promise<void> {
    return this.hold('zeroes', pos, len, () => this.inner.writeZeroes(pos, len));
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Let promise callbacks run (a few microtask / macrotask turns). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}
