/**
 * The vfio-user server: the device-process side. Listens on a UNIX socket, serves one client at a
 * time, and answers QEMU's (or {@link VfioUserClient}'s) messages for one {@link DeviceHost}.
 *
 * Rules (reference `vfio-user.md` §12, QEMU `docs/interop/vfio-user.rst`):
 * - VERSION first: anything else before it, or a second VERSION, gets EINVAL. The reply is a subset
 *   of our capabilities (max_msg_fds, max_data_xfer_size, pgsizes, max_dma_maps; no migration, no
 *   twin socket) and never longer than the request.
 * - Every request without NO_REPLY gets a reply with its id; a malformed one an error reply with
 *   an errno. Nothing a client sends throws out of the event loop.
 * - DMA_READ / DMA_WRITE (message DMA) are the server's own requests, sent asynchronously: region
 *   accesses are answered while they are outstanding.
 * - When the client goes away: DMA mappings and eventfds are dropped, the function is reset, and
 *   the next client is accepted.
 */
import { unlinkSync } from 'node:fs';
import { VirtioError } from '../errors.js';
import { logger } from '../log.js';
import { native as defaultNative } from '../native/index.js';
import { POLL_READABLE, type NativeApi, type PollHandle } from '../native/types.js';
import {
  buildMessage,
  clampCaps,
  decodeDmaAccess,
  decodeDmaMap,
  decodeDmaUnmap,
  decodeIrqInfo,
  decodeRegionAccess,
  decodeRegionInfoRequest,
  decodeSetIrqs,
  decodeVersion,
  encodeDeviceInfoReply,
  encodeDmaAccess,
  encodeDmaUnmap,
  encodeIrqInfo,
  encodeRegionAccessReply,
  encodeRegionInfoReply,
  encodeVersion,
  decodeArgsz,
  protoError,
  type SparseArea,
} from './codec.js';
import { VfioUserConnection, type IncomingMessage } from './connection.js';
import type { DeviceHost } from './device-host.js';
import type { DmaPort } from './message-dma.js';
import {
  Cmd,
  cmdName,
  DEVICE_FLAGS_PCI,
  DEVICE_FLAGS_RESET,
  Errno,
  FLAG_NO_REPLY,
  FLAG_TYPE_REPLY,
  HEADER_SIZE,
  PCI_CONFIG_REGION_INDEX,
  PCI_NUM_IRQS,
  PCI_NUM_REGIONS,
  REGION_INFO_FLAG_MMAP,
  REGION_INFO_FLAG_READ,
  REGION_INFO_FLAG_WRITE,
  SIZES,
  VERSION_MAJOR,
  VERSION_MINOR,
  type VfioUserCaps,
} from './protocol.js';

const log = logger('vfio-user:server');

/** Options of {@link VfioUserServer.listen}. */
export interface VfioUserServerOptions {
  /** UNIX socket path (an existing socket file is replaced). */
  socketPath: string;
  /** The device to serve. */
  device: DeviceHost;
  /** max_data_xfer_size we advertise and accept (default 1 MiB). */
  maxDataXferSize?: number;
  /** max_msg_fds we advertise and accept (default 16). */
  maxMsgFds?: number;
  /** Reply timeout of our DMA_READ / DMA_WRITE requests (default 5000 ms, QEMU's x-msg-timeout). */
  dmaTimeoutMs?: number;
  native?: NativeApi;
}

/** Server counters. */
export interface VfioUserServerStats {
  connections: number;
  refusedConnections: number;
  requests: number;
  errorReplies: number;
  regionReads: number;
  regionWrites: number;
  postedWrites: number;
}

/** The running server. */
export class VfioUserServer {
  readonly socketPath: string;
  readonly device: DeviceHost;
  readonly stats: VfioUserServerStats = { connections: 0, refusedConnections: 0, requests: 0, errorReplies: 0, regionReads: 0, regionWrites: 0, postedWrites: 0 };
  private readonly nat: NativeApi;
  private readonly ourCaps: VfioUserCaps;
  private readonly dmaTimeout: number;
  private listenFd: number;
  private listener: PollHandle | undefined;
  private conn: VfioUserConnection | undefined;
  private versioned = false;
  private peerCaps: VfioUserCaps | undefined;
  private closed = false;
  private readonly closeListeners: Array<() => void> = [];

  private constructor(opts: VfioUserServerOptions, listenFd: number) {
    this.nat = opts.native ?? defaultNative;
    this.socketPath = opts.socketPath;
    this.device = opts.device;
    this.listenFd = listenFd;
    this.dmaTimeout = opts.dmaTimeoutMs ?? 5000;
    this.ourCaps = { maxMsgFds: opts.maxMsgFds ?? 16, maxDataXferSize: opts.maxDataXferSize ?? 1024 * 1024, pgsizes: 4096, maxDmaMaps: 65535 };
    this.listener = this.nat.poll(listenFd, POLL_READABLE, () => this.acceptPending());
  }

  /** Listen on `opts.socketPath`. */
  static listen(opts: VfioUserServerOptions): VfioUserServer {
    const nat = opts.native ?? defaultNative;
    if (!nat.available) throw new VirtioError('NATIVE_UNAVAILABLE', `vfio-user needs the native addon for fd passing (${nat.unavailableReason ?? 'not loaded'}); build it with \`npm rebuild\``);
    const fd = nat.listenUnix(opts.socketPath);
    log('listening on %s', opts.socketPath);
    return new VfioUserServer(opts, fd);
  }

  /** True while a client is connected. */
  get connected(): boolean {
    return this.conn !== undefined && !this.conn.closed;
  }

  /** The connection's counters (undefined without a client). */
  get connectionStats(): VfioUserConnection['stats'] | undefined {
    return this.conn?.stats;
  }

  /**
   * DMA_READ from the connected client (what message DMA does; exposed for tools and tests).
   * @throws CLOSED without a client, PROTOCOL when the client refuses
   */
  dmaRead(addr: number, len: number): Promise<Uint8Array> {
    const c = this.conn;
    if (c === undefined || !this.versioned) return Promise.reject(new VirtioError('CLOSED', 'no vfio-user client (after VERSION) is connected'));
    return this.dmaPort(c, Math.min(this.peerCaps!.maxDataXferSize, this.ourCaps.maxDataXferSize)).read(addr, len);
  }

  /** DMA_WRITE to the connected client. */
  dmaWrite(addr: number, data: Uint8Array): Promise<void> {
    const c = this.conn;
    if (c === undefined || !this.versioned) return Promise.reject(new VirtioError('CLOSED', 'no vfio-user client (after VERSION) is connected'));
    return this.dmaPort(c, Math.min(this.peerCaps!.maxDataXferSize, this.ourCaps.maxDataXferSize)).write(addr, data);
  }

  /** The connected client's capabilities (after VERSION). */
  get clientCaps(): VfioUserCaps | undefined {
    return this.peerCaps;
  }

  /** Called when a client disconnects. */
  onClientGone(fn: () => void): void {
    this.closeListeners.push(fn);
  }

  private acceptPending(): void {
    for (;;) {
      let fd: number;
      try {
        fd = this.nat.accept(this.listenFd);
      } catch (e) {
        log('accept failed: %s', (e as Error).message);
        return;
      }
      if (fd < 0) return;
      if (this.connected) {
        this.stats.refusedConnections++;
        log('refusing a second client (one at a time)');
        this.nat.close(fd);
        continue;
      }
      this.stats.connections++;
      this.versioned = false;
      this.peerCaps = undefined;
      const max = Math.max(64 * 1024, HEADER_SIZE + SIZES.DMA_ACCESS + this.ourCaps.maxDataXferSize);
      this.conn = new VfioUserConnection(fd, {
        name: `vfio-user server ${this.socketPath}`,
        maxMessageSize: max,
        maxFds: this.ourCaps.maxMsgFds,
        timeoutMs: this.dmaTimeout,
        native: this.nat,
        onRequest: (m) => this.handle(m),
        onClose: (reason) => this.clientGone(reason),
      });
      log('client connected');
    }
  }

  private clientGone(reason: string): void {
    log('client gone: %s', reason);
    const d = this.device;
    d.engine.setPort(undefined);
    try {
      d.pci.reset();
    } catch (e) {
      log('reset after disconnect threw: %O', e);
    }
    d.table.clear();
    d.irqs.closeAll();
    this.conn = undefined;
    this.versioned = false;
    for (const l of this.closeListeners) l();
  }

  // ------------------------------------------------------------------ dispatch

  private handle(m: IncomingMessage): void {
    const conn = this.conn!;
    this.stats.requests++;
    const noReply = (m.flags & FLAG_NO_REPLY) !== 0;
    try {
      if (m.fds.length > 0 && m.command !== Cmd.DMA_MAP && m.command !== Cmd.DEVICE_SET_IRQS) {
        throw protoError(Errno.EINVAL, `${cmdName(m.command)} carries ${m.fds.length} unexpected fds`);
      }
      if (!this.versioned && m.command !== Cmd.VERSION) throw protoError(Errno.EINVAL, `${cmdName(m.command)} before VERSION`);
      const reply = this.dispatch(m);
      if (!noReply && reply !== undefined) conn.reply(reply.msg, reply.fds);
    } catch (e) {
      for (const fd of m.fds) this.safeClose(fd);
      m.fds.length = 0;
      const errno = e instanceof VirtioError && e.errno !== undefined ? e.errno : Errno.EINVAL;
      if (!(e instanceof VirtioError)) log('%s handler failed: %O', cmdName(m.command), e);
      else log('%s id %d refused: %s (errno %d)', cmdName(m.command), m.id, e.message, errno);
      this.stats.errorReplies++;
      if (!noReply) conn.replyError(m.id, m.command, errno);
    }
  }

  private dispatch(m: IncomingMessage): { msg: Uint8Array; fds?: number[] } | undefined {
    const d = this.device;
    switch (m.command) {
      case Cmd.VERSION:
        return { msg: this.version(m) };
      case Cmd.DMA_MAP: {
        if (m.fds.length > 1) throw protoError(Errno.EINVAL, `DMA_MAP with ${m.fds.length} fds (at most 1)`);
        const dm = decodeDmaMap(m.payload);
        const fd = m.fds.length === 1 ? m.fds[0] : undefined;
        m.fds.length = 0; // the table owns the fd now
        d.table.map(dm.addr, dm.size, dm.flags, dm.offset, fd);
        return { msg: buildMessage(m.id, m.command, FLAG_TYPE_REPLY, 0) };
      }
      case Cmd.DMA_UNMAP: {
        const um = decodeDmaUnmap(m.payload);
        d.table.unmap(um.addr, um.size, um.flags);
        return { msg: encodeDmaUnmap(m.id, { flags: um.flags, addr: um.addr, size: um.size }, true) };
      }
      case Cmd.DEVICE_GET_INFO:
        decodeArgsz(m.payload, SIZES.DEVICE_INFO, 'DEVICE_GET_INFO');
        return { msg: encodeDeviceInfoReply(m.id, { flags: DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET, numRegions: PCI_NUM_REGIONS, numIrqs: PCI_NUM_IRQS }) };
      case Cmd.DEVICE_GET_REGION_INFO:
        return this.regionInfo(m);
      case Cmd.DEVICE_GET_IRQ_INFO: {
        const ii = decodeIrqInfo(m.payload);
        const info = d.irqs.info(ii.index);
        if (info === undefined) throw protoError(Errno.EINVAL, `IRQ index ${ii.index} is not supported`);
        return { msg: encodeIrqInfo(m.id, true, { flags: info.flags, index: ii.index, count: info.count }) };
      }
      case Cmd.DEVICE_SET_IRQS: {
        const si = decodeSetIrqs(m.payload);
        const fds = m.fds.splice(0);
        d.irqs.setIrqs(si, fds);
        return { msg: buildMessage(m.id, m.command, FLAG_TYPE_REPLY, 0) };
      }
      case Cmd.REGION_READ:
        return { msg: this.regionRead(m) };
      case Cmd.REGION_WRITE:
        return this.regionWrite(m);
      case Cmd.DEVICE_RESET:
        d.pci.reset();
        return { msg: buildMessage(m.id, m.command, FLAG_TYPE_REPLY, 0) };
      case Cmd.DMA_READ:
      case Cmd.DMA_WRITE:
        throw protoError(Errno.EINVAL, `${cmdName(m.command)} is a server-to-client request`);
      case Cmd.DEVICE_GET_REGION_IO_FDS:
      case Cmd.REGION_WRITE_MULTI:
      case Cmd.DEVICE_FEATURE:
      case Cmd.MIG_DATA_READ:
      case Cmd.MIG_DATA_WRITE:
        throw protoError(Errno.ENOTSUP, `${cmdName(m.command)} is not supported (not advertised)`);
      default:
        throw protoError(Errno.ENOSYS, `unknown command ${m.command}`);
    }
  }

  private version(m: IncomingMessage): Uint8Array {
    if (this.versioned) throw protoError(Errno.EINVAL, 'VERSION already negotiated');
    const v = decodeVersion(m.payload);
    if (v.major !== VERSION_MAJOR) throw protoError(Errno.ENOTSUP, `protocol major version ${v.major} (this server speaks ${VERSION_MAJOR})`);
    const peer = clampCaps(v.caps);
    this.peerCaps = peer;
    const ours = this.ourCaps;
    // A subset of ours; never longer than the request (QEMU's receive buffer is its request size).
    const limit = HEADER_SIZE + m.payload.length;
    const candidates: Array<Partial<VfioUserCaps>> = [
      { maxMsgFds: ours.maxMsgFds, maxDataXferSize: ours.maxDataXferSize, pgsizes: ours.pgsizes, maxDmaMaps: ours.maxDmaMaps },
      { maxMsgFds: ours.maxMsgFds, maxDataXferSize: ours.maxDataXferSize, pgsizes: ours.pgsizes },
      { maxMsgFds: ours.maxMsgFds, maxDataXferSize: ours.maxDataXferSize },
      { maxMsgFds: ours.maxMsgFds },
      {},
    ];
    let reply: Uint8Array | undefined;
    for (const c of candidates) {
      const r = encodeVersion(m.id, true, VERSION_MAJOR, Math.min(v.minor, VERSION_MINOR), c);
      if (r.length <= limit) {
        reply = r;
        break;
      }
    }
    // Shortest possible: an empty JSON string (just the NUL).
    reply ??= buildMessage(m.id, Cmd.VERSION, FLAG_TYPE_REPLY, 5, (dv) => {
      dv.setUint16(0, VERSION_MAJOR, true);
      dv.setUint16(2, Math.min(v.minor, VERSION_MINOR), true);
    });
    this.versioned = true;
    const conn = this.conn!;
    const xfer = Math.min(peer.maxDataXferSize, ours.maxDataXferSize);
    conn.maxMessageSize = Math.max(64 * 1024, HEADER_SIZE + SIZES.DMA_ACCESS + Math.max(xfer, ours.maxDataXferSize));
    this.device.engine.setPort(this.dmaPort(conn, xfer));
    log('VERSION %d.%d, peer caps %j', v.major, v.minor, peer);
    return reply;
  }

  private dmaPort(conn: VfioUserConnection, maxXfer: number): DmaPort {
    return {
      maxXfer,
      read: async (addr, len) => {
        const r = await conn.request((id) => encodeDmaAccess(id, Cmd.DMA_READ, addr, len));
        const a = decodeDmaAccess(r.payload, true, maxXfer, 'DMA_READ reply');
        if (a.addr !== addr || a.count !== len) throw protoError(Errno.EPROTO, `DMA_READ reply for 0x${a.addr.toString(16)}+${a.count}, asked 0x${addr.toString(16)}+${len}`);
        return a.data;
      },
      write: async (addr, data) => {
        const r = await conn.request((id) => encodeDmaAccess(id, Cmd.DMA_WRITE, addr, data.length, data));
        // QEMU replies with address + u64 count (reference §9); accept that or a bare header.
        if (r.payload.length >= SIZES.DMA_ACCESS) {
          const a = decodeDmaAccess(r.payload.subarray(0, SIZES.DMA_ACCESS), false, maxXfer, 'DMA_WRITE reply');
          if (a.addr !== addr || a.count !== data.length) throw protoError(Errno.EPROTO, `DMA_WRITE reply for 0x${a.addr.toString(16)}+${a.count}, sent 0x${addr.toString(16)}+${data.length}`);
        }
      },
    };
  }

  private regionInfo(m: IncomingMessage): { msg: Uint8Array; fds?: number[] } {
    const req = decodeRegionInfoRequest(m.payload);
    const idx = req.index;
    if (idx >= PCI_NUM_REGIONS) throw protoError(Errno.EINVAL, `region index ${idx} (the device has ${PCI_NUM_REGIONS})`);
    const pci = this.device.pci;
    if (idx === PCI_CONFIG_REGION_INDEX) {
      return { msg: encodeRegionInfoReply(m.id, { flags: REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE, index: idx, size: pci.config.size, offset: 0 }, req.argsz) };
    }
    const bar = idx < 6 ? pci.bars.find((b) => b.index === idx) : undefined;
    if (bar === undefined) return { msg: encodeRegionInfoReply(m.id, { flags: 0, index: idx, size: 0, offset: 0 }, req.argsz) };
    let flags = REGION_INFO_FLAG_READ | REGION_INFO_FLAG_WRITE;
    const mapping = pci.barMapping(idx);
    if (mapping !== undefined && mapping.fd !== undefined && mapping.fdOffset >= mapping.barOffset) {
      // The SWIOTLB window: mmap-able, fd + offset of the region's byte 0 in it.
      flags |= REGION_INFO_FLAG_MMAP;
      const sparse: SparseArea[] | undefined = mapping.barOffset === 0 && mapping.size === bar.size ? undefined : [{ offset: mapping.barOffset, size: mapping.size }];
      const msg = encodeRegionInfoReply(m.id, { flags, index: idx, size: bar.size, offset: mapping.fdOffset - mapping.barOffset, ...(sparse !== undefined ? { sparse } : {}) }, req.argsz);
      return { msg, fds: [mapping.fd] };
    }
    return { msg: encodeRegionInfoReply(m.id, { flags, index: idx, size: bar.size, offset: 0 }, req.argsz) };
  }

  /** Size of region `idx` (0 when absent). */
  private regionSize(idx: number): number {
    const pci = this.device.pci;
    if (idx === PCI_CONFIG_REGION_INDEX) return pci.config.size;
    if (idx < 6) return pci.bars.find((b) => b.index === idx)?.size ?? 0;
    return 0;
  }

  private checkAccess(offset: number, region: number, count: number, what: string): void {
    const size = this.regionSize(region);
    if (size === 0) throw protoError(Errno.EINVAL, `${what}: region ${region} does not exist`);
    if (count === 0 || offset + count > size) throw protoError(Errno.EINVAL, `${what}: [0x${offset.toString(16)}, +${count}) outside region ${region} (${size} bytes)`);
  }

  /** Split [offset, offset+count) into naturally aligned accesses of ≤ 4 bytes. */
  private static pieces(offset: number, count: number, fn: (off: number, size: 1 | 2 | 4, at: number) => void): void {
    let at = 0;
    while (at < count) {
      const off = offset + at;
      const left = count - at;
      const size: 1 | 2 | 4 = left >= 4 && off % 4 === 0 ? 4 : left >= 2 && off % 2 === 0 ? 2 : 1;
      fn(off, size, at);
      at += size;
    }
  }

  private regionRead(m: IncomingMessage): Uint8Array {
    const a = decodeRegionAccess(m.payload, false, this.ourCaps.maxDataXferSize, 'REGION_READ');
    this.checkAccess(a.offset, a.region, a.count, 'REGION_READ');
    this.stats.regionReads++;
    const data = new Uint8Array(a.count);
    const dv = new DataView(data.buffer);
    const pci = this.device.pci;
    const cfg = a.region === PCI_CONFIG_REGION_INDEX;
    VfioUserServer.pieces(a.offset, a.count, (off, size, at) => {
      const v = cfg ? pci.configRead(off, size) : pci.barRead(a.region, off, size);
      if (size === 4) dv.setUint32(at, v >>> 0, true);
      else if (size === 2) dv.setUint16(at, v & 0xffff, true);
      else dv.setUint8(at, v & 0xff);
    });
    return encodeRegionAccessReply(m.id, Cmd.REGION_READ, a.offset, a.region, a.count, data);
  }

  private regionWrite(m: IncomingMessage): { msg: Uint8Array } | undefined {
    const a = decodeRegionAccess(m.payload, true, this.ourCaps.maxDataXferSize, 'REGION_WRITE');
    this.checkAccess(a.offset, a.region, a.count, 'REGION_WRITE');
    this.stats.regionWrites++;
    if ((m.flags & FLAG_NO_REPLY) !== 0) this.stats.postedWrites++;
    const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    const pci = this.device.pci;
    const cfg = a.region === PCI_CONFIG_REGION_INDEX;
    VfioUserServer.pieces(a.offset, a.count, (off, size, at) => {
      const v = size === 4 ? dv.getUint32(at, true) : size === 2 ? dv.getUint16(at, true) : dv.getUint8(at);
      if (cfg) pci.configWrite(off, size, v);
      else pci.barWrite(a.region, off, size, v);
    });
    return { msg: encodeRegionAccessReply(m.id, Cmd.REGION_WRITE, a.offset, a.region, a.count) };
  }

  private safeClose(fd: number): void {
    try {
      this.nat.close(fd);
    } catch {
      /* ignore */
    }
  }

  /** Stop listening, drop the client, remove the socket file. Does not close the device. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener?.stop();
    this.listener = undefined;
    this.conn?.close('server closing');
    this.safeClose(this.listenFd);
    this.listenFd = -1;
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* gone already */
    }
  }
}
