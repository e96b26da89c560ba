/**
 * Late binding of a core's transport hooks, for every transport: a core needs its
 * {@link TransportHooks} when it is built, but the transport that implements them is built from
 * the core. Build the core with a {@link LateBoundHooks}, build the transport, then point the hooks
 * at it — {@link bindTransport} does the three steps (`createVirtioPciDevice`,
 * `createVirtioMmioDevice`).
 */
import type { VirtioDeviceCore } from './core.js';
import type { TransportHooks } from './types.js';

/**
 * Transport hooks that forward to {@link LateBoundHooks.target} once it is set: build the core
 * with them, then hand it to a transport factory, which binds itself. Calls before binding are
 * dropped.
 */
export class LateBoundHooks implements TransportHooks {
  target: TransportHooks | undefined;
  queueInterrupt(q: number, vector: number): void {
    this.target?.queueInterrupt(q, vector);
  }
  configInterrupt(vector: number): void {
    this.target?.configInterrupt(vector);
  }
}

/** A built core, or a function that builds one from the transport hooks. */
export type CoreOrFactory = VirtioDeviceCore | ((hooks: TransportHooks) => VirtioDeviceCore);

/**
 * Build a transport over `core` and bind the hooks to it: a factory gets `hooks` (a fresh
 * {@link LateBoundHooks} when none is given); with a built core, `hooks` (if any) is the one the
 * core was built with. The hooks' target becomes the transport.
 */
export function bindTransport<T extends TransportHooks>(core: CoreOrFactory, hooks: LateBoundHooks | undefined, build: (core: VirtioDeviceCore) => T): T {
  let c: VirtioDeviceCore;
  if (typeof core === 'function') {
    hooks = hooks ?? new LateBoundHooks();
    c = core(hooks);
  } else {
    c = core;
  }
  const dev = build(c);
  if (hooks !== undefined) hooks.target = dev;
  return dev;
}
