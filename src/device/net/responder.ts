/**
 * A tiny in-process "host" on the other end of a virtio-net device: it owns one IPv4 address and
 * one MAC, answers ARP requests for that address and ICMP echo requests sent to it, and ignores
 * everything else. Enough for a guest to `ping` something without a tap device or a switch —
 * used by `serve net --responder IP` (demos, real-guest tests).
 *
 * It is a {@link NetBackend}: frames the device transmits arrive in {@link send}; a reply is built
 * in a preallocated buffer and handed to the device's receive function synchronously (the device
 * copies it into a receive buffer or its backlog before returning), so nothing is allocated per
 * frame. Offload metadata of incoming frames is ignored: every reply checksum is computed here from
 * scratch, and replies carry no metadata (plain, fully checksummed frames).
 */
import { VirtioError } from '../../errors.js';
import { logger } from '../../log.js';
import type { FrameReceiver, NetBackend } from './backend.js';
import { foldSum, onesSum } from './checksum.js';
import { formatMac, parseMac } from './config.js';
import type { NetHdr } from './header.js';

const log = logger('net');

const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
const ETH_P_ARP = 0x0806;
const ARP_LEN = 28;
const IPPROTO_ICMP = 1;
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;
/** Largest frame answered (an echo reply is as long as the request). */
const MAX_REPLY = 1514 + 4;

/** Options of {@link NetResponder}. */
export interface NetResponderOptions {
  /** The IPv4 address answered for ("10.0.2.2"). */
  ip: string;
  /** The responder's own MAC (default 02:76:6b:ff:00:02, locally administered). */
  mac?: string;
}

/** What the responder did. */
export interface NetResponderStats {
  arpReplies: number;
  echoReplies: number;
  /** Frames that were not an ARP request / echo request for our address (or were malformed). */
  ignored: number;
}

/** Parse dotted-quad IPv4 into a number (big-endian order). */
export function parseIpv4(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s.trim());
  const parts = m === null ? [] : m.slice(1).map(Number);
  if (parts.length !== 4 || parts.some((p) => p > 255)) throw new VirtioError('INVALID_ARGUMENT', `'${s}' is not an IPv4 address (a.b.c.d, each 0..255)`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Answers ARP and ICMP echo for one IPv4 address. */
export class NetResponder implements NetBackend {
  /** The address answered for (number, big-endian order) and as text. */
  readonly ip: number;
  readonly ipText: string;
  /** Our MAC (6 bytes). */
  readonly mac: Uint8Array;
  readonly stats: NetResponderStats = { arpReplies: 0, echoReplies: 0, ignored: 0 };
  private cb: FrameReceiver | null = null;
  private readonly out = new Uint8Array(MAX_REPLY);

  constructor(opts: NetResponderOptions) {
    this.ip = parseIpv4(opts.ip);
    this.ipText = opts.ip.trim();
    this.mac = parseMac(opts.mac ?? '02:76:6b:ff:00:02');
  }

  onFrame(cb: FrameReceiver): void {
    this.cb = cb;
  }

  send(buf: Uint8Array, off: number, len: number, _meta: NetHdr | null): void {
    if (len >= ETH_HLEN) {
      const type = (buf[off + 12]! << 8) | buf[off + 13]!;
      if (type === ETH_P_ARP && this.arp(buf, off, len)) return;
      if (type === ETH_P_IP && this.icmp(buf, off, len)) return;
    }
    this.stats.ignored++;
  }

  /** Reply to "who has <our ip>?". */
  private arp(buf: Uint8Array, off: number, len: number): boolean {
    const a = off + ETH_HLEN;
    if (len < ETH_HLEN + ARP_LEN) return false;
    // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, op 1 (request)
    if (buf[a] !== 0 || buf[a + 1] !== 1 || buf[a + 2] !== 0x08 || buf[a + 3] !== 0 || buf[a + 4] !== 6 || buf[a + 5] !== 4 || buf[a + 6] !== 0 || buf[a + 7] !== 1) return false;
    if (readU32(buf, a + 24) !== this.ip) return false;
    const o = this.out;
    copy(o, 0, buf, a + 8, 6); // eth dst = sender hardware address
    o.set(this.mac, 6);
    o[12] = ETH_P_ARP >>> 8;
    o[13] = ETH_P_ARP & 0xff;
    const r = ETH_HLEN;
    o[r] = 0;
    o[r + 1] = 1;
    o[r + 2] = 0x08;
    o[r + 3] = 0;
    o[r + 4] = 6;
    o[r + 5] = 4;
    o[r + 6] = 0;
    o[r + 7] = 2; // reply
    o.set(this.mac, r + 8); // sha
    writeU32(o, r + 14, this.ip); // spa
    copy(o, r + 18, buf, a + 8, 10); // tha + tpa = requester's sha + spa
    // Pad to the Ethernet minimum (60 bytes without FCS).
    o.fill(0, ETH_HLEN + ARP_LEN, 60);
    this.stats.arpReplies++;
    this.deliver(60);
    return true;
  }

  /** Reply to an ICMP echo request addressed to our ip. */
  private icmp(buf: Uint8Array, off: number, len: number): boolean {
    const ip = off + ETH_HLEN;
    if (len < ETH_HLEN + 20) return false;
    const vihl = buf[ip]!;
    const ihl = (vihl & 15) * 4;
    if (vihl >>> 4 !== 4 || ihl < 20) return false;
    const total = (buf[ip + 2]! << 8) | buf[ip + 3]!;
    if (total < ihl + 8 || ETH_HLEN + total > len || ETH_HLEN + total > MAX_REPLY) return false;
    if (buf[ip + 9] !== IPPROTO_ICMP || readU32(buf, ip + 16) !== this.ip) return false;
    // Fragments (MF set or a fragment offset) are not reassembled.
    if (((buf[ip + 6]! & 0x3f) | buf[ip + 7]!) !== 0) return false;
    const ic = ip + ihl;
    if (buf[ic] !== ICMP_ECHO_REQUEST || buf[ic + 1] !== 0) return false;
    const o = this.out;
    const n = ETH_HLEN + total;
    copy(o, 0, buf, off, n);
    copy(o, 0, buf, off + 6, 6); // eth dst = the sender
    o.set(this.mac, 6);
    const rip = ETH_HLEN;
    writeU32(o, rip + 16, readU32(buf, ip + 12)); // dst = their src
    writeU32(o, rip + 12, this.ip); // src = us
    o[rip + 8] = 64; // TTL
    o[rip + 10] = 0;
    o[rip + 11] = 0;
    const ipSum = ~foldSum(onesSum(o, rip, ihl)) & 0xffff;
    o[rip + 10] = ipSum >>> 8;
    o[rip + 11] = ipSum & 0xff;
    const ric = rip + ihl;
    o[ric] = ICMP_ECHO_REPLY;
    o[ric + 2] = 0;
    o[ric + 3] = 0;
    const icSum = ~foldSum(onesSum(o, ric, total - ihl)) & 0xffff;
    o[ric + 2] = icSum >>> 8;
    o[ric + 3] = icSum & 0xff;
    this.stats.echoReplies++;
    this.deliver(n < 60 ? this.pad(n) : n);
    return true;
  }

  private pad(n: number): number {
    this.out.fill(0, n, 60);
    return 60;
  }

  private deliver(n: number): void {
    const cb = this.cb;
    if (cb === null) return;
    try {
      cb(this.out, 0, n, null);
    } catch (e) {
      log('responder %s (%s): delivering a reply threw: %O', this.ipText, formatMac(this.mac), e);
    }
  }
}

/** Copy `n` bytes (no views allocated). */
function copy(dst: Uint8Array, d: number, src: Uint8Array, s: number, n: number): void {
  for (let i = 0; i < n; i++) dst[d + i] = src[s + i]!;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
