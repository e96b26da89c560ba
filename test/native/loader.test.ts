/**
 * Loader: lookup order, VIRTIOKIT_ADDON / VIRTIOKIT_NO_NATIVE, and what the fallback refuses.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import { DEFAULT_ADDON_PATHS, loadNative, native } from '../../src/native/index.js';
import type { NativeApi } from '../../src/native/types.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!isVirtioError(e)) throw e;
    return e.code;
  }
  return 'no error';
}

describe('native loader', () => {
  it('VIRTIOKIT_NO_NATIVE selects the fallback', () => {
    const api = loadNative({ env: { VIRTIOKIT_NO_NATIVE: '1' } });
    expect(api.available).toBe(false);
    expect(api.unavailableReason).toMatch(/VIRTIOKIT_NO_NATIVE/);
    expect(api.addonPath).toBeUndefined();
  });

  it('a VIRTIOKIT_ADDON path that does not exist gives the fallback with the path in the reason', () => {
    const api = loadNative({ env: { VIRTIOKIT_ADDON: '/nonexistent/virtiokit.node' } });
    expect(api.available).toBe(false);
    expect(api.unavailableReason).toContain('/nonexistent/virtiokit.node');
  });

  it('a file that is not an addon gives the fallback with the load error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vk-addon-'));
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF file');
    const api = loadNative({ addonPath: bogus });
    rmSync(dir, { recursive: true, force: true });
    expect(api.available).toBe(false);
    expect(api.unavailableReason).toMatch(/failed to load/);
  });

  it.runIf(native.available)('VIRTIOKIT_ADDON / addonPath load that file; loading twice returns the same object', () => {
    const path = native.addonPath!;
    const a = loadNative({ env: { VIRTIOKIT_ADDON: path } });
    expect(a.available).toBe(true);
    expect(a.addonPath).toBe(path);
    expect(loadNative({ addonPath: path })).toBe(a);
    expect(DEFAULT_ADDON_PATHS).toContain(path);
  });

  it.runIf(native.available)('the cmake-js build (build-cmake/) loads too when present', () => {
    const cm = DEFAULT_ADDON_PATHS.find((p) => p.includes('build-cmake'))!;
    const api = loadNative({ addonPath: cm });
    if (!api.available) {
      expect(api.unavailableReason).toMatch(/does not exist/); // not built: nothing to check
      return;
    }
    const a = new ArrayBuffer(4);
    api.copy(a, 0, new Uint8Array([1, 2, 3, 4]).buffer, 0, 4);
    expect(Array.from(new Uint8Array(a))).toEqual([1, 2, 3, 4]);
    expect(code(() => api.mmap(-1, 0, 1, true))).toBe('INVALID_ARGUMENT');
  });

  it('VIRTIOKIT_NO_NATIVE=1 in the environment makes the singleton the fallback', () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '-e', "import('./src/native/index.ts').then(m => process.stdout.write(String(m.native.available)))"],
      { encoding: 'utf8', env: { ...process.env, VIRTIOKIT_NO_NATIVE: '1' }, timeout: 60_000 },
    );
    expect(r.stdout, r.stderr).toBe('false');
  });
});

describe('fallback', () => {
  const fb: NativeApi = loadNative({ forceFallback: true });
  it('says why it is not native', () => {
    expect(fb.available).toBe(false);
    expect(fb.unavailableReason).toBeTruthy();
    expect(fb.pageSize).toBe(4096);
    expect(fb.isMapped(new ArrayBuffer(1))).toBe(false);
  });

  it('kernel-backed functions throw NATIVE_UNAVAILABLE naming the fix', () => {
    const calls: Array<() => unknown> = [
      () => fb.memfdCreate('x', 1),
      () => fb.mmap(0, 0, 1, true),
      () => fb.munmap(new ArrayBuffer(1)),
      () => fb.eventfdCreate(),
      () => fb.eventfdRead(0),
      () => fb.eventfdWrite(0),
      () => fb.close(0),
      () => fb.dup(0),
      () => fb.fdSize(0),
      () => fb.socketpair(),
      () => fb.listenUnix('/tmp/x'),
      () => fb.accept(0),
      () => fb.connectUnix('/tmp/x'),
      () => fb.sendmsg(0, new Uint8Array(1)),
      () => fb.recvmsg(0, new Uint8Array(1)),
      () => fb.poll(0, 1, () => {}),
    ];
    for (const c of calls) expect(code(c)).toBe('NATIVE_UNAVAILABLE');
    try {
      fb.memfdCreate('x', 1);
    } catch (e) {
      expect((e as Error).message).toMatch(/npm rebuild/);
      expect((e as Error).message).toMatch(/compiler/);
    }
  });
});
