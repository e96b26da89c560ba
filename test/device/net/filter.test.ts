import { describe, it, expect } from 'vitest';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import {
  VIRTIO_NET_CTRL_MAC,
  VIRTIO_NET_CTRL_MAC_TABLE_SET,
  VIRTIO_NET_CTRL_RX,
  VIRTIO_NET_CTRL_RX_ALLMULTI,
  VIRTIO_NET_CTRL_RX_ALLUNI,
  VIRTIO_NET_CTRL_RX_NOBCAST,
  VIRTIO_NET_CTRL_RX_NOMULTI,
  VIRTIO_NET_CTRL_RX_NOUNI,
  VIRTIO_NET_CTRL_RX_PROMISC,
  VIRTIO_NET_CTRL_VLAN,
  VIRTIO_NET_ERR,
  VIRTIO_NET_OK,
} from '../../../src/device/net/ctrl.js';
import { MAC_TABLE_ENTRIES } from '../../../src/device/net/filter.js';
import { STATUS_NEEDS_RESET } from '../../../src/features/status.js';
import { SgList } from '../../../src/queue/types.js';
import { netGuest } from './harness.js';
import { BROADCAST, ETH_P_IP, eth, mac } from './frames.js';

const ME = '52:54:00:00:00:01';
const SRC = mac('52:54:00:00:00:99');
const OTHER = mac('52:54:00:00:00:02');
const TABLED = mac('52:54:00:00:00:03');
const MCAST = mac('01:00:5e:00:00:01');
const MCAST2 = mac('33:33:00:00:00:01');

function rig(decline: number[] = []) {
  const be = new DirectBackend();
  const g = netGuest({ mac: ME, backend: be }, { decline });
  g.drv.postRx(0, 32, 2048);
  const deliver = (dst: Uint8Array): boolean => {
    be.inject(eth(dst, SRC, ETH_P_IP, new Uint8Array(46)));
    return g.drv.recv().length === 1;
  };
  const on = (cmd: number, v: boolean): number => g.drv.ctrl(VIRTIO_NET_CTRL_RX, cmd, Uint8Array.of(v ? 1 : 0));
  return { be, g, deliver, on };
}

/** le32 N, N MACs, le32 M, M MACs. */
function table(uni: Uint8Array[], multi: Uint8Array[]): Uint8Array {
  const b = new Uint8Array(8 + 6 * (uni.length + multi.length));
  const dv = new DataView(b.buffer);
  dv.setUint32(0, uni.length, true);
  uni.forEach((m, i) => b.set(m, 4 + 6 * i));
  const at = 4 + 6 * uni.length;
  dv.setUint32(at, multi.length, true);
  multi.forEach((m, i) => b.set(m, at + 4 + 6 * i));
  return b;
}

describe('receive filtering', () => {
  it('[net.setting-mac-address-filtering.device.1] [net.setting-mac-address-filtering.device.4] after reset: own MAC and broadcast accepted, other unicast dropped, multicast needs the table', () => {
    const { g, deliver } = rig();
    expect(g.dev.filter.uniCount + g.dev.filter.multiCount).toBe(0);
    expect(deliver(mac(ME))).toBe(true);
    expect(deliver(BROADCAST)).toBe(true);
    expect(deliver(OTHER)).toBe(false);
    expect(deliver(MCAST)).toBe(false); // CTRL_RX negotiated and the multicast table is empty
    expect(g.dev.stats.rxFiltered).toBe(2);
  });

  it('[net.setting-mac-address-filtering.device.2] [net.setting-mac-address-filtering.driver.3] MAC_TABLE_SET: listed unicast and multicast addresses pass, others do not', () => {
    const { g, deliver } = rig();
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table([TABLED], [MCAST]))).toBe(VIRTIO_NET_OK);
    expect(g.dev.filter.uniCount).toBe(1);
    expect(deliver(TABLED)).toBe(true);
    expect(deliver(MCAST)).toBe(true);
    expect(deliver(MCAST2)).toBe(false);
    expect(deliver(OTHER)).toBe(false);
    // malformed counts → ERR, table unchanged
    const bad = table([TABLED], [MCAST]);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, bad.subarray(0, bad.length - 1))).toBe(VIRTIO_NET_ERR);
    expect(deliver(TABLED)).toBe(true);
    // [net.setting-mac-address-filtering.driver.4] empty table
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table([], []))).toBe(VIRTIO_NET_OK);
    expect(deliver(TABLED)).toBe(false);
    // overflowing a class accepts every address of that class
    const many = Array.from({ length: MAC_TABLE_ENTRIES + 1 }, (_, i) => Uint8Array.from([2, 0, 0, 0, 1, i]));
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table(many, []))).toBe(VIRTIO_NET_OK);
    expect(g.dev.filter.uniOverflow).toBe(true);
    expect(deliver(OTHER)).toBe(true);
    expect(deliver(MCAST)).toBe(false);
  });

  it('[net.packet-receive-filtering.device.1] PROMISC receives everything (even with NOUNI/NOBCAST on); ALLMULTI receives all multicast', () => {
    const { deliver, on } = rig();
    expect(deliver(OTHER)).toBe(false);
    expect(on(VIRTIO_NET_CTRL_RX_PROMISC, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(OTHER)).toBe(true);
    expect(deliver(MCAST)).toBe(true);
    expect(on(VIRTIO_NET_CTRL_RX_NOUNI, true)).toBe(VIRTIO_NET_OK);
    expect(on(VIRTIO_NET_CTRL_RX_NOBCAST, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(OTHER)).toBe(true);
    expect(deliver(BROADCAST)).toBe(true);
    expect(on(VIRTIO_NET_CTRL_RX_PROMISC, false)).toBe(VIRTIO_NET_OK);
    expect(deliver(mac(ME))).toBe(false); // NOUNI now applies
    expect(deliver(BROADCAST)).toBe(false);
    expect(on(VIRTIO_NET_CTRL_RX_ALLMULTI, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(MCAST)).toBe(true);
    expect(deliver(MCAST2)).toBe(true);
  });

  it('[net.packet-receive-filtering.device.2] ALLUNI, NOMULTI (wins over ALLMULTI, not for broadcast), NOUNI (wins over ALLUNI), NOBCAST (wins over ALLMULTI)', () => {
    const { deliver, on } = rig();
    expect(on(VIRTIO_NET_CTRL_RX_ALLUNI, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(OTHER)).toBe(true);
    expect(on(VIRTIO_NET_CTRL_RX_NOUNI, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(OTHER)).toBe(false);
    expect(on(VIRTIO_NET_CTRL_RX_ALLMULTI, true)).toBe(VIRTIO_NET_OK);
    expect(on(VIRTIO_NET_CTRL_RX_NOMULTI, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(MCAST)).toBe(false);
    expect(deliver(BROADCAST)).toBe(true);
    expect(on(VIRTIO_NET_CTRL_RX_NOBCAST, true)).toBe(VIRTIO_NET_OK);
    expect(deliver(BROADCAST)).toBe(false);
    // data must be exactly one byte
    const { g } = rig();
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, Uint8Array.of(1, 1))).toBe(VIRTIO_NET_ERR);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_RX, 6, Uint8Array.of(1))).toBe(VIRTIO_NET_ERR);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_VLAN, 0, Uint8Array.of(0, 0))).toBe(VIRTIO_NET_ERR);
    expect(g.dev.stats.ctrlErr).toBe(3);
  });

  it('[net.packet-receive-filtering.device.2] RX_EXTRA commands are refused when CTRL_RX_EXTRA is not negotiated; without CTRL_RX all multicast passes', () => {
    const a = rig([NET_F.CTRL_RX_EXTRA]);
    expect(a.on(VIRTIO_NET_CTRL_RX_PROMISC, true)).toBe(VIRTIO_NET_OK);
    expect(a.on(VIRTIO_NET_CTRL_RX_ALLUNI, true)).toBe(VIRTIO_NET_ERR);
    const b = rig([NET_F.CTRL_RX, NET_F.CTRL_RX_EXTRA]);
    expect(b.on(VIRTIO_NET_CTRL_RX_PROMISC, true)).toBe(VIRTIO_NET_ERR);
    expect(b.g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table([], []))).toBe(VIRTIO_NET_ERR); // …driver.1
    expect(b.deliver(MCAST)).toBe(true);
    expect(b.deliver(OTHER)).toBe(false);
    // without MAC negotiated the device does not know the driver's address: all unicast passes
    const c = rig([NET_F.MAC]);
    expect(c.deliver(OTHER)).toBe(true);
  });

  it('a control chain without an ack byte is a guest error (queue parked, NEEDS_RESET), nothing thrown', () => {
    const { g } = rig();
    const q = g.dev.controlQueue;
    const a = g.rig.alloc(16);
    g.rig.ram[a] = VIRTIO_NET_CTRL_RX;
    const dq = g.rig.drivers[q]!;
    dq.add(new SgList(2).out(a, 3), 1);
    dq.publish();
    expect(() => g.rig.core.notify(q)).not.toThrow();
    expect(g.rig.core.choke.last?.code).toBe('DEVICE_REQUEST_INVALID');
    expect(g.rig.core.status & STATUS_NEEDS_RESET).not.toBe(0);
  });
});
