/**
 * The vfio-user client's socket pump (worker thread). Sends what the main thread puts in the
 * mailbox (`client-shared.ts`), hands replies back, and serves the device's DMA_READ / DMA_WRITE
 * requests against guest RAM — validated: the range must lie inside one DMA_MAP'ed range the client
 * sent (and whose reply succeeded) and inside guest RAM; DMA_WRITE into a read-only mapping is
 * refused (EPERM), anything outside (EFAULT), oversize (E2BIG).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { logger } from '../log.js';
import { mapRegionFromFd, type MappedFdRegion } from '../memory/ram.js';
import { AddressSpace } from '../memory/space.js';
import { native } from '../native/index.js';
import { POLL_READABLE } from '../native/types.js';
import { buildMessage, decodeDmaAccess, encodeDmaAccess, getU64 } from './codec.js';
import { VfioUserConnection, type IncomingMessage } from './connection.js';
import {
  C_DMA_BYTES_READ,
  C_DMA_BYTES_WRITTEN,
  C_DMA_READS,
  C_DMA_REFUSED,
  C_DMA_WRITES,
  G_CLOSED,
  readRequest,
  replyFits,
  SLOTS,
  SLOT_FDS,
  slotState,
  ST_DONE,
  ST_FREE,
  ST_READY,
  ST_SENT,
  writeConnCounts,
  writeReply,
  type PumpData,
} from './client-shared.js';
import { Cmd, DMA_FLAG_WRITE, Errno, FLAG_TYPE_REPLY, HEADER_SIZE, SIZES } from './protocol.js';

const log = logger('vfio-user:pump');
const data = workerData as PumpData;
const ctl = new Int32Array(data.mailbox.ctl);
const bytes = new Uint8Array(data.mailbox.data);
const counters = new Float64Array(data.mailbox.counters);

// Guest RAM as the pump sees it (same memfds as the main thread's mapping).
const maps: MappedFdRegion[] = data.ram.map((r) => mapRegionFromFd(r.fd, 0, r.size, r.base, { name: 'pump-ram' }));
const ram = new AddressSpace(maps.flatMap((m) => [...m.regions]), 'pump-guest-ram');

/** DMA ranges the device may use: what we DMA_MAP'ed (confirmed by the reply). */
const dmaRanges: Array<{ addr: number; size: number; flags: number }> = [];

function inDma(addr: number, len: number, write: boolean): number {
  for (const r of dmaRanges) {
    if (addr >= r.addr && addr + len <= r.addr + r.size) return write && (r.flags & DMA_FLAG_WRITE) === 0 ? Errno.EPERM : 0;
  }
  return Errno.EFAULT;
}

let next = 0;
let closed = false;

const conn = new VfioUserConnection(data.socketFd, {
  name: 'vfio-user client',
  maxMessageSize: HEADER_SIZE + SIZES.DMA_ACCESS + data.maxDataXferSize,
  maxFds: SLOT_FDS,
  timeoutMs: data.timeoutMs,
  onRequest: (m) => serveDevice(m),
  onClose: (reason) => {
    closed = true;
    log('connection closed: %s', reason);
    Atomics.store(ctl, G_CLOSED, 1);
    // Wake anyone waiting on a slot.
    for (let i = 0; i < SLOTS; i++) {
      const st = Atomics.load(ctl, slotState(i));
      if (st === ST_READY || st === ST_SENT) {
        writeReply(ctl, bytes, i, -1);
        Atomics.store(ctl, slotState(i), ST_DONE);
        Atomics.notify(ctl, slotState(i));
      }
    }
    updateCounters();
  },
});

function updateCounters(): void {
  writeConnCounts(counters, conn.stats);
}

function refuse(m: IncomingMessage, errno: number): void {
  updateCounters();
  counters[C_DMA_REFUSED]!++;
  conn.replyError(m.id, m.command, errno);
}

/** Requests from the device: DMA_READ / DMA_WRITE. */
function serveDevice(m: IncomingMessage): void {
  for (const fd of m.fds) native.close(fd);
  if (m.command !== Cmd.DMA_READ && m.command !== Cmd.DMA_WRITE) {
    conn.replyError(m.id, m.command, Errno.EINVAL);
    return;
  }
  const write = m.command === Cmd.DMA_WRITE;
  let a;
  try {
    a = decodeDmaAccess(m.payload, write, data.maxDataXferSize, write ? 'DMA_WRITE' : 'DMA_READ');
  } catch (e) {
    refuse(m, (e as { errno?: number }).errno ?? Errno.EINVAL);
    return;
  }
  const bad = inDma(a.addr, a.count, write);
  if (bad !== 0) {
    log('refused %s 0x%s+%d: errno %d', write ? 'DMA_WRITE' : 'DMA_READ', a.addr.toString(16), a.count, bad);
    refuse(m, bad);
    return;
  }
  const ri = ram.resolve(a.addr, a.count, write);
  if (ri < 0) {
    refuse(m, Errno.EFAULT);
    return;
  }
  const reg = ram.regions[ri]!;
  const off = ram.off;
  if (write) {
    reg.u8.set(a.data, off);
    counters[C_DMA_WRITES]!++;
    counters[C_DMA_BYTES_WRITTEN]! += a.count;
    conn.reply(encodeDmaAccess(m.id, Cmd.DMA_WRITE, a.addr, a.count, undefined, FLAG_TYPE_REPLY));
    updateCounters();
  } else {
    counters[C_DMA_READS]!++;
    counters[C_DMA_BYTES_READ]! += a.count;
    const count = a.count;
    const src = reg.u8;
    conn.reply(
      buildMessage(m.id, Cmd.DMA_READ, FLAG_TYPE_REPLY, SIZES.DMA_ACCESS + count, (dv, u8) => {
        dv.setUint32(0, a.addr % 4294967296, true);
        dv.setUint32(4, Math.floor(a.addr / 4294967296), true);
        dv.setUint32(8, count, true);
        u8.set(src.subarray(off, off + count), SIZES.DMA_ACCESS);
      }),
    );
    updateCounters();
  }
}

/** Send every READY slot, in ring order. */
function pumpSlots(): void {
  for (;;) {
    const st = slotState(next);
    if (Atomics.load(ctl, st) !== ST_READY) return;
    const slot = next;
    next = (next + 1) % SLOTS;
    const { msg, fds, wantReply } = readRequest(ctl, bytes, slot);
    const command = msg[2]! | (msg[3]! << 8);
    if (closed) {
      finish(slot, -1, undefined);
      continue;
    }
    if (!wantReply) {
      msg[0] = 0; // posted: id 0 is as good as any (no reply will come)
      msg[1] = 0;
      try {
        conn.send(msg, fds);
      } catch {
        /* closed: nothing to report for a posted write */
      }
      Atomics.store(ctl, st, ST_FREE);
      Atomics.notify(ctl, st);
      continue;
    }
    Atomics.store(ctl, st, ST_SENT);
    conn
      .request(
        (id) => {
          msg[0] = id & 0xff;
          msg[1] = id >> 8;
          return msg;
        },
        fds,
      )
      .then(
        (reply) => {
          if (command === Cmd.DMA_MAP) {
            const dv = new DataView(msg.buffer, HEADER_SIZE);
            dmaRanges.push({ addr: getU64(dv, 16), size: getU64(dv, 24), flags: dv.getUint32(4, true) });
          } else if (command === Cmd.DMA_UNMAP) {
            const dv = new DataView(msg.buffer, HEADER_SIZE);
            const flags = dv.getUint32(4, true);
            if ((flags & 2) !== 0) dmaRanges.length = 0;
            else {
              const addr = getU64(dv, 8);
              const size = getU64(dv, 16);
              const i = dmaRanges.findIndex((r) => r.addr === addr && r.size === size);
              if (i >= 0) dmaRanges.splice(i, 1);
            }
          }
          finish(slot, 0, reply);
        },
        (e: unknown) => {
          const err = e as { code?: string; errno?: number };
          finish(slot, err.code === 'TIMEOUT' ? -2 : err.code === 'CLOSED' ? -1 : (err.errno ?? Errno.EPROTO), undefined);
        },
      );
  }
}

function finish(slot: number, err: number, reply: IncomingMessage | undefined): void {
  if (reply !== undefined && !replyFits(reply.payload.length, reply.fds.length)) {
    for (const fd of reply.fds) native.close(fd);
    err = -3;
    reply = undefined;
  }
  writeReply(ctl, bytes, slot, err, reply);
  updateCounters();
  Atomics.store(ctl, slotState(slot), ST_DONE);
  Atomics.notify(ctl, slotState(slot));
}

const doorbell = native.poll(data.doorbellFd, POLL_READABLE, () => {
  native.eventfdRead(data.doorbellFd);
  pumpSlots();
});

parentPort?.on('message', (msg: unknown) => {
  if (msg === 'stop') {
    doorbell.stop();
    conn.close('client closing');
    for (const m of maps) m.close();
    parentPort?.close();
    setImmediate(() => process.exit(0));
  }
});
parentPort?.postMessage('ready');
