/**
 * Logging through `debug` namespaces: `virtiokit:<area>`.
 * Enable with `DEBUG=virtiokit:*` (or a single area, e.g. `DEBUG=virtiokit:queue`).
 */
import createDebug from 'debug';

/** A namespaced logger (printf-style formatting as in `debug`). */
export type Logger = createDebug.Debugger;

/** Logger for an area such as `queue`, `pci`, `swiotlb`, `native`. */
export function logger(area: string): Logger {
  return createDebug(`virtiokit:${area}`);
}
