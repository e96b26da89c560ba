import { describe, it, expect } from 'vitest';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import { NetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, netHdr } from '../../../src/device/net/header.js';
import { MAX_FRAME_LEN } from '../../../src/device/net/stats.js';
import { STATUS_NEEDS_RESET } from '../../../src/features/status.js';
import { netGuest } from './harness.js';
import { BROADCAST, ETH_P_IP, eth, mac } from './frames.js';

const ME = '52:54:00:00:00:01';

function rig(decline: number[] = []) {
  const be = new DirectBackend();
  const sent: Array<{ len: number; meta: NetHdr | null; bytes: Uint8Array }> = [];
  be.onSend = (b, o, len, meta) => sent.push({ len, meta: meta === null ? null : new NetHdr().copyFrom(meta), bytes: b.slice(o, o + len) });
  const g = netGuest({ mac: ME, backend: be }, { decline });
  return { be, g, sent };
}
const frame = (n = 60): Uint8Array => eth(BROADCAST, mac(ME), ETH_P_IP, Uint8Array.from({ length: n - 14 }, (_, i) => i));

describe('transmit path', () => {
  it('[basic.split-vq.vq-used-ring.device.2] a frame reaches the backend unchanged; used len is 0', () => {
    const { g, sent } = rig();
    const f = frame(100);
    expect(g.drv.send(f)).toEqual([0]);
    expect(g.drv.send(f, { splitHeader: false })).toEqual([0]);
    expect(sent.map((s) => s.bytes)).toEqual([f, f]);
    expect(sent[0]!.meta).toBeNull();
    expect(g.dev.stats.txFrames).toBe(2);
  });

  it('[net.packet-transmission.driver.1] a chain shorter than the virtio_net_hdr is a guest error: queue parked, NEEDS_RESET, nothing thrown', () => {
    const { g, sent } = rig();
    expect(() => g.drv.send(frame(), { truncateTo: 11 })).not.toThrow();
    const e = g.rig.core.choke.last;
    expect(e?.clause).toBe('net.packet-transmission.driver.1');
    expect(e?.queue).toBe(1);
    expect(g.rig.core.status & STATUS_NEEDS_RESET).not.toBe(0);
    expect(g.rig.core.isParked(1)).toBe(true);
    g.drv.send(frame());
    expect(sent).toHaveLength(0);
  });

  it('device-writable descriptors in a TX chain are ignored (no clause forbids them): frame sent, nothing written, used len 0', () => {
    const { g, sent } = rig();
    expect(g.drv.send(frame(), { writable: 64 })).toEqual([0]);
    expect(sent).toHaveLength(1);
    expect(g.dev.stats.txWritableIgnored).toBe(1);
    expect(g.rig.core.choke.count).toBe(0);
  });

  it('[net.packet-transmission.device.1] [net.packet-transmission.device.2] unknown flag bits are ignored; csum fields are not used without NEEDS_CSUM', () => {
    const { g, sent } = rig();
    g.drv.send(frame(), { hdr: netHdr({ flags: 0x80 | 0x02, csumStart: 60000, csumOffset: 60000 }) });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.meta).toBeNull();
  });

  it('[net.packet-transmission.driver.3] [net.packet-transmission.driver.5] [net.packet-transmission.driver.19] offload fields the features do not allow: dropped and counted, chain returned', () => {
    const a = rig([NET_F.CSUM, NET_F.HOST_TSO4, NET_F.HOST_TSO6, NET_F.HOST_ECN]);
    expect(a.g.drv.send(frame(), { hdr: netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 }) })).toEqual([0]);
    expect(a.g.drv.send(frame(), { hdr: netHdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448 }) })).toEqual([0]);
    expect(a.sent).toHaveLength(0);
    expect(a.g.dev.stats.txBadOffload).toBe(2);
    const b = rig();
    // GSO without NEEDS_CSUM, NEEDS_CSUM pointing past the frame, ECN bit with HOST_ECN ok
    b.g.drv.send(frame(), { hdr: netHdr({ gsoType: VIRTIO_NET_HDR_GSO_TCPV4, gsoSize: 1448 }) });
    b.g.drv.send(frame(60), { hdr: netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 50, csumOffset: 9 }) });
    expect(b.sent).toHaveLength(0);
    expect(b.g.dev.stats.txBadOffload).toBe(2);
    b.g.drv.send(frame(60), { hdr: netHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 50, csumOffset: 8 }) });
    expect(b.sent.map((s) => [s.meta?.csumStart, s.meta?.csumOffset])).toEqual([[50, 8]]);
    expect(b.g.rig.core.choke.count).toBe(0);
  });

  it('frames longer than 65535 + L2 header or shorter than an Ethernet header are dropped and counted', () => {
    const { g, sent } = rig();
    g.drv.send(new Uint8Array(MAX_FRAME_LEN + 1));
    g.drv.send(new Uint8Array(13));
    g.drv.send(new Uint8Array(MAX_FRAME_LEN).fill(1));
    expect(g.dev.stats.txOversize).toBe(1);
    expect(g.dev.stats.txRunt).toBe(1);
    expect(sent.map((s) => s.len)).toEqual([MAX_FRAME_LEN]);
  });
});
