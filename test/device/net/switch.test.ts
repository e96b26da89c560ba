import { describe, it, expect } from 'vitest';
import { NetSwitch } from '../../../src/device/net/switch.js';
import { netGuest } from './harness.js';
import { BROADCAST, ETH_P_IP, MiniStack, eth, ip, mac } from './frames.js';

const MAC_A = '52:54:00:00:00:0a';
const MAC_B = '52:54:00:00:00:0b';
const MAC_C = '52:54:00:00:00:0c';

function lan(n = 2) {
  const sw = new NetSwitch();
  const macs = [MAC_A, MAC_B, MAC_C].slice(0, n);
  const guests = macs.map((m, i) => {
    const g = netGuest({ mac: m, backend: sw.createPort(`p${i}`) });
    g.drv.postRx(0, 16, 2048);
    return g;
  });
  return { sw, guests };
}

describe('two guests on the switch', () => {
  it('[net.processing-incoming-packets.device.2] [net.processing-incoming-packets.device.18] ARP request/reply and ICMP echo between two simulated drivers', () => {
    const { sw, guests } = lan(2);
    const a = new MiniStack(guests[0]!.drv, mac(MAC_A), ip('10.0.0.1'));
    const b = new MiniStack(guests[1]!.drv, mac(MAC_B), ip('10.0.0.2'));

    a.arpRequest(b.ip);
    expect(b.poll()).toEqual([{ kind: 'arp-request', from: MAC_A }]); // B answered
    expect(a.poll()).toEqual([{ kind: 'arp-reply', from: MAC_B }]);
    expect(a.arpCache.get('10.0.0.2')).toEqual(mac(MAC_B));

    const payload = Uint8Array.from({ length: 56 }, (_, i) => i);
    for (let seq = 1; seq <= 3; seq++) {
      a.ping(b.ip, 0x1234, seq, payload);
      const req = b.poll();
      expect(req).toHaveLength(1);
      expect(req[0]!.kind).toBe('echo-request');
      const rep = a.poll();
      expect(rep).toHaveLength(1);
      expect(rep[0]).toMatchObject({ kind: 'echo-reply', from: MAC_B, seq });
      expect(rep[0]!.data).toEqual(payload);
    }
    // The ARP request was flooded; everything after went to learned ports.
    expect(sw.stats.flooded).toBe(1);
    expect(sw.stats.forwarded).toBe(1 + 2 * 3);
    expect(guests[0]!.dev.stats.txFrames).toBe(4);
    expect(guests[1]!.dev.stats.rxFrames).toBe(4);
    // Small frames: one buffer each (num_buffers 1), no offload flags, gso NONE.
    for (const h of [...a.hdrs, ...b.hdrs]) expect(h).toEqual({ flags: 0, gsoType: 0, numBuffers: 1 });
    expect(a.hdrs).toHaveLength(4);
    expect(guests[0]!.rig.driverSink.errors).toEqual([]);
    expect(guests[0]!.rig.core.choke.count + guests[1]!.rig.core.choke.count).toBe(0);
  });

  it('learns source MACs, floods broadcast and unknown unicast, forwards known unicast to one port', () => {
    const { sw, guests } = lan(3);
    const [a, b, c] = guests as [typeof guests[0], typeof guests[0], typeof guests[0]];
    const payload = new Uint8Array(50);

    // unknown unicast from A to B: flooded to B and C; C's filter drops it (not its MAC).
    a.drv.send(eth(mac(MAC_B), mac(MAC_A), ETH_P_IP, payload));
    expect(sw.stats.flooded).toBe(1);
    expect(sw.lookup(MAC_A)?.name).toBe('p0');
    expect(b.drv.recv()).toHaveLength(1);
    expect(c.drv.recv()).toHaveLength(0);
    expect(c.dev.stats.rxFiltered).toBe(1);

    // B answers A: A is learned → forwarded to p0 only.
    b.drv.send(eth(mac(MAC_A), mac(MAC_B), ETH_P_IP, payload));
    expect(sw.stats.forwarded).toBe(1);
    expect(sw.ports[2]!.rxFrames).toBe(1); // only the first flood reached C
    expect(a.drv.recv()).toHaveLength(1);

    // broadcast from C: flooded to A and B, both accept it.
    c.drv.send(eth(BROADCAST, mac(MAC_C), ETH_P_IP, payload));
    expect(sw.stats.flooded).toBe(2);
    expect(a.drv.recv()).toHaveLength(1);
    expect(b.drv.recv()).toHaveLength(1);
    expect(new Map(sw.macTable())).toEqual(new Map([[MAC_A, 'p0'], [MAC_B, 'p1'], [MAC_C, 'p2']]));

    // a frame to a MAC learned on the ingress port is filtered.
    a.drv.send(eth(mac(MAC_A), mac(MAC_A), ETH_P_IP, payload));
    expect(sw.stats.filtered).toBe(1);
  });

  it('a full MAC table is flushed and relearned', () => {
    const sw = new NetSwitch({ maxMacs: 2 });
    const p = [sw.createPort(), sw.createPort()];
    const got: number[] = [];
    p[1]!.onFrame(() => got.push(1));
    for (let i = 0; i < 3; i++) p[0]!.send(eth(BROADCAST, Uint8Array.from([2, 0, 0, 0, 0, i]), ETH_P_IP, new Uint8Array(4)), 0, 18, null);
    expect(sw.stats.flushes).toBe(1);
    expect(sw.macTable()).toHaveLength(1);
    expect(got).toHaveLength(3);
  });
});
