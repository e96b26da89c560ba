import { describe, it, expect } from 'vitest';
import { NetSwitch } from '../../../src/device/net/switch.js';
import { NET_F } from '../../../src/device/net/features.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4, netHdr } from '../../../src/device/net/header.js';
import { netGuest } from './harness.js';
import { BROADCAST, ETH_P_IP, eth, ip, ipv4, mac, udpChecksumOk, udpPartial } from './frames.js';

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';
const C = '52:54:00:00:00:0c';
const NO_GUEST_OFFLOADS = [NET_F.GUEST_CSUM, NET_F.GUEST_TSO4, NET_F.GUEST_TSO6, NET_F.GUEST_ECN];

/** A sends; B's driver has no GUEST_* offloads; C's has them all. */
function lan(bBufSize = 2048) {
  const sw = new NetSwitch();
  const a = netGuest({ mac: A, backend: sw.createPort('a') });
  const b = netGuest({ mac: B, backend: sw.createPort('b') }, { decline: NO_GUEST_OFFLOADS });
  const c = netGuest({ mac: C, backend: sw.createPort('c') });
  b.drv.postRx(0, 16, bBufSize);
  c.drv.postRx(0, 16, 2048);
  return { sw, a, b, c };
}

const partialHdr = () => netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 });

describe('checksum and GSO offloads across the switch', () => {
  it('[net.processing-incoming-packets.device.5] [net.processing-incoming-packets.device.15] NEEDS_CSUM: completed in software for a driver without GUEST_CSUM, passed through to one with it', () => {
    const { a, b, c } = lan();
    const data = Uint8Array.from({ length: 301 }, (_, i) => (i * 13) & 0xff);
    const f = udpPartial(BROADCAST, mac(A), ip('10.0.0.1'), ip('10.0.0.255'), 5000, 6000, data);
    expect(udpChecksumOk(f)).toBe(false); // only the pseudo-header sum is there
    a.drv.send(f, { hdr: partialHdr() });

    const rb = b.drv.recv();
    expect(rb).toHaveLength(1);
    expect(rb[0]!.hdr.flags).toBe(0);
    expect(udpChecksumOk(rb[0]!.frame)).toBe(true);
    expect(b.dev.stats.rxCsumCompleted).toBe(1);
    // everything but the checksum field is the sender's frame
    const diff = [...rb[0]!.frame].flatMap((x, i) => (x !== f[i] ? [i] : []));
    expect(diff.every((i) => i === 40 || i === 41)).toBe(true);

    const rc = c.drv.recv();
    expect(rc).toHaveLength(1);
    expect(rc[0]!.hdr).toMatchObject({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6, gsoType: 0 });
    expect(rc[0]!.frame).toEqual(f); // the shared source frame was not modified by B's completion
  });

  it('[net.processing-incoming-packets.device.5] the completed checksum lands correctly when its two bytes straddle two mergeable buffers', () => {
    const { a, b } = lan(53); // header 12 + frame bytes 0..40 in buffer 0 → checksum bytes 40 | 41 split
    const f = udpPartial(mac(B), mac(A), ip('10.0.0.1'), ip('10.0.0.2'), 1, 2, new Uint8Array(200).fill(0x5a));
    a.drv.send(f, { hdr: partialHdr() });
    const rb = b.drv.recv();
    expect(rb).toHaveLength(1);
    expect(rb[0]!.buffers).toBeGreaterThan(1);
    expect(rb[0]!.lens[0]).toBe(53);
    expect(udpChecksumOk(rb[0]!.frame)).toBe(true);
  });

  it('[net.processing-incoming-packets.device.6] [net.processing-incoming-packets.device.12] [net.processing-incoming-packets.device.19] GSO frames: passed with gso fields to a driver with GUEST_TSO4, dropped (not segmented) for one without', () => {
    const { sw, a, b, c } = lan();
    // learn B and C so the frames are unicast
    b.drv.send(eth(mac(A), mac(B), ETH_P_IP, new Uint8Array(46)));
    c.drv.send(eth(mac(A), mac(C), ETH_P_IP, new Uint8Array(46)));
    expect(sw.macTable()).toHaveLength(2);
    const tcp = new Uint8Array(20 + 4000);
    tcp[12] = 0x50;
    const pkt = (dst: string): Uint8Array => eth(mac(dst), mac(A), ETH_P_IP, ipv4(ip('10.0.0.1'), ip('10.0.0.3'), 6, tcp));
    const gso = () => netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448, hdrLen: 54 });
    a.drv.send(pkt(C), { hdr: gso() });
    const rc = c.drv.recv();
    expect(rc).toHaveLength(1);
    expect(rc[0]!.hdr).toMatchObject({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448, hdrLen: 54, csumStart: 34, csumOffset: 16 });
    expect(rc[0]!.frame.length).toBe(14 + 20 + 4020);
    a.drv.send(pkt(B), { hdr: gso() });
    expect(b.drv.recv()).toHaveLength(0);
    expect(b.dev.stats.rxGsoDropped).toBe(1);
    // ECN bit towards a driver without GUEST_ECN: dropped
    const d = netGuest({ mac: '52:54:00:00:00:0d', backend: sw.createPort('d') }, { decline: [NET_F.GUEST_ECN] });
    d.drv.postRx(0, 8, 2048);
    d.drv.send(eth(mac(A), mac('52:54:00:00:00:0d'), ETH_P_IP, new Uint8Array(46)));
    const ecn = gso();
    ecn.gsoType |= VIRTIO_NET_HDR_GSO_ECN;
    a.drv.send(pkt('52:54:00:00:00:0d'), { hdr: ecn });
    expect(d.drv.recv()).toHaveLength(0);
    expect(d.dev.stats.rxGsoDropped).toBe(1);
    a.drv.send(pkt('52:54:00:00:00:0d'), { hdr: gso() });
    expect(d.drv.recv().map((r) => r.hdr.gsoType)).toEqual([VIRTIO_NET_HDR_GSO_TCPV4]);
  });
});
