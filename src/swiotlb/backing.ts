/**
 * Backing memory for a SWIOTLB window: a memfd mapping from the native addon when it can be
 * loaded at runtime (shareable with another process by fd), else a SharedArrayBuffer.
 *
 * Kept apart from `window.ts` so the window does not depend on the native module: the addon is
 * loaded with a dynamic `import()` whose specifier is not resolved at compile time.
 */
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';

const log = logger('swiotlb');

/** Which kind of memory to back a window with. `auto` = memfd when the addon works, else shared. */
export type WindowBackingKind = 'auto' | 'memfd' | 'shared' | 'array';

/** Memory for a window, with how to release it. */
export interface WindowBacking {
  buffer: ArrayBufferLike;
  /** What was actually allocated. */
  kind: 'memfd' | 'shared' | 'array';
  /** memfd backing the buffer (memfd kind only). */
  fd?: number;
  /** Offset of the buffer inside `fd` (0). */
  fdOffset?: number;
  /** Unmap and close (memfd kind); a no-op for the others. Idempotent. */
  release(): void;
}

/** The few native functions a memfd backing needs (a subset of `NativeApi` in src/native/types.ts). */
interface MemfdApi {
  readonly available: boolean;
  memfdCreate(name: string, size: number): number;
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  munmap(buf: ArrayBuffer): void;
  close(fd: number): void;
}

function asMemfdApi(v: unknown): MemfdApi | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (o.available !== true) return undefined;
  for (const k of ['memfdCreate', 'mmap', 'munmap', 'close']) if (typeof o[k] !== 'function') return undefined;
  return v as MemfdApi;
}

/** Load the addon if present; undefined (with the reason logged) when it is not. */
async function loadMemfdApi(): Promise<{ api: MemfdApi | undefined; reason: string }> {
  // Specifier in a variable: resolved at runtime only, so this file compiles without src/native/index.ts.
  const specifier = '../native/index.js';
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (e) {
    return { api: undefined, reason: `cannot load ${specifier}: ${(e as Error).message}` };
  }
  // Accept the shapes the loader module may have: an exported API object, else a zero-argument loader.
  for (const c of [mod.native, mod.default]) {
    const api = asMemfdApi(c);
    if (api !== undefined) return { api, reason: '' };
  }
  for (const fname of ['loadNative', 'getNative']) {
    const f = mod[fname];
    if (typeof f !== 'function') continue;
    try {
      const api = asMemfdApi((f as () => unknown)());
      if (api !== undefined) return { api, reason: '' };
    } catch {
      /* not usable */
    }
  }
  return { api: undefined, reason: 'the native addon is not available (pure-JS fallback loaded)' };
}

/**
 * Allocate `size` bytes of window memory.
 * @throws VirtioError NATIVE_UNAVAILABLE when `kind` is `memfd` and the addon cannot be used.
 */
export async function allocateWindowBacking(size: number, kind: WindowBackingKind = 'auto', name = 'virtiokit-swiotlb'): Promise<WindowBacking> {
  if (kind === 'array') return { buffer: new ArrayBuffer(size), kind: 'array', release: () => undefined };
  if (kind === 'shared') return { buffer: new SharedArrayBuffer(size), kind: 'shared', release: () => undefined };
  const { api, reason } = await loadMemfdApi();
  if (api === undefined) {
    if (kind === 'memfd') {
      throw new VirtioError('NATIVE_UNAVAILABLE', `swiotlb window: memfd backing requested but ${reason}; build the addon (npm run build:cmake) or use backing 'shared'`);
    }
    log('window backing: SharedArrayBuffer (%s)', reason);
    return { buffer: new SharedArrayBuffer(size), kind: 'shared', release: () => undefined };
  }
  const fd = api.memfdCreate(name, size);
  let buffer: ArrayBuffer;
  try {
    buffer = api.mmap(fd, 0, size, true);
  } catch (e) {
    api.close(fd);
    throw e;
  }
  let released = false;
  log('window backing: memfd fd=%d size=0x%s', fd, size.toString(16));
  return {
    buffer,
    kind: 'memfd',
    fd,
    fdOffset: 0,
    release: () => {
      if (released) return;
      released = true;
      api.munmap(buffer);
      api.close(fd);
    },
  };
}
