/**
 * virtio-net across the process boundary: two device processes cabled together by a stream socket
 * (`serve net --net-listen` / `--net-connect`, 4-byte length-prefixed frames), each driven by its
 * own vfio-user client with its own guest RAM and simulated driver — guest A ARPs and pings guest B
 * and the other way round, once per DMA model (direct, message, SWIOTLB).
 *
 * The guest driver here is the minimal one Linux would be without offloads: receive buffers on
 * queue 0, transmit on queue 1, a 12-byte virtio_net_hdr (VERSION_1) in front of every frame,
 * MRG_RXBUF not negotiated (one 1526+ byte buffer per frame). Frame builders and checksums come from
 * test/device/net/frames.ts (independent of src/).
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import type { VirtioPciDriver } from '../../src/driver/driver.js';
import { NET_F } from '../../src/device/net/features.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';
import { BROADCAST, ETH_P_ARP, ETH_P_IP, arp, eth, icmpEcho, inetSum, ip, ipv4, mac } from '../device/net/frames.js';
import { attach, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** virtio_net_hdr without MRG_RXBUF, with VERSION_1 (net.packet-transmission.driver.1). */
const HDR = 12;
/** Receive buffer: header + the largest untagged frame we expect, above the 1526 minimum. */
const RX_BUF = 2048;
const RX_POSTED = 16;

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

interface Echo {
  type: number;
  id: number;
  seq: number;
  data: Uint8Array;
  icmpOk: boolean;
  ipOk: boolean;
  from: Uint8Array;
}

/** A guest: driver-side virtio-net over VirtioPciDriver queues plus an ARP/ICMP responder. */
class Guest {
  readonly arpCache = new Map<string, Uint8Array>();
  readonly arpReplies: Array<{ sha: Uint8Array; spa: Uint8Array; tha: Uint8Array }> = [];
  readonly echoReplies: Echo[] = [];
  readonly echoRequests: Echo[] = [];
  /** virtio_net_hdr of every received frame (flags, gso_type, num_buffers). */
  readonly rxHdrs: Array<{ flags: number; gso: number; numBuffers: number }> = [];
  rxErrors: unknown[] = [];
  private readonly waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    readonly drv: VirtioPciDriver,
    readonly mac: Uint8Array,
    readonly ip: Uint8Array,
  ) {}

  /** Post the receive buffers (each completion is handled and its buffer re-posted). */
  start(n = RX_POSTED): void {
    for (let i = 0; i < n; i++) this.postOne();
  }

  close(): void {
    this.closed = true;
  }

  private postOne(): void {
    if (this.closed) return;
    this.drv
      .queue(0)
      .submit([], [RX_BUF])
      .then(
        (r) => {
          try {
            this.onRx(r.data[0]!.subarray(0, r.len));
          } catch (e) {
            this.rxErrors.push(e);
          }
          this.postOne();
          for (const w of this.waiters.splice(0)) w();
        },
        (e: unknown) => {
          if (!this.closed) this.rxErrors.push(e);
        },
      );
  }

  /** Transmit one frame; resolves when the device returned the chain. */
  async send(frame: Uint8Array): Promise<void> {
    const r = await this.drv.queue(1).submit([new Uint8Array(HDR), frame]);
    expect(r.len).toBe(0); // transmit buffers are read-only
  }

  /** Wait until `pred` holds (checked after each received frame); bounded by `ms`. */
  async until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`guest ${hex(this.mac)}: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  arpRequest(target: Uint8Array): Promise<void> {
    return this.send(eth(BROADCAST, this.mac, ETH_P_ARP, arp(1, this.mac, this.ip, new Uint8Array(6), target)));
  }

  ping(target: Uint8Array, id: number, seq: number, data: Uint8Array): Promise<void> {
    const dst = this.arpCache.get(target.join('.'));
    if (dst === undefined) throw new Error(`no ARP entry for ${target.join('.')}`);
    return this.send(eth(dst, this.mac, ETH_P_IP, ipv4(this.ip, target, 1, icmpEcho(8, id, seq, data), seq)));
  }

  private onRx(buf: Uint8Array): void {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.rxHdrs.push({ flags: buf[0]!, gso: buf[1]!, numBuffers: dv.getUint16(10, true) });
    const f = buf.slice(HDR);
    const type = (f[12]! << 8) | f[13]!;
    if (type === ETH_P_ARP) {
      const op = (f[20]! << 8) | f[21]!;
      const sha = f.slice(22, 28);
      const spa = f.slice(28, 32);
      const tha = f.slice(32, 38);
      const tpa = f.slice(38, 42);
      this.arpCache.set(spa.join('.'), sha);
      if (op === 1 && same(tpa, this.ip)) void this.send(eth(sha, this.mac, ETH_P_ARP, arp(2, this.mac, this.ip, sha, spa))).catch((e: unknown) => this.rxErrors.push(e));
      else if (op === 2) this.arpReplies.push({ sha, spa, tha });
      return;
    }
    if (type === ETH_P_IP && f[14 + 9] === 1) {
      const ipLen = (f[16]! << 8) | f[17]!;
      const icmp = f.subarray(34, 14 + ipLen);
      const e: Echo = {
        type: icmp[0]!,
        id: (icmp[4]! << 8) | icmp[5]!,
        seq: (icmp[6]! << 8) | icmp[7]!,
        data: icmp.slice(8),
        icmpOk: inetSum(icmp) === 0xffff,
        ipOk: inetSum(f.subarray(14, 34)) === 0xffff,
        from: f.slice(26, 30),
      };
      if (e.type === 8 && same(f.subarray(30, 34), this.ip)) {
        this.echoRequests.push(e);
        void this.send(eth(f.slice(6, 12), this.mac, ETH_P_IP, ipv4(this.ip, e.from, 1, icmpEcho(0, e.id, e.seq, e.data), e.seq))).catch((err: unknown) => this.rxErrors.push(err));
      } else if (e.type === 0) this.echoReplies.push(e);
    }
  }
}

function readMac(d: VirtioPciDriver): Uint8Array {
  const m = new Uint8Array(6);
  for (let i = 0; i < 6; i++) m[i] = d.readConfig(i, 1);
  return m;
}

const MAC_A = '52:54:00:00:0a:01';
const MAC_B = '52:54:00:00:0b:02';
const IP_A = ip('192.168.77.1');
const IP_B = ip('192.168.77.2');

describe.runIf(native.available)('vfio-user net: two device processes, two guests', () => {
  for (const dma of ['direct', 'message', 'swiotlb'] as const) {
    it(`[net.processing-incoming-packets.device.5] [net.processing-incoming-packets.device.1] guest A ARPs and pings guest B across two device processes (${dma} DMA)`, { timeout: 40_000 }, async () => {
      const extra = dma === 'swiotlb' ? ['--swiotlb', 'required', '--swiotlb-size', '1048576'] : [];
      const link = join(tmp.dir, `link-${dma}.sock`);
      const common = ['--queue-size', '64', ...extra];
      // Both start at once: B's backend retries until A's listener exists.
      const started = await Promise.allSettled([
        spawnDeviceProcess(join(tmp.dir, `a-${dma}.sock`), ['net', '--net-listen', link, '--mac', MAC_A, ...common]),
        spawnDeviceProcess(join(tmp.dir, `b-${dma}.sock`), ['net', '--net-connect', link, '--mac', MAC_B, ...common]),
      ]);
      const procs = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
      const cleanup: Array<() => Promise<unknown>> = [];
      try {
        for (const s of started) if (s.status === 'rejected') throw s.reason;
        const [pa, pb] = procs as [DeviceProcess, DeviceProcess];
        const driverOpts = { queues: 2, features: { device: [NET_F.MAC, NET_F.STATUS] } };
        const ra = await attach(pa, dma, 4 * 1024 * 1024, driverOpts);
        cleanup.push(() => ra.close());
        const rb = await attach(pb, dma, 4 * 1024 * 1024, driverOpts);
        cleanup.push(() => rb.close());
        for (const r of [ra, rb]) {
          expect(r.driver.swiotlb).toBe(dma === 'swiotlb');
          // The device was built without offloads: a stream socket carries no virtio_net_hdr.
          expect(r.driver.offered!.has(NET_F.CSUM)).toBe(false);
          expect(r.driver.negotiated!.has(NET_F.MRG_RXBUF)).toBe(false);
        }
        expect(hex(readMac(ra.driver))).toBe(MAC_A);
        expect(hex(readMac(rb.driver))).toBe(MAC_B);

        const a = new Guest(ra.driver, mac(MAC_A), IP_A);
        const b = new Guest(rb.driver, mac(MAC_B), IP_B);
        cleanup.unshift(async () => {
          a.close();
          b.close();
        });
        a.start();
        b.start();

        // ARP: A broadcasts, B answers with its MAC.
        await a.arpRequest(IP_B);
        await a.until(() => a.arpReplies.length > 0, 'the ARP reply');
        const rep = a.arpReplies[0]!;
        expect(hex(rep.sha)).toBe(MAC_B);
        expect(same(rep.spa, IP_B)).toBe(true);
        expect(hex(rep.tha)).toBe(MAC_A);
        expect(hex(b.arpCache.get(IP_A.join('.'))!)).toBe(MAC_A); // B learned A from the request

        // Ping A → B, three sequence numbers with distinct payloads.
        const id = 0x4b00 + dma.length;
        for (let seq = 1; seq <= 3; seq++) {
          const data = new Uint8Array(56 + seq * 100);
          for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seq + id) & 0xff;
          await a.ping(IP_B, id, seq, data);
          await a.until(() => a.echoReplies.some((e) => e.seq === seq), `echo reply seq ${seq}`);
          const r = a.echoReplies.find((e) => e.seq === seq)!;
          expect(r.id).toBe(id);
          expect(r.icmpOk).toBe(true);
          expect(r.ipOk).toBe(true);
          expect(same(r.from, IP_B)).toBe(true);
          expect(same(r.data, data)).toBe(true);
        }
        expect(b.echoRequests.map((e) => e.seq)).toEqual([1, 2, 3]);
        expect(b.echoRequests.every((e) => e.icmpOk && e.ipOk)).toBe(true);

        // And back: B → A (B's ARP cache was filled by A's request).
        const back = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
        await b.ping(IP_A, 0x77, 9, back);
        await b.until(() => b.echoReplies.length > 0, 'echo reply to B');
        expect(b.echoReplies[0]!).toMatchObject({ id: 0x77, seq: 9, icmpOk: true, ipOk: true });
        expect(same(b.echoReplies[0]!.data, back)).toBe(true);

        // What the receiving devices wrote in virtio_net_hdr: flags 0 (no GUEST_CSUM; …device.5),
        // gso NONE, num_buffers 1 (no MRG_RXBUF; …device.1).
        for (const g of [a, b]) {
          expect(g.rxHdrs.length).toBeGreaterThan(0);
          for (const h of g.rxHdrs) expect(h).toEqual({ flags: 0, gso: 0, numBuffers: 1 });
          expect(g.rxErrors).toEqual([]);
        }
        if (dma === 'message') {
          const s = ra.client.snapshot();
          expect(s.dmaWrites).toBeGreaterThan(0); // received frames crossed as DMA_WRITE
          expect(s.dmaRefused).toBe(0);
        }
      } finally {
        for (const c of cleanup) await c().catch(() => undefined);
        for (const p of procs) await p.stop();
      }
    });
  }
});
