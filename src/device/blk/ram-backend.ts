/**
 * A disk in process memory. Every operation completes synchronously and copies straight between
 * guest buffers and the disk array — no bounce, no promise, no allocation per request (copies
 * above 64 bytes go through the native addon's `copy`, which takes ArrayBuffers and offsets, so no
 * view is created; without the addon one `subarray()` per segment is the fallback).
 */
import { VirtioError, requireArg } from '../../errors.js';
import { copyBytes } from '../../memory/copy-bytes.js';
import type { BlkBackend, IoVec } from './backend.js';

export { copyBytes };

/** Options of {@link RamBackend}. */
export interface RamBackendOptions {
  /** Refuse writes (the device offers VIRTIO_BLK_F_RO). */
  readOnly?: boolean;
}

/** RAM-backed disk. */
export class RamBackend implements BlkBackend {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly persistent = false;
  readonly synchronous = true;
  /** The disk contents (exposed for tests and for loading an image). */
  readonly disk: Uint8Array;
  private closed = false;

  /**
   * @param sizeOrData disk size in bytes (zero-filled), or the initial contents (used in place)
   */
  constructor(sizeOrData: number | Uint8Array, opts: RamBackendOptions = {}) {
    if (typeof sizeOrData === 'number') {
      requireArg(Number.isSafeInteger(sizeOrData) && sizeOrData > 0, `ram disk: size must be a positive integer number of bytes (got ${sizeOrData})`);
      try {
        this.disk = new Uint8Array(sizeOrData);
      } catch (e) {
        throw new VirtioError('INVALID_ARGUMENT', `ram disk: cannot allocate ${sizeOrData} bytes (${e instanceof Error ? e.message : String(e)}); use a smaller size or a file-backed disk`, { cause: e });
      }
    } else {
      requireArg(sizeOrData instanceof Uint8Array && sizeOrData.length > 0, 'ram disk: initial data must be a non-empty Uint8Array');
      this.disk = sizeOrData;
    }
    this.size = this.disk.length;
    this.readOnly = opts.readOnly ?? false;
    this.name = `ram ${this.size} bytes`;
  }

  readv(iov: IoVec, pos: number): undefined {
    this.check();
    const disk = this.disk;
    const bufs = iov.bufs;
    const off = iov.off;
    const len = iov.len;
    const n = iov.count;
    let p = pos;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      copyBytes(bufs[i]!, off[i]!, disk, p, l);
      p += l;
    }
    return undefined;
  }

  writev(iov: IoVec, pos: number): undefined {
    this.check();
    if (this.readOnly) throw new VirtioError('DEVICE_IO', `${this.name}: the disk is read-only`);
    const disk = this.disk;
    const bufs = iov.bufs;
    const off = iov.off;
    const len = iov.len;
    const n = iov.count;
    let p = pos;
    for (let i = 0; i < n; i++) {
      const l = len[i]!;
      copyBytes(disk, p, bufs[i]!, off[i]!, l);
      p += l;
    }
    return undefined;
  }

  flush(): undefined {
    this.check();
    return undefined;
  }

  discard(pos: number, len: number): undefined {
    return this.writeZeroes(pos, len);
  }

  writeZeroes(pos: number, len: number): undefined {
    this.check();
    if (this.readOnly) throw new VirtioError('DEVICE_IO', `${this.name}: the disk is read-only`);
    this.disk.fill(0, pos, pos + len);
    return undefined;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private check(): void {
    if (this.closed) throw new VirtioError('CLOSED', `${this.name}: the backend is closed`);
  }
}
