/**
 * Feature sets wider than 64 bits.
 *
 * virtio feature bits are read and written through 32-bit windows (`device_feature_select` /
 * `driver_feature_select`, MMIO `DeviceFeaturesSel` / `DriverFeaturesSel`), and net already uses
 * bits 64–70, so a feature set is a little-endian array of 32-bit words, not a 64-bit number.
 *
 * Style: **mutable in place, algebra returns new sets.** `set`, `clear`, `setWord`, `clearAll`
 * change the set and return it (for chaining); `union`, `intersect`, `minus`, `clone` never touch
 * their operands and return a fresh set. {@link FeatureSet.freeze} makes a set read-only (the
 * negotiated set handed to device models is frozen), after which mutators throw.
 *
 * Storage grows on demand up to {@link MAX_FEATURE_BITS}; reading any window beyond the stored
 * words returns 0 (spec: a device presents 0 for windows with no defined bits).
 * BigInt conversions exist for display and configuration only — never on hot paths.
 */
import { VirtioError } from '../errors.js';

/** Highest number of feature bits a set can hold (32 windows of 32 bits). */
export const MAX_FEATURE_BITS = 1024;
/** Number of 32-bit windows a set can hold. */
export const MAX_FEATURE_WORDS = MAX_FEATURE_BITS / 32;

function checkBit(bit: number): void {
  if (!Number.isInteger(bit) || bit < 0 || bit >= MAX_FEATURE_BITS) {
    throw new VirtioError('INVALID_ARGUMENT', `feature bit ${bit} is out of range (0..${MAX_FEATURE_BITS - 1})`);
  }
}

/** A set of feature bits, stored as 32-bit words (word i holds bits 32i .. 32i+31). */
export class FeatureSet {
  private w: Uint32Array;
  private isFrozen = false;

  /** @param words initial 32-bit words, low word first */
  constructor(words: ArrayLike<number> = []) {
    if (words.length > MAX_FEATURE_WORDS) throw new VirtioError('INVALID_ARGUMENT', `a feature set holds at most ${MAX_FEATURE_WORDS} words (got ${words.length})`);
    this.w = new Uint32Array(Math.max(2, words.length));
    for (let i = 0; i < words.length; i++) this.w[i] = words[i]! >>> 0;
  }

  /** A set containing exactly `bits`. */
  static fromBits(bits: Iterable<number>): FeatureSet {
    const s = new FeatureSet();
    for (const b of bits) s.set(b);
    return s;
  }

  /** A set from a BigInt bit mask (display/configuration only). */
  static fromBigInt(v: bigint): FeatureSet {
    if (v < 0n) throw new VirtioError('INVALID_ARGUMENT', `feature mask must be non-negative (got ${v})`);
    const s = new FeatureSet();
    let i = 0;
    while (v > 0n) {
      if (i >= MAX_FEATURE_WORDS) throw new VirtioError('INVALID_ARGUMENT', `feature mask has bits at or above ${MAX_FEATURE_BITS}`);
      s.setWord(i, Number(v & 0xffffffffn));
      v >>= 32n;
      i++;
    }
    return s;
  }

  /** True once {@link freeze} was called. */
  get frozen(): boolean {
    return this.isFrozen;
  }

  /** Make this set read-only; mutators then throw. Returns this. */
  freeze(): this {
    this.isFrozen = true;
    return this;
  }

  private mutable(): void {
    if (this.isFrozen) throw new VirtioError('INVALID_ARGUMENT', 'this feature set is frozen (negotiated features cannot change); clone() it first');
  }

  private grow(words: number): void {
    if (words > this.w.length) {
      const n = new Uint32Array(Math.min(MAX_FEATURE_WORDS, Math.max(words, this.w.length * 2)));
      n.set(this.w);
      this.w = n;
    }
  }

  /** Number of stored words (capacity; trailing words may be zero). */
  get storedWords(): number {
    return this.w.length;
  }

  /** True when `bit` is in the set (false for any bit out of range). */
  has(bit: number): boolean {
    if (!(bit >= 0) || bit >= MAX_FEATURE_BITS) return false;
    const i = bit >>> 5;
    return i < this.w.length && (this.w[i]! & (1 << (bit & 31))) !== 0;
  }

  /** Add `bit`. */
  set(bit: number): this {
    this.mutable();
    checkBit(bit);
    const i = bit >>> 5;
    this.grow(i + 1);
    this.w[i] = (this.w[i]! | (1 << (bit & 31))) >>> 0;
    return this;
  }

  /** Remove `bit`. */
  clear(bit: number): this {
    this.mutable();
    checkBit(bit);
    const i = bit >>> 5;
    if (i < this.w.length) this.w[i] = (this.w[i]! & ~(1 << (bit & 31))) >>> 0;
    return this;
  }

  /** Remove every bit. */
  clearAll(): this {
    this.mutable();
    this.w.fill(0);
    return this;
  }

  /** The 32-bit window `i` (bits 32i..32i+31); 0 for any window beyond the stored words. */
  word(i: number): number {
    if (!(i >= 0) || i >= this.w.length || !Number.isInteger(i)) return 0;
    return this.w[i]!;
  }

  /** Replace window `i` with `v` (low 32 bits). Throws when i is beyond {@link MAX_FEATURE_WORDS}. */
  setWord(i: number, v: number): this {
    this.mutable();
    if (!Number.isInteger(i) || i < 0 || i >= MAX_FEATURE_WORDS) {
      throw new VirtioError('INVALID_ARGUMENT', `feature window ${i} is out of range (0..${MAX_FEATURE_WORDS - 1})`);
    }
    v = v >>> 0;
    if (v !== 0) this.grow(i + 1);
    if (i < this.w.length) this.w[i] = v;
    return this;
  }

  private combine(o: FeatureSet, op: (a: number, b: number) => number): FeatureSet {
    const n = Math.max(this.w.length, o.w.length);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = op(this.word(i), o.word(i)) >>> 0;
    return new FeatureSet(out);
  }

  /** Bits in either set (new set). */
  union(o: FeatureSet): FeatureSet {
    return this.combine(o, (a, b) => a | b);
  }

  /** Bits in both sets (new set). */
  intersect(o: FeatureSet): FeatureSet {
    return this.combine(o, (a, b) => a & b);
  }

  /** Bits in this set and not in `o` (new set). */
  minus(o: FeatureSet): FeatureSet {
    return this.combine(o, (a, b) => a & ~b);
  }

  /** True when every bit of this set is in `o`. */
  isSubsetOf(o: FeatureSet): boolean {
    for (let i = 0; i < this.w.length; i++) if ((this.w[i]! & ~o.word(i)) !== 0) return false;
    return true;
  }

  /** Same bits (storage size does not matter). */
  equals(o: FeatureSet): boolean {
    const n = Math.max(this.w.length, o.w.length);
    for (let i = 0; i < n; i++) if (this.word(i) !== o.word(i)) return false;
    return true;
  }

  /** True when no bit is set. */
  isEmpty(): boolean {
    for (let i = 0; i < this.w.length; i++) if (this.w[i] !== 0) return false;
    return true;
  }

  /** Number of bits set. */
  get size(): number {
    let c = 0;
    for (let i = 0; i < this.w.length; i++) {
      let v = this.w[i]!;
      while (v !== 0) {
        v &= v - 1;
        c++;
      }
    }
    return c;
  }

  /** Highest set bit, or -1 when empty. */
  highestBit(): number {
    for (let i = this.w.length - 1; i >= 0; i--) {
      const v = this.w[i]!;
      if (v !== 0) return i * 32 + 31 - Math.clz32(v);
    }
    return -1;
  }

  /** Set bits, ascending. */
  toBits(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.w.length; i++) {
      const v = this.w[i]!;
      if (v === 0) continue;
      for (let b = 0; b < 32; b++) if ((v & (1 << b)) !== 0) out.push(i * 32 + b);
    }
    return out;
  }

  /** Significant words (trailing zero words dropped; at least one). */
  toWords(): number[] {
    let n = this.w.length;
    while (n > 1 && this.w[n - 1] === 0) n--;
    return Array.from(this.w.subarray(0, n));
  }

  /** The set as a BigInt mask (display/configuration only). */
  toBigInt(): bigint {
    let v = 0n;
    for (let i = this.w.length - 1; i >= 0; i--) v = (v << 32n) | BigInt(this.w[i]!);
    return v;
  }

  /** `0x…` hex mask. */
  toString(): string {
    return `0x${this.toBigInt().toString(16)}`;
  }

  /** A mutable copy. */
  clone(): FeatureSet {
    return new FeatureSet(this.w);
  }
}
