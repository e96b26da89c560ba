/**
 * memfd / mmap / munmap / isMapped: argument checks, the 4 GiB limit, exactly-once unmapping.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { native } from '../../src/native/index.js';

function codeOf(fn: () => unknown): { code: string; errno: number | undefined; message: string } {
  try {
    fn();
  } catch (e) {
    if (!isVirtioError(e)) throw e;
    return { code: e.code, errno: e.errno, message: e.message };
  }
  throw new Error('expected a VirtioError');
}

const GiB = 2 ** 30;
const fds: number[] = [];
afterAll(() => {
  for (const fd of fds) native.close(fd);
});
function memfd(size: number): number {
  const fd = native.memfdCreate('vk-test', size);
  fds.push(fd);
  return fd;
}

describe.runIf(native.available)('memfd and mmap', () => {
  it('memfdCreate sizes the fd; fdSize reports it', () => {
    const fd = memfd(12345);
    expect(native.fdSize(fd)).toBe(12345);
    expect(native.pageSize).toBeGreaterThanOrEqual(4096);
  });

  it('memfdCreate refuses bad names and sizes', () => {
    expect(codeOf(() => native.memfdCreate(42 as unknown as string, 10)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.memfdCreate('x', -1)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.memfdCreate('x', 1.5)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.memfdCreate('x'.repeat(300), 1)).code).toBe('INVALID_ARGUMENT');
  });

  it('two mappings of one memfd see each other', () => {
    const fd = memfd(8192);
    const a = native.mmap(fd, 0, 8192, true);
    const b = native.mmap(fd, 4096, 4096, true);
    expect(a.byteLength).toBe(8192);
    new Uint8Array(a)[4096 + 7] = 0xab;
    expect(new Uint8Array(b)[7]).toBe(0xab);
    new DataView(b).setUint32(100, 0xdeadbeef, true);
    expect(new DataView(a).getUint32(4096 + 100, true)).toBe(0xdeadbeef);
    native.munmap(a);
    native.munmap(b);
  });

  it('a read-only (private) mapping sees the file but its stores never reach it', () => {
    const fd = memfd(4096);
    const rw = native.mmap(fd, 0, 4096, true);
    new Uint8Array(rw)[0] = 1;
    const ro = native.mmap(fd, 0, 4096, false);
    expect(new Uint8Array(ro)[0]).toBe(1);
    new Uint8Array(ro)[1] = 99; // must not crash the process
    expect(new Uint8Array(rw)[1]).toBe(0);
    native.munmap(ro);
    native.munmap(rw);
  });

  it('refuses bad fds', () => {
    expect(codeOf(() => native.mmap(-1, 0, 4096, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(1.5, 0, 4096, true)).code).toBe('INVALID_ARGUMENT');
    const e = codeOf(() => native.mmap(987654, 0, 4096, true));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.errno).toBe(9); // EBADF
    const [s0, s1] = native.socketpair();
    expect(codeOf(() => native.mmap(s0, 0, 4096, true)).code).toBe('INVALID_ARGUMENT');
    native.close(s0);
    native.close(s1);
  });

  it('refuses zero, negative, fractional and huge lengths', () => {
    const fd = memfd(4096);
    expect(codeOf(() => native.mmap(fd, 0, 0, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(fd, 0, -4096, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(fd, 0, 100.5, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(fd, 0, 2 ** 60, true)).code).toBe('INVALID_ARGUMENT');
  });

  it('refuses offsets that are negative or not page aligned', () => {
    const fd = memfd(3 * 4096);
    expect(codeOf(() => native.mmap(fd, -4096, 4096, true)).code).toBe('INVALID_ARGUMENT');
    const e = codeOf(() => native.mmap(fd, 100, 4096, true));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/page size/);
  });

  it('refuses ranges beyond the end of the fd (which would fault)', () => {
    const fd = memfd(8192);
    expect(codeOf(() => native.mmap(fd, 0, 8193, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(fd, 8192, 1, true)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.mmap(fd, 16384, 4096, true)).code).toBe('INVALID_ARGUMENT');
    native.munmap(native.mmap(fd, 4096, 4096, true));
  });

  it('refuses a mapping above 4 GiB before creating it (no crash) and maps exactly 4 GiB', () => {
    const fd = memfd(5 * GiB); // sparse: no memory is used
    const e = codeOf(() => native.mmap(fd, 0, 4 * GiB + 4096, true));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/4 GiB/);
    const big = native.mmap(fd, 0, 4 * GiB, true);
    expect(big.byteLength).toBe(4 * GiB);
    const win = native.mmap(fd, 4 * GiB, GiB, true); // a window at offset 4 GiB
    new Uint8Array(win)[5] = 42;
    expect(new Uint8Array(big).length).toBe(4 * GiB);
    native.munmap(big);
    native.munmap(win);
  });

  it('refuses a writable mapping of a read-only fd with errno', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vk-'));
    const path = join(dir, 'f');
    writeFileSync(path, Buffer.alloc(4096));
    const fd = openSync(path, 'r');
    try {
      const e = codeOf(() => native.mmap(fd, 0, 4096, true));
      expect(e.code).toBe('NATIVE_ERROR');
      expect(e.errno).toBe(13); // EACCES
      const ro = native.mmap(fd, 0, 4096, false);
      expect(ro.byteLength).toBe(4096);
      native.munmap(ro);
    } finally {
      closeSync(fd);
    }
  });

  it('munmap detaches the buffer: views read length 0, copies say CLOSED, a second munmap is a no-op', () => {
    const fd = memfd(4096);
    const ab = native.mmap(fd, 0, 4096, true);
    const u8 = new Uint8Array(ab);
    u8[0] = 1;
    expect(native.isMapped(ab)).toBe(true);
    native.munmap(ab);
    expect(native.isMapped(ab)).toBe(false);
    expect(ab.byteLength).toBe(0);
    expect(u8.length).toBe(0);
    expect(u8[0]).toBeUndefined();
    native.munmap(ab); // no-op
    const e = codeOf(() => native.copy(ab, 0, new ArrayBuffer(8), 0, 4));
    expect(e.code).toBe('CLOSED');
    const e2 = codeOf(() => native.copyBatch([new ArrayBuffer(8), ab], new Float64Array([0, 0, 1, 0, 4]), 1));
    expect(e2.code).toBe('CLOSED');
  });

  it('copyBatch notices a buffer unmapped or detached by JS that ran while it resolved bufs', () => {
    const fd = memfd(4096);
    const mapped = native.mmap(fd, 0, 4096, true);
    const dst = new ArrayBuffer(16);
    const bufs: ArrayBuffer[] = [dst, mapped];
    Object.defineProperty(bufs, 2, {
      get() {
        native.munmap(mapped); // runs inside copyBatch, after bufs[1] was resolved
        return new ArrayBuffer(8);
      },
    });
    const ops = new Float64Array([0, 0, 1, 0, 4, 0, 4, 2, 0, 4]);
    expect(codeOf(() => native.copyBatch(bufs, ops, 2)).code).toBe('CLOSED');
    expect(new Uint8Array(dst).every((b) => b === 0)).toBe(true);

    const victim = new ArrayBuffer(64);
    const bufs2: ArrayBuffer[] = [dst, victim];
    Object.defineProperty(bufs2, 2, {
      get() {
        structuredClone(victim, { transfer: [victim] }); // detaches victim
        return new ArrayBuffer(8);
      },
    });
    expect(codeOf(() => native.copyBatch(bufs2, ops, 2)).code).toBe('CLOSED');
  });

  it('munmap refuses buffers it did not map; isMapped says false for them', () => {
    const plain = new ArrayBuffer(16);
    expect(native.isMapped(plain)).toBe(false);
    expect(native.isMapped(new SharedArrayBuffer(8) as unknown as ArrayBuffer)).toBe(false);
    expect(native.isMapped(null as unknown as ArrayBuffer)).toBe(false);
    expect(codeOf(() => native.munmap(plain)).code).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => native.munmap({} as ArrayBuffer)).code).toBe('INVALID_ARGUMENT');
  });

  it('memfds are sealed against shrinking (a shrink could fault live mappings)', () => {
    const fd = memfd(8192);
    const ab = native.mmap(fd, 0, 8192, true);
    const path = `/proc/self/fd/${fd}`;
    const wfd = openSync(path, 'r+');
    try {
      expect(() => writeFileSync(wfd, Buffer.alloc(10))).not.toThrow(); // writing is allowed
      let err: unknown;
      try {
        ftruncateSync(wfd, 100); // the reopened fd shares the sealed inode: EPERM
      } catch (e) {
        err = e;
      }
      expect((err as NodeJS.ErrnoException | undefined)?.code).toBe('EPERM');
    } finally {
      closeSync(wfd);
    }
    expect(native.fdSize(fd)).toBe(8192);
    native.munmap(ab);
  });

  it('the garbage collector unmaps dropped mappings once, never a newer mapping at a reused address', () => {
    const script = fileURLToPath(new URL('./fixtures/gc-mappings.cjs', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', script, native.addonPath!], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { before: number; during: number; after: number; liveOk: number; liveCount: number };
    expect(out.during).toBeGreaterThanOrEqual(out.before + 200);
    // the 200 dropped mappings are gone (a few may survive a GC round); the 50 live ones remain
    expect(out.after).toBeGreaterThanOrEqual(out.before + out.liveCount);
    expect(out.after).toBeLessThan(out.before + out.liveCount + 20);
    expect(out.liveOk).toBe(out.liveCount);
  });
});
