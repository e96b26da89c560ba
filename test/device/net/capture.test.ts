import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetSwitch } from '../../../src/device/net/switch.js';
import { FilePcapSink, LINKTYPE_ETHERNET, MemoryPcapSink, PCAP_MAGIC, PcapWriter, parsePcap } from '../../../src/device/net/capture.js';
import { netGuest } from './harness.js';
import { MiniStack, ip, mac } from './frames.js';

describe('packet capture', () => {
  it('a ping between two guests is written to a pcap file Wireshark can read (magic, version, linktype, record lengths)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'virtiokit-pcap-'));
    try {
      const path = join(dir, 'ping.pcap');
      const sw = new NetSwitch();
      const pcap = new PcapWriter(new FilePcapSink(path), { bufferBytes: 256 });
      sw.addTap(pcap.tap());
      const ga = netGuest({ mac: '52:54:00:00:00:0a', backend: sw.createPort('a') });
      const gb = netGuest({ mac: '52:54:00:00:00:0b', backend: sw.createPort('b') });
      const devTap = new MemoryPcapSink();
      const perDevice = new PcapWriter(devTap);
      ga.dev.addTap(perDevice.tap((dir) => dir === 'rx'));
      ga.drv.postRx(0, 8);
      gb.drv.postRx(0, 8);
      const a = new MiniStack(ga.drv, mac('52:54:00:00:00:0a'), ip('10.0.0.1'));
      const b = new MiniStack(gb.drv, mac('52:54:00:00:00:0b'), ip('10.0.0.2'));
      a.arpRequest(b.ip);
      b.poll();
      a.poll();
      a.ping(b.ip, 7, 1, new Uint8Array(1000).fill(0xab)); // a record larger than the staging buffer
      b.poll();
      a.poll();
      pcap.close();

      const f = parsePcap(new Uint8Array(readFileSync(path)));
      expect(f.magic).toBe(PCAP_MAGIC);
      expect([f.versionMajor, f.versionMinor]).toEqual([2, 4]);
      expect(f.linktype).toBe(LINKTYPE_ETHERNET);
      expect(f.records.map((r) => r.origLen)).toEqual([42, 42, 1042, 1042]); // ARP req, ARP reply, echo req, echo reply
      expect(f.records.every((r) => r.inclLen === r.origLen && r.data.length === r.inclLen)).toBe(true);
      expect(f.records[0]!.data.subarray(0, 6)).toEqual(new Uint8Array(6).fill(0xff));
      expect(f.records[2]!.data[14 + 20]).toBe(8); // ICMP echo request
      expect(f.records[3]!.data[14 + 20]).toBe(0); // echo reply
      const t = f.records.map((r) => r.tsSec * 1e6 + r.tsUsec);
      expect(t.every((x, i) => i === 0 || x >= t[i - 1]!)).toBe(true);
      expect(Math.abs(t[0]! / 1000 - Date.now())).toBeLessThan(3_600_000);

      perDevice.close();
      const g = parsePcap(devTap.bytes());
      expect(g.records.map((r) => r.origLen)).toEqual([42, 1042]); // what guest A received
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('snaplen truncates records; malformed files are rejected', () => {
    const sink = new MemoryPcapSink();
    const w = new PcapWriter(sink, { snaplen: 20 });
    w.writeRecord(new Uint8Array(100).fill(1), 0, 100, 1_700_000_000_123_456);
    w.close();
    const bytes = sink.bytes();
    const f = parsePcap(bytes);
    expect(f.records).toEqual([expect.objectContaining({ tsSec: 1_700_000_000, tsUsec: 123_456, inclLen: 20, origLen: 100 })]);
    expect(bytes.length).toBe(24 + 16 + 20);
    expect(() => parsePcap(bytes.subarray(0, bytes.length - 1))).toThrow(/incl_len/);
    const bad = Uint8Array.from(bytes);
    bad[0] = 0;
    expect(() => parsePcap(bad)).toThrow(/magic/);
    expect(() => w.writeRecord(new Uint8Array(1), 0, 1, 0)).toThrow(/closed/);
  });
});
