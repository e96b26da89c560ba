/**
 * poll(): libuv readiness watches on the env's own loop — main thread, workers, lifetime.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { native, POLL_READABLE, POLL_WRITABLE } from '../../src/native/index.js';

function err(fn: () => unknown): { code: string; errno: number | undefined } {
  try {
    fn();
  } catch (e) {
    if (!isVirtioError(e)) throw e;
    return { code: e.code, errno: e.errno };
  }
  throw new Error('expected a VirtioError');
}

const lifetimeScript = fileURLToPath(new URL('./fixtures/poll-lifetime.cjs', import.meta.url));
function runLifetime(mode: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [lifetimeScript, native.addonPath!, mode], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.runIf(native.available)('poll', () => {
  it('reports a readable eventfd on the main thread, then stops', async () => {
    const fd = native.eventfdCreate();
    const seen: Array<[number, number, number]> = [];
    let resolveFirst!: () => void;
    const first = new Promise<void>((r) => (resolveFirst = r));
    const h = native.poll(fd, POLL_READABLE, (events, errno) => {
      seen.push([events, errno, native.eventfdRead(fd)]);
      resolveFirst();
    });
    expect(h.active).toBe(true);
    expect(h.fd).toBe(fd);
    native.eventfdWrite(fd, 5);
    await first;
    expect(seen[0]).toEqual([POLL_READABLE, 0, 5]);
    h.stop();
    h.stop(); // idempotent
    expect(h.active).toBe(false);
    native.eventfdWrite(fd, 1);
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).toHaveLength(1);
    native.close(fd);
  });

  it('reports a writable socket', async () => {
    const [a, b] = native.socketpair();
    const events = await new Promise<number>((resolve) => {
      const h = native.poll(a, POLL_WRITABLE, (ev) => {
        h.stop();
        resolve(ev);
      });
    });
    expect(events & POLL_WRITABLE).toBe(POLL_WRITABLE);
    native.close(a);
    native.close(b);
  });

  it('refuses a second watch on one fd; close(fd) stops the watch', () => {
    const fd = native.eventfdCreate();
    const h = native.poll(fd, POLL_READABLE, () => {});
    expect(err(() => native.poll(fd, POLL_READABLE, () => {})).code).toBe('INVALID_ARGUMENT');
    native.close(fd);
    expect(h.active).toBe(false);
    h.stop();
  });

  it('bad arguments', () => {
    const fd = native.eventfdCreate();
    expect(err(() => native.poll(fd, 0, () => {})).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.poll(fd, 8, () => {})).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.poll(fd, 1, 'cb' as unknown as () => void)).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.poll(-1, 1, () => {})).code).toBe('INVALID_ARGUMENT');
    expect(err(() => native.poll(987654, 1, () => {})).code).toBe('NATIVE_ERROR');
    const file = openSync(fileURLToPath(import.meta.url), 'r');
    expect(err(() => native.poll(file, 1, () => {})).code).toBe('NATIVE_ERROR'); // regular files cannot be polled
    closeSync(file);
    native.close(fd);
  });

  it('is woken by an eventfd write from a worker_thread', async () => {
    const fd = native.eventfdCreate();
    const got = new Promise<number>((resolve) => {
      const h = native.poll(fd, POLL_READABLE, () => {
        const v = native.eventfdRead(fd);
        if (v === 0) return;
        h.stop();
        resolve(v);
      });
    });
    const w = new Worker(
      `const { workerData } = require('node:worker_threads');
       const a = require(workerData.addonPath);
       a.init((c, m) => new Error(m), () => undefined);
       a.eventfdWrite(workerData.fd, 41); a.eventfdWrite(workerData.fd, 1);`,
      { eval: true, workerData: { addonPath: native.addonPath, fd } },
    );
    const exit = new Promise<number>((r) => w.on('exit', r));
    expect(await got).toBeGreaterThanOrEqual(41);
    expect(await exit).toBe(0);
    native.close(fd);
  });

  it('works inside a worker_thread (its own loop); the worker exits once it stops the watch', async () => {
    const fd = native.eventfdCreate();
    const w = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const a = require(workerData.addonPath);
       a.init((c, m) => new Error(m), () => undefined);
       const h = a.poll(workerData.fd, 1, (ev, errno) => {
         const v = a.eventfdRead(workerData.fd);
         if (v === 0) return;
         h.stop();
         parentPort.postMessage({ ev, errno, v });
       });
       parentPort.postMessage('ready');`,
      { eval: true, workerData: { addonPath: native.addonPath, fd } },
    );
    const messages: unknown[] = [];
    const exited = new Promise<number>((resolve) => w.on('exit', resolve));
    await new Promise<void>((resolve) =>
      w.on('message', (m) => {
        messages.push(m);
        if (m === 'ready') native.eventfdWrite(fd, 3);
        else resolve();
      }),
    );
    expect(messages[1]).toEqual({ ev: POLL_READABLE, errno: 0, v: 3 });
    expect(await exited).toBe(0); // nothing left on the worker's loop
    native.close(fd);
  });

  it('a stopped watch does not keep the process alive', () => {
    const r = runLifetime('stop');
    expect(r.status, r.stderr).toBe(0);
  });

  it('an unref()ed watch does not keep the process alive', () => {
    const r = runLifetime('unref');
    expect(r.status, r.stderr).toBe(0);
  });

  it('an exception in a callback reaches process "uncaughtException"', () => {
    const r = runLifetime('throw');
    expect(r.stdout).toBe('caught:boom');
    expect(r.status, r.stderr).toBe(0);
  });

  it('workers that exit or are terminated with active watches tear down cleanly', () => {
    const r = runLifetime('worker-exit');
    expect(r.stderr).not.toMatch(/uv_loop_close|Assertion|Aborted/);
    expect(r.stdout).toBe('workers-done');
    expect(r.status).toBe(0);
  });
});
