import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/memory/space.js';
import { DescChain } from '../../src/queue/types.js';
import { readFromChain, writeByteToChain, writeToChain } from '../../src/queue/chain-io.js';

function setup() {
  const a = new ArrayBuffer(0x1000);
  const b = new ArrayBuffer(0x1000);
  const space = new AddressSpace([{ base: 0, size: 0x1000, buffer: a, name: 'a' }, { base: 0x10000, size: 0x800, buffer: b, offset: 0x800, name: 'b' }]);
  const c = new DescChain(8);
  // readable: a[0x10..0x20) (16), b-bus 0x10000..+100 (100); writable: a[0x200..+3), b-bus 0x10100..+200
  const segs: Array<[number, number, number]> = [[0, 0x10, 16], [1, 0x800, 100], [0, 0x200, 3], [1, 0x900, 200]];
  segs.forEach(([r, off, len], i) => {
    c.region[i] = r;
    c.offset[i] = off;
    c.len[i] = len;
  });
  c.count = 4;
  c.readable = 2;
  return { space, c, a: new Uint8Array(a), b: new Uint8Array(b) };
}

describe('chain-io', () => {
  it('[basic.split-vq.vq-desc-table.device.1] gathers only readable segments, with chain offsets', () => {
    const { space, c, a, b } = setup();
    for (let i = 0; i < 16; i++) a[0x10 + i] = i;
    for (let i = 0; i < 100; i++) b[0x800 + i] = 100 + i;
    a[0x200] = 0xee; // writable: never read
    const dst = new Uint8Array(200);
    expect(readFromChain(space, c, dst)).toBe(116);
    expect(Array.from(dst.subarray(0, 18))).toEqual([...Array(16).keys(), 100, 101]);
    expect(dst[115]).toBe(199);
    const d2 = new Uint8Array(10);
    expect(readFromChain(space, c, d2, 2, 5, 14)).toBe(5);
    expect(Array.from(d2)).toEqual([0, 0, 14, 15, 100, 101, 102, 0, 0, 0]);
  });

  it('[basic.split-vq.vq-desc-table.device.1] scatters only into writable segments', () => {
    const { space, c, a, b } = setup();
    const src = new Uint8Array(300).map((_, i) => i & 0xff);
    expect(writeToChain(space, c, src)).toBe(203);
    expect(Array.from(a.subarray(0x200, 0x203))).toEqual([0, 1, 2]);
    expect(b[0x900]).toBe(3);
    expect(b[0x900 + 199]).toBe(202 & 0xff);
    expect(a[0x10]).toBe(0); // readable untouched
    expect(writeToChain(space, c, src, 0, 2, 202)).toBe(1);
    expect(writeByteToChain(space, c, 2, 0x77)).toBe(true);
    expect(a[0x202]).toBe(0x77);
    expect(writeByteToChain(space, c, 203, 1)).toBe(false);
  });
});
