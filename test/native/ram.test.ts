/**
 * Guest RAM (src/memory/ram.ts): memfd / shared / plain backings, 4 GiB windows, close once,
 * mapping a region from an fd.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { createGuestRam, mapRegionFromFd, MAX_WINDOW } from '../../src/memory/ram.js';
import { loadNative, native } from '../../src/native/index.js';

const GiB = 2 ** 30;
function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!isVirtioError(e)) throw e;
    return e.code;
  }
  return 'no error';
}

describe('createGuestRam', () => {
  it.each(['shared', 'plain'] as const)('%s backing: regions readable and writable through the space', (backing) => {
    const ram = createGuestRam(
      [
        { base: 0, size: 64 * 1024, name: 'low' },
        { base: 0x100000, size: 4096 },
      ],
      { backing },
    );
    expect(ram.backing).toBe(backing);
    expect(ram.regions.map((r) => r.fd)).toEqual([undefined, undefined]);
    expect(ram.regions[1]!.name).toBe('ram1');
    ram.space.writeU32(0x100010, 0x12345678);
    expect(ram.space.readU32(0x100010)).toBe(0x12345678);
    expect(ram.space.check(0x10000, 1, false)).toBe(false); // hole between the regions
    const buf = ram.regions[0]!.windows[0]!.buffer;
    expect(backing === 'shared' ? buf instanceof SharedArrayBuffer : buf instanceof ArrayBuffer).toBe(true);
    ram.close();
    ram.close();
    expect(ram.closed).toBe(true);
  });

  it('auto picks memfd with the addon and shared without it', () => {
    const fb = loadNative({ forceFallback: true });
    const r1 = createGuestRam([{ base: 0, size: 4096 }], { native: fb });
    expect(r1.backing).toBe('shared');
    r1.close();
    expect(code(() => createGuestRam([{ base: 0, size: 4096 }], { native: fb, backing: 'memfd' }))).toBe('NATIVE_UNAVAILABLE');
    if (native.available) {
      const r2 = createGuestRam([{ base: 0, size: 4096 }]);
      expect(r2.backing).toBe('memfd');
      r2.close();
    }
  });

  it('refuses bad layouts and overlapping regions', () => {
    expect(code(() => createGuestRam([], { backing: 'plain' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => createGuestRam([{ base: -1, size: 10 }], { backing: 'plain' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => createGuestRam([{ base: 0, size: 0 }], { backing: 'plain' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => createGuestRam([{ base: 0, size: 1.5 }], { backing: 'plain' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => createGuestRam([{ base: 0, size: 10 }], { backing: 'bogus' as 'plain' }))).toBe('INVALID_ARGUMENT');
    expect(
      code(() =>
        createGuestRam(
          [
            { base: 0, size: 8192 },
            { base: 4096, size: 8192 },
          ],
          { backing: 'plain' },
        ),
      ),
    ).toBe('REGION_OVERLAP');
  });

  it.runIf(native.available)('memfd backing: one fd per region, shareable by mapping it again; close unmaps and closes once', () => {
    const before = countFds();
    const ram = createGuestRam(
      [
        { base: 0x1000, size: 8192, name: 'a' },
        { base: 0x100000, size: 4096, name: 'b' },
      ],
      { backing: 'memfd' },
    );
    const fdA = ram.regions[0]!.fd!;
    expect(native.fdSize(fdA)).toBe(8192);
    const win = ram.regions[0]!.windows[0]!;
    expect(win.fd).toBe(fdA);
    expect(win.fdOffset).toBe(0);
    ram.space.writeU8(0x1000 + 5000, 0x77);
    const other = native.mmap(fdA, 4096, 4096, true); // what another process would do with the fd
    expect(new Uint8Array(other)[5000 - 4096]).toBe(0x77);
    native.munmap(other);
    expect(native.isMapped(win.buffer as ArrayBuffer)).toBe(true);
    ram.close();
    expect(native.isMapped(win.buffer as ArrayBuffer)).toBe(false);
    expect(win.buffer.byteLength).toBe(0);
    expect(code(() => native.fdSize(fdA))).toBe('NATIVE_ERROR'); // closed
    ram.close(); // second close: nothing happens (no EBADF)
    expect(countFds()).toBe(before);
  });

  it.runIf(native.available)('a region above 4 GiB is one memfd split into ≤ 4 GiB windows at offsets', () => {
    const size = 4 * GiB + 2 * 65536;
    const base = 0x1_0000_0000;
    const ram = createGuestRam([{ base, size, name: 'high' }], { backing: 'memfd' });
    const r = ram.regions[0]!;
    expect(r.windows).toHaveLength(2);
    expect(r.windows[0]!.size).toBe(MAX_WINDOW);
    expect(r.windows[1]!.size).toBe(2 * 65536);
    expect(r.windows[1]!.base).toBe(base + MAX_WINDOW);
    expect(r.windows[1]!.fdOffset).toBe(MAX_WINDOW);
    expect(r.windows[1]!.fd).toBe(r.fd);
    expect(native.fdSize(r.fd!)).toBe(size);
    ram.space.writeU32(base + MAX_WINDOW + 8, 0xcafef00d);
    ram.space.writeU32(base + MAX_WINDOW - 4, 0x01020304);
    const check = native.mmap(r.fd!, MAX_WINDOW - 65536, 2 * 65536, false);
    const dv = new DataView(check);
    expect(dv.getUint32(65536 + 8, true)).toBe(0xcafef00d);
    expect(dv.getUint32(65536 - 4, true)).toBe(0x01020304);
    native.munmap(check);
    // an access straddling the two windows is not resolvable in one piece
    expect(ram.space.check(base + MAX_WINDOW - 2, 4, false)).toBe(false);
    ram.close();
  });
});

describe.runIf(native.available)('mapRegionFromFd', () => {
  it('maps an fd range at an unaligned offset and exposes it at a guest address', () => {
    const fd = native.memfdCreate('peer', 3 * 4096);
    const peer = native.mmap(fd, 0, 3 * 4096, true);
    const pu8 = new Uint8Array(peer);
    for (let i = 0; i < pu8.length; i++) pu8[i] = i & 0xff;
    const m = mapRegionFromFd(fd, 100, 8000, 0x4000_0000, { name: 'peer-ram' });
    expect(m.regions).toHaveLength(1);
    const r = m.regions[0]!;
    expect(r.base).toBe(0x4000_0000);
    expect(r.size).toBe(8000);
    expect(r.fdOffset).toBe(0); // the buffer starts at the page boundary below 100
    expect(r.offset).toBe(100);
    expect(r.u8[r.offset]).toBe(100);
    r.u8[r.offset + 1] = 0xee; // visible to the peer's mapping
    expect(pu8[101]).toBe(0xee);
    m.close();
    m.close();
    expect(m.closed).toBe(true);
    expect(r.buffer.byteLength).toBe(0);
    expect(native.fdSize(fd)).toBe(3 * 4096); // not owned: still open
    native.munmap(peer);
    native.close(fd);
  });

  it('readOnly regions refuse writes through an address space; ownsFd closes the fd', () => {
    const fd = native.memfdCreate('ro', 4096);
    const m = mapRegionFromFd(fd, 0, 4096, 0, { readOnly: true, ownsFd: true });
    expect(m.regions[0]!.readOnly).toBe(true);
    m.close();
    expect(code(() => native.fdSize(fd))).toBe('NATIVE_ERROR');
  });

  it('splits more than 4 GiB into windows; refuses ranges beyond the fd', () => {
    const fd = native.memfdCreate('big', 5 * GiB);
    const m = mapRegionFromFd(fd, 4096 + 12, 4 * GiB, 0);
    expect(m.regions).toHaveLength(2);
    expect(m.regions[0]!.size + m.regions[1]!.size).toBe(4 * GiB);
    const second = 4096 + 12 + m.regions[0]!.size; // fd offset of the second window's first byte
    expect(m.regions[1]!.fdOffset + m.regions[1]!.offset).toBe(second);
    expect(m.regions[1]!.fdOffset % 4096).toBe(0);
    expect(m.regions[0]!.fdOffset).toBe(4096);
    expect(m.regions[0]!.offset).toBe(12);
    m.close();
    expect(code(() => mapRegionFromFd(fd, 5 * GiB - 10, 20, 0))).toBe('INVALID_ARGUMENT');
    expect(code(() => mapRegionFromFd(fd, -1, 20, 0))).toBe('INVALID_ARGUMENT');
    expect(code(() => mapRegionFromFd(-1, 0, 20, 0))).toBe('INVALID_ARGUMENT');
    expect(code(() => mapRegionFromFd(fd, 0, 0, 0))).toBe('INVALID_ARGUMENT');
    native.close(fd);
  });
});

function countFds(): number {
  return readdirSync('/proc/self/fd').length;
}
