import { describe, it, expect } from 'vitest';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_ERR, VIRTIO_NET_OK } from '../../../src/device/net/ctrl.js';
import { netGuest } from './harness.js';
import { ETH_P_IP, eth, ip, ipv4, mac } from './frames.js';

const ME = '52:54:00:00:00:01';
const SRC = mac('52:54:00:00:00:02');

function udpFlow(sport: number): Uint8Array {
  const u = new Uint8Array(8 + 16);
  const dv = new DataView(u.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, 7);
  dv.setUint16(4, u.length);
  return eth(mac(ME), SRC, ETH_P_IP, ipv4(ip('10.0.0.2'), ip('10.0.0.1'), 17, u));
}

const le16 = (n: number): Uint8Array => Uint8Array.of(n & 0xff, n >>> 8);

function rig(pairs = 4) {
  const be = new DirectBackend();
  const g = netGuest({ mac: ME, backend: be, queuePairs: pairs });
  for (let p = 0; p < pairs; p++) g.drv.postRx(2 * p, 48, 2048);
  const perQueue = (): number[] => Array.from({ length: pairs }, (_, p) => g.drv.recv(2 * p).length);
  return { be, g, perQueue };
}

describe('multiqueue', () => {
  it('[net.automatic-receive-steering-in-multiqueue-mode.device.1] before VQ_PAIRS_SET every frame goes to receiveq1', () => {
    const { be, perQueue } = rig();
    for (let s = 0; s < 32; s++) be.inject(udpFlow(1000 + s));
    expect(perQueue()).toEqual([32, 0, 0, 0]);
  });

  it('[net.automatic-receive-steering-in-multiqueue-mode.device.2] [net.automatic-receive-steering-in-multiqueue-mode.driver.2] VQ_PAIRS_SET spreads flows over the active pairs only; a flow stays on its queue', () => {
    const { be, g, perQueue } = rig();
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(3))).toBe(VIRTIO_NET_OK);
    expect(g.dev.activePairs).toBe(3);
    for (let s = 0; s < 40; s++) be.inject(udpFlow(2000 + s));
    const counts = perQueue();
    expect(counts[3]).toBe(0);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(40);
    expect(counts.filter((c) => c > 0).length).toBeGreaterThanOrEqual(2);
    // the same flow lands on the same queue every time
    for (let i = 0; i < 4; i++) be.inject(udpFlow(4242));
    const same = perQueue();
    expect(same.filter((c) => c > 0)).toEqual([4]);
    // out-of-range pair counts are refused and change nothing
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(0))).toBe(VIRTIO_NET_ERR);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(5))).toBe(VIRTIO_NET_ERR);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, Uint8Array.of(2))).toBe(VIRTIO_NET_ERR);
    expect(g.dev.activePairs).toBe(3);
    // after a reset only receiveq1 again
    g.rig.core.writeStatus(0);
    expect(g.dev.activePairs).toBe(1);
  });

  it('[net.automatic-receive-steering-in-multiqueue-mode.device.3] a flow whose queue has no buffers is steered to another active pair', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be, queuePairs: 2 });
    g.drv.postRx(2, 8, 2048); // only receiveq2 has buffers
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(2))).toBe(VIRTIO_NET_OK);
    for (let s = 0; s < 8; s++) be.inject(udpFlow(3000 + s));
    expect(g.drv.recv(2)).toHaveLength(8);
    expect(g.dev.backlogged).toBe(0);
  });

  it('transmitqN carries frames; without MQ negotiated VQ_PAIRS_SET answers ERR', () => {
    const { g } = rig();
    const sent: number[] = [];
    const be = new DirectBackend();
    be.onSend = (_b, _o, len) => sent.push(len);
    g.dev.attach(be);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(4))).toBe(VIRTIO_NET_OK);
    for (let p = 0; p < 4; p++) expect(g.drv.send(udpFlow(p + 1), { q: 2 * p + 1 })).toEqual([0]);
    expect(sent).toHaveLength(4);
    const h = netGuest({ mac: ME, queuePairs: 4 }, { decline: [NET_F.MQ] });
    expect(h.drv.ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, le16(2))).toBe(VIRTIO_NET_ERR);
  });
});
