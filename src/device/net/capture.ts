/**
 * Packet capture: a tap that writes every frame it sees into a classic libpcap file
 * (https://wiki.wireshark.org/Development/LibpcapFileFormat) that Wireshark and tcpdump read.
 *
 *  global header (24 bytes, little-endian): magic 0xa1b2c3d4 (microsecond timestamps),
 *    version 2.4, thiszone 0, sigfigs 0, snaplen, network (1 = LINKTYPE_ETHERNET)
 *  per record (16 bytes + data): ts_sec, ts_usec, incl_len (≤ snaplen), orig_len
 *
 * Records are staged in one reusable buffer and flushed to a sink in chunks (a file, memory, ...).
 * Capturing is off the hot path: it costs nothing unless a tap is attached.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { VirtioError } from '../../errors.js';
import type { FrameDirection, FrameTap } from './backend.js';

export const PCAP_MAGIC = 0xa1b2c3d4;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

/** Where pcap bytes go. `write` must consume the chunk before returning (it is reused). */
export interface PcapSink {
  write(chunk: Uint8Array): void;
  close?(): void;
}

/** Keeps the capture in memory. */
export class MemoryPcapSink implements PcapSink {
  private readonly chunks: Uint8Array[] = [];
  write(chunk: Uint8Array): void {
    this.chunks.push(Uint8Array.from(chunk));
  }
  /** The whole file so far. */
  bytes(): Uint8Array {
    const n = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** Writes to a file (created or truncated). */
export class FilePcapSink implements PcapSink {
  private fd: number;
  readonly path: string;
  constructor(path: string) {
    this.path = path;
    try {
      this.fd = openSync(path, 'w');
    } catch (e) {
      throw new VirtioError('INVALID_ARGUMENT', `cannot create pcap file ${path}: ${(e as Error).message}`, { cause: e });
    }
  }
  write(chunk: Uint8Array): void {
    if (this.fd < 0) throw new VirtioError('CLOSED', `pcap file ${this.path} is closed`);
    let o = 0;
    while (o < chunk.length) o += writeSync(this.fd, chunk, o, chunk.length - o);
  }
  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** Options of {@link PcapWriter}. */
export interface PcapWriterOptions {
  /** Largest bytes kept per frame (default 65535 + 18: whole frames). */
  snaplen?: number;
  /** Link type (default 1, Ethernet). */
  linktype?: number;
  /** Staging buffer size (default 64 KiB). */
  bufferBytes?: number;
}

/** Writes a classic pcap stream. Call {@link flush} or {@link close} to push staged records. */
export class PcapWriter {
  readonly snaplen: number;
  /** Records written. */
  records = 0;
  private readonly sink: PcapSink;
  private readonly stage: Uint8Array;
  private readonly dv: DataView;
  private used = 0;
  private closed = false;

  constructor(sink: PcapSink, opts: PcapWriterOptions = {}) {
    this.sink = sink;
    this.snaplen = opts.snaplen ?? 65535 + 18;
    this.stage = new Uint8Array(Math.max(opts.bufferBytes ?? 1 << 16, 64));
    this.dv = new DataView(this.stage.buffer);
    const dv = this.dv;
    dv.setUint32(0, PCAP_MAGIC, true);
    dv.setUint16(4, PCAP_VERSION_MAJOR, true);
    dv.setUint16(6, PCAP_VERSION_MINOR, true);
    dv.setInt32(8, 0, true); // thiszone
    dv.setUint32(12, 0, true); // sigfigs
    dv.setUint32(16, this.snaplen, true);
    dv.setUint32(20, opts.linktype ?? LINKTYPE_ETHERNET, true);
    this.used = PCAP_GLOBAL_HEADER_LEN;
  }

  /** Append one frame `buf[off..off+len)` captured at `tsMicros` (µs since the epoch). */
  writeRecord(buf: Uint8Array, off: number, len: number, tsMicros: number): void {
    if (this.closed) throw new VirtioError('CLOSED', 'PcapWriter is closed');
    const incl = Math.min(len, this.snaplen);
    if (this.used + PCAP_RECORD_HEADER_LEN + incl > this.stage.length) this.flush();
    const dv = this.dv;
    const sec = Math.floor(tsMicros / 1e6);
    const at = this.used;
    dv.setUint32(at, sec >>> 0, true);
    dv.setUint32(at + 4, Math.floor(tsMicros - sec * 1e6) >>> 0, true);
    dv.setUint32(at + 8, incl, true);
    dv.setUint32(at + 12, len, true);
    this.used += PCAP_RECORD_HEADER_LEN;
    if (this.used + incl <= this.stage.length) {
      this.stage.set(buf.subarray(off, off + incl), this.used);
      this.used += incl;
    } else {
      // Larger than the staging buffer: header out, then the data straight from the frame.
      this.flush();
      this.sink.write(buf.subarray(off, off + incl));
    }
    this.records++;
  }

  /**
   * A tap writing every frame it sees (optionally only those `filter` accepts), for
   * {@link VirtioNetDevice.addTap} or {@link NetSwitch.addTap}.
   */
  tap(filter?: (dir: FrameDirection, where: string) => boolean): FrameTap {
    return (buf, off, len, dir, ts, where) => {
      if (filter === undefined || filter(dir, where)) this.writeRecord(buf, off, len, ts);
    };
  }

  /** Push staged bytes to the sink. */
  flush(): void {
    if (this.used > 0) {
      this.sink.write(this.stage.subarray(0, this.used));
      this.used = 0;
    }
  }

  /** Flush and close the sink. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.sink.close?.();
  }
}

/** One record of a parsed pcap file. */
export interface PcapRecord {
  tsSec: number;
  tsUsec: number;
  inclLen: number;
  origLen: number;
  /** View into the parsed bytes. */
  data: Uint8Array;
}

/** A parsed pcap file. */
export interface PcapFile {
  magic: number;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  linktype: number;
  records: PcapRecord[];
}

/** Parse a classic little-endian, microsecond pcap file; throws VirtioError('PROTOCOL') when malformed. */
export function parsePcap(bytes: Uint8Array): PcapFile {
  if (bytes.length < PCAP_GLOBAL_HEADER_LEN) throw new VirtioError('PROTOCOL', `pcap: ${bytes.length} bytes is shorter than the 24-byte global header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== PCAP_MAGIC) throw new VirtioError('PROTOCOL', `pcap: magic 0x${magic.toString(16)} is not 0xa1b2c3d4 (little-endian, microseconds)`);
  const f: PcapFile = {
    magic,
    versionMajor: dv.getUint16(4, true),
    versionMinor: dv.getUint16(6, true),
    snaplen: dv.getUint32(16, true),
    linktype: dv.getUint32(20, true),
    records: [],
  };
  let o = PCAP_GLOBAL_HEADER_LEN;
  while (o < bytes.length) {
    if (o + PCAP_RECORD_HEADER_LEN > bytes.length) throw new VirtioError('PROTOCOL', `pcap: truncated record header at offset ${o}`);
    const inclLen = dv.getUint32(o + 8, true);
    const origLen = dv.getUint32(o + 12, true);
    if (inclLen > f.snaplen || inclLen > origLen || o + PCAP_RECORD_HEADER_LEN + inclLen > bytes.length) {
      throw new VirtioError('PROTOCOL', `pcap: record at offset ${o} has incl_len ${inclLen} (orig ${origLen}, snaplen ${f.snaplen}, ${bytes.length - o - PCAP_RECORD_HEADER_LEN} bytes left)`);
    }
    f.records.push({ tsSec: dv.getUint32(o, true), tsUsec: dv.getUint32(o + 4, true), inclLen, origLen, data: bytes.subarray(o + 16, o + 16 + inclLen) });
    o += PCAP_RECORD_HEADER_LEN + inclLen;
  }
  return f;
}
