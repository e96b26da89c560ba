/**
 * Routes BAR accesses to the structure that owns the range (common cfg, ISR, device cfg, notify,
 * MSI-X table/PBA, SWIOTLB window).
 *
 * Access sizes 1, 2 and 4 go to the handler as they are; an 8-byte access becomes two 4-byte
 * accesses, low half first (pci.layout.device.1 lets the two halves be accessed independently);
 * the 8-byte value is a Number, exact below 2^53. Other sizes read all-ones and are dropped on
 * write. Offsets that no structure owns read 0 and ignore writes. Nothing here throws.
 */
import { requireArg } from '../../errors.js';
import { logger } from '../../log.js';

const log = logger('pci');

/** Owner of a BAR range; offsets are relative to the range start. */
export interface BarHandler {
  read(off: number, size: number): number;
  write(off: number, size: number, value: number): void;
}

interface Route {
  bar: number;
  start: number;
  end: number;
  name: string;
  h: BarHandler;
}

const TWO32 = 4294967296;

/** Per-function BAR access router. */
export class BarRouter {
  private readonly routes: Route[] = [];
  /** Accesses that hit no structure or had an unsupported size. */
  unclaimed = 0;

  /** Give `[offset, offset+length)` of `bar` to `handler`. Ranges must not overlap. */
  add(bar: number, offset: number, length: number, handler: BarHandler, name: string): void {
    requireArg(length > 0, `${name}: empty BAR range`);
    for (const r of this.routes) {
      requireArg(r.bar !== bar || offset >= r.end || offset + length <= r.start, `${name} overlaps ${r.name} in BAR ${bar}`);
    }
    this.routes.push({ bar, start: offset, end: offset + length, name, h: handler });
  }

  private find(bar: number, off: number, size: number): Route | undefined {
    const rs = this.routes;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!;
      if (r.bar === bar && off >= r.start && off + size <= r.end) return r;
    }
    return undefined;
  }

  /** Read `size` bytes at `off` in `bar`. */
  read(bar: number, off: number, size: number): number {
    if (size === 8) {
      const lo = this.read(bar, off, 4);
      const hi = this.read(bar, off + 4, 4);
      return hi * TWO32 + lo;
    }
    if (size !== 1 && size !== 2 && size !== 4) {
      this.unclaimed++;
      log('BAR %d read of unsupported size %d at 0x%s', bar, size, Number(off).toString(16));
      return 0xffffffff;
    }
    const r = this.find(bar, off, size);
    if (r === undefined) {
      this.unclaimed++;
      return 0;
    }
    return r.h.read(off - r.start, size) >>> 0;
  }

  /** Write `size` bytes of `value` at `off` in `bar`. */
  write(bar: number, off: number, size: number, value: number): void {
    if (size === 8) {
      const v = Number(value);
      this.write(bar, off, 4, v % TWO32);
      this.write(bar, off + 4, 4, Math.floor(v / TWO32));
      return;
    }
    if (size !== 1 && size !== 2 && size !== 4) {
      this.unclaimed++;
      log('BAR %d write of unsupported size %d at 0x%s dropped', bar, size, Number(off).toString(16));
      return;
    }
    const r = this.find(bar, off, size);
    if (r === undefined) {
      this.unclaimed++;
      return;
    }
    r.h.write(off - r.start, size, Number(value) >>> 0);
  }

  /** The structure name owning `off` in `bar` (diagnostics), or undefined. */
  owner(bar: number, off: number): string | undefined {
    return this.find(bar, off, 1)?.name;
  }

  /** True when `[off, off+size)` of `bar` lies inside one structure. */
  claims(bar: number, off: number, size: number): boolean {
    return this.find(bar, off, size) !== undefined;
  }
}
