/**
 * What a virtio-net device is connected to: something that takes the frames the guest transmits
 * and hands it frames to receive (an in-process switch, a tap, a pcap replayer, a test).
 *
 * Frames cross this interface as `(buf, off, len)` views that are valid only during the call —
 * the sender reuses its buffer — so a receiver copies what it keeps. That lets the whole
 * transmit → switch → receive path run without allocating per frame.
 *
 * Each frame may carry offload metadata (`meta`: the virtio_net_hdr fields flags, gso_type,
 * hdr_len, gso_size, csum_start, csum_offset as the sending driver set them, already validated by
 * the sending device). `null` means a plain, fully checksummed frame.
 */
import type { NetHdr } from './header.js';

/** Receives one frame: `buf[off .. off+len)`, valid only during the call. */
export type FrameReceiver = (buf: Uint8Array, off: number, len: number, meta: NetHdr | null) => void;

/** The device side of a network attachment. */
export interface NetBackend {
  /** The device transmits a frame (valid only during the call). */
  send(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void;
  /** Register the device's receive function (one per backend; a later call replaces it). */
  onFrame(cb: FrameReceiver): void;
}

/** Direction of a frame as a tap sees it. */
export type FrameDirection = 'tx' | 'rx';

/**
 * A passive observer of frames (packet capture, statistics). `tsMicros` is wall-clock time in
 * microseconds since the Unix epoch; `where` names the device or switch port.
 */
export type FrameTap = (buf: Uint8Array, off: number, len: number, dir: FrameDirection, tsMicros: number, where: string) => void;

/** Wall-clock microseconds since the epoch (sub-millisecond resolution from performance.now()). */
export function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/** A backend that drops everything it is sent and never delivers (the "cable unplugged" backend). */
export class NullBackend implements NetBackend {
  sent = 0;
  send(_buf: Uint8Array, _off: number, _len: number, _meta: NetHdr | null): void {
    this.sent++;
  }
  onFrame(_cb: FrameReceiver): void {}
}

/**
 * A backend a test or host program drives directly: `sent` frames are handed to `onSend`
 * (default: ignored) and {@link inject} delivers a frame to the device.
 */
export class DirectBackend implements NetBackend {
  private cb: FrameReceiver | null = null;
  /** Called for every frame the device transmits (valid only during the call). */
  onSend: FrameReceiver | null = null;
  send(buf: Uint8Array, off: number, len: number, meta: NetHdr | null): void {
    this.onSend?.(buf, off, len, meta);
  }
  onFrame(cb: FrameReceiver): void {
    this.cb = cb;
  }
  /** Deliver a frame to the device (it copies into guest buffers or its backlog before returning). */
  inject(frame: Uint8Array, meta: NetHdr | null = null, off = 0, len = frame.length - off): void {
    this.cb?.(frame, off, len, meta);
  }
}
