/** virtio-net checks (virtio 1.4 §5.1). */
import { NET_F } from '../../device/net/features.js';
import { defineCheck, type Check, type CheckContext } from '../check.js';
import { RawDriver, settle, waitFor, type UsedElem } from '../raw.js';
import { fail, pass, skip, type CheckResult, type ClauseOutcome } from '../verdict.js';
import { acceptWith, ethFrame, rawInit, withRaw } from './util.js';

const NET: readonly ('blk' | 'net' | 'rng' | 'console')[] = ['net'];
const GUEST_OFFLOADS = [NET_F.GUEST_CSUM, NET_F.GUEST_TSO4, NET_F.GUEST_TSO6, NET_F.GUEST_ECN, NET_F.GUEST_UFO, NET_F.GUEST_USO4, NET_F.GUEST_USO6];

/** Post `n` receive buffers of `len` bytes on queue `q`; returns their addresses by id. */
function postRx(raw: RawDriver, q: number, n: number, len: number): Map<number, number> {
  const rq = raw.queue(q);
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const a = raw.mem.alloc(len, 16);
    m.set(rq.post([{ addr: a, len, write: true }]), a);
  }
  rq.kick();
  return m;
}

interface Rx {
  used: UsedElem[];
  bufs: Uint8Array[];
}

async function receive(ctx: CheckContext, raw: RawDriver, q: number, addrs: Map<number, number>, frame: Uint8Array, min = 1): Promise<Rx> {
  ctx.dut.io.injectFrame!(frame);
  const rq = raw.queue(q);
  const used: UsedElem[] = [];
  await waitFor(() => (used.push(...rq.collect()), used.length >= min), min > 1 ? ctx.waitMs : 30, ctx.signal);
  return { used, bufs: used.map((u) => raw.mem.read(addrs.get(u.id) ?? 0, u.len)) };
}

/** Send a control command; returns the ack byte or undefined. */
async function ctrl(ctx: CheckContext, raw: RawDriver, cls: number, cmd: number, data: Uint8Array[]): Promise<number | undefined> {
  const q = raw.queueCount() - 1;
  const r = await raw.transact(q, [Uint8Array.of(cls, cmd), ...data], [1], ctx.waitMs, { signal: ctx.signal });
  return r?.data[0]?.[0];
}

async function rxChecks(ctx: CheckContext): Promise<CheckResult> {
  if (ctx.dut.io.injectFrame === undefined) return skip('no way to inject frames into this target');
  const per: Record<string, ClauseOutcome> = {};
  // A: no MRG_RXBUF, no guest offloads.
  const a = rawInit(ctx, { accept: acceptWith({ drop: [NET_F.MRG_RXBUF, ...GUEST_OFFLOADS] }) });
  try {
    const addrs = postRx(a, 0, 4, 1526);
    const frame = ethFrame(100, undefined, 5);
    const r = await receive(ctx, a, 0, addrs, frame);
    if (r.used.length !== 1) return fail(`one 100-byte frame produced ${r.used.length} used receive buffers`);
    const b = r.bufs[0]!;
    const dv = new DataView(b.buffer);
    if (r.used[0]!.len !== 12 + frame.length) return fail(`used len ${r.used[0]!.len}, expected 12 + ${frame.length}`);
    if (dv.getUint16(10, true) !== 1) return fail(`num_buffers ${dv.getUint16(10, true)} without MRG_RXBUF`);
    if (b[0] !== 0) return fail(`header flags 0x${b[0]!.toString(16)} without GUEST_CSUM / RSC_EXT`);
    if (b[1] !== 0) return fail(`gso_type ${b[1]} with no guest TSO/UFO/USO negotiated`);
    if (!frame.every((x, i) => x === b[12 + i])) return fail('received frame bytes differ from the injected frame');
  } finally {
    a.close();
  }
  // B: MRG_RXBUF with small buffers.
  const bRaw = rawInit(ctx, { accept: acceptWith({ add: [NET_F.MRG_RXBUF], drop: GUEST_OFFLOADS }) });
  try {
    if (!bRaw.features.has(NET_F.MRG_RXBUF)) {
      for (const id of ['net.processing-incoming-packets.device.2', 'net.processing-incoming-packets.device.3', 'net.processing-incoming-packets.device.4']) per[id] = { verdict: 'SKIP', detail: 'MRG_RXBUF not offered' };
    } else {
      const addrs = postRx(bRaw, 0, 8, 64);
      const frame = ethFrame(200, undefined, 6);
      const r = await receive(ctx, bRaw, 0, addrs, frame, 4);
      const n = new DataView(r.bufs[0]!.buffer).getUint16(10, true);
      if (n !== r.used.length) return fail(`num_buffers ${n}, but ${r.used.length} buffers were used for the packet`);
      if (n !== 4) return fail(`a 212-byte packet in 64-byte buffers took ${n} buffers, expected 4`);
      for (let i = 0; i < n - 1; i++) if (r.used[i]!.len !== 64) return fail(`buffer ${i} of ${n} holds ${r.used[i]!.len} bytes; all but the last must be full`);
      const all = new Uint8Array(r.bufs.reduce((s, x) => s + x.length, 0));
      let o = 0;
      for (const x of r.bufs) {
        all.set(x, o);
        o += x.length;
      }
      if (!frame.every((x, i) => x === all[12 + i])) return fail('merged packet bytes differ from the injected frame');
    }
  } finally {
    bRaw.close();
  }
  per['net.processing-incoming-packets.device.14'] = { verdict: 'PASS', detail: 'OUT_NET_HEADER not negotiated: 12-byte header, data at 12' };
  return pass('no MRG_RXBUF: 1 buffer, num_buffers 1, flags 0, gso NONE; MRG_RXBUF: 4 full-but-last buffers, num_buffers 4, all used together', per);
}

/** Feature-gated clauses this suite does not exercise: SKIP with the observation of the offer. */
const GATED: ReadonlyArray<[string, number | undefined, string]> = [
  ['net.dev-cfg-layout.device.7', NET_F.RSS, 'RSS / HASH_REPORT'],
  ['net.dev-cfg-layout.device.8', NET_F.RSS, 'RSS'],
  ['net.dev-cfg-layout.device.10', 63, 'SPEED_DUPLEX'],
  ['net.dev-cfg-layout.device.11', 63, 'SPEED_DUPLEX'],
  ['net.rss-context.device.1', undefined, 'RSS_CONTEXT'],
  ['net.rss-context.device.2', undefined, 'RSS_CONTEXT'],
  ['net.rss-processing.device.1', NET_F.RSS, 'RSS'],
  ['net.inner-header-hash.device.1', undefined, 'HASH_TUNNEL'],
  ['net.inner-header-hash.device.3', undefined, 'HASH_TUNNEL'],
  ['net.packet-transmission.device.4', NET_F.OUT_NET_HEADER, 'OUT_NET_HEADER'],
  ['net.packet-transmission.device.6', NET_F.HOST_UDP_TUNNEL_GSO, 'HOST_UDP_TUNNEL_GSO'],
  ['net.packet-transmission.device.7', NET_F.HOST_UDP_TUNNEL_GSO, 'HOST_UDP_TUNNEL_GSO'],
  ['net.packet-transmission.device.8', NET_F.HOST_UDP_TUNNEL_GSO, 'HOST_UDP_TUNNEL_GSO'],
  ['net.packet-transmission.device.9', NET_F.HOST_UDP_TUNNEL_GSO, 'HOST_UDP_TUNNEL_GSO'],
  ['net.packet-transmission.device.11', NET_F.IPSEC, 'IPSEC'],
  ['net.processing-incoming-packets.device.15', NET_F.GUEST_CSUM, 'GUEST_CSUM with checksum offload on receive (not exercised)'],
  ['net.processing-incoming-packets.device.19', NET_F.GUEST_TSO4, 'guest GSO receive (not exercised)'],
  ['net.processing-incoming-packets.device.20', undefined, 'RSC_EXT'],
  ['net.processing-incoming-packets.device.23', NET_F.GUEST_CSUM, 'DATA_VALID on receive (not exercised)'],
  ['net.processing-incoming-packets.device.25', undefined, 'GUEST_UDP_TUNNEL_GSO_CSUM'],
  ['net.processing-incoming-packets.device.26', undefined, 'GUEST_UDP_TUNNEL_GSO'],
  ...[27, 28, 29, 30, 31, 32, 33].map((n): [string, number | undefined, string] => [`net.processing-incoming-packets.device.${n}`, NET_F.IPSEC, 'IPSEC']),
  ['net.vlan-filtering.device.2', NET_F.CTRL_VLAN, 'CTRL_VLAN'],
  ['net.automatic-receive-steering-in-multiqueue-mode.device.4', undefined, 'RING_RESET of every receive queue (not exercised)'],
  ...[1, 3, 4, 5, 6, 9].map((n): [string, number | undefined, string] => [`net.notif-coalescing.device.${n}`, undefined, 'NOTF_COAL / VQ_NOTF_COAL']),
  ...[1, 2, 3, 4, 5, 6, 7].map((n): [string, number | undefined, string] => [`net.dev-statistics.device.${n}`, undefined, 'DEVICE_STATS']),
  ...[1, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20].map((n): [string, number | undefined, string] => [`net.flow-filter.device.${n}`, undefined, 'flow filter capabilities']),
  ...[1, 2, 3, 4, 5, 7, 9].map((n): [string, number | undefined, string] => [`net.ipsec-op.device.${n}`, NET_F.IPSEC, 'IPSEC']),
];

export const netChecks: readonly Check[] = [
  defineCheck({
    id: 'net.receive-headers',
    title: 'receive: num_buffers, buffer filling, header flags and gso_type match what was negotiated',
    clauses: [
      'net.setting-up-receive-buffers.device.1',
      'net.setting-up-receive-buffers.device.2',
      'net.processing-incoming-packets.device.1',
      'net.processing-incoming-packets.device.2',
      'net.processing-incoming-packets.device.3',
      'net.processing-incoming-packets.device.4',
      'net.processing-incoming-packets.device.5',
      'net.processing-incoming-packets.device.6',
      'net.processing-incoming-packets.device.7',
      'net.processing-incoming-packets.device.8',
      'net.processing-incoming-packets.device.9',
      'net.processing-incoming-packets.device.10',
      'net.processing-incoming-packets.device.11',
      'net.processing-incoming-packets.device.12',
      'net.processing-incoming-packets.device.14',
      'net.processing-incoming-packets.device.16',
      'net.processing-incoming-packets.device.17',
      'net.processing-incoming-packets.device.18',
      'net.processing-incoming-packets.device.21',
      'net.processing-incoming-packets.device.24',
    ],
    role: 'device',
    devices: NET,
    run: rxChecks,
  }),
  defineCheck({
    id: 'net.transmit-header-hints',
    title: 'transmit: unknown flags, csum fields without NEEDS_CSUM and hdr_len are ignored; frame forwarded intact',
    clauses: ['net.packet-transmission.device.1', 'net.packet-transmission.device.2', 'net.packet-transmission.device.5', 'net.packet-transmission.device.10'],
    role: 'device',
    devices: NET,
    async run(ctx) {
      const sent = ctx.dut.io.sentFrames;
      if (sent === undefined) return skip('no view of transmitted frames');
      return withRaw(rawInit(ctx), async (raw) => {
        const frame = ethFrame(80, undefined, 8);
        const hdr = new Uint8Array(12);
        const dv = new DataView(hdr.buffer);
        hdr[0] = 0x40; // an unknown flag bit
        dv.setUint16(2, 3, true); // hdr_len nonsense (a hint only)
        dv.setUint16(6, 70, true); // csum_start, ignored without NEEDS_CSUM
        dv.setUint16(8, 7, true); // csum_offset, ignored
        const n0 = sent.length;
        const r = await raw.transact(1, [hdr, frame], [], ctx.waitMs, { signal: ctx.signal });
        if (r === undefined) return fail(`transmit not completed${raw.needsReset() ? ' (NEEDS_RESET)' : ''}`);
        const got = sent.slice(n0);
        if (got.length !== 1) return fail(`${got.length} frames reached the backend`);
        if (!got[0]!.every((b, i) => b === frame[i]) || got[0]!.length !== frame.length) return fail('the frame was modified (checksum applied without NEEDS_CSUM, or truncated by hdr_len)');
        return pass('frame with unknown flag bits, stray csum fields and a bogus hdr_len forwarded unchanged');
      });
    },
  }),
  defineCheck({
    id: 'net.config-ranges',
    title: 'config fields lie in their ranges for the features offered; mtu never changes',
    clauses: ['net.dev-cfg-layout.device.1', 'net.dev-cfg-layout.device.2', 'net.dev-cfg-layout.device.4'],
    role: 'device',
    devices: NET,
    variant: { net: { queuePairs: 2, mtu: 1500 } },
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const o = raw.readOffered();
        const per: Record<string, ClauseOutcome> = {};
        if (o.has(NET_F.MQ)) {
          const p = raw.regs.readConfig(8, 2);
          if (p < 1 || p > 0x8000) return fail(`max_virtqueue_pairs ${p} outside 1..0x8000`);
        } else per['net.dev-cfg-layout.device.1'] = { verdict: 'SKIP', detail: 'MQ not offered' };
        if (o.has(NET_F.MTU)) {
          const m = raw.regs.readConfig(10, 2);
          if (m < 68) return fail(`mtu ${m} below 68`);
          raw.init();
          const m2 = raw.regs.readConfig(10, 2);
          raw.reset();
          const m3 = raw.regs.readConfig(10, 2);
          if (m2 !== m || m3 !== m) return fail(`mtu changed: ${m} → ${m2} → ${m3}`);
        } else {
          per['net.dev-cfg-layout.device.2'] = { verdict: 'SKIP', detail: 'MTU not offered' };
          per['net.dev-cfg-layout.device.4'] = { verdict: 'SKIP', detail: 'MTU not offered' };
        }
        return pass('max_virtqueue_pairs and mtu in range; mtu stable across init and reset', per);
      });
    },
  }),
  defineCheck({
    id: 'net.mtu',
    title: 'MTU negotiated: no oversized frame delivered; frames up to mtu transmitted whole',
    clauses: ['net.dev-cfg-layout.device.5', 'net.dev-cfg-layout.device.6'],
    role: 'device',
    devices: NET,
    variant: { net: { mtu: 1500 } },
    needs: [NET_F.MTU],
    async run(ctx) {
      if (ctx.dut.io.injectFrame === undefined || ctx.dut.io.sentFrames === undefined) return skip('no backend access');
      return withRaw(rawInit(ctx, { accept: acceptWith({ add: [NET_F.MTU, NET_F.MRG_RXBUF], drop: GUEST_OFFLOADS }) }), async (raw) => {
        const addrs = postRx(raw, 0, 8, 2048);
        const big = await receive(ctx, raw, 0, addrs, ethFrame(1600, undefined, 2));
        if (big.used.length > 0) return fail(`a 1600-byte frame was delivered with mtu 1500 (used len ${big.used[0]!.len})`);
        const ok = await receive(ctx, raw, 0, addrs, ethFrame(1514, undefined, 3));
        if (ok.used.length === 0) return fail('a frame of exactly mtu + 14 bytes was not delivered');
        const frame = ethFrame(1514, undefined, 4);
        const n0 = ctx.dut.io.sentFrames!.length;
        const r = await raw.transact(1, [new Uint8Array(12), frame], [], ctx.waitMs, { signal: ctx.signal });
        if (r === undefined) return fail('transmit of an mtu-sized frame not completed');
        const got = ctx.dut.io.sentFrames!.slice(n0);
        if (got.length !== 1 || got[0]!.length !== 1514) return fail(`mtu-sized frame reached the backend as ${got.map((g) => g.length).join('+') || 'nothing'}`);
        return pass('1600-byte frame dropped, 1514-byte frames received and transmitted whole');
      });
    },
  }),
  defineCheck({
    id: 'net.rx-filter-commands',
    title: 'CTRL_RX commands work; MAC table empty after reset, applied before the command is used; MAC_ADDR_SET updates mac',
    clauses: ['net.packet-receive-filtering.device.1', 'net.packet-receive-filtering.device.2', 'net.setting-mac-address-filtering.device.1', 'net.setting-mac-address-filtering.device.2', 'net.setting-mac-address-filtering.device.3'],
    role: 'device',
    devices: NET,
    needs: [NET_F.CTRL_VQ, NET_F.CTRL_RX],
    async run(ctx) {
      if (ctx.dut.io.injectFrame === undefined) return skip('no way to inject frames');
      return withRaw(rawInit(ctx, { accept: acceptWith({ drop: [NET_F.MRG_RXBUF, ...GUEST_OFFLOADS] }) }), async (raw) => {
        const per: Record<string, ClauseOutcome> = {};
        for (const cmd of [0, 1]) for (const on of [1, 0]) if ((await ctrl(ctx, raw, 0, cmd, [Uint8Array.of(on)])) !== 0) return fail(`CTRL_RX command ${cmd} (${on ? 'on' : 'off'}) not acknowledged OK`);
        if (raw.features.has(NET_F.CTRL_RX_EXTRA)) {
          for (const cmd of [2, 3, 4, 5]) for (const on of [1, 0]) if ((await ctrl(ctx, raw, 0, cmd, [Uint8Array.of(on)])) !== 0) return fail(`CTRL_RX_EXTRA command ${cmd} not acknowledged OK`);
        } else per['net.packet-receive-filtering.device.2'] = { verdict: 'SKIP', detail: 'CTRL_RX_EXTRA not offered' };
        const foreign = [0x52, 0x54, 0x00, 0x99, 0x88, 0x77];
        const addrs = postRx(raw, 0, 8, 1526);
        const r0 = await receive(ctx, raw, 0, addrs, ethFrame(60, foreign, 1));
        if (r0.used.length > 0) return fail('a frame to a foreign unicast MAC was delivered after reset (filter table not empty, promiscuous off)');
        const uni = new Uint8Array(10);
        new DataView(uni.buffer).setUint32(0, 1, true);
        uni.set(foreign, 4);
        const multi = new Uint8Array(4);
        if ((await ctrl(ctx, raw, 1, 0, [uni, multi])) !== 0) return fail('MAC_TABLE_SET not acknowledged OK');
        const r1 = await receive(ctx, raw, 0, addrs, ethFrame(60, foreign, 2));
        if (r1.used.length === 0) return fail('a frame to a MAC just added with MAC_TABLE_SET was not delivered');
        if (raw.features.has(NET_F.CTRL_MAC_ADDR)) {
          const mac = Uint8Array.of(0x52, 0x54, 0x00, 0x01, 0x02, 0x03);
          if ((await ctrl(ctx, raw, 1, 1, [mac])) !== 0) return fail('MAC_ADDR_SET not acknowledged OK');
          const now = [0, 1, 2, 3, 4, 5].map((i) => raw.regs.readConfig(i, 1));
          if (!now.every((b, i) => b === mac[i])) return fail(`config mac reads ${now.map((b) => b.toString(16)).join(':')} once MAC_ADDR_SET was used`);
        } else per['net.setting-mac-address-filtering.device.3'] = { verdict: 'SKIP', detail: 'CTRL_MAC_ADDR not offered' };
        return pass('CTRL_RX(_EXTRA) commands OK; foreign MAC dropped after reset, accepted once in the table; config mac updated', per);
      });
    },
  }),
  defineCheck({
    id: 'net.vlan-passthrough',
    title: 'without CTRL_VLAN every VLAN-tagged frame is passed',
    clauses: ['net.vlan-filtering.device.1'],
    role: 'device',
    devices: NET,
    async run(ctx) {
      if (ctx.dut.io.injectFrame === undefined) return skip('no way to inject frames');
      return withRaw(rawInit(ctx, { accept: acceptWith({ drop: [NET_F.CTRL_VLAN, NET_F.MRG_RXBUF, ...GUEST_OFFLOADS] }) }), async (raw) => {
        const addrs = postRx(raw, 0, 4, 1526);
        const f = ethFrame(64, undefined, 9);
        f.set([0x81, 0x00, 0x00, 0x2a, 0x08, 0x00], 12);
        const r = await receive(ctx, raw, 0, addrs, f);
        if (r.used.length === 0) return fail('a VLAN 42 tagged frame was dropped without CTRL_VLAN');
        return pass('VLAN-tagged frame delivered');
      });
    },
  }),
  defineCheck({
    id: 'net.announce-ack',
    title: 'ANNOUNCE_ACK clears VIRTIO_NET_S_ANNOUNCE before the command is used',
    clauses: ['net.gratuitous-packet-sending.device.1'],
    role: 'device',
    devices: NET,
    needs: [NET_F.GUEST_ANNOUNCE, NET_F.CTRL_VQ],
    async run(ctx) {
      const announce = ctx.dut.io.announce;
      if (announce === undefined) return skip('no way to make the device announce');
      return withRaw(rawInit(ctx), async (raw) => {
        if (!announce()) return skip('the device declined to announce');
        await settle(2);
        if ((raw.regs.readConfig(6, 2) & 2) === 0) return fail('announce requested but status ANNOUNCE bit not set');
        if ((await ctrl(ctx, raw, 3, 0, [])) !== 0) return fail('ANNOUNCE_ACK not acknowledged OK');
        if ((raw.regs.readConfig(6, 2) & 2) !== 0) return fail('status ANNOUNCE still set after ANNOUNCE_ACK was used');
        return pass('ANNOUNCE set, cleared by the time ANNOUNCE_ACK completed');
      });
    },
  }),
  defineCheck({
    id: 'net.multiqueue-steering',
    title: 'receive steering: only receiveq1 after reset; only active pairs after VQ_PAIRS_SET',
    clauses: ['net.automatic-receive-steering-in-multiqueue-mode.device.1', 'net.automatic-receive-steering-in-multiqueue-mode.device.2'],
    role: 'device',
    devices: NET,
    variant: { net: { queuePairs: 2 } },
    needs: [NET_F.MQ, NET_F.CTRL_VQ],
    async run(ctx) {
      if (ctx.dut.io.injectFrame === undefined) return skip('no way to inject frames');
      return withRaw(rawInit(ctx, { accept: acceptWith({ drop: [NET_F.MRG_RXBUF, ...GUEST_OFFLOADS] }) }), async (raw) => {
        const a0 = postRx(raw, 0, 16, 1526);
        const a1 = postRx(raw, 2, 16, 1526);
        void a0;
        void a1;
        const send = async (): Promise<[number, number]> => {
          for (let i = 0; i < 6; i++) {
            const f = ethFrame(80, undefined, i);
            f.set([0x45, 0, 0, 66, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, i + 1, 10, 0, 0, 99], 14);
            ctx.dut.io.injectFrame!(f);
          }
          await settle(3);
          return [raw.queue(0).collect().length, raw.queue(2).collect().length];
        };
        const [q0, q1] = await send();
        if (q1 > 0) return fail(`${q1} frame(s) reached receiveq2 before any VQ_PAIRS_SET`);
        if (q0 === 0) return fail('no frame reached receiveq1');
        const pairs = Uint8Array.of(2, 0);
        if ((await ctrl(ctx, raw, 4, 0, [pairs])) !== 0) return fail('VQ_PAIRS_SET 2 not acknowledged OK');
        if ((await ctrl(ctx, raw, 4, 0, [Uint8Array.of(1, 0)])) !== 0) return fail('VQ_PAIRS_SET 1 not acknowledged OK');
        const [r0, r1] = await send();
        if (r1 > 0) return fail(`${r1} frame(s) reached receiveq2 with 1 active pair`);
        return pass(`after reset ${q0} frames on receiveq1 only; after VQ_PAIRS_SET 1 again ${r0} on receiveq1 only`);
      });
    },
  }),
  defineCheck({
    id: 'net.feature-gated',
    title: 'clauses of net features this device does not offer (RSS, statistics, coalescing, flow filters, IPsec, tunnels)',
    clauses: GATED.map(([id]) => id),
    role: 'device',
    devices: NET,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const o = raw.readOffered();
        const per: Record<string, ClauseOutcome> = {};
        for (const [id, bit, name] of GATED) per[id] = { verdict: 'SKIP', detail: bit !== undefined && o.has(bit) ? `${name} offered but not judged by this suite` : `${name} not offered` };
        return { verdict: 'SKIP', detail: 'feature-gated clauses; see per-clause reasons', perClause: per };
      });
    },
  }),
];
