/**
 * virtio-blk test driver ({@link BlkDriver}: builds virtio-blk requests, kicks, waits for the model
 * to go idle, collects completions) over the shared device rig (`test/device/harness.ts`), which
 * is re-exported here for the suites that import it from this file.
 */
import type { VirtioDeviceModel } from '../../../src/device/types.js';
import { SgList } from '../../../src/queue/types.js';
import {
  BLK_ID_BYTES,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
} from '../../../src/device/blk/constants.js';
import type { DeviceRig } from '../harness.js';

export { CountingHooks, startDevice, type DeviceRig, type RigOptions } from '../harness.js';

// ================================================================================================
// virtio-blk driver helper

/** One block request as the test describes it. */
export interface BlkReqSpec {
  type: number;
  sector?: number;
  /** OUT / DISCARD / WRITE_ZEROES payload (device-readable data after the header). */
  out?: Uint8Array;
  /** IN / GET_ID: device-writable data bytes before the status byte. */
  inLen?: number;
  /** Split the 16-byte header into descriptors of these sizes (sum 16). */
  headerSplit?: number[];
  /** Split the data into this many descriptors (default 1). */
  dataSegs?: number;
  /** Put the status byte in the same descriptor as the IN data (default false). */
  statusWithData?: boolean;
  /** Leave out the status byte (malformed). */
  noStatus?: boolean;
  /** Raw reserved field. */
  reserved?: number;
}

/** A posted request. */
export interface BlkPosted {
  token: number;
  q: number;
  statusAddr: number;
  /** Guest address of the IN data (contiguous even when split into descriptors). */
  inAddr: number;
  inLen: number;
}

/** A completed request. */
export interface BlkDone {
  token: number;
  len: number;
  status: number;
  /** IN data (a copy). */
  data: Uint8Array;
}

/** Builds virtio-blk requests in guest memory and collects completions. */
export class BlkDriver {
  readonly rig: DeviceRig;
  readonly model: VirtioDeviceModel & { whenIdle(): Promise<void> };
  private readonly sg = new SgList(64);
  private nextToken = 1;
  private readonly posted = new Map<number, BlkPosted>();

  constructor(rig: DeviceRig, model: VirtioDeviceModel & { whenIdle(): Promise<void> }) {
    this.rig = rig;
    this.model = model;
  }

  /** Post a request on queue `q` (published, not kicked). */
  post(q: number, r: BlkReqSpec): BlkPosted {
    const rig = this.rig;
    const dv = new DataView(rig.ram.buffer);
    const sg = this.sg.clear();
    const hdr = rig.alloc(16);
    dv.setUint32(hdr, r.type >>> 0, true);
    dv.setUint32(hdr + 4, r.reserved ?? 0, true);
    const sector = r.sector ?? 0;
    dv.setUint32(hdr + 8, sector >>> 0, true);
    dv.setUint32(hdr + 12, Math.floor(sector / 4294967296) >>> 0, true);
    let o = 0;
    for (const part of r.headerSplit ?? [16]) {
      sg.out(hdr + o, part);
      o += part;
    }
    const segs = (len: number, n: number, addr: number, out: boolean): void => {
      const k = Math.max(1, Math.min(n, len));
      let done = 0;
      for (let i = 0; i < k; i++) {
        const l = i === k - 1 ? len - done : Math.floor(len / k);
        if (l === 0) continue;
        if (out) sg.out(addr + done, l);
        else sg.in(addr + done, l);
        done += l;
      }
    };
    if (r.out !== undefined && r.out.length > 0) {
      const a = rig.alloc(r.out.length);
      rig.ram.set(r.out, a);
      segs(r.out.length, r.dataSegs ?? 1, a, true);
    }
    const inLen = r.inLen ?? 0;
    const inAddr = rig.alloc(inLen + 1);
    rig.ram.fill(0xee, inAddr, inAddr + inLen + 1);
    const statusAddr = inAddr + inLen;
    if (r.statusWithData === true && inLen > 0 && r.noStatus !== true) {
      sg.in(inAddr, inLen + 1);
    } else {
      if (inLen > 0) segs(inLen, r.dataSegs ?? 1, inAddr, false);
      if (r.noStatus !== true) sg.in(statusAddr, 1);
    }
    const token = this.nextToken++;
    const dq = rig.drivers[q]!;
    if (dq.add(sg, token) < 0) throw new Error(`queue ${q} full`);
    dq.publish();
    const p: BlkPosted = { token, q, statusAddr, inAddr, inLen };
    this.posted.set(token, p);
    return p;
  }

  /** Kick queue `q`. */
  kick(q: number): void {
    this.rig.core.notify(q);
  }

  /** Collect every used buffer of queue `q`. */
  collect(q: number): BlkDone[] {
    const dq = this.rig.drivers[q]!;
    const out: BlkDone[] = [];
    while (dq.getUsed()) {
      const p = this.posted.get(dq.lastToken);
      if (p === undefined) throw new Error(`unknown token ${dq.lastToken}`);
      this.posted.delete(p.token);
      out.push({ token: p.token, len: dq.lastLen, status: this.rig.ram[p.statusAddr]!, data: this.rig.ram.slice(p.inAddr, p.inAddr + p.inLen) });
    }
    return out;
  }

  /** Post, kick, wait for the device to go idle, collect: one request's completion. */
  async run(q: number, r: BlkReqSpec): Promise<BlkDone> {
    const p = this.post(q, r);
    this.kick(q);
    await this.model.whenIdle();
    const done = this.collect(q);
    const mine = done.find((d) => d.token === p.token);
    if (mine === undefined) throw new Error(`request ${p.token} did not complete (got ${done.length} others)`);
    return mine;
  }

  read(q: number, sector: number, bytes: number, extra: Partial<BlkReqSpec> = {}): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_IN, sector, inLen: bytes, ...extra });
  }
  write(q: number, sector: number, data: Uint8Array, extra: Partial<BlkReqSpec> = {}): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_OUT, sector, out: data, ...extra });
  }
  flush(q: number): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_FLUSH });
  }
  getId(q: number, len = BLK_ID_BYTES): Promise<BlkDone> {
    return this.run(q, { type: VIRTIO_BLK_T_GET_ID, inLen: len });
  }
  /** DISCARD / WRITE_ZEROES with segments [sector, numSectors, flags]. */
  dwz(q: number, discard: boolean, segs: Array<[number, number, number]>): Promise<BlkDone> {
    return this.run(q, { type: discard ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES, out: dwzPayload(segs) });
  }
}

/** Encode `struct virtio_blk_discard_write_zeroes` segments. */
export function dwzPayload(segs: Array<[number, number, number]>): Uint8Array {
  const b = new Uint8Array(16 * segs.length);
  const dv = new DataView(b.buffer);
  segs.forEach(([sector, n, flags], i) => {
    dv.setUint32(i * 16, sector >>> 0, true);
    dv.setUint32(i * 16 + 4, Math.floor(sector / 4294967296) >>> 0, true);
    dv.setUint32(i * 16 + 8, n >>> 0, true);
    dv.setUint32(i * 16 + 12, flags >>> 0, true);
  });
  return b;
}
