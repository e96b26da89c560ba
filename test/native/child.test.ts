/**
 * fd passing across processes: a memfd and an eventfd go to a child over a socketpair (SCM_RIGHTS);
 * the child maps the memfd, writes a pattern, signals the eventfd and sends a memfd back.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native, POLL_READABLE } from '../../src/native/index.js';

describe.runIf(native.available)('fd passing to a child process', () => {
  it('the child maps our memfd, writes it, signals our eventfd and passes a memfd back', async () => {
    const size = 64 * 1024;
    const memfd = native.memfdCreate('to-child', size);
    const ram = native.mmap(memfd, 0, size, true);
    const efd = native.eventfdCreate();
    const [mine, theirs] = native.socketpair();
    const script = fileURLToPath(new URL('./fixtures/child-map.cjs', import.meta.url));
    const child = spawn(process.execPath, [script, native.addonPath!], { stdio: ['ignore', 'inherit', 'pipe', theirs] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    native.close(theirs);

    const signalled = new Promise<void>((resolve) => {
      const h = native.poll(efd, POLL_READABLE, () => {
        if (native.eventfdRead(efd) === 0) return;
        h.stop();
        resolve();
      });
    });
    expect(native.sendmsg(mine, new Uint8Array([0x33]), [memfd, efd])).toBe(1);
    await Promise.race([signalled, exited.then((c) => Promise.reject(new Error(`child exited early (${c}): ${stderr}`)))]);

    const u8 = new Uint8Array(ram);
    let bad = -1;
    for (let i = 0; i < size; i++) {
      if (u8[i] !== ((i * 7 + 0x33) & 0xff)) {
        bad = i;
        break;
      }
    }
    expect(bad).toBe(-1);

    const buf = new Uint8Array(4);
    const back = native.recvmsg(mine, buf, 1);
    expect(back?.bytes).toBe(1);
    expect(back?.fds).toHaveLength(1);
    const theirFd = back!.fds[0]!;
    const m = native.mmap(theirFd, 0, 4096, false);
    expect(Buffer.from(m, 0, 10).toString()).toBe('from-child');

    expect(await exited).toBe(0);
    native.munmap(m);
    native.munmap(ram);
    for (const fd of [memfd, efd, mine, theirFd]) native.close(fd);
  });
});
