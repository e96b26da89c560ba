/**
 * virtio-net over vhost-user, driven by the TypeScript front-end: the data-path feature bits QEMU's
 * vhost-user-net passes (VERSION_1, MRG_RXBUF; no CTRL_VQ — the front-end keeps the control
 * queue), rings 0 (receiveq1) and 1 (transmitq1) with their own kick/call eventfds, and the
 * in-process responder (src/device/net/responder.ts) answering an ARP request and an ICMP echo
 * request sent through the transmit ring; the replies arrive on the receive ring.
 */
import { describe, expect, it } from 'vitest';
import { VirtioNetDevice } from '../../src/device/net/net-device.js';
import { NetResponder } from '../../src/device/net/responder.js';
import { RecordingSink } from '../../src/device/choke.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1 } from '../../src/features/bits.js';
import { NET_F } from '../../src/device/net/features.js';
import { createGuestRam } from '../../src/memory/ram.js';
import { native } from '../../src/native/index.js';
import { layoutPackedRings, PackedDriverQueue } from '../../src/queue/packed/index.js';
import { layoutSplitRings, SplitDriverQueue } from '../../src/queue/split/index.js';
import { type DriverQueue, type QueueConfig, SgList } from '../../src/queue/types.js';
import { VhostUserBackend } from '../../src/vhost-user/backend.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { maskOf, VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_REPLY_ACK } from '../../src/vhost-user/protocol.js';
import { arp, BROADCAST, ETH_P_ARP, ETH_P_IP, eth, icmpEcho, inetChecksum, ip, ipv4, mac } from '../device/net/frames.js';
import { DATA_BASE, RAM_SIZE, RING_BASE, UADDR_OFFSET, waitReadable } from './helpers.js';

const SKIP = !native.available;
const HDR = 12; // VERSION_1 / MRG_RXBUF header
const RX_BUF = 2048;
const GUEST_MAC = mac('52:54:00:12:34:56');
const GUEST_IP = ip('10.0.2.15');
const PEER_IP = ip('10.0.2.2');

interface NetRig {
  rx: DriverQueue;
  tx: DriverQueue;
  fds: { rxKick: number; rxCall: number; txKick: number; txCall: number; err: number };
  ram: ReturnType<typeof createGuestRam>;
  responder: NetResponder;
  backend: VhostUserBackend;
  fe: VhostUserFrontend;
  close(): Promise<void>;
}

async function makeNetRig(packed: boolean): Promise<NetRig> {
  const ram = createGuestRam([{ base: 0, size: RAM_SIZE }], { backing: 'memfd' });
  const responder = new NetResponder({ ip: '10.0.2.2' });
  const net = new VirtioNetDevice({ ctrlVq: false, backend: responder, queueSize: 256 });
  const backend = new VhostUserBackend({ model: net, packed });
  const [a, b] = native.socketpair();
  backend.serve(a);
  const fe = VhostUserFrontend.fromFd(b, { timeoutMs: 5000 });
  const fds = { rxKick: native.eventfdCreate(0), rxCall: native.eventfdCreate(0), txKick: native.eventfdCreate(0), txCall: native.eventfdCreate(0), err: native.eventfdCreate(0) };
  const sink = new RecordingSink();

  // Handshake in QEMU's order: features, protocol features, owner, queue count, memory.
  const offered = await fe.getFeatures();
  await fe.getProtocolFeatures();
  await fe.setProtocolFeatures(maskOf([VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_MQ]));
  await fe.setOwner();
  const pairs = await fe.getQueueNum();
  if (pairs !== 1) throw new Error(`GET_QUEUE_NUM answered ${pairs}, expected 1 queue pair`);
  const want = [VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, NET_F.MRG_RXBUF, VHOST_USER_F_PROTOCOL_FEATURES];
  if (packed) want.push(VIRTIO_F_RING_PACKED);
  const m = maskOf(want);
  if ((m.lo & ~offered.lo) !== 0 || (m.hi & ~offered.hi) !== 0) throw new Error('back-end lacks a wanted feature');
  await fe.setFeatures(m);
  await fe.setMemTable([{ gpa: 0, size: RAM_SIZE, uaddr: UADDR_OFFSET, mmapOffset: 0, fd: ram.regions[0]!.fd! }]);

  const start = async (q: number, kick: number, call: number): Promise<DriverQueue> => {
    const size = 64;
    const base = RING_BASE + q * 0x8000;
    const lay = packed ? layoutPackedRings(base, size) : layoutSplitRings(base, size);
    const cfg: QueueConfig = { index: q, size, maxSize: size, desc: lay.desc, driver: lay.driver, device: lay.device, eventIdx: true, indirect: false, inOrder: false };
    const dq = packed ? new PackedDriverQueue(ram.space, cfg, sink) : new SplitDriverQueue(ram.space, cfg, sink);
    await fe.setVringNum(q, size);
    await fe.setVringBase(q, packed ? (1 << 15) | (1 << 31) : 0);
    await fe.setVringAddr({ index: q, flags: 0, desc: lay.desc + UADDR_OFFSET, used: lay.device + UADDR_OFFSET, avail: lay.driver + UADDR_OFFSET, log: 0 });
    await fe.setVringKick(q, kick);
    await fe.setVringCall(q, call);
    await fe.setVringErr(q, fds.err);
    await fe.setVringEnable(q, true);
    return dq;
  };
  const rx = await start(0, fds.rxKick, fds.rxCall);
  const tx = await start(1, fds.txKick, fds.txCall);
  return {
    rx,
    tx,
    fds,
    ram,
    responder,
    backend,
    fe,
    close: async () => {
      fe.close();
      await backend.session?.done;
      for (const fd of Object.values(fds)) native.close(fd);
      ram.close();
    },
  };
}

const sg = new SgList(4);
const RX_AREA = DATA_BASE; // 8 receive buffers
const TX_AREA = DATA_BASE + 0x10000;

/** Post `n` receive buffers (tokens 0..n-1) and kick the receive ring. */
function postRx(rig: NetRig, n: number): void {
  for (let i = 0; i < n; i++) {
    sg.clear().in(RX_AREA + i * RX_BUF, RX_BUF);
    if (rig.rx.add(sg, i) < 0) throw new Error('rx ring full');
  }
  rig.rx.publish();
  native.eventfdWrite(rig.fds.rxKick, 1);
}

/** Transmit one frame (12-byte zero header + frame in one readable buffer), kick. */
function transmit(rig: NetRig, frame: Uint8Array, slot: number): void {
  const addr = TX_AREA + slot * RX_BUF;
  const sp = rig.ram.space;
  for (let i = 0; i < HDR; i++) sp.writeU8(addr + i, 0);
  for (let i = 0; i < frame.length; i++) sp.writeU8(addr + HDR + i, frame[i]!);
  sg.clear().out(addr, HDR + frame.length);
  if (rig.tx.add(sg, slot) < 0) throw new Error('tx ring full');
  rig.tx.publish();
  native.eventfdWrite(rig.fds.txKick, 1);
}

/** Wait for the receive ring's call and read one received frame (without the header). */
async function receive(rig: NetRig): Promise<{ numBuffers: number; flags: number; frame: Uint8Array }> {
  if (!rig.rx.getUsed()) {
    await waitReadable(rig.fds.rxCall);
    native.eventfdRead(rig.fds.rxCall);
    if (!rig.rx.getUsed()) throw new Error('call on the receive ring but no used buffer');
  }
  rig.rx.enableInterrupts();
  const addr = RX_AREA + rig.rx.lastToken * RX_BUF;
  const len = rig.rx.lastLen;
  const sp = rig.ram.space;
  const out = new Uint8Array(len - HDR);
  for (let i = 0; i < out.length; i++) out[i] = sp.readU8(addr + HDR + i);
  return { flags: sp.readU8(addr), numBuffers: sp.readU8(addr + 10) | (sp.readU8(addr + 11) << 8), frame: out };
}

/** Poll `cond` on timers until it holds (rejects after 5 s: a hang, not a timing assertion). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('condition not reached within 5 s');
}

describe.skipIf(SKIP)('vhost-user virtio-net with the in-process responder', () => {
  it('refuses a net model with a control queue (QEMU keeps it; CTRL_VQ-dependent bits would arrive alone)', () => {
    expect(() => new VhostUserBackend({ model: new VirtioNetDevice() })).toThrow(/ctrlVq: false/);
  });

  for (const packed of [false, true]) {
    it(`[net.setting-up-receive-buffers.device.1] [net.processing-incoming-packets.device.2] [net.processing-incoming-packets.device.5] ${packed ? 'packed' : 'split'} rings: ARP and ICMP echo out on transmitq1, replies in on receiveq1`, async () => {
      const rig = await makeNetRig(packed);
      try {
        postRx(rig, 8);
        const rmac = rig.responder.mac;

        // ARP: who has 10.0.2.2? (broadcast)
        transmit(rig, eth(BROADCAST, GUEST_MAC, ETH_P_ARP, arp(1, GUEST_MAC, GUEST_IP, new Uint8Array(6), PEER_IP)), 0);
        const a = await receive(rig);
        expect(a.numBuffers).toBe(1);
        expect(a.flags).toBe(0);
        const af = a.frame;
        expect(af.length).toBeGreaterThanOrEqual(42);
        expect(Array.from(af.subarray(0, 6))).toEqual(Array.from(GUEST_MAC)); // to us
        expect(Array.from(af.subarray(6, 12))).toEqual(Array.from(rmac));
        expect((af[12]! << 8) | af[13]!).toBe(ETH_P_ARP);
        expect((af[20]! << 8) | af[21]!).toBe(2); // reply
        expect(Array.from(af.subarray(22, 28))).toEqual(Array.from(rmac)); // sha
        expect(Array.from(af.subarray(28, 32))).toEqual(Array.from(PEER_IP)); // spa
        expect(Array.from(af.subarray(32, 38))).toEqual(Array.from(GUEST_MAC)); // tha
        expect(Array.from(af.subarray(38, 42))).toEqual(Array.from(GUEST_IP)); // tpa

        // ICMP echo to the MAC the ARP reply gave us.
        const data = Uint8Array.from({ length: 56 }, (_, i) => (i * 13 + 5) & 0xff);
        transmit(rig, eth(rmac, GUEST_MAC, ETH_P_IP, ipv4(GUEST_IP, PEER_IP, 1, icmpEcho(8, 0x4242, 7, data), 99)), 1);
        const e = await receive(rig);
        expect(e.numBuffers).toBe(1);
        const f = e.frame;
        expect(f.length).toBe(14 + 20 + 8 + 56);
        expect(Array.from(f.subarray(0, 6))).toEqual(Array.from(GUEST_MAC));
        expect((f[12]! << 8) | f[13]!).toBe(ETH_P_IP);
        const iph = f.subarray(14, 34);
        expect(inetChecksum(iph)).toBe(0); // valid IPv4 header checksum
        expect(Array.from(iph.subarray(12, 16))).toEqual(Array.from(PEER_IP));
        expect(Array.from(iph.subarray(16, 20))).toEqual(Array.from(GUEST_IP));
        const icmp = f.subarray(34);
        expect(icmp[0]).toBe(0); // echo reply
        expect(inetChecksum(icmp)).toBe(0); // valid ICMP checksum
        expect((icmp[4]! << 8) | icmp[5]!).toBe(0x4242);
        expect((icmp[6]! << 8) | icmp[7]!).toBe(7);
        expect(Array.from(icmp.subarray(8))).toEqual(Array.from(data));

        // Both transmit buffers came back.
        let txDone = 0;
        while (rig.tx.getUsed()) txDone++;
        expect(txDone).toBe(2);
        expect(rig.responder.stats).toMatchObject({ arpReplies: 1, echoReplies: 1 });

        // An echo request for another address is ignored (nothing arrives; the responder counts it).
        transmit(rig, eth(rmac, GUEST_MAC, ETH_P_IP, ipv4(GUEST_IP, ip('10.0.2.3'), 1, icmpEcho(8, 1, 1, data), 100)), 2);
        await until(() => rig.tx.getUsed());
        expect(rig.responder.stats.ignored).toBe(1);
        expect(rig.rx.getUsed()).toBe(false);
        expect(rig.backend.stats.guestErrors).toBe(0);
      } finally {
        await rig.close();
      }
    });
  }
});
