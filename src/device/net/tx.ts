/**
 * Transmit path of one device: pop TX chains, copy header + frame out of guest memory into one
 * reusable buffer, validate the virtio_net_hdr against the negotiated features, hand the frame to
 * the backend, return the chain used with len 0 (the device writes nothing into a TX buffer).
 *
 * Choices (clause ids beside each check below):
 *  - A chain whose device-readable part is shorter than the negotiated header size breaks
 *    net.packet-transmission.driver.1 (the TX header has the RX header's size): that is a guest
 *    error → choke point, the queue parks (QEMU also marks the device broken here).
 *  - Device-writable descriptors in a TX chain: no clause forbids them, so they are ignored
 *    (counted in txWritableIgnored; used len stays 0).
 *  - Frames that break a per-packet driver rule (offload bits not negotiated, GSO without
 *    NEEDS_CSUM, checksum position outside the frame, larger than mtu with gso NONE, larger than
 *    {@link MAX_FRAME_LEN}, shorter than an Ethernet header) are dropped and counted: one bad
 *    packet does not take the device down, the chain is still returned.
 *  - Flag bits the device does not recognize are ignored (net.packet-transmission.device.1), and
 *    csum_start/csum_offset are ignored without NEEDS_CSUM (net.packet-transmission.device.2).
 *
 * One frame buffer of header + {@link MAX_FRAME_LEN} bytes is allocated per device; nothing per frame.
 */
import type { AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../choke.js';
import { DescChain, type DeviceQueue } from '../../queue/types.js';
import { readFromChain } from '../../queue/chain-io.js';
import type { FeatureSet } from '../../features/set.js';
import { NET_F } from './features.js';
import {
  NET_HDR_MAX_SIZE,
  NetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from './header.js';
import { ETH_HLEN, MAX_FRAME_LEN, VLAN_HLEN, type NetStats } from './stats.js';

/** Where a valid frame goes: `buf[off..off+len)` is valid only during the call. */
export type TxEmit = (buf: Uint8Array, off: number, len: number, meta: NetHdr | null) => void;

/** Negotiated transmit capabilities (from the feature set at DRIVER_OK). */
export interface TxCaps {
  hdrSize: number;
  csum: boolean;
  tso4: boolean;
  tso6: boolean;
  ecn: boolean;
  ufo: boolean;
  uso: boolean;
  /** Negotiated mtu, or 0 when VIRTIO_NET_F_MTU was not negotiated. */
  mtu: number;
}

/** TX capabilities implied by a negotiated feature set. */
export function txCaps(f: FeatureSet, hdrSize: number, mtu: number): TxCaps {
  return {
    hdrSize,
    csum: f.has(NET_F.CSUM),
    tso4: f.has(NET_F.HOST_TSO4),
    tso6: f.has(NET_F.HOST_TSO6),
    ecn: f.has(NET_F.HOST_ECN),
    ufo: f.has(NET_F.HOST_UFO),
    uso: f.has(NET_F.HOST_USO),
    mtu: f.has(NET_F.MTU) ? mtu : 0,
  };
}

/** Result of validating one TX header. */
const enum TxCheck {
  OK = 0,
  BAD_OFFLOAD = 1,
  OVERSIZE = 2,
}

/** The transmit engine of a device (shared by its TX queues: they run one at a time). */
export class TxPath {
  private readonly buf = new Uint8Array(NET_HDR_MAX_SIZE + MAX_FRAME_LEN);
  private chain: DescChain;
  private readonly meta = new NetHdr();
  private heads: Int32Array;
  private lens: Uint32Array;

  constructor(maxSegments = 256) {
    this.chain = new DescChain(maxSegments);
    this.heads = new Int32Array(maxSegments);
    this.lens = new Uint32Array(maxSegments);
  }

  /** Make sure chains of `n` segments fit (called at activate with the largest queue size). */
  ensureCapacity(n: number): void {
    if (n <= this.chain.capacity) return;
    this.chain = new DescChain(n);
    this.heads = new Int32Array(n);
    this.lens = new Uint32Array(n);
  }

  /**
   * Process every available chain of `queue` (bounded to 4 × queue size per call: never spins).
   * @returns false when a guest error was reported (the caller marks the queue broken).
   */
  run(queue: DeviceQueue, space: AddressSpace, sink: GuestErrorSink, caps: TxCaps, linkUp: boolean, stats: NetStats, emit: TxEmit): boolean {
    const chain = this.chain;
    const heads = this.heads;
    const lens = this.lens;
    const batchMax = heads.length;
    const hdrSize = caps.hdrSize;
    let budget = queue.size * 4;
    let n = 0;
    let ok = true;
    outer: for (;;) {
      queue.disableNotifications();
      while (budget > 0 && queue.pop(chain)) {
        budget--;
        const rb = chain.readableBytes;
        if (rb < hdrSize) {
          // net.packet-transmission.driver.1: every TX buffer starts with the full virtio_net_hdr.
          try {
            sink.guestError({
              code: 'DEVICE_REQUEST_INVALID',
              clause: 'net.packet-transmission.driver.1',
              message: `virtio-net transmit queue ${queue.index}: chain ${chain.head} has ${rb} device-readable bytes, less than the ${hdrSize}-byte virtio_net_hdr`,
              queue: queue.index,
            });
          } catch {
            // sinks do not throw
          }
          ok = false;
          break outer;
        }
        if (chain.count > chain.readable) stats.txWritableIgnored++;
        const frameLen = rb - hdrSize;
        if (frameLen > MAX_FRAME_LEN) {
          stats.txOversize++;
        } else {
          const buf = this.buf;
          readFromChain(space, chain, buf, 0, rb);
          if (!linkUp) stats.txLinkDown++;
          else if (frameLen < ETH_HLEN) stats.txRunt++;
          else {
            const meta = this.meta.parse(buf, 0);
            const c = this.check(meta, buf, hdrSize, frameLen, caps);
            if (c === TxCheck.BAD_OFFLOAD) stats.txBadOffload++;
            else if (c === TxCheck.OVERSIZE) stats.txOversize++;
            else {
              stats.txFrames++;
              stats.txBytes += frameLen;
              emit(buf, hdrSize, frameLen, meta.flags === 0 && meta.gsoType === VIRTIO_NET_HDR_GSO_NONE ? null : meta);
            }
          }
        }
        // Used len 0: nothing was written into the buffer.
        heads[n] = chain.head;
        lens[n] = 0;
        if (++n === batchMax) {
          queue.pushUsedBatch(heads, lens, n);
          n = 0;
        }
      }
      if (budget === 0) {
        queue.enableNotifications();
        break;
      }
      if (!queue.enableNotifications()) break;
    }
    if (n > 0) queue.pushUsedBatch(heads, lens, n);
    return ok;
  }

  /** Validate and normalize the header of a frame of `len` bytes at `buf[hdrSize..]`. */
  private check(meta: NetHdr, buf: Uint8Array, hdrSize: number, len: number, caps: TxCaps): TxCheck {
    // net.packet-transmission.device.1: ignore unrecognized flags. DATA_VALID and RSC_INFO are
    // device→driver only (net.packet-transmission.driver.28): ignored too.
    meta.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
    meta.numBuffers = 0;
    if (meta.flags !== 0) {
      // net.packet-transmission.driver.3: NEEDS_CSUM only with VIRTIO_NET_F_CSUM.
      if (!caps.csum) return TxCheck.BAD_OFFLOAD;
      // The checksum field must lie inside the frame (a malicious offset must not reach outside).
      if (meta.csumStart + meta.csumOffset + 2 > len) return TxCheck.BAD_OFFLOAD;
    } else {
      // net.packet-transmission.device.2: without NEEDS_CSUM, csum_start/csum_offset are not used.
      meta.csumStart = 0;
      meta.csumOffset = 0;
    }
    const g = meta.gsoType;
    if (g === VIRTIO_NET_HDR_GSO_NONE) {
      meta.hdrLen = 0;
      meta.gsoSize = 0;
      // net.dev-cfg-layout.driver.8 / device.6: with MTU negotiated, gso NONE frames are at most mtu + L2 header.
      if (caps.mtu > 0 && len > caps.mtu + ETH_HLEN + (isVlan(buf, hdrSize) ? VLAN_HLEN : 0)) return TxCheck.OVERSIZE;
      return TxCheck.OK;
    }
    const base = g & ~VIRTIO_NET_HDR_GSO_ECN;
    // net.packet-transmission.driver.5/6/7/8/18: each GSO type only with its HOST_* feature.
    // Tunnel bits (0x20/0x40) need HOST_UDP_TUNNEL_GSO, which is never offered (…device.6/8).
    let allowed: boolean;
    switch (base) {
      case VIRTIO_NET_HDR_GSO_TCPV4:
        allowed = caps.tso4;
        break;
      case VIRTIO_NET_HDR_GSO_TCPV6:
        allowed = caps.tso6;
        break;
      case VIRTIO_NET_HDR_GSO_UDP:
        allowed = caps.ufo;
        break;
      case VIRTIO_NET_HDR_GSO_UDP_L4:
        allowed = caps.uso;
        break;
      default:
        allowed = false;
    }
    if (!allowed) return TxCheck.BAD_OFFLOAD;
    // net.packet-transmission.driver.9: the ECN bit only with HOST_ECN.
    if ((g & VIRTIO_NET_HDR_GSO_ECN) !== 0 && !caps.ecn) return TxCheck.BAD_OFFLOAD;
    // net.packet-transmission.driver.19: GSO needs NEEDS_CSUM and an MSS.
    if (meta.flags === 0 || meta.gsoSize === 0) return TxCheck.BAD_OFFLOAD;
    return TxCheck.OK;
  }
}

/** True when the frame at `buf[off..]` carries an 802.1Q tag. */
export function isVlan(buf: Uint8Array, off: number): boolean {
  return buf[off + 12] === 0x81 && buf[off + 13] === 0x00;
}
