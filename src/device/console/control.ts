/**
 * Console control messages (virtio 1.4 §5.3.6.2, multiport): `struct virtio_console_control`
 * { id le32, event le16, value le16 } (8 bytes), followed for some events by a payload:
 *  - PORT_NAME (device → driver): the name bytes (no terminating NUL needed);
 *  - RESIZE (device → driver): cols le16, rows le16 (the order of the config fields).
 *
 * Direction of each event:
 *   driver → device: DEVICE_READY (value 1 ok / 0 failed), PORT_READY (1 / 0), PORT_OPEN (1 / 0)
 *   device → driver: DEVICE_ADD, DEVICE_REMOVE, CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME
 */

export const VIRTIO_CONSOLE_DEVICE_READY = 0;
export const VIRTIO_CONSOLE_DEVICE_ADD = 1;
export const VIRTIO_CONSOLE_DEVICE_REMOVE = 2;
export const VIRTIO_CONSOLE_PORT_READY = 3;
export const VIRTIO_CONSOLE_CONSOLE_PORT = 4;
export const VIRTIO_CONSOLE_RESIZE = 5;
export const VIRTIO_CONSOLE_PORT_OPEN = 6;
export const VIRTIO_CONSOLE_PORT_NAME = 7;

/** Bytes of the control header. */
export const CONTROL_HEADER_BYTES = 8;

const NAMES = ['DEVICE_READY', 'DEVICE_ADD', 'DEVICE_REMOVE', 'PORT_READY', 'CONSOLE_PORT', 'RESIZE', 'PORT_OPEN', 'PORT_NAME'];

/** Spec name of a control event (for logs). */
export function controlEventName(event: number): string {
  return NAMES[event] ?? `event ${event}`;
}

/** A control message (device → driver messages are queued as these). */
export interface ControlMessage {
  /** Port number. */
  readonly id: number;
  readonly event: number;
  readonly value: number;
  /** Bytes after the header (PORT_NAME name, RESIZE size), if any. */
  readonly payload?: Uint8Array;
}

/** Encode a control header into `dst[0..8)`. */
export function encodeControlHeader(dst: Uint8Array, id: number, event: number, value: number): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, CONTROL_HEADER_BYTES);
  dv.setUint32(0, id >>> 0, true);
  dv.setUint16(4, event & 0xffff, true);
  dv.setUint16(6, value & 0xffff, true);
}

/** Decode a control header from `src[0..8)`. */
export function decodeControlHeader(src: Uint8Array): { id: number; event: number; value: number } {
  const dv = new DataView(src.buffer, src.byteOffset, CONTROL_HEADER_BYTES);
  return { id: dv.getUint32(0, true), event: dv.getUint16(4, true), value: dv.getUint16(6, true) };
}

/**
 * The RESIZE payload: cols le16, rows le16 (the spec's order). `colsFirst = false` gives the
 * order older Linux drivers read (rows, cols; fixed in Linux in 2025).
 */
export function resizePayload(cols: number, rows: number, colsFirst = true): Uint8Array {
  const b = new Uint8Array(4);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, (colsFirst ? cols : rows) & 0xffff, true);
  dv.setUint16(2, (colsFirst ? rows : cols) & 0xffff, true);
  return b;
}
