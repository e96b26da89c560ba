/**
 * Storage behind a virtio-blk device.
 *
 * A backend moves bytes between a disk and scatter-gather lists ({@link IoVec}) that point
 * straight into guest memory (or into a device-owned bounce buffer). Positions are byte offsets
 * into the disk; the device has already checked them against {@link BlkBackend.size}, so a backend
 * only has to report real I/O failures.
 *
 * Completion: an operation returns `undefined` when it finished synchronously (the RAM backend —
 * no promise, no allocation), or a Promise that settles when the I/O is done (the file backend).
 * A synchronous operation reports failure by throwing; an asynchronous one by rejecting.
 */

/**
 * A reusable scatter-gather list: segment i is `bufs[i][off[i] .. off[i] + len[i])`.
 * `bufs[i]` is a whole-buffer byte view (a memory region's `u8`, or a bounce buffer).
 */
export class IoVec {
  /** Number of segments. */
  count = 0;
  /** Total bytes. */
  bytes = 0;
  readonly bufs: Uint8Array[];
  readonly off: Float64Array;
  readonly len: Float64Array;

  constructor(capacity: number) {
    this.bufs = new Array<Uint8Array>(capacity);
    this.off = new Float64Array(capacity);
    this.len = new Float64Array(capacity);
  }

  /** Capacity in segments. */
  get capacity(): number {
    return this.len.length;
  }

  /** Empty the list (keeps the buffer references; they are overwritten on the next push). */
  clear(): this {
    this.count = 0;
    this.bytes = 0;
    return this;
  }

  /** Append one segment; the caller keeps `count < capacity`. */
  push(buf: Uint8Array, off: number, len: number): void {
    const i = this.count;
    this.bufs[i] = buf;
    this.off[i] = off;
    this.len[i] = len;
    this.count = i + 1;
    this.bytes += len;
  }
}

/** What every backend provides. */
export interface BlkBackend {
  /** For messages ("file /var/disk.img", "ram 64 MiB"). */
  readonly name: string;
  /** Disk size in bytes (the device exposes floor(size / 512) sectors). */
  readonly size: number;
  /** The medium cannot be written (a file opened read-only). */
  readonly readOnly: boolean;
  /** Data survives the process (file): durability needs {@link flush}. False for RAM. */
  readonly persistent: boolean;
  /**
   * Every operation completes synchronously (returns undefined). The device then copies straight
   * between guest buffers and the disk; asynchronous backends read into a bounce buffer unless the
   * device is told `zeroCopyReads`.
   */
  readonly synchronous: boolean;
  /** Read `iov.bytes` bytes at disk offset `pos` into the list. */
  readv(iov: IoVec, pos: number): Promise<void> | undefined;
  /** Write the list's bytes at disk offset `pos`. */
  writev(iov: IoVec, pos: number): Promise<void> | undefined;
  /** Make every completed write durable (file: fdatasync). */
  flush(): Promise<void> | undefined;
  /** The driver no longer needs [pos, pos+len); reads of it return zeroes afterwards in both built-in backends. */
  discard(pos: number, len: number): Promise<void> | undefined;
  /** [pos, pos+len) reads as zeroes afterwards. */
  writeZeroes(pos: number, len: number): Promise<void> | undefined;
  /** Release the medium (the device waits for its in-flight I/O first). Idempotent. */
  close(): Promise<void>;
}
