import { describe, expect, it } from 'vitest';
import { BouncePool } from '../../src/swiotlb/pool.js';
import { IO_TLB_SEGMENT_BYTES, IO_TLB_SIZE, maxMappingSize } from '../../src/swiotlb/constants.js';
import { expectBytes, expectCode, fillRam, fixture, RAM_BASE, readDev, readRam, WINDOW_BASE } from './helpers.js';

const SLOT = IO_TLB_SIZE;

describe('BouncePool: slot math (Linux swiotlb, reference/swiotlb.md §8)', () => {
  it('rounds every mapping up to whole 2 KiB slots', () => {
    const f = fixture();
    const cases: Array<[number, number]> = [[1, 1], [2048, 1], [2049, 2], [4095, 2], [4096, 2], [4097, 3], [10000, 5]];
    let used = 0;
    for (const [size, slots] of cases) {
      f.pool.map(RAM_BASE, size, 'to-device');
      used += slots;
      expect(f.pool.stats().usedSlots, `size ${size}`).toBe(used);
    }
    f.pool.verify();
  });

  it('never lets a mapping cross a 128-slot segment: a 3-slot mapping skips a 2-slot tail', () => {
    const f = fixture({ windowSize: 2 * IO_TLB_SEGMENT_BYTES });
    expect(f.pool.nslots).toBe(256);
    const a = f.pool.map(RAM_BASE, 126 * SLOT, 'to-device'); // slots 0..125
    expect(a).toBe(WINDOW_BASE);
    // Slots 126, 127 (end of segment 0) and all of segment 1 are free: 126..128 would be contiguous.
    const b = f.pool.map(RAM_BASE, 2 * SLOT + 1, 'to-device'); // 3 slots
    expect(b).toBe(WINDOW_BASE + 128 * SLOT);
    // The 2-slot tail is still usable by a mapping that fits.
    const c = f.pool.map(RAM_BASE, 2 * SLOT - 1, 'to-device', {});
    expect([WINDOW_BASE + 126 * SLOT, WINDOW_BASE + 131 * SLOT]).toContain(c);
    f.pool.verify();
  });

  it('spreads allocations with a rotating start index (Linux area->index)', () => {
    const f = fixture();
    const a = f.pool.map(RAM_BASE, 100, 'to-device');
    f.pool.unmap(a, 100, 'to-device');
    const b = f.pool.map(RAM_BASE, 100, 'to-device');
    expect(b).toBe(a + SLOT); // not the slot just freed
    f.pool.verify();
  });

  it('wraps the search around to the start of the window', () => {
    const f = fixture({ windowSize: IO_TLB_SEGMENT_BYTES });
    const a: number[] = [];
    for (let i = 0; i < 128; i++) a.push(f.pool.map(RAM_BASE, 100, 'to-device'));
    f.pool.unmap(a[0]!, 100, 'to-device');
    f.pool.unmap(a[100]!, 100, 'to-device');
    expect(f.pool.map(RAM_BASE, 100, 'to-device')).toBe(a[0]); // search restarted at slot 0
    const x = f.pool.map(RAM_BASE, 100, 'to-device');
    expect(x).toBe(a[100]); // next search starts after slot 0
    f.pool.unmap(a[0]!, 100, 'to-device');
    f.pool.unmap(x, 100, 'to-device');
    // The index is now 101: nothing free from there to the end, so the walk wraps and finds slot 0 first.
    expect(f.pool.map(RAM_BASE, 100, 'to-device')).toBe(a[0]);
    f.pool.verify();
  });

  it('starts mappings of PAGE_SIZE or more on page-aligned slots', () => {
    const f = fixture();
    f.pool.map(RAM_BASE, 100, 'to-device'); // slot 0; next search starts at the odd slot 1
    const p = f.pool.map(RAM_BASE, 4096, 'to-device');
    expect(p % 4096).toBe(0);
    expect(p).toBe(WINDOW_BASE + 2 * SLOT);
    const q = f.pool.map(RAM_BASE, 100, 'to-device');
    expect(q).toBe(WINDOW_BASE + 4 * SLOT); // small mappings take any slot
  });

  it('page alignment follows the bus address, not the window offset', () => {
    const f = fixture({ base: WINDOW_BASE + 0x1000 }); // page aligned, not 8 KiB aligned
    f.pool.map(RAM_BASE, 100, 'to-device');
    const p = f.pool.map(RAM_BASE, 8192, 'to-device');
    expect(p % 4096).toBe(0);
  });
});

describe('BouncePool: min_align_mask and alloc_align_mask', () => {
  it('keeps orig & min_align_mask in the bounce address (NVMe-like 0xfff)', () => {
    const f = fixture({ minAlignMask: 0xfff });
    for (const orig of [RAM_BASE + 0x1234, RAM_BASE + 0x1a34, RAM_BASE + 0x7ff, RAM_BASE + 0x800, RAM_BASE + 0xfff]) {
      for (const size of [1, 512, 4000, 9000]) {
        const b = f.pool.map(orig, size, 'to-device');
        expect(b & 0xfff, `orig ${orig.toString(16)} size ${size}`).toBe(orig & 0xfff);
        expect(f.window.contains(b, size)).toBe(true);
      }
    }
    f.pool.verify();
  });

  it('a per-mapping minAlignMask overrides the device default', () => {
    const f = fixture();
    const orig = RAM_BASE + 0x3a50;
    const b = f.pool.map(orig, 300, 'to-device', { minAlignMask: 0x3fff });
    expect(b & 0x3fff).toBe(orig & 0x3fff);
    const c = f.pool.map(orig, 300, 'to-device');
    expect(c % SLOT).toBe(0); // no mask: the mapping starts at its slot
  });

  it('max mapping shrinks by roundup(min_align_mask, 2 KiB): 252 KiB for 0xfff', () => {
    expect(maxMappingSize(0)).toBe(256 * 1024);
    expect(maxMappingSize(0xfff)).toBe(252 * 1024);
    expect(maxMappingSize(0x7ff)).toBe(254 * 1024);
    const f = fixture({ minAlignMask: 0xfff, ramSize: 1 << 20 });
    expect(f.pool.maxMappingSize()).toBe(252 * 1024);
    const b = f.pool.map(RAM_BASE + 0xfff, 252 * 1024, 'to-device');
    expect(b & 0xfff).toBe(0xfff);
    expectCode(() => f.pool.map(RAM_BASE, 252 * 1024 + 1, 'to-device'), 'BOUNCE_MAP_TOO_LARGE');
  });

  it('alloc_align_mask aligns the allocation start', () => {
    const f = fixture();
    f.pool.map(RAM_BASE, 100, 'to-device');
    const b = f.pool.map(RAM_BASE + 5, 100, 'to-device', { allocAlignMask: 0xffff });
    expect(b % 0x10000).toBe(0);
    // With min_align_mask too: the allocation start is aligned, the address keeps the low bits.
    const c = f.pool.map(RAM_BASE + 0x123, 100, 'to-device', { allocAlignMask: 0x3fff, minAlignMask: 0x7ff });
    expect(c & 0x7ff).toBe(0x123);
    expect((c - 0x123) % 0x4000).toBe(0);
    f.pool.verify();
  });

  it('refuses an alloc_align_mask that contradicts min_align_mask for the address, pool unchanged', () => {
    const f = fixture({ minAlignMask: 0xfff });
    const before = f.pool.stats();
    const e = expectCode(() => f.pool.map(RAM_BASE + 0x800, 100, 'to-device', { allocAlignMask: 0xfff }), 'INVALID_ARGUMENT');
    expect(e.message).toMatch(/alloc_align_mask/);
    expect(f.pool.stats().usedSlots).toBe(before.usedSlots);
    expectCode(() => f.pool.map(RAM_BASE, 100, 'to-device', { allocAlignMask: 0x1001 }), 'INVALID_ARGUMENT');
    expectCode(() => new BouncePool({ window: f.window, ram: f.ram, minAlignMask: 6 }), 'INVALID_ARGUMENT');
  });
});

describe('BouncePool: limits and errors leave the pool intact', () => {
  it('accepts 256 KiB, refuses 256 KiB + 1 with BOUNCE_MAP_TOO_LARGE', () => {
    const f = fixture({ ramSize: 1 << 20 });
    const b = f.pool.map(RAM_BASE, 256 * 1024, 'to-device');
    expect((b - WINDOW_BASE) % IO_TLB_SEGMENT_BYTES).toBe(0);
    const e = expectCode(() => f.pool.map(RAM_BASE, 256 * 1024 + 1, 'to-device'), 'BOUNCE_MAP_TOO_LARGE');
    expect(e.message).toMatch(/split the buffer/);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 128, failures: 1, fullFailures: 0, liveMappings: 1 });
  });

  it('exhaustion gives BOUNCE_POOL_FULL; freeing a slot makes map succeed again', () => {
    const f = fixture({ windowSize: IO_TLB_SEGMENT_BYTES * 2 });
    const addrs: number[] = [];
    for (let i = 0; i < 256; i++) addrs.push(f.pool.map(RAM_BASE + i * SLOT, SLOT, 'to-device'));
    expect(new Set(addrs).size).toBe(256);
    expect(f.pool.stats().freeSlots).toBe(0);
    const e = expectCode(() => f.pool.map(RAM_BASE, 1, 'to-device'), 'BOUNCE_POOL_FULL');
    expect(e.message).toMatch(/swiotlb buffer is full/);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 256, liveMappings: 256, failures: 1, fullFailures: 1 });
    f.pool.verify();
    f.pool.unmap(addrs[77]!, SLOT, 'to-device');
    expectCode(() => f.pool.map(RAM_BASE, SLOT + 1, 'to-device'), 'BOUNCE_POOL_FULL'); // 2 slots: no room
    expect(f.pool.map(RAM_BASE, 10, 'to-device')).toBe(addrs[77]);
    f.pool.verify();
  });

  it('fragmentation: enough free slots but no run long enough is still BOUNCE_POOL_FULL', () => {
    const f = fixture({ windowSize: IO_TLB_SEGMENT_BYTES });
    const addrs: number[] = [];
    for (let i = 0; i < 128; i++) addrs.push(f.pool.map(RAM_BASE, 100, 'to-device'));
    for (let i = 0; i < 128; i += 2) f.pool.unmap(addrs[i]!, 100, 'to-device');
    expect(f.pool.stats().freeSlots).toBe(64);
    expectCode(() => f.pool.map(RAM_BASE, 3000, 'to-device'), 'BOUNCE_POOL_FULL');
    f.pool.verify();
  });

  it('double unmap and unknown handles give BOUNCE_BAD_HANDLE', () => {
    const f = fixture();
    const b = f.pool.map(RAM_BASE, 100, 'from-device');
    f.pool.unmap(b, 100, 'from-device');
    expectCode(() => f.pool.unmap(b, 100, 'from-device'), 'BOUNCE_BAD_HANDLE');
    const c = f.pool.map(RAM_BASE, 5000, 'to-device');
    expectCode(() => f.pool.unmap(c + 8, 4992, 'to-device'), 'BOUNCE_BAD_HANDLE'); // not the start
    expectCode(() => f.pool.unmap(c + 2 * SLOT, 100, 'to-device'), 'BOUNCE_BAD_HANDLE'); // inside, not a start
    expectCode(() => f.pool.unmap(RAM_BASE, 100, 'to-device'), 'BOUNCE_BAD_HANDLE'); // a RAM address
    expectCode(() => f.pool.unmap(WINDOW_BASE + f.window.size, 1, 'to-device'), 'BOUNCE_BAD_HANDLE');
    expect(f.pool.stats().liveMappings).toBe(1);
    f.pool.unmap(c, 5000, 'to-device');
    f.pool.verify();
  });

  it('unmap with the wrong size or direction is refused and the mapping stays live', () => {
    const f = fixture();
    const b = f.pool.map(RAM_BASE, 100, 'from-device');
    expectCode(() => f.pool.unmap(b, 99, 'from-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.unmap(b, 100, 'to-device'), 'INVALID_ARGUMENT');
    expect(f.pool.stats().liveMappings).toBe(1);
    f.pool.unmap(b, 100, 'from-device');
    expect(f.pool.stats().liveMappings).toBe(0);
  });

  it('refuses bad arguments: zero size, bad direction, buffer outside guest RAM', () => {
    const f = fixture();
    expectCode(() => f.pool.map(RAM_BASE, 0, 'to-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.map(RAM_BASE, 1.5, 'to-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.map(-1, 1, 'to-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.map(RAM_BASE, 1, 'sideways' as never), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.map(RAM_BASE + f.ram.totalSize - 10, 11, 'to-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.map(WINDOW_BASE, 16, 'to-device'), 'INVALID_ARGUMENT'); // not guest RAM
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, failures: 6 });
  });
});

describe('BouncePool: directions (reference/swiotlb.md §8 direction summary)', () => {
  it('[rfc-swiotlb.pci.driver.2] to-device: map copies RAM into the window; unmap does not copy back', () => {
    const f = fixture();
    const data = fillRam(f, RAM_BASE + 0x100, 3000, 1);
    const b = f.pool.map(RAM_BASE + 0x100, 3000, 'to-device');
    expect(f.window.contains(b, 3000)).toBe(true);
    expectBytes(readDev(f, b, 3000), data);
    f.dev.write(b, new Uint8Array(3000).fill(0xee));
    f.pool.unmap(b, 3000, 'to-device');
    expectBytes(readRam(f, RAM_BASE + 0x100, 3000), data);
    expect(f.pool.stats()).toMatchObject({ bytesToDevice: 3000, bytesFromDevice: 0 });
  });

  it('from-device: map still copies in (no stale window bytes), unmap copies the device data back', () => {
    const f = fixture();
    // Stale bytes in the window from an earlier user.
    f.window.u8.fill(0xaa);
    const orig = fillRam(f, RAM_BASE, 600, 2);
    const b = f.pool.map(RAM_BASE, 600, 'from-device');
    expectBytes(readDev(f, b, 600), orig);
    const written = new Uint8Array(200).fill(0x5c);
    f.dev.write(b, written); // a short device write
    f.pool.unmap(b, 600, 'from-device');
    const back = readRam(f, RAM_BASE, 600);
    expectBytes(back.subarray(0, 200), written);
    expectBytes(back.subarray(200), orig.subarray(200));
    expect(f.pool.stats()).toMatchObject({ bytesToDevice: 600, bytesFromDevice: 600 });
  });

  it('bidirectional: copies in on map and out on unmap', () => {
    const f = fixture();
    const orig = fillRam(f, RAM_BASE + 7, 5000, 3);
    const b = f.pool.map(RAM_BASE + 7, 5000, 'bidirectional');
    expectBytes(readDev(f, b, 5000), orig);
    const reply = fillRam(fixture(), RAM_BASE, 5000, 4); // just a different pattern
    f.dev.write(b, reply);
    f.pool.unmap(b, 5000, 'bidirectional');
    expectBytes(readRam(f, RAM_BASE + 7, 5000), reply);
  });

  it('syncForCpu copies bounce to RAM before unmap, also on a sub-range', () => {
    const f = fixture();
    fillRam(f, RAM_BASE, 4096, 5);
    const b = f.pool.map(RAM_BASE, 4096, 'from-device');
    f.dev.write(b, new Uint8Array(4096).fill(0x11));
    f.pool.syncForCpu(b + 1000, 24, 'from-device');
    const ram = readRam(f, RAM_BASE, 4096);
    expect(ram.subarray(1000, 1024).every((x) => x === 0x11)).toBe(true);
    expect(ram[999]).not.toBe(0x11);
    expect(ram[1024]).not.toBe(0x11);
    f.pool.syncForCpu(b, 4096, 'from-device');
    expect(readRam(f, RAM_BASE, 4096).every((x) => x === 0x11)).toBe(true);
    // to-device mapping: syncForCpu copies nothing.
    const t = f.pool.map(RAM_BASE + 8192, 16, 'to-device');
    f.dev.write(t, new Uint8Array(16).fill(0x77));
    f.pool.syncForCpu(t, 16, 'to-device');
    expect(readRam(f, RAM_BASE + 8192, 16).some((x) => x === 0x77)).toBe(false);
  });

  it('syncForDevice copies RAM to bounce for to-device/bidirectional, nothing for from-device', () => {
    const f = fixture();
    const b = f.pool.map(RAM_BASE, 256, 'to-device');
    f.ram.write(RAM_BASE + 10, Uint8Array.of(1, 2, 3));
    expect(Array.from(readDev(f, b + 10, 3))).toEqual([0, 0, 0]);
    f.pool.syncForDevice(b + 10, 3, 'to-device');
    expect(Array.from(readDev(f, b + 10, 3))).toEqual([1, 2, 3]);
    const r = f.pool.map(RAM_BASE + 4096, 64, 'from-device');
    f.ram.write(RAM_BASE + 4096, Uint8Array.of(9));
    f.pool.syncForDevice(r, 64, 'from-device');
    expect(readDev(f, r, 1)[0]).toBe(0);
    const bi = f.pool.map(RAM_BASE + 8192, 64, 'bidirectional');
    f.ram.write(RAM_BASE + 8192, Uint8Array.of(42));
    f.pool.syncForDevice(bi, 1, 'to-device'); // any direction is allowed on a bidirectional mapping
    expect(readDev(f, bi, 1)[0]).toBe(42);
  });

  it('sync outside the mapping, with a foreign direction, or on an unmapped address is refused', () => {
    const f = fixture();
    const b = f.pool.map(RAM_BASE, 100, 'to-device');
    expectCode(() => f.pool.syncForDevice(b + 90, 11, 'to-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.syncForDevice(b, 10, 'from-device'), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.syncForCpu(b + 4 * SLOT, 1, 'to-device'), 'BOUNCE_BAD_HANDLE');
    f.pool.unmap(b, 100, 'to-device');
    expectCode(() => f.pool.syncForCpu(b, 1, 'to-device'), 'BOUNCE_BAD_HANDLE');
  });

  it('originalOf() maps a bounce byte back to its RAM address', () => {
    const f = fixture({ minAlignMask: 0xfff });
    const b = f.pool.map(RAM_BASE + 0x345, 3000, 'to-device');
    expect(f.pool.originalOf(b)).toBe(RAM_BASE + 0x345);
    expect(f.pool.originalOf(b + 2999)).toBe(RAM_BASE + 0x345 + 2999);
    expect(f.pool.originalOf(b + 3000)).toBe(-1);
    expect(f.pool.originalOf(b - 1)).toBe(-1);
  });
});

describe('BouncePool: statistics', () => {
  it('counts slots, high-water mark, mappings, failures and bytes', () => {
    const f = fixture({ windowSize: IO_TLB_SEGMENT_BYTES });
    const a = f.pool.map(RAM_BASE, 5000, 'to-device'); // 3 slots
    const b = f.pool.map(RAM_BASE, 100, 'from-device'); // 1
    const c = f.pool.map(RAM_BASE, 2048, 'bidirectional'); // 1
    expect(f.pool.stats()).toMatchObject({ totalSlots: 128, usedSlots: 5, highWaterSlots: 5, liveMappings: 3, totalMappings: 3 });
    f.pool.unmap(a, 5000, 'to-device');
    f.pool.unmap(b, 100, 'from-device');
    const d = f.pool.map(RAM_BASE, 1, 'to-device');
    expectCode(() => f.pool.map(RAM_BASE, IO_TLB_SEGMENT_BYTES, 'to-device'), 'BOUNCE_POOL_FULL');
    const s = f.pool.stats();
    expect(s).toEqual({
      totalSlots: 128,
      usedSlots: 2,
      freeSlots: 126,
      highWaterSlots: 5,
      liveMappings: 2,
      totalMappings: 4,
      liveCoherent: 0,
      coherentSlots: 0,
      failures: 1,
      fullFailures: 1,
      bytesToDevice: 5000 + 100 + 2048 + 1,
      bytesFromDevice: 100,
    });
    f.pool.unmap(c, 2048, 'bidirectional');
    f.pool.unmap(d, 1, 'to-device');
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, freeSlots: 128, bytesFromDevice: 2148 });
  });

  it('reset() forgets every mapping without copying', () => {
    const f = fixture();
    const b = f.pool.map(RAM_BASE, 100, 'from-device');
    f.pool.allocCoherent(4096);
    f.pool.reset();
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, liveMappings: 0, liveCoherent: 0, bytesFromDevice: 0 });
    expectCode(() => f.pool.unmap(b, 100, 'from-device'), 'BOUNCE_BAD_HANDLE');
    f.pool.verify();
  });
});

describe('BouncePool: coherent allocations (rings, indirect tables)', () => {
  it('[rfc-swiotlb.pci.driver.2] come from the window, zeroed, aligned to their power-of-two page size', () => {
    const f = fixture();
    f.window.u8.fill(0xff);
    f.pool.map(RAM_BASE, 100, 'to-device');
    const r = f.pool.allocCoherent(3 * 4096 + 10); // 16 KiB after rounding to pages / get_order
    expect(f.window.contains(r, 4 * 4096)).toBe(true);
    expect(r % (16 * 1024)).toBe(0);
    expect(f.pool.coherentSize(r)).toBe(4 * 4096);
    expect(readDev(f, r, 4 * 4096).every((x) => x === 0)).toBe(true);
    const small = f.pool.allocCoherent(16, 64);
    expect(small % 4096).toBe(0);
    const big = f.pool.allocCoherent(100, 0x10000);
    expect(big % 0x10000).toBe(0);
    expect(f.pool.stats()).toMatchObject({ liveCoherent: 3, coherentSlots: 8 + 2 + 2 });
  });

  it('do not collide with streaming mappings, and handles of one kind are refused by the other', () => {
    const f = fixture({ windowSize: 1 << 20 });
    const ranges: Array<[number, number]> = [];
    for (let i = 0; i < 40; i++) {
      if (i % 3 === 0) {
        const size = 1000 + (i % 5) * 997;
        ranges.push([f.pool.allocCoherent(size), Math.ceil(size / 4096) * 4096]);
      } else {
        const size = 100 + (i % 7) * 1500;
        ranges.push([f.pool.map(RAM_BASE + i * 13, size, 'to-device'), size]);
      }
    }
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![0] + ranges[i - 1]![1]);
    for (const [a, n] of ranges) expect(f.window.contains(a, n)).toBe(true);
    const coh = ranges.find(([a]) => f.pool.coherentSize(a) > 0)!;
    const str = ranges.find(([a]) => f.pool.coherentSize(a) < 0)!;
    expectCode(() => f.pool.unmap(coh[0], coh[1], 'to-device'), 'BOUNCE_BAD_HANDLE');
    expectCode(() => f.pool.syncForCpu(coh[0], 1, 'from-device'), 'BOUNCE_BAD_HANDLE');
    expectCode(() => f.pool.freeCoherent(str[0]), 'BOUNCE_BAD_HANDLE');
    f.pool.freeCoherent(coh[0]);
    expectCode(() => f.pool.freeCoherent(coh[0]), 'BOUNCE_BAD_HANDLE');
    f.pool.verify();
  });

  it('refuses more than 256 KiB, bad alignment, and reports a full window', () => {
    const f = fixture({ windowSize: IO_TLB_SEGMENT_BYTES });
    expectCode(() => f.pool.allocCoherent(256 * 1024 + 1), 'BOUNCE_MAP_TOO_LARGE');
    expectCode(() => f.pool.allocCoherent(4096, 3000), 'INVALID_ARGUMENT');
    expectCode(() => f.pool.allocCoherent(0), 'INVALID_ARGUMENT');
    const all = f.pool.allocCoherent(256 * 1024);
    expectCode(() => f.pool.allocCoherent(4096), 'BOUNCE_POOL_FULL');
    f.pool.freeCoherent(all);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, liveCoherent: 0, coherentSlots: 0 });
  });
});
