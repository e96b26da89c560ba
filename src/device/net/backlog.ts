/**
 * A bounded FIFO of frames waiting for receive buffers. Frames are copied into one preallocated
 * byte ring (never a per-frame allocation); offload metadata goes into parallel typed arrays.
 * When either bound (frames or bytes) would be exceeded, {@link FrameBacklog.push} refuses and the
 * caller drops and counts.
 */
import { NetHdr } from './header.js';

export class FrameBacklog {
  readonly maxFrames: number;
  readonly maxBytes: number;
  private readonly data: Uint8Array;
  private readonly eOff: Uint32Array;
  private readonly eLen: Uint32Array;
  private readonly eHasMeta: Uint8Array;
  private readonly eFlags: Uint8Array;
  private readonly eGso: Uint8Array;
  private readonly eHdrLen: Uint16Array;
  private readonly eGsoSize: Uint16Array;
  private readonly eCsumStart: Uint16Array;
  private readonly eCsumOff: Uint16Array;
  private first = 0;
  private n = 0;
  /** Byte offset of the oldest frame / where the next one goes. */
  private head = 0;
  private tail = 0;
  /**
   * True when the frames wrapped around the end of the byte ring: they occupy [head, …) and
   * [0, tail). Needed because head === tail is then a full ring, not an empty one.
   */
  private wrapped = false;

  constructor(maxFrames = 256, maxBytes = 1 << 20) {
    this.maxFrames = maxFrames;
    this.maxBytes = maxBytes;
    this.data = new Uint8Array(maxBytes);
    this.eOff = new Uint32Array(maxFrames);
    this.eLen = new Uint32Array(maxFrames);
    this.eHasMeta = new Uint8Array(maxFrames);
    this.eFlags = new Uint8Array(maxFrames);
    this.eGso = new Uint8Array(maxFrames);
    this.eHdrLen = new Uint16Array(maxFrames);
    this.eGsoSize = new Uint16Array(maxFrames);
    this.eCsumStart = new Uint16Array(maxFrames);
    this.eCsumOff = new Uint16Array(maxFrames);
  }

  /** Frames waiting. */
  get count(): number {
    return this.n;
  }

  /** Copy a frame in; false (nothing stored) when a bound would be exceeded. */
  push(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): boolean {
    if (this.n === this.maxFrames || len > this.maxBytes) return false;
    let at: number;
    if (this.n === 0) {
      this.head = this.tail = 0;
      this.wrapped = false;
      at = 0;
    } else if (!this.wrapped) {
      // Frames in [head, tail): append, or wrap to the start when the front has room.
      if (this.maxBytes - this.tail >= len) at = this.tail;
      else if (this.head >= len) {
        at = 0;
        this.wrapped = true;
      } else return false;
    } else {
      // Frames in [head, end) and [0, tail): only the gap between them is free.
      if (this.head - this.tail >= len) at = this.tail;
      else return false;
    }
    this.data.set(buf.subarray(off, off + len), at);
    const e = (this.first + this.n) % this.maxFrames;
    this.eOff[e] = at;
    this.eLen[e] = len;
    if (meta === null) this.eHasMeta[e] = 0;
    else {
      this.eHasMeta[e] = 1;
      this.eFlags[e] = meta.flags;
      this.eGso[e] = meta.gsoType;
      this.eHdrLen[e] = meta.hdrLen;
      this.eGsoSize[e] = meta.gsoSize;
      this.eCsumStart[e] = meta.csumStart;
      this.eCsumOff[e] = meta.csumOffset;
    }
    this.tail = at + len;
    this.n++;
    return true;
  }

  /** The byte ring (frames are views into it: {@link frameOff}, {@link frameLen}). */
  get bytes(): Uint8Array {
    return this.data;
  }
  /** Offset of the oldest frame in {@link bytes} (call only when count > 0). */
  get frameOff(): number {
    return this.eOff[this.first]!;
  }
  get frameLen(): number {
    return this.eLen[this.first]!;
  }
  /** Metadata of the oldest frame into `out`; returns `out`, or null when it had none. */
  frameMeta(out: NetHdr): NetHdr | null {
    const e = this.first;
    if (this.eHasMeta[e] === 0) return null;
    out.flags = this.eFlags[e]!;
    out.gsoType = this.eGso[e]!;
    out.hdrLen = this.eHdrLen[e]!;
    out.gsoSize = this.eGsoSize[e]!;
    out.csumStart = this.eCsumStart[e]!;
    out.csumOffset = this.eCsumOff[e]!;
    out.numBuffers = 0;
    return out;
  }

  /** Drop the oldest frame. */
  shift(): void {
    if (this.n === 0) return;
    this.first = (this.first + 1) % this.maxFrames;
    this.n--;
    if (this.n === 0) {
      this.head = this.tail = this.first = 0;
      this.wrapped = false;
    } else {
      const h = this.eOff[this.first]!;
      // Past the last frame before the wrap point: the oldest frame is now the one at the start.
      if (this.wrapped && h < this.head) this.wrapped = false;
      this.head = h;
    }
  }

  clear(): void {
    this.n = this.first = this.head = this.tail = 0;
    this.wrapped = false;
  }
}
