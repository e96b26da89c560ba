/** A mini front-end "VM" for the vhost-user back-end tests: memfd guest RAM, rings, eventfds. */
import { RecordingSink } from '../../src/device/choke.js';
import { RamBackend } from '../../src/device/blk/ram-backend.js';
import { BlkDevice } from '../../src/device/blk/blk-device.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1 } from '../../src/features/bits.js';
import { createGuestRam, type GuestRam } from '../../src/memory/ram.js';
import { native } from '../../src/native/index.js';
import { POLL_READABLE } from '../../src/native/types.js';
import { layoutPackedRings, PackedDriverQueue } from '../../src/queue/packed/index.js';
import { layoutSplitRings, SplitDriverQueue } from '../../src/queue/split/index.js';
import { type DriverQueue, type QueueConfig, SgList } from '../../src/queue/types.js';
import { VhostUserBackend, type VhostUserBackendOptions } from '../../src/vhost-user/backend.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { maskOf, VHOST_USER_F_PROTOCOL_FEATURES, VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_CONFIG } from '../../src/vhost-user/protocol.js';

/** Front-end user addresses = guest-physical + this (exercises the uaddr → gpa translation). */
export const UADDR_OFFSET = 0x7f12_0000_0000;
export const RAM_SIZE = 1 << 20;
export const RING_BASE = 0x1000;
export const DATA_BASE = 0x40000;

export function waitReadable(fd: number, ms = 5000): Promise<void> {
  return new Promise((res, rej) => {
    const t = setTimeout(() => {
      h.stop();
      rej(new Error(`fd ${fd} not readable within ${ms} ms`));
    }, ms);
    const h = native.poll(fd, POLL_READABLE, () => {
      clearTimeout(t);
      h.stop();
      res();
    });
  });
}

/** A blk device on a RAM disk, a back-end, a socketpair and a connected front-end. */
export interface Rig {
  ram: GuestRam;
  disk: RamBackend;
  blk: BlkDevice;
  backend: VhostUserBackend;
  fe: VhostUserFrontend;
  kick: number;
  call: number;
  err: number;
  dq: DriverQueue | null;
  sink: RecordingSink;
  close(): Promise<void>;
}

export async function makeRig(opts: Partial<Omit<VhostUserBackendOptions, 'model'>> = {}, blkQueues = 1): Promise<Rig> {
  const ram = createGuestRam([{ base: 0, size: RAM_SIZE }], { backing: 'memfd' });
  const disk = new RamBackend(1 << 20);
  const blk = new BlkDevice(disk, { queues: blkQueues, queueSize: 256 });
  const backend = new VhostUserBackend({ model: blk, ...opts });
  const [a, b] = native.socketpair();
  backend.serve(a);
  const fe = VhostUserFrontend.fromFd(b, { timeoutMs: 5000 });
  const kick = native.eventfdCreate(0);
  const call = native.eventfdCreate(0);
  const err = native.eventfdCreate(0);
  const rig: Rig = {
    ram,
    disk,
    blk,
    backend,
    fe,
    kick,
    call,
    err,
    dq: null,
    sink: new RecordingSink(),
    close: async () => {
      fe.close();
      await backend.session?.done;
      for (const fd of [kick, call, err]) native.close(fd);
      ram.close();
    },
  };
  return rig;
}

/** Negotiate and send the memory table (REPLY_ACK on, so every step is acknowledged). */
export async function handshake(rig: Rig, packed = false): Promise<void> {
  const { fe, ram } = rig;
  const f = await fe.getFeatures();
  const want = [VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VHOST_USER_F_PROTOCOL_FEATURES];
  if (packed) want.push(VIRTIO_F_RING_PACKED);
  await fe.getProtocolFeatures();
  await fe.setProtocolFeatures(maskOf([VHOST_USER_PROTOCOL_F_REPLY_ACK, VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_CONFIG]));
  await fe.setOwner();
  const m = maskOf(want);
  if ((m.lo & ~f.lo) !== 0 || (m.hi & ~f.hi) !== 0) throw new Error('back-end lacks a wanted feature');
  await fe.setFeatures(m);
  const r = ram.regions[0]!;
  await fe.setMemTable([{ gpa: 0, size: RAM_SIZE, uaddr: UADDR_OFFSET, mmapOffset: 0, fd: r.fd! }]);
}

/** Configure and start ring 0 with a driver queue over the same memory. */
export async function startRing(rig: Rig, size = 64, packed = false, q = 0): Promise<DriverQueue> {
  const { fe, ram } = rig;
  const base = RING_BASE + q * 0x8000;
  const lay = packed ? layoutPackedRings(base, size) : layoutSplitRings(base, size);
  const cfg: QueueConfig = { index: q, size, maxSize: size, desc: lay.desc, driver: lay.driver, device: lay.device, eventIdx: true, indirect: true, inOrder: false };
  const dq = packed ? new PackedDriverQueue(ram.space, cfg, rig.sink) : new SplitDriverQueue(ram.space, cfg, rig.sink);
  await fe.setVringNum(q, size);
  await fe.setVringAddr({ index: q, flags: 0, desc: lay.desc + UADDR_OFFSET, used: lay.device + UADDR_OFFSET, avail: lay.driver + UADDR_OFFSET, log: 0 });
  await fe.setVringBase(q, packed ? 1 << 15 | (1 << 31) : 0);
  await fe.setVringCall(q, rig.call);
  await fe.setVringErr(q, rig.err);
  await fe.setVringKick(q, rig.kick);
  await fe.setVringEnable(q, true);
  rig.dq = dq;
  return dq;
}

const sg = new SgList(8);

/** Post one blk request (OUT writes `data`, IN reads `len`), kick, wait for the call, collect. */
export async function blkRequest(rig: Rig, dq: DriverQueue, type: 0 | 1, sector: number, dataAddr: number, len: number, hdrAddr = DATA_BASE - 0x100): Promise<{ status: number; usedLen: number }> {
  const sp = rig.ram.space;
  sp.writeU32(hdrAddr, type);
  sp.writeU32(hdrAddr + 4, 0);
  sp.writeU64(hdrAddr + 8, sector);
  const statusAddr = hdrAddr + 16;
  sp.writeU8(statusAddr, 0xff);
  sg.clear().out(hdrAddr, 16);
  if (type === 1) sg.out(dataAddr, len);
  else sg.in(dataAddr, len);
  sg.in(statusAddr, 1);
  if (dq.add(sg, 7) < 0) throw new Error('ring full');
  dq.publish();
  native.eventfdWrite(rig.kick, 1);
  await waitReadable(rig.call);
  native.eventfdRead(rig.call);
  if (!dq.getUsed()) throw new Error('no used buffer after the call');
  dq.enableInterrupts(); // re-arm (EVENT_IDX: moves used_event past what we consumed)
  return { status: sp.readU8(statusAddr), usedLen: dq.lastLen };
}
