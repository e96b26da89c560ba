/**
 * Frame builders for the net tests (Ethernet, ARP, IPv4, ICMP echo, UDP with a partial checksum)
 * and a tiny guest "stack" that answers ARP requests and ICMP echo requests — enough for two
 * simulated guests to ping each other. Checksums are computed here independently of src/.
 */
import type { NetDriver } from './harness.js';

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const BROADCAST = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export function mac(s: string): Uint8Array {
  return Uint8Array.from(s.split(':').map((x) => parseInt(x, 16)));
}
export function ip(s: string): Uint8Array {
  return Uint8Array.from(s.split('.').map((x) => parseInt(x, 10)));
}
const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
const eq = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** RFC 1071 sum (folded, not complemented) — an independent implementation for the tests. */
export function inetSum(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
export const inetChecksum = (b: Uint8Array): number => ~inetSum(b) & 0xffff;

export function eth(dst: Uint8Array, src: Uint8Array, type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >>> 8;
  f[13] = type & 0xff;
  f.set(payload, 14);
  return f;
}

export function arp(op: 1 | 2, sha: Uint8Array, spa: Uint8Array, tha: Uint8Array, tpa: Uint8Array): Uint8Array {
  const a = new Uint8Array(28);
  const dv = new DataView(a.buffer);
  dv.setUint16(0, 1); // Ethernet
  dv.setUint16(2, ETH_P_IP);
  a[4] = 6;
  a[5] = 4;
  dv.setUint16(6, op);
  a.set(sha, 8);
  a.set(spa, 14);
  a.set(tha, 18);
  a.set(tpa, 24);
  return a;
}

export function ipv4(src: Uint8Array, dst: Uint8Array, proto: number, payload: Uint8Array, id = 1): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  const dv = new DataView(p.buffer);
  p[0] = 0x45;
  dv.setUint16(2, p.length);
  dv.setUint16(4, id);
  p[8] = 64;
  p[9] = proto;
  p.set(src, 12);
  p.set(dst, 16);
  dv.setUint16(10, inetChecksum(p.subarray(0, 20)));
  p.set(payload, 20);
  return p;
}

export function icmpEcho(type: 8 | 0, id: number, seq: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  const dv = new DataView(m.buffer);
  m[0] = type;
  dv.setUint16(4, id);
  dv.setUint16(6, seq);
  m.set(data, 8);
  dv.setUint16(2, inetChecksum(m));
  return m;
}

/**
 * An IPv4/UDP frame whose UDP checksum field holds only the pseudo-header sum, as a driver sends
 * it with VIRTIO_NET_HDR_F_NEEDS_CSUM (csum_start = 34, csum_offset = 6).
 */
export function udpPartial(dstMac: Uint8Array, srcMac: Uint8Array, src: Uint8Array, dst: Uint8Array, sport: number, dport: number, data: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + data.length);
  const dv = new DataView(u.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, u.length);
  u.set(data, 8);
  const pseudo = new Uint8Array(12);
  pseudo.set(src, 0);
  pseudo.set(dst, 4);
  pseudo[9] = 17;
  new DataView(pseudo.buffer).setUint16(10, u.length);
  dv.setUint16(6, inetSum(pseudo)); // partial: pseudo-header sum, not complemented
  return eth(dstMac, srcMac, ETH_P_IP, ipv4(src, dst, 17, u));
}

/** True when the UDP checksum of an IPv4/UDP frame verifies (sum over pseudo header + datagram = 0xffff). */
export function udpChecksumOk(frame: Uint8Array): boolean {
  const ipStart = 14;
  const ihl = (frame[ipStart]! & 15) * 4;
  const u = frame.subarray(ipStart + ihl);
  const udpLen = (u[4]! << 8) | u[5]!;
  const pseudo = new Uint8Array(12);
  pseudo.set(frame.subarray(ipStart + 12, ipStart + 20), 0);
  pseudo[9] = 17;
  new DataView(pseudo.buffer).setUint16(10, udpLen);
  return inetSum(u.subarray(0, udpLen), inetSum(pseudo)) === 0xffff;
}

/** What a {@link MiniStack} saw. */
export interface StackEvent {
  kind: 'arp-request' | 'arp-reply' | 'echo-request' | 'echo-reply' | 'other';
  from: string;
  seq?: number;
  data?: Uint8Array;
}

/** A guest IP stack just big enough for ARP and ping. */
export class MiniStack {
  readonly drv: NetDriver;
  readonly mac: Uint8Array;
  readonly ip: Uint8Array;
  readonly arpCache = new Map<string, Uint8Array>();
  readonly events: StackEvent[] = [];
  /** Headers of every frame received (flags, gso, num_buffers). */
  readonly hdrs: Array<{ flags: number; gsoType: number; numBuffers: number }> = [];

  constructor(drv: NetDriver, macAddr: Uint8Array, ipAddr: Uint8Array) {
    this.drv = drv;
    this.mac = macAddr;
    this.ip = ipAddr;
  }

  /** Broadcast an ARP request for `target`. */
  arpRequest(target: Uint8Array): void {
    this.drv.send(eth(BROADCAST, this.mac, ETH_P_ARP, arp(1, this.mac, this.ip, new Uint8Array(6), target)));
  }

  /** Send an ICMP echo request (the peer's MAC must be in the ARP cache). */
  ping(target: Uint8Array, id: number, seq: number, data: Uint8Array): void {
    const dst = this.arpCache.get(target.join('.'));
    if (dst === undefined) throw new Error(`no ARP entry for ${target.join('.')}`);
    this.drv.send(eth(dst, this.mac, ETH_P_IP, ipv4(this.ip, target, 1, icmpEcho(8, id, seq, data), seq)));
  }

  /** Process every received frame, answering ARP and echo requests. Returns the new events. */
  poll(): StackEvent[] {
    const got: StackEvent[] = [];
    for (const rx of this.drv.recv(0)) {
      const f = rx.frame;
      this.hdrs.push({ flags: rx.hdr.flags, gsoType: rx.hdr.gsoType, numBuffers: rx.hdr.numBuffers });
      const type = (f[12]! << 8) | f[13]!;
      const src = f.subarray(6, 12);
      if (type === ETH_P_ARP) {
        const op = (f[20]! << 8) | f[21]!;
        const sha = f.slice(22, 28);
        const spa = f.slice(28, 32);
        const tpa = f.subarray(38, 42);
        this.arpCache.set(spa.join('.'), sha);
        if (op === 1 && eq(tpa, this.ip)) {
          got.push({ kind: 'arp-request', from: hex(sha) });
          this.drv.send(eth(sha, this.mac, ETH_P_ARP, arp(2, this.mac, this.ip, sha, spa)));
        } else if (op === 2) {
          got.push({ kind: 'arp-reply', from: hex(sha) });
        } else got.push({ kind: 'other', from: hex(src) });
        continue;
      }
      if (type === ETH_P_IP && f[14 + 9] === 1) {
        const ipHdr = f.subarray(14, 34);
        if (inetSum(ipHdr) !== 0xffff) throw new Error('bad IPv4 header checksum');
        const icmp = f.subarray(34, 14 + ((f[16]! << 8) | f[17]!));
        if (inetSum(icmp) !== 0xffff) throw new Error('bad ICMP checksum');
        const id = (icmp[4]! << 8) | icmp[5]!;
        const seq = (icmp[6]! << 8) | icmp[7]!;
        const data = icmp.slice(8);
        const peerIp = f.slice(26, 30);
        if (icmp[0] === 8 && eq(f.subarray(30, 34), this.ip)) {
          got.push({ kind: 'echo-request', from: hex(src), seq, data });
          this.drv.send(eth(f.slice(6, 12), this.mac, ETH_P_IP, ipv4(this.ip, peerIp, 1, icmpEcho(0, id, seq, data), seq)));
        } else if (icmp[0] === 0) {
          got.push({ kind: 'echo-reply', from: hex(src), seq, data });
        }
        continue;
      }
      got.push({ kind: 'other', from: hex(src) });
    }
    this.events.push(...got);
    return got;
  }
}
