import { describe, it, expect } from 'vitest';
import { VirtioNetDevice } from '../../../src/device/net/net-device.js';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import { netHdrSize } from '../../../src/device/net/header.js';
import { VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_OK } from '../../../src/device/net/ctrl.js';
import { FeatureSet } from '../../../src/features/set.js';
import { netGuest } from './harness.js';
import { ETH_P_IP, eth, mac } from './frames.js';

const ME = '52:54:00:12:34:56';
const readMac = (g: ReturnType<typeof netGuest>): string =>
  Array.from({ length: 6 }, (_, i) => g.rig.core.readConfig(i, 1).toString(16).padStart(2, '0')).join(':');

describe('configuration space', () => {
  it('[net.dev-cfg-layout.device.1] [net.dev-cfg-layout.device.2] mac, status, max_virtqueue_pairs and mtu at their offsets; bad values refused at build time', () => {
    const g = netGuest({ mac: ME, queuePairs: 3, mtu: 1500 });
    expect(readMac(g)).toBe(ME);
    expect(g.rig.core.readConfig(6, 2)).toBe(1); // LINK_UP
    expect(g.rig.core.readConfig(8, 2)).toBe(3);
    expect(g.rig.core.readConfig(10, 2)).toBe(1500);
    expect(g.rig.core.readConfig(0, 4)).toBe(0x12005452);
    for (const b of [NET_F.MAC, NET_F.STATUS, NET_F.MQ, NET_F.MTU, NET_F.MRG_RXBUF, NET_F.CTRL_VQ]) expect(g.rig.features.has(b)).toBe(true);
    expect(() => new VirtioNetDevice({ queuePairs: 0 })).toThrow(/queuePairs/);
    expect(() => new VirtioNetDevice({ queuePairs: 0x8001 })).toThrow(/queuePairs/);
    expect(() => new VirtioNetDevice({ mtu: 67 })).toThrow(/mtu/);
    expect(() => new VirtioNetDevice({ mac: '52:54:00' })).toThrow(/MAC/);
    expect(new VirtioNetDevice({ queuePairs: 0x8000 }).numQueues).toBe(0x10001);
  });

  it('[net.dev-cfg-layout.driver.1] driver writes to the config space are ignored', () => {
    const g = netGuest({ mac: ME });
    g.rig.core.writeConfig(0, 4, 0xffffffff);
    g.rig.core.writeConfig(6, 2, 0);
    expect(readMac(g)).toBe(ME);
    expect(g.rig.core.readConfig(6, 2)).toBe(1);
    expect(g.dev.config.ignoredWrites).toBe(2);
  });

  it('[pci.common-cfg.device.6] setLink flips LINK_UP, changes config_generation and raises a config interrupt', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be });
    const gen0 = g.rig.core.configGeneration;
    const irq0 = g.rig.hooks.configIrqs;
    expect(g.dev.setLink(false)).toBe(true);
    expect(g.rig.core.readConfig(6, 2) & 1).toBe(0);
    expect(g.rig.core.configGeneration).not.toBe(gen0);
    expect(g.rig.hooks.configIrqs).toBe(irq0 + 1);
    expect(g.dev.setLink(false)).toBe(false); // no change, no interrupt
    expect(g.rig.hooks.configIrqs).toBe(irq0 + 1);
    // link down: TX chains are consumed but frames dropped
    const sent: number[] = [];
    be.onSend = (_b, _o, len) => sent.push(len);
    g.drv.send(eth(mac('ff:ff:ff:ff:ff:ff'), mac(ME), ETH_P_IP, new Uint8Array(50)));
    expect(sent).toEqual([]);
    expect(g.dev.stats.txLinkDown).toBe(1);
    g.dev.setLink(true);
    expect(g.rig.core.readConfig(6, 2) & 1).toBe(1);
    expect(g.rig.hooks.configIrqs).toBe(irq0 + 2);
    g.drv.send(eth(mac('ff:ff:ff:ff:ff:ff'), mac(ME), ETH_P_IP, new Uint8Array(50)));
    expect(sent).toEqual([64]);
  });

  it('[net.gratuitous-packet-sending.device.1] announce sets VIRTIO_NET_S_ANNOUNCE; ANNOUNCE_ACK clears it before the buffer is used', () => {
    const g = netGuest({ mac: ME });
    const irq0 = g.rig.hooks.configIrqs;
    expect(g.dev.announce()).toBe(true);
    expect(g.rig.core.readConfig(6, 2)).toBe(3);
    expect(g.rig.hooks.configIrqs).toBe(irq0 + 1);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK)).toBe(VIRTIO_NET_OK);
    expect(g.rig.core.readConfig(6, 2)).toBe(1);
    // without GUEST_ANNOUNCE negotiated the host request is refused
    const h = netGuest({ mac: ME }, { decline: [NET_F.GUEST_ANNOUNCE] });
    expect(h.dev.announce()).toBe(false);
  });

  it('[net.setting-mac-address-filtering.device.3] MAC_ADDR_SET updates mac in config space before the command completes; reset restores it', () => {
    const g = netGuest({ mac: ME });
    const gen0 = g.rig.core.configGeneration;
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac('02:00:00:aa:bb:cc'))).toBe(VIRTIO_NET_OK);
    expect(readMac(g)).toBe('02:00:00:aa:bb:cc');
    expect(g.rig.core.configGeneration).not.toBe(gen0);
    expect(g.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, new Uint8Array(5))).toBe(1); // bad length → ERR
    g.rig.core.writeStatus(0);
    expect(readMac(g)).toBe(ME);
  });

  it('[net.setting-up-receive-buffers.driver.2] header size: 12, 20 with HASH_REPORT, 24 with HOST_UDP_TUNNEL_GSO, 32 with OUT_NET_HEADER or IPSEC', () => {
    expect(netHdrSize(FeatureSet.fromBits([32]))).toBe(12);
    expect(netHdrSize(FeatureSet.fromBits([32, NET_F.MRG_RXBUF]))).toBe(12);
    expect(netHdrSize(FeatureSet.fromBits([NET_F.HASH_REPORT]))).toBe(20);
    expect(netHdrSize(FeatureSet.fromBits([NET_F.HASH_REPORT, NET_F.HOST_UDP_TUNNEL_GSO]))).toBe(24);
    expect(netHdrSize(FeatureSet.fromBits([NET_F.OUT_NET_HEADER]))).toBe(32);
    expect(netHdrSize(FeatureSet.fromBits([NET_F.IPSEC]))).toBe(32);
  });

  it('queue numbering: controlq = 2N with MQ (N = max_virtqueue_pairs), 2 without', () => {
    const withMq = netGuest({ mac: ME, queuePairs: 4 });
    expect(withMq.dev.numQueues).toBe(9);
    expect(withMq.dev.controlQueue).toBe(8);
    expect(withMq.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac(ME))).toBe(VIRTIO_NET_OK);
    const noMq = netGuest({ mac: ME, queuePairs: 4 }, { decline: [NET_F.MQ] });
    expect(noMq.dev.controlQueue).toBe(2);
    expect(noMq.drv.ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac(ME))).toBe(VIRTIO_NET_OK);
    const noCtrl = netGuest({ mac: ME, ctrlVq: false });
    expect(noCtrl.dev.numQueues).toBe(2);
    expect(noCtrl.dev.controlQueue).toBe(-1);
  });

  it('[net.dev-cfg-layout.device.5] [net.dev-cfg-layout.device.6] with MTU negotiated: mtu+14 frames pass both ways, longer gso-NONE frames are dropped', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be, mtu: 1000 });
    g.drv.postRx(0, 8, 2048);
    const sent: number[] = [];
    be.onSend = (_b, _o, len) => sent.push(len);
    g.drv.send(eth(mac('02:00:00:00:00:09'), mac(ME), ETH_P_IP, new Uint8Array(1000)));
    g.drv.send(eth(mac('02:00:00:00:00:09'), mac(ME), ETH_P_IP, new Uint8Array(1001)));
    expect(sent).toEqual([1014]);
    expect(g.dev.stats.txOversize).toBe(1);
    be.inject(eth(mac(ME), mac('02:00:00:00:00:09'), ETH_P_IP, new Uint8Array(1000)));
    be.inject(eth(mac(ME), mac('02:00:00:00:00:09'), ETH_P_IP, new Uint8Array(1001)));
    expect(g.drv.recv().map((r) => r.frame.length)).toEqual([1014]);
    expect(g.dev.stats.rxOversize).toBe(1);
  });
});
