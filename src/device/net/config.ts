/**
 * `struct virtio_net_config` (virtio 1.4 §5.1.4): the part virtiokit exposes, 12 bytes.
 *
 * | off | field               | valid with |
 * |----:|---------------------|------------|
 * |   0 | mac[6]              | VIRTIO_NET_F_MAC |
 * |   6 | status le16         | VIRTIO_NET_F_STATUS (LINK_UP 1, ANNOUNCE 2) |
 * |   8 | max_virtqueue_pairs | VIRTIO_NET_F_MQ (1..0x8000) |
 * |  10 | mtu le16            | VIRTIO_NET_F_MTU (68..65535) |
 *
 * The fields after mtu (speed/duplex, RSS limits) belong to features this device does not offer,
 * so the space ends at 12 bytes. All fields are read-only for a modern driver
 * (net.dev-cfg-layout.driver.1): writes are ignored and counted.
 */
import type { DeviceConfigSpace } from '../types.js';
import { VirtioError } from '../../errors.js';

/** status bit: link is up. */
export const VIRTIO_NET_S_LINK_UP = 1;
/** status bit: the driver should announce itself (GUEST_ANNOUNCE). */
export const VIRTIO_NET_S_ANNOUNCE = 2;

/** Bytes of the exposed config space. */
export const NET_CONFIG_SIZE = 12;
/** Largest max_virtqueue_pairs (net.dev-cfg-layout.device.1). */
export const NET_MAX_QUEUE_PAIRS = 0x8000;

/** Parse "52:54:00:12:34:56" (or "-" separated) into 6 bytes; throws VirtioError on a bad string. */
export function parseMac(s: string): Uint8Array {
  const parts = s.trim().split(/[:-]/);
  const out = new Uint8Array(6);
  if (parts.length !== 6) throw new VirtioError('INVALID_ARGUMENT', `MAC address "${s}" must have 6 hex bytes, e.g. 52:54:00:12:34:56`);
  for (let i = 0; i < 6; i++) {
    const p = parts[i]!;
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) throw new VirtioError('INVALID_ARGUMENT', `MAC address "${s}": "${p}" is not a hex byte`);
    out[i] = parseInt(p, 16);
  }
  return out;
}

/** Format 6 bytes at `b[off..]` as "aa:bb:cc:dd:ee:ff". */
export function formatMac(b: Uint8Array, off = 0): string {
  const h: string[] = [];
  for (let i = 0; i < 6; i++) h.push(b[off + i]!.toString(16).padStart(2, '0'));
  return h.join(':');
}

/** The 48-bit MAC at `b[off..]` as a number (exact: < 2^53). */
export function macToNumber(b: Uint8Array, off = 0): number {
  return (b[off]! * 0x10000 + ((b[off + 1]! << 8) | b[off + 2]!)) * 0x1000000 + ((b[off + 3]! << 16) | (b[off + 4]! << 8) | b[off + 5]!);
}

/** Initial values of the config fields. */
export interface NetConfigInit {
  mac: Uint8Array;
  linkUp: boolean;
  maxQueuePairs: number;
  /** 0 = no MTU advertised. */
  mtu: number;
}

/** The virtio-net configuration space. */
export class NetConfig implements DeviceConfigSpace {
  readonly size = NET_CONFIG_SIZE;
  /** Driver writes seen (all ignored). */
  ignoredWrites = 0;
  private readonly bytes = new Uint8Array(NET_CONFIG_SIZE);
  private readonly defaultMac: Uint8Array;

  constructor(init: NetConfigInit) {
    if (init.mac.length !== 6) throw new VirtioError('INVALID_ARGUMENT', `MAC address must be 6 bytes (got ${init.mac.length})`);
    const p = init.maxQueuePairs;
    if (!Number.isInteger(p) || p < 1 || p > NET_MAX_QUEUE_PAIRS) {
      // net.dev-cfg-layout.device.1
      throw new VirtioError('INVALID_ARGUMENT', `max_virtqueue_pairs must be 1..${NET_MAX_QUEUE_PAIRS} (got ${p})`);
    }
    if (init.mtu !== 0 && (!Number.isInteger(init.mtu) || init.mtu < 68 || init.mtu > 65535)) {
      // net.dev-cfg-layout.device.2 (and .3: SHOULD be >= 1280, not enforced)
      throw new VirtioError('INVALID_ARGUMENT', `mtu must be 68..65535 (got ${init.mtu})`);
    }
    this.defaultMac = Uint8Array.from(init.mac);
    this.bytes.set(init.mac, 0);
    this.setStatusBits(init.linkUp ? VIRTIO_NET_S_LINK_UP : 0, VIRTIO_NET_S_LINK_UP);
    this.bytes[8] = p & 0xff;
    this.bytes[9] = p >>> 8;
    // net.dev-cfg-layout.device.4: mtu is set once here and never modified.
    this.bytes[10] = init.mtu & 0xff;
    this.bytes[11] = init.mtu >>> 8;
  }

  read(off: number, width: 1 | 2 | 4): number {
    const b = this.bytes;
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + b[off + i]!;
    return v;
  }

  write(_off: number, _width: 1 | 2 | 4, _value: number): void {
    // net.dev-cfg-layout.driver.1: the driver must not write; the modern mac is read-only.
    this.ignoredWrites++;
  }

  /** The current MAC (a view over the config bytes: do not keep it across a change). */
  get mac(): Uint8Array {
    return this.bytes.subarray(0, 6);
  }

  /** Copy 6 bytes from `src[off..]` into mac. */
  setMac(src: Uint8Array, off = 0): void {
    for (let i = 0; i < 6; i++) this.bytes[i] = src[off + i]!;
  }

  /** True when `b[off..off+6)` equals mac. */
  isMac(b: Uint8Array, off: number): boolean {
    const m = this.bytes;
    return m[0] === b[off] && m[1] === b[off + 1] && m[2] === b[off + 2] && m[3] === b[off + 3] && m[4] === b[off + 4] && m[5] === b[off + 5];
  }

  get status(): number {
    return this.bytes[6]! | (this.bytes[7]! << 8);
  }

  /** Set the bits of `mask` to `value`; returns true when status changed. */
  setStatusBits(value: number, mask: number): boolean {
    const old = this.status;
    const nw = (old & ~mask) | (value & mask);
    this.bytes[6] = nw & 0xff;
    this.bytes[7] = (nw >>> 8) & 0xff;
    return nw !== old;
  }

  get linkUp(): boolean {
    return (this.status & VIRTIO_NET_S_LINK_UP) !== 0;
  }

  get maxQueuePairs(): number {
    return this.bytes[8]! | (this.bytes[9]! << 8);
  }

  /** 0 when no MTU is advertised. */
  get mtu(): number {
    return this.bytes[10]! | (this.bytes[11]! << 8);
  }

  /** Device reset: mac back to its initial value, ANNOUNCE cleared (link state is the host's). */
  reset(): void {
    this.bytes.set(this.defaultMac, 0);
    this.setStatusBits(0, 0xffff & ~VIRTIO_NET_S_LINK_UP);
  }
}
