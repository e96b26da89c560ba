/**
 * copy / copyBatch — the same tests against the native addon and the pure-JS fallback.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { loadNative, native, type NativeApi } from '../../src/native/index.js';

const impls: Array<[string, NativeApi]> = [
  ['native', native],
  ['fallback', loadNative({ forceFallback: true })],
];

function filled(n: number, seed: number): ArrayBuffer {
  const ab = new ArrayBuffer(n);
  const u8 = new Uint8Array(ab);
  for (let i = 0; i < n; i++) u8[i] = (i * 31 + seed) & 0xff;
  return ab;
}

function expectCode(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a VirtioError').toBeDefined();
  expect(isVirtioError(err), `not a VirtioError: ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

it('the addon is built and loads (run `npm rebuild` if this fails)', () => {
  if (process.env['VIRTIOKIT_NO_NATIVE']) return;
  expect(native.unavailableReason).toBeUndefined();
  expect(native.available).toBe(true);
});

describe.each(impls)('%s copy', (_name, api) => {
  it('copies between ArrayBuffers', () => {
    const src = filled(256, 1);
    const dst = new ArrayBuffer(256);
    api.copy(dst, 10, src, 20, 100);
    const d = new Uint8Array(dst);
    const s = new Uint8Array(src);
    for (let i = 0; i < 256; i++) expect(d[i]).toBe(i >= 10 && i < 110 ? s[i + 10] : 0);
  });

  it('has memmove semantics inside one buffer (both directions)', () => {
    const ab = filled(64, 3);
    const ref = new Uint8Array(ab).slice();
    api.copy(ab, 4, ab, 0, 40); // forward overlap
    expect(Array.from(new Uint8Array(ab, 4, 40))).toEqual(Array.from(ref.subarray(0, 40)));
    const ab2 = filled(64, 3);
    api.copy(ab2, 0, ab2, 4, 40); // backward overlap
    expect(Array.from(new Uint8Array(ab2, 0, 40))).toEqual(Array.from(ref.subarray(4, 44)));
  });

  it('accepts SharedArrayBuffers as source and destination', () => {
    const sab = new SharedArrayBuffer(32);
    new Uint8Array(sab).set([9, 8, 7, 6]);
    const dst = new ArrayBuffer(32);
    api.copy(dst, 1, sab, 0, 4);
    expect(Array.from(new Uint8Array(dst, 0, 6))).toEqual([0, 9, 8, 7, 6, 0]);
    const sab2 = new SharedArrayBuffer(8);
    api.copy(sab2, 4, dst, 1, 4);
    expect(Array.from(new Uint8Array(sab2))).toEqual([0, 0, 0, 0, 9, 8, 7, 6]);
    // same SAB again (cached view path)
    api.copy(sab2, 0, sab, 1, 2);
    expect(Array.from(new Uint8Array(sab2, 0, 2))).toEqual([8, 7]);
  });

  it('allows zero-length copies at the very end', () => {
    const a = new ArrayBuffer(8);
    api.copy(a, 8, a, 8, 0);
    api.copy(a, 0, new ArrayBuffer(0), 0, 0);
  });

  it('refuses out-of-bounds ranges without copying', () => {
    const src = filled(16, 5);
    const dst = new ArrayBuffer(16);
    expectCode(() => api.copy(dst, 10, src, 0, 7), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(dst, 0, src, 10, 7), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(dst, 17, src, 0, 0), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(dst, 2 ** 53, src, 0, 1), 'INVALID_ARGUMENT');
    expect(new Uint8Array(dst).every((b) => b === 0)).toBe(true);
  });

  it('refuses negative, fractional, NaN and non-number arguments', () => {
    const a = new ArrayBuffer(16);
    expectCode(() => api.copy(a, -1, a, 0, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, 0, a, 0, -1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, 0.5, a, 0, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, NaN, a, 0, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, 0, a, 0, Infinity), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, '1' as unknown as number, a, 0, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy({} as ArrayBuffer, 0, a, 0, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copy(a, 0, null as unknown as ArrayBuffer, 0, 1), 'INVALID_ARGUMENT');
  });
});

describe.each(impls)('%s copyBatch', (_name, api) => {
  it('performs every record and returns the byte total', () => {
    const a = filled(128, 7);
    const b = new ArrayBuffer(128);
    const sab = new SharedArrayBuffer(16);
    const ops = new Float64Array([1, 0, 0, 0, 8, /**/ 1, 8, 0, 100, 4, /**/ 2, 0, 0, 0, 2, /**/ 9, 9, 9, 9, 9]);
    const total = api.copyBatch([a, b, sab], ops, 3); // the 4th (invalid) record is beyond count
    expect(total).toBe(14);
    const au = new Uint8Array(a);
    expect(Array.from(new Uint8Array(b, 0, 12))).toEqual([...au.subarray(0, 8), ...au.subarray(100, 104)]);
    expect(Array.from(new Uint8Array(sab, 0, 2))).toEqual([au[0], au[1]]);
  });

  it('count 0 copies nothing; count larger than ops is refused', () => {
    const a = new ArrayBuffer(8);
    expect(api.copyBatch([a], new Float64Array(0), 0)).toBe(0);
    expectCode(() => api.copyBatch([a], new Float64Array(5), 2), 'INVALID_ARGUMENT');
  });

  it('validates all records before copying any byte', () => {
    const src = filled(32, 9);
    const dst = new ArrayBuffer(32);
    const bad: number[][] = [
      [0, 0, 1, 0, 33], // src too short
      [0, 30, 1, 0, 4], // dst overflow
      [2, 0, 1, 0, 1], // dst index out of range
      [0, 0, 5, 0, 1], // src index out of range
      [0, -1, 1, 0, 1], // negative offset
      [0, 0.5, 1, 0, 1], // fractional
      [0, 0, 1, NaN, 1], // NaN
      [0, 0, 1, 0, Infinity],
      [-1, 0, 1, 0, 1],
      [0, 2 ** 52, 1, 0, 0], // huge offset
      [0, 2 ** 53, 1, 0, 1],
    ];
    for (const rec of bad) {
      const ops = new Float64Array([0, 0, 1, 0, 16, ...rec]);
      expectCode(() => api.copyBatch([dst, src], ops, 2), 'INVALID_ARGUMENT');
      expect(new Uint8Array(dst).every((x) => x === 0), `record ${rec.join(',')} copied bytes`).toBe(true);
    }
  });

  it('refuses bad bufs / ops / count arguments', () => {
    const a = new ArrayBuffer(8);
    expectCode(() => api.copyBatch(a as unknown as ArrayBuffer[], new Float64Array(5), 0), 'INVALID_ARGUMENT');
    expectCode(() => api.copyBatch([a], new Uint32Array(5) as unknown as Float64Array, 1), 'INVALID_ARGUMENT');
    expectCode(() => api.copyBatch([a], new Float64Array(5), -1), 'INVALID_ARGUMENT');
    expectCode(() => api.copyBatch([a], new Float64Array(5), 0.5), 'INVALID_ARGUMENT');
    expectCode(() => api.copyBatch([{} as ArrayBuffer], new Float64Array([0, 0, 0, 0, 1]), 1), 'INVALID_ARGUMENT');
  });

  it('handles batches larger than the native stack buffer (300 records)', () => {
    const src = filled(300, 11);
    const dst = new ArrayBuffer(300);
    const ops = new Float64Array(300 * 5);
    for (let i = 0; i < 300; i++) ops.set([0, 299 - i, 1, i, 1], i * 5);
    expect(api.copyBatch([dst, src], ops, 300)).toBe(300);
    const d = new Uint8Array(dst);
    const s = new Uint8Array(src);
    for (let i = 0; i < 300; i++) expect(d[299 - i]).toBe(s[i]);
  });

  it('matches a byte-by-byte model on random batches (property)', () => {
    const sizes = [64, 200, 1];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(2), fc.nat(220), fc.nat(2), fc.nat(220), fc.nat(80)), { maxLength: 20 }),
        (recs) => {
          const bufs = sizes.map((n, k) => filled(n, k * 17));
          const model = bufs.map((b) => new Uint8Array(b).slice());
          const ops = new Float64Array(recs.flat());
          const valid = recs.every(([di, doff, si, soff, len]) => doff + len <= sizes[di]! && soff + len <= sizes[si]!);
          if (!valid) {
            expectCode(() => api.copyBatch(bufs, ops, recs.length), 'INVALID_ARGUMENT');
            bufs.forEach((b, k) => expect(Array.from(new Uint8Array(b))).toEqual(Array.from(model[k]!)));
            return;
          }
          let total = 0;
          for (const [di, doff, si, soff, len] of recs) {
            model[di]!.set(model[si]!.slice(soff, soff + len), doff);
            total += len;
          }
          expect(api.copyBatch(bufs, ops, recs.length)).toBe(total);
          bufs.forEach((b, k) => expect(Array.from(new Uint8Array(b))).toEqual(Array.from(model[k]!)));
        },
      ),
      { numRuns: 200 },
    );
  });
});
