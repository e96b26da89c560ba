/**
 * `struct virtio_console_config` (virtio 1.4 §5.3.4), 12 bytes, little-endian (modern interface):
 *
 *   cols le16 @0, rows le16 @2      valid with VIRTIO_CONSOLE_F_SIZE
 *   max_nr_ports le32 @4            valid with VIRTIO_CONSOLE_F_MULTIPORT
 *   emerg_wr le32 @8                write-only, with VIRTIO_CONSOLE_F_EMERG_WRITE
 *
 * Driver writes to cols / rows / max_nr_ports are ignored (read-only fields). A write to emerg_wr
 * hands its lower byte to `onEmergencyWrite`; it works in every device state, before the driver
 * configured anything (`console.dev-init.device.1`). emerg_wr reads as 0.
 */
import type { DeviceConfigSpace } from '../types.js';

/** Field offsets and the size of the console configuration. */
export const CONSOLE_CFG = {
  COLS: 0,
  ROWS: 2,
  MAX_NR_PORTS: 4,
  EMERG_WR: 8,
  SIZE: 12,
} as const;

/** Initial values. */
export interface ConsoleConfigValues {
  cols: number;
  rows: number;
  maxNrPorts: number;
}

/** The console's device-specific configuration space. */
export class ConsoleConfig implements DeviceConfigSpace {
  readonly size = CONSOLE_CFG.SIZE;
  private readonly bytes = new Uint8Array(CONSOLE_CFG.SIZE);
  private readonly dv = new DataView(this.bytes.buffer);
  private readonly onEmergencyWrite: ((byte: number) => void) | null;

  /** @param onEmergencyWrite called with the lower byte of each emerg_wr write (null: the field is inert). */
  constructor(v: ConsoleConfigValues, onEmergencyWrite: ((byte: number) => void) | null) {
    this.onEmergencyWrite = onEmergencyWrite;
    this.setSize(v.cols, v.rows);
    this.dv.setUint32(CONSOLE_CFG.MAX_NR_PORTS, v.maxNrPorts >>> 0, true);
  }

  get cols(): number {
    return this.dv.getUint16(CONSOLE_CFG.COLS, true);
  }
  get rows(): number {
    return this.dv.getUint16(CONSOLE_CFG.ROWS, true);
  }
  get maxNrPorts(): number {
    return this.dv.getUint32(CONSOLE_CFG.MAX_NR_PORTS, true);
  }

  /** Store a new console size (the device decides whether and how to tell the driver). */
  setSize(cols: number, rows: number): void {
    this.dv.setUint16(CONSOLE_CFG.COLS, cols & 0xffff, true);
    this.dv.setUint16(CONSOLE_CFG.ROWS, rows & 0xffff, true);
  }

  read(off: number, width: 1 | 2 | 4): number {
    // The core guarantees off + width <= size. emerg_wr is write-only: the bytes stay 0.
    const dv = this.dv;
    return width === 1 ? dv.getUint8(off) : width === 2 ? dv.getUint16(off, true) : dv.getUint32(off, true);
  }

  write(off: number, _width: 1 | 2 | 4, value: number): void {
    // console.dev-init.device.1 / .2: accept the write in any state and pass on its lower byte.
    // Only a write that contains the field's lowest byte (offset 8) carries it.
    if (off === CONSOLE_CFG.EMERG_WR && this.onEmergencyWrite !== null) this.onEmergencyWrite(value & 0xff);
    // Every other field is read-only: ignore.
  }
}
