/**
 * eventfd, close, dup, fdSize, UNIX sockets with SCM_RIGHTS.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { native } from '../../src/native/index.js';

function err(fn: () => unknown): { code: string; errno: number | undefined; message: string } {
  try {
    fn();
  } catch (e) {
    if (!isVirtioError(e)) throw e;
    return { code: e.code, errno: e.errno, message: e.message };
  }
  throw new Error('expected a VirtioError');
}

const openFds = (): number => readdirSync('/proc/self/fd').length;
const dir = mkdtempSync(join(tmpdir(), 'vk-sock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(native.available)('eventfd and fd helpers', () => {
  it('eventfd: empty read gives 0, writes accumulate, a read resets', () => {
    const fd = native.eventfdCreate();
    expect(native.eventfdRead(fd)).toBe(0);
    native.eventfdWrite(fd, 3);
    native.eventfdWrite(fd, 4);
    native.eventfdWrite(fd);
    expect(native.eventfdRead(fd)).toBe(8);
    expect(native.eventfdRead(fd)).toBe(0);
    native.close(fd);
  });

  it('eventfd initval and large values', () => {
    const fd = native.eventfdCreate(5);
    native.eventfdWrite(fd, 2 ** 40);
    expect(native.eventfdRead(fd)).toBe(2 ** 40 + 5);
    native.close(fd);
  });

  it('eventfd bad arguments', () => {
    expect(err(() => native.eventfdCreate(-1)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.eventfdCreate(2 ** 32)).code).toBe('INVALID_ARGUMENT');
    const fd = native.eventfdCreate();
    expect(err(() => native.eventfdWrite(fd, -1)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.eventfdWrite(fd, 0.5)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.eventfdRead(-3)).code).toBe('INVALID_ARGUMENT');
    native.close(fd);
    const e = err(() => native.eventfdRead(fd));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.errno).toBe(9);
    expect(err(() => native.eventfdWrite(fd)).errno).toBe(9);
  });

  it('close twice reports EBADF; dup gives a CLOEXEC duplicate above stdio', () => {
    const fd = native.eventfdCreate();
    const d = native.dup(fd);
    expect(d).toBeGreaterThan(2);
    expect(d).not.toBe(fd);
    native.eventfdWrite(d, 7);
    expect(native.eventfdRead(fd)).toBe(7); // same eventfd
    native.close(fd);
    const e = err(() => native.close(fd));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.errno).toBe(9);
    native.close(d);
    expect(err(() => native.dup(fd)).errno).toBe(9);
    expect(err(() => native.close(-1)).code).toBe('INVALID_ARGUMENT');
  });

  it('fdSize of a memfd and a bad fd', () => {
    const fd = native.memfdCreate('sz', 65536);
    expect(native.fdSize(fd)).toBe(65536);
    native.close(fd);
    expect(err(() => native.fdSize(fd)).errno).toBe(9);
  });
});

describe.runIf(native.available)('UNIX sockets', () => {
  it('socketpair: data and fds pass; EAGAIN gives null / -1', () => {
    const [a, b] = native.socketpair();
    const buf = new Uint8Array(64);
    expect(native.recvmsg(b, buf)).toBeNull();
    const efd = native.eventfdCreate();
    const mfd = native.memfdCreate('passed', 4096);
    expect(native.sendmsg(a, new Uint8Array([1, 2, 3]), [efd, mfd])).toBe(3);
    const r = native.recvmsg(b, buf, 4)!;
    expect(r.bytes).toBe(3);
    expect(Array.from(buf.subarray(0, 3))).toEqual([1, 2, 3]);
    expect(r.fds).toHaveLength(2);
    // the received fds are new descriptors for the same objects
    native.eventfdWrite(r.fds[0]!, 9);
    expect(native.eventfdRead(efd)).toBe(9);
    expect(native.fdSize(r.fds[1]!)).toBe(4096);
    // fill the socket until EAGAIN
    const big = new Uint8Array(65536);
    let sent = 0;
    let n: number;
    let rounds = 0;
    while ((n = native.sendmsg(a, big)) >= 0 && rounds++ < 10000) sent += n;
    expect(n).toBe(-1);
    expect(sent).toBeGreaterThan(0);
    for (const fd of [a, b, efd, mfd, ...r.fds]) native.close(fd);
  });

  it('a closed peer gives 0 bytes on recv and EPIPE on send (no SIGPIPE)', () => {
    const [a, b] = native.socketpair();
    native.close(b);
    const e = err(() => native.sendmsg(a, new Uint8Array([1])));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.errno).toBe(32); // EPIPE
    native.close(a);
    const [c, d] = native.socketpair();
    native.close(c);
    expect(native.recvmsg(d, new Uint8Array(4))).toEqual({ bytes: 0, fds: [] });
    native.close(d);
  });

  it('more fds than maxFds: all are closed (no leak) and an error is reported', () => {
    const [a, b] = native.socketpair();
    const sendFds = Array.from({ length: 6 }, () => native.eventfdCreate());
    const before = openFds();
    native.sendmsg(a, new Uint8Array([7]), sendFds);
    const e = err(() => native.recvmsg(b, new Uint8Array(8), 2));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.message).toMatch(/maxFds/);
    expect(openFds()).toBe(before);
    // maxFds = 0 and a message with fds: refused as well, nothing leaks
    native.sendmsg(a, new Uint8Array([8]), sendFds.slice(0, 1));
    expect(err(() => native.recvmsg(b, new Uint8Array(8), 0)).code).toBe('NATIVE_ERROR');
    expect(openFds()).toBe(before);
    for (const fd of [a, b, ...sendFds]) native.close(fd);
  });

  it('sendmsg / recvmsg bad arguments', () => {
    const [a, b] = native.socketpair();
    expect(err(() => native.sendmsg(a, 'x' as unknown as Uint8Array)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.sendmsg(a, new Uint8Array(0), [a])).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.sendmsg(a, new Uint8Array(1), [-1])).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.sendmsg(a, new Uint8Array(1), 5 as unknown as number[])).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.sendmsg(a, new Uint8Array(1), new Array(300).fill(a))).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.sendmsg(a, new Uint8Array(1), [123456])).errno).toBe(9);
    expect(err(() => native.recvmsg(b, new Uint8Array(0))).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.recvmsg(b, new Uint8Array(1), 1000)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.recvmsg(987654, new Uint8Array(1))).errno).toBe(9);
    const efd = native.eventfdCreate();
    expect(err(() => native.sendmsg(efd, new Uint8Array(1))).errno).toBe(88); // ENOTSOCK
    for (const fd of [a, b, efd]) native.close(fd);
  });

  it('listenUnix / connectUnix / accept over a path, replacing a stale socket file', () => {
    const path = join(dir, 's1');
    const l1 = native.listenUnix(path);
    native.close(l1); // leaves a stale socket file behind
    expect(existsSync(path)).toBe(true);
    const l = native.listenUnix(path);
    expect(native.accept(l)).toBe(-1);
    const c = native.connectUnix(path);
    const s = native.accept(l);
    expect(s).toBeGreaterThan(2);
    const mfd = native.memfdCreate('over-path', 8192);
    native.sendmsg(c, new Uint8Array([42]), [mfd]);
    const buf = new Uint8Array(4);
    const r = native.recvmsg(s, buf, 1)!;
    expect(r.bytes).toBe(1);
    expect(buf[0]).toBe(42);
    expect(native.fdSize(r.fds[0]!)).toBe(8192);
    expect(native.recvmsg(c, buf)).toBeNull(); // non-blocking after connect
    for (const fd of [l, c, s, mfd, ...r.fds]) native.close(fd);
  });

  it('listenUnix refuses to replace a file that is not a socket; connectUnix reports errno', () => {
    const path = join(dir, 'plain');
    writeFileSync(path, 'keep me');
    expect(err(() => native.listenUnix(path)).code).toBe('INVALID_ARGUMENT');
    expect(existsSync(path)).toBe(true);
    const e = err(() => native.connectUnix(join(dir, 'nobody')));
    expect(e.code).toBe('NATIVE_ERROR');
    expect(e.errno).toBe(2); // ENOENT
    expect(err(() => native.listenUnix('')).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.listenUnix(join(dir, 'x'.repeat(200)))).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.accept(-1)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.accept(987654)).errno).toBe(9);
  });
});
