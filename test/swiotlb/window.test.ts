import { describe, expect, it } from 'vitest';
import { SwiotlbWindow } from '../../src/swiotlb/window.js';
import { MAX_WINDOW_SIZE, MIN_WINDOW_SIZE } from '../../src/swiotlb/constants.js';
import { isVirtioError } from '../../src/errors.js';
import { expectCode, fixture, readDev, WINDOW_BASE } from './helpers.js';

describe('SwiotlbWindow', () => {
  it('rejects sizes that are not whole pages or outside 4 KiB … 0xFFFFF000, saying what to use', () => {
    for (const size of [0, 100, MIN_WINDOW_SIZE - 4096 || 2048, 4096 + 2048, MAX_WINDOW_SIZE + 4096]) {
      const e = expectCode(() => new SwiotlbWindow(new ArrayBuffer(8192), { size }), 'INVALID_ARGUMENT');
      expect(e.message).toMatch(/multiple of 4096/);
    }
    // Default size = the whole buffer, which must itself be a page multiple.
    expectCode(() => new SwiotlbWindow(new ArrayBuffer(5000)), 'INVALID_ARGUMENT');
    expect(new SwiotlbWindow(new ArrayBuffer(8192)).size).toBe(8192);
  });

  it('rejects a size or offset beyond the buffer and a misaligned base', () => {
    expectCode(() => new SwiotlbWindow(new ArrayBuffer(8192), { size: 16384 }), 'INVALID_ARGUMENT');
    expectCode(() => new SwiotlbWindow(new ArrayBuffer(8192), { offset: 4096, size: 8192 }), 'INVALID_ARGUMENT');
    expectCode(() => new SwiotlbWindow(new ArrayBuffer(8192), { base: 0x1800 }), 'INVALID_ARGUMENT');
    const w = new SwiotlbWindow(new ArrayBuffer(16384), { offset: 4096, size: 8192, base: 0x10000 });
    expect(w.bufferOffset).toBe(4096);
    expect(w.end).toBe(0x12000);
  });

  it('contains() covers exactly [base, base + size)', () => {
    const w = new SwiotlbWindow(new ArrayBuffer(8192), { base: 0x10000 });
    expect(w.contains(0x10000, 8192)).toBe(true);
    expect(w.contains(0x10000, 8193)).toBe(false);
    expect(w.contains(0xffff, 1)).toBe(false);
    expect(w.contains(0x11fff, 1)).toBe(true);
    expect(w.contains(0x12000, 1)).toBe(false);
    expect(w.contains(0x12000, 0)).toBe(true);
  });

  it('[rfc-swiotlb.feature.driver.1] asAddressSpace() holds only the window (the device sees nothing else)', () => {
    const f = fixture();
    const space = f.window.asAddressSpace();
    expect(space).toBe(f.window.asAddressSpace());
    expect(space.regions.length).toBe(1);
    expect(space.totalSize).toBe(f.window.size);
    expect(space.check(WINDOW_BASE, f.window.size, true)).toBe(true);
    expect(space.check(WINDOW_BASE - 1, 1, false)).toBe(false);
    expect(space.check(WINDOW_BASE + f.window.size, 1, false)).toBe(false);
    // Guest RAM is not reachable through the device's space.
    expect(space.check(0x4000_0000, 1, false)).toBe(false);
  });

  it('moveTo() follows BAR reprogramming: the address space and new bounce addresses move with it', () => {
    const f = fixture();
    const seen: Array<[number, number]> = [];
    const off = f.window.onMove((n, o) => seen.push([n, o]));
    const before = f.pool.map(0x4000_0000, 64, 'to-device');
    expect(f.window.contains(before, 64)).toBe(true);
    f.pool.unmap(before, 64, 'to-device');

    const NEW = 0xd000_0000;
    f.window.moveTo(NEW);
    expect(seen).toEqual([[NEW, WINDOW_BASE]]);
    expect(f.window.base).toBe(NEW);
    expect(f.dev.check(WINDOW_BASE, 1, false)).toBe(false);
    expect(f.dev.check(NEW, f.window.size, true)).toBe(true);

    f.ram.write(0x4000_0000, Uint8Array.of(9, 8, 7, 6));
    const after = f.pool.map(0x4000_0000, 4, 'to-device');
    expect(after).toBeGreaterThanOrEqual(NEW);
    expect(f.window.contains(after, 4)).toBe(true);
    expect(Array.from(readDev(f, after, 4))).toEqual([9, 8, 7, 6]);
    // The old handle value is no longer inside the window.
    expectCode(() => f.pool.unmap(after - NEW + WINDOW_BASE, 4, 'to-device'), 'BOUNCE_BAD_HANDLE');
    f.pool.unmap(after, 4, 'to-device');

    off();
    f.window.moveTo(WINDOW_BASE);
    expect(seen.length).toBe(1);
    expectCode(() => f.window.moveTo(0x1234), 'INVALID_ARGUMENT');
    expect(f.window.base).toBe(WINDOW_BASE);
  });

  it('allocate() with shared and array backings gives zeroed memory of the requested size', async () => {
    for (const backing of ['shared', 'array'] as const) {
      const w = await SwiotlbWindow.allocate(64 * 1024, { backing, base: 0x8000_0000 });
      expect(w.size).toBe(64 * 1024);
      expect(w.buffer.byteLength).toBe(64 * 1024);
      expect(backing === 'shared' ? w.buffer instanceof SharedArrayBuffer : w.buffer instanceof ArrayBuffer).toBe(true);
      expect(w.u8.every((b) => b === 0)).toBe(true);
      w.close();
    }
    await expect(SwiotlbWindow.allocate(1000)).rejects.toSatisfy((e: unknown) => isVirtioError(e, 'INVALID_ARGUMENT'));
  });

  it('allocate() auto falls back to a SharedArrayBuffer without the addon; memfd either works or says NATIVE_UNAVAILABLE', async () => {
    const w = await SwiotlbWindow.allocate(64 * 1024);
    expect(w.size).toBe(64 * 1024);
    if (w.fd === undefined) expect(w.buffer instanceof SharedArrayBuffer).toBe(true);
    w.close();
    w.close(); // idempotent
    let m: SwiotlbWindow | undefined;
    try {
      m = await SwiotlbWindow.allocate(64 * 1024, { backing: 'memfd' });
    } catch (e) {
      expect(isVirtioError(e, 'NATIVE_UNAVAILABLE')).toBe(true);
    }
    if (m !== undefined) {
      expect(typeof m.fd).toBe('number');
      m.u8[100] = 7;
      expect(m.u8[100]).toBe(7);
      m.close();
    }
  });
});
