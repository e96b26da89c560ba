/** Opening a virtio-blk device from a backend description. */
import { VirtioError } from '../../errors.js';
import type { BlkBackend } from './backend.js';
import { BlkDevice } from './blk-device.js';
import { FileBackend, type FileBackendOptions } from './file-backend.js';
import type { OpenBlkOptions } from './options.js';
import { RamBackend } from './ram-backend.js';

/**
 * Open the backend named in `opts` and build the device.
 * @throws VirtioError INVALID_ARGUMENT (bad options, or a disk image that cannot be opened — the
 * message says what to fix)
 */
export async function openBlkDevice(opts: OpenBlkOptions): Promise<BlkDevice> {
  let backend: BlkBackend;
  switch (opts.backend) {
    case 'file': {
      const fo: FileBackendOptions = {};
      if (opts.readOnly !== undefined) fo.readOnly = opts.readOnly;
      if (opts.create !== undefined) fo.create = opts.create;
      if (opts.size !== undefined) fo.size = opts.size;
      backend = await FileBackend.open(opts.path, fo);
      break;
    }
    case 'ram':
      backend = new RamBackend(opts.size, { readOnly: opts.readOnly === true });
      break;
    case 'custom':
      backend = opts.instance;
      break;
    default:
      throw new VirtioError('INVALID_ARGUMENT', `virtio-blk: backend must be 'file', 'ram' or 'custom' (got ${JSON.stringify((opts as { backend?: unknown }).backend)})`);
  }
  try {
    return new BlkDevice(backend, opts);
  } catch (e) {
    await backend.close().catch(() => undefined);
    throw e;
  }
}
