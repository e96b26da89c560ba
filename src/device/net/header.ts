/**
 * `struct virtio_net_hdr` (virtio 1.4 §5.1.6, device-types/net/description.tex): constants, the
 * header size a negotiated feature set implies, and a reusable parsed form.
 *
 * Layout (little-endian, modern interface): flags u8 @0, gso_type u8 @1, hdr_len le16 @2,
 * gso_size le16 @4, csum_start le16 @6, csum_offset le16 @8, num_buffers le16 @10,
 * hash_value le32 @12, hash_report le16 @16, padding_reserved le16 @18, outer_th_offset le16 @20,
 * inner_nh_offset le16 @22, outer_nh_offset le16 @24, 6 more bytes to 32.
 *
 * Nothing here allocates per packet: {@link NetHdr} is a mutable record parsed into and
 * serialized from in place.
 */
import type { FeatureSet } from '../../features/set.js';
import { NET_F } from './features.js';

/** flags: the driver/device left a partial checksum (csum_start/csum_offset valid). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** flags: the checksum was validated (device → driver only). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** flags: RSC information in csum_start/csum_offset (RSC_EXT only). */
export const VIRTIO_NET_HDR_F_RSC_INFO = 4;
/** flags: outer UDP checksum of a tunnel (UDP_TUNNEL_GSO_CSUM only). */
export const VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM = 8;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 = 0x20;
export const VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6 = 0x40;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** Header bytes of a modern device without HASH_REPORT / tunnel / outer-header features. */
export const NET_HDR_BASE_SIZE = 12;
/** Largest header (OUT_NET_HEADER or IPSEC). */
export const NET_HDR_MAX_SIZE = 32;

/**
 * Size of `struct virtio_net_hdr` for a negotiated feature set, as both sides must assume it
 * (net.setting-up-receive-buffers.driver.2, net.packet-transmission.driver.1): 32 with
 * OUT_NET_HEADER or IPSEC, 24 with HOST_UDP_TUNNEL_GSO, 20 with HASH_REPORT, else 12 — the modern
 * interface always carries num_buffers, with or without MRG_RXBUF (10-byte headers are legacy only).
 */
export function netHdrSize(features: FeatureSet): number {
  if (features.has(NET_F.OUT_NET_HEADER) || features.has(NET_F.IPSEC)) return 32;
  if (features.has(NET_F.HOST_UDP_TUNNEL_GSO)) return 24;
  if (features.has(NET_F.HASH_REPORT)) return 20;
  return NET_HDR_BASE_SIZE;
}

/**
 * A parsed virtio_net_hdr (the fields virtiokit uses). Reused: parse into it, change fields,
 * serialize out of it. Also serves as the offload metadata a frame carries across a
 * {@link NetBackend} (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset).
 */
export class NetHdr {
  flags = 0;
  gsoType = VIRTIO_NET_HDR_GSO_NONE;
  hdrLen = 0;
  gsoSize = 0;
  csumStart = 0;
  csumOffset = 0;
  numBuffers = 0;

  /** All fields to zero (no offload, a fully checksummed frame). */
  clear(): this {
    this.flags = 0;
    this.gsoType = 0;
    this.hdrLen = 0;
    this.gsoSize = 0;
    this.csumStart = 0;
    this.csumOffset = 0;
    this.numBuffers = 0;
    return this;
  }

  /** Copy every field from `o`. */
  copyFrom(o: NetHdr): this {
    this.flags = o.flags;
    this.gsoType = o.gsoType;
    this.hdrLen = o.hdrLen;
    this.gsoSize = o.gsoSize;
    this.csumStart = o.csumStart;
    this.csumOffset = o.csumOffset;
    this.numBuffers = o.numBuffers;
    return this;
  }

  /** Parse the first 12 bytes at `buf[off..]` (the caller checked the length). */
  parse(buf: Uint8Array, off: number): this {
    this.flags = buf[off]!;
    this.gsoType = buf[off + 1]!;
    this.hdrLen = buf[off + 2]! | (buf[off + 3]! << 8);
    this.gsoSize = buf[off + 4]! | (buf[off + 5]! << 8);
    this.csumStart = buf[off + 6]! | (buf[off + 7]! << 8);
    this.csumOffset = buf[off + 8]! | (buf[off + 9]! << 8);
    this.numBuffers = buf[off + 10]! | (buf[off + 11]! << 8);
    return this;
  }

  /**
   * Write a `size`-byte header at `buf[off..]`: the 12 base bytes from the fields, the rest
   * (hash and tunnel fields this device never sets) zero.
   */
  serialize(buf: Uint8Array, off: number, size: number = NET_HDR_BASE_SIZE): void {
    buf[off] = this.flags;
    buf[off + 1] = this.gsoType;
    buf[off + 2] = this.hdrLen & 0xff;
    buf[off + 3] = this.hdrLen >>> 8;
    buf[off + 4] = this.gsoSize & 0xff;
    buf[off + 5] = this.gsoSize >>> 8;
    buf[off + 6] = this.csumStart & 0xff;
    buf[off + 7] = this.csumStart >>> 8;
    buf[off + 8] = this.csumOffset & 0xff;
    buf[off + 9] = this.csumOffset >>> 8;
    buf[off + 10] = this.numBuffers & 0xff;
    buf[off + 11] = this.numBuffers >>> 8;
    for (let i = NET_HDR_BASE_SIZE; i < size; i++) buf[off + i] = 0;
  }
}

/** A fresh header record (for driver-side code and tests). */
export function netHdr(fields: Partial<Omit<NetHdr, 'clear' | 'copyFrom' | 'parse' | 'serialize'>> = {}): NetHdr {
  return Object.assign(new NetHdr(), fields);
}
