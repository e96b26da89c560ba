/**
 * Loader of virtiokit's native addon (`native/*.c`, built by `npm install` / `npm rebuild` with
 * node-gyp into `build/Release/virtiokit.node`, or by `npm run build:cmake` into `build-cmake/`).
 *
 * The rest of virtiokit imports the {@link native} singleton:
 *
 * ```ts
 * import { native } from '../native/index.js';
 * ```
 *
 * Lookup order: `$VIRTIOKIT_ADDON` (a path; when set, nothing else is tried), then
 * `build/Release/virtiokit.node`, then `build-cmake/Release/virtiokit.node`. With
 * `VIRTIOKIT_NO_NATIVE=1`, or when no addon loads, a pure-JavaScript fallback is used
 * (`available === false`; one debug line under `virtiokit:native` says why).
 *
 * The addon's functions are exposed as they are — no JS wrapper on the hot paths (copy, copyBatch,
 * eventfdRead/Write). They throw {@link VirtioError}s directly: the loader hands the addon a factory
 * at init. SharedArrayBuffer arguments (which Node-API cannot read) go through a cached
 * `Uint8Array` per buffer, built on first use.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { types as utilTypes } from 'node:util';
import { VirtioError, type VirtioErrorCode } from '../errors.js';
import { logger } from '../log.js';
import { BUILD_HINT, createFallback } from './fallback.js';
import type { NativeApi } from './types.js';

export * from './types.js';
export { BUILD_HINT } from './fallback.js';

const log = logger('native');

/** Options of {@link loadNative}. */
export interface NativeLoadOptions {
  /** Use the pure-JS fallback even when the addon exists (what `VIRTIOKIT_NO_NATIVE=1` does). */
  forceFallback?: boolean;
  /** Load this `.node` file (overrides `$VIRTIOKIT_ADDON` and the default locations). */
  addonPath?: string;
  /** Environment to read `VIRTIOKIT_ADDON` / `VIRTIOKIT_NO_NATIVE` from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** The addon's exports (see native/addon.c). */
type RawAddon = Omit<NativeApi, 'available' | 'unavailableReason' | 'addonPath'> & {
  init(errorFactory: (code: string, message: string, errno: number | undefined) => Error, sabView: (v: unknown) => Uint8Array | undefined): void;
};

/** Repository root (this file is src/native/index.ts, or dist/native/index.js once compiled). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Default addon locations, in the order they are tried. */
export const DEFAULT_ADDON_PATHS: readonly string[] = [
  resolve(ROOT, 'build/Release/virtiokit.node'),
  resolve(ROOT, 'build-cmake/Release/virtiokit.node'),
];

const requireAddon = createRequire(import.meta.url);

function makeError(code: string, message: string, errno: number | undefined): Error {
  return new VirtioError(code as VirtioErrorCode, message, errno === undefined ? {} : { errno });
}

const sabViews = new WeakMap<SharedArrayBuffer, Uint8Array>();
function sabView(v: unknown): Uint8Array | undefined {
  if (!utilTypes.isSharedArrayBuffer(v)) return undefined;
  let u8 = sabViews.get(v);
  if (u8 === undefined) {
    u8 = new Uint8Array(v);
    sabViews.set(v, u8);
  }
  return u8;
}

function fromAddon(raw: RawAddon, path: string): NativeApi {
  raw.init(makeError, sabView);
  return Object.freeze({
    available: true,
    unavailableReason: undefined,
    addonPath: path,
    pageSize: raw.pageSize,
    memfdCreate: raw.memfdCreate,
    mmap: raw.mmap,
    munmap: raw.munmap,
    isMapped: raw.isMapped,
    copy: raw.copy,
    copyBatch: raw.copyBatch,
    eventfdCreate: raw.eventfdCreate,
    eventfdRead: raw.eventfdRead,
    eventfdWrite: raw.eventfdWrite,
    close: raw.close,
    dup: raw.dup,
    fdSize: raw.fdSize,
    socketpair: raw.socketpair,
    listenUnix: raw.listenUnix,
    accept: raw.accept,
    connectUnix: raw.connectUnix,
    sendmsg: raw.sendmsg,
    recvmsg: raw.recvmsg,
    poll: raw.poll,
  });
}

const loaded = new Map<string, NativeApi>();

function fallback(reason: string): NativeApi {
  log('native addon unavailable (%s); using the JavaScript fallback — %s', reason, BUILD_HINT);
  return createFallback(reason);
}

/**
 * Load the addon (or the fallback). Each distinct addon path is loaded once per thread; calling
 * this again returns the same object. Never throws: problems end up in `unavailableReason`.
 */
export function loadNative(opts: NativeLoadOptions = {}): NativeApi {
  const env = opts.env ?? process.env;
  if (opts.forceFallback === true) return createFallback('fallback forced by loadNative({ forceFallback: true })');
  if (opts.addonPath === undefined && env['VIRTIOKIT_NO_NATIVE'] !== undefined && env['VIRTIOKIT_NO_NATIVE'] !== '' && env['VIRTIOKIT_NO_NATIVE'] !== '0') {
    return fallback('VIRTIOKIT_NO_NATIVE is set');
  }
  const override = opts.addonPath ?? (env['VIRTIOKIT_ADDON'] !== undefined && env['VIRTIOKIT_ADDON'] !== '' ? env['VIRTIOKIT_ADDON'] : undefined);
  const candidates = override !== undefined ? [resolve(override)] : DEFAULT_ADDON_PATHS;
  const problems: string[] = [];
  for (const path of candidates) {
    const done = loaded.get(path);
    if (done !== undefined) return done;
    if (!existsSync(path)) {
      problems.push(`${path} does not exist`);
      continue;
    }
    try {
      const api = fromAddon(requireAddon(path) as RawAddon, path);
      loaded.set(path, api);
      return api;
    } catch (e) {
      problems.push(`${path} failed to load: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return fallback(problems.join('; '));
}

/** The addon (or the fallback) as loaded for this process / worker. */
export const native: NativeApi = loadNative();

export default native;
