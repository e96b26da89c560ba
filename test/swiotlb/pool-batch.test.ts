import { describe, expect, it } from 'vitest';
import { type BatchCopier, OP_STRIDE, runBatch, jsCopy, nativeCopiers } from '../../src/swiotlb/copy.js';
import { SgList } from '../../src/queue/types.js';
import { expectBytes, expectCode, fillRam, fixture, RAM_BASE, readDev, readRam } from './helpers.js';

/** A BatchCopier that records its calls and copies through the JS path. */
function recordingBatch(): { fn: BatchCopier; calls: number[] } {
  const calls: number[] = [];
  const fn: BatchCopier = (bufs, ops, count) => {
    calls.push(count);
    return runBatch(jsCopy, bufs.map((b) => new Uint8Array(b)), ops, count);
  };
  return { fn, calls };
}

describe('BouncePool batched paths (one copy call per request)', () => {
  it('[rfc-swiotlb.feature.driver.1] mapBatch maps N buffers with one batched copy; unmapBatch copies back only device-written ones', () => {
    const rec = recordingBatch();
    const f = fixture({ pool: { copyBatch: rec.fn } });
    const origs = [RAM_BASE + 0x10, RAM_BASE + 0x2000, RAM_BASE + 0x9000];
    const sizes = [16, 4096, 1];
    const dirs = ['to-device', 'from-device', 'from-device'] as const;
    const data = origs.map((a, i) => fillRam(f, a, sizes[i]!, i + 10));
    const out = new Float64Array(3);
    f.pool.mapBatch(3, origs, sizes, dirs, out);
    expect(rec.calls).toEqual([3]);
    for (let i = 0; i < 3; i++) {
      expect(f.window.contains(out[i]!, sizes[i]!)).toBe(true);
      expectBytes(readDev(f, out[i]!, sizes[i]!), data[i]);
    }
    f.dev.write(out[0]!, new Uint8Array(16).fill(1)); // device must not affect a to-device buffer
    f.dev.write(out[1]!, new Uint8Array(4096).fill(2));
    f.dev.write(out[2]!, Uint8Array.of(3));
    f.pool.unmapBatch(3, out, sizes, dirs);
    expect(rec.calls).toEqual([3, 2]);
    expectBytes(readRam(f, origs[0]!, 16), data[0]);
    expect(readRam(f, origs[1]!, 4096).every((x) => x === 2)).toBe(true);
    expect(readRam(f, origs[2]!, 1)[0]).toBe(3);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, liveMappings: 0, totalMappings: 3, bytesToDevice: 4113, bytesFromDevice: 4097 });
  });

  it('mapBatch is all or nothing: a failing buffer releases the ones before it', () => {
    const rec = recordingBatch();
    const f = fixture({ pool: { copyBatch: rec.fn } });
    const out = [0, 0, 0];
    expectCode(() => f.pool.mapBatch(3, [RAM_BASE, RAM_BASE, RAM_BASE], [100, 200, 300 * 1024], 'to-device', out), 'BOUNCE_MAP_TOO_LARGE');
    expect(rec.calls).toEqual([]);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, liveMappings: 0 });
    f.pool.verify();
  });

  it('unmapBatch checks everything first: a duplicate or unknown handle leaves all mappings live', () => {
    const f = fixture();
    const out = new Float64Array(2);
    f.pool.mapBatch(2, [RAM_BASE, RAM_BASE + 4096], [10, 10], 'from-device', out);
    expectCode(() => f.pool.unmapBatch(2, [out[0]!, out[0]!], [10, 10], 'from-device'), 'BOUNCE_BAD_HANDLE');
    expectCode(() => f.pool.unmapBatch(2, [out[0]!, out[1]! + 1], [10, 10], 'from-device'), 'BOUNCE_BAD_HANDLE');
    expect(f.pool.stats().liveMappings).toBe(2);
    f.pool.unmapBatch(2, out, [10, 10], 'from-device');
    expect(f.pool.stats()).toMatchObject({ liveMappings: 0, usedSlots: 0 });
  });

  it('syncBatch copies in the requested direction with one call', () => {
    const rec = recordingBatch();
    const f = fixture({ pool: { copyBatch: rec.fn } });
    const out = new Float64Array(2);
    f.pool.mapBatch(2, [RAM_BASE, RAM_BASE + 8192], [64, 64], 'bidirectional', out);
    f.ram.write(RAM_BASE, Uint8Array.of(5));
    f.ram.write(RAM_BASE + 8192, Uint8Array.of(6));
    f.pool.syncBatch('device', 2, out, [1, 1], 'bidirectional');
    expect([readDev(f, out[0]!, 1)[0], readDev(f, out[1]!, 1)[0]]).toEqual([5, 6]);
    f.dev.write(out[0]! + 63, Uint8Array.of(7));
    f.pool.syncBatch('cpu', 1, [out[0]! + 63], [1], 'bidirectional');
    expect(readRam(f, RAM_BASE + 63, 1)[0]).toBe(7);
    expect(rec.calls).toEqual([2, 2, 1]);
    expectCode(() => f.pool.syncBatch('cpu', 1, [out[0]! + 60], [8], 'bidirectional'), 'INVALID_ARGUMENT');
  });

  it('mapSg / unmapSg bounce a driver SgList: readable to-device, writable from-device', () => {
    const f = fixture();
    const sg = new SgList(4).out(RAM_BASE, 16).out(RAM_BASE + 0x1000, 512).in(RAM_BASE + 0x3000, 4096).in(RAM_BASE + 0x5000, 1);
    const hdr = fillRam(f, RAM_BASE, 16, 1);
    const bounced = new SgList(4);
    f.pool.mapSg(sg, bounced);
    expect(bounced.count).toBe(4);
    expect(bounced.readable).toBe(2);
    expect(Array.from(bounced.len)).toEqual([16, 512, 4096, 1]);
    for (let i = 0; i < 4; i++) expect(f.window.contains(bounced.addr[i]!, bounced.len[i]!)).toBe(true);
    expectBytes(readDev(f, bounced.addr[0]!, 16), hdr);
    f.dev.write(bounced.addr[3]!, Uint8Array.of(0)); // status byte
    f.dev.write(bounced.addr[2]!, new Uint8Array(4096).fill(0x42));
    f.dev.write(bounced.addr[0]!, new Uint8Array(16)); // device scribbles on a readable buffer: not copied back
    f.pool.unmapSg(bounced);
    expectBytes(readRam(f, RAM_BASE, 16), hdr);
    expect(readRam(f, RAM_BASE + 0x3000, 4096).every((x) => x === 0x42)).toBe(true);
    expect(f.pool.stats().usedSlots).toBe(0);
    expectCode(() => f.pool.mapSg(sg, new SgList(2)), 'INVALID_ARGUMENT');
  });

  it('nativeCopiers adapts the addon contract (single copies ≤ 4 KiB stay in JS)', () => {
    const singles: number[] = [];
    const api = {
      copy: (dst: ArrayBufferLike, dOff: number, src: ArrayBufferLike, sOff: number, len: number) => {
        singles.push(len);
        new Uint8Array(dst).set(new Uint8Array(src, sOff, len), dOff);
      },
      copyBatch: (bufs: ArrayBufferLike[], ops: Float64Array, count: number) => runBatch(jsCopy, bufs.map((b) => new Uint8Array(b)), ops, count),
    };
    const c = nativeCopiers(api);
    const f = fixture({ pool: c });
    fillRam(f, RAM_BASE, 8192, 9);
    const a = f.pool.map(RAM_BASE, 100, 'to-device');
    const b = f.pool.map(RAM_BASE, 8192, 'to-device');
    expect(singles).toEqual([8192]);
    expectBytes(readDev(f, b, 8192), readRam(f, RAM_BASE, 8192));
    expectBytes(readDev(f, a, 100), readRam(f, RAM_BASE, 100));
    expect(OP_STRIDE).toBe(5);
  });
});
