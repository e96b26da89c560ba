/** Shared fixtures for the SWIOTLB tests. */
import { AddressSpace } from '../../src/memory/space.js';
import { BouncePool, type BouncePoolOptions } from '../../src/swiotlb/pool.js';
import { SwiotlbWindow } from '../../src/swiotlb/window.js';
import { isVirtioError, type VirtioErrorCode } from '../../src/errors.js';

export const RAM_BASE = 0x4000_0000;
export const WINDOW_BASE = 0xfe00_0000;

export interface Fixture {
  window: SwiotlbWindow;
  ram: AddressSpace;
  ramU8: Uint8Array;
  pool: BouncePool;
  /** The device's view: only the window. */
  dev: AddressSpace;
}

export function fixture(opts: { windowSize?: number; ramSize?: number; base?: number; minAlignMask?: number; pool?: Partial<BouncePoolOptions> } = {}): Fixture {
  const windowSize = opts.windowSize ?? 512 * 1024;
  const ramSize = opts.ramSize ?? 2 * 1024 * 1024;
  const window = new SwiotlbWindow(new SharedArrayBuffer(windowSize), { base: opts.base ?? WINDOW_BASE, name: 'test-swiotlb' });
  const ramBuf = new ArrayBuffer(ramSize);
  const ram = new AddressSpace([{ base: RAM_BASE, size: ramSize, buffer: ramBuf, name: 'ram' }], 'guest-ram');
  const pool = new BouncePool({ window, ram, minAlignMask: opts.minAlignMask ?? 0, ...opts.pool });
  return { window, ram, ramU8: new Uint8Array(ramBuf), pool, dev: window.asAddressSpace() };
}

/** Fill RAM [addr, addr+len) with a pattern derived from `seed`. */
export function fillRam(f: Fixture, addr: number, len: number, seed: number): Uint8Array {
  const data = new Uint8Array(len);
  for (let i = 0; i < len; i++) data[i] = (seed * 31 + i * 7 + (i >> 8)) & 0xff;
  f.ram.write(addr, data);
  return data;
}

export function readDev(f: Fixture, addr: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  f.dev.read(addr, out);
  return out;
}

export function readRam(f: Fixture, addr: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  f.ram.read(addr, out);
  return out;
}

/** Run `fn`, expect a VirtioError with `code`; returns it. */
export function expectCode(fn: () => unknown, code: VirtioErrorCode): Error {
  try {
    fn();
  } catch (e) {
    if (isVirtioError(e, code)) return e;
    throw new Error(`expected VirtioError ${code}, got ${String(e)}`);
  }
  throw new Error(`expected VirtioError ${code}, nothing thrown`);
}

/** Fast byte comparison (vitest's deep equality is slow on large typed arrays); names the first difference. */
export function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (actual.length === expected.length && Buffer.compare(actual, expected) === 0) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  throw new Error(`bytes differ at ${i}: got ${actual[i]} want ${expected[i]} (lengths ${actual.length} / ${expected.length})`);
}
