/**
 * Shared pieces of the checks: one valid request per device type ("workload"), helpers to run
 * it, and the judgement of a deliberately malformed submission (REJECT / PASS / FAIL / WEDGED).
 */
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import type { FeatureSet } from '../../features/set.js';
import type { CheckContext, DeviceKind, Dut } from '../check.js';
import { defaultAccept, RawDriver, RawSplitQueue, settle, waitFor, type RawBuf, type RawInitOptions, type UsedElem } from '../raw.js';
import { fail, pass, reject, skip, wedged, type CheckResult, type ClauseOutcome } from '../verdict.js';

/** Queue the workload goes to: blk/rng request queue 0, net transmitq 1, console port 0 transmitq 1. */
export function workQueue(kind: DeviceKind): number {
  return kind === 'net' || kind === 'console' ? 1 : 0;
}

/** One valid request for a device type, in DMA memory. */
export interface Work {
  readonly q: number;
  readonly bufs: RawBuf[];
  /** Device-readable buffers with their content (the device must not change them). */
  readonly readable: Array<{ addr: number; data: Uint8Array }>;
  /** Device-writable buffers. */
  readonly writable: Array<{ addr: number; len: number }>;
  /** Judge the completion; a string is the problem. */
  verify(raw: RawDriver, used: UsedElem): string | undefined;
}

/** A byte pattern. */
export function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed * 29 + 7) & 0xff;
  return b;
}

/** virtio-blk request header. */
export function blkHeader(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector >>> 0, true);
  dv.setUint32(12, Math.floor(sector / 4294967296), true);
  return h;
}

/** A minimal Ethernet frame (broadcast destination so filters pass it). */
export function ethFrame(len = 60, dst: readonly number[] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], seed = 3): Uint8Array {
  const f = pattern(len, seed);
  f.set(dst, 0);
  f.set([0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc], 6);
  f[12] = 0x08;
  f[13] = 0x00;
  return f;
}

/**
 * The workload of a device type as plain data, independent of who posts it: device-readable
 * pieces, device-writable lengths, and the judgement of a completion from what the device wrote.
 * {@link buildWork} places it in the raw driver's DMA memory; the driver-side checks hand it to
 * the simulated driver's `submit`.
 */
export interface WorkPayload {
  /** Workload queue ({@link workQueue}). */
  readonly q: number;
  /** Device-readable buffers, in chain order (before any splitting). */
  readonly out: readonly Uint8Array[];
  /** Device-writable buffer lengths, after the readable ones. */
  readonly inLens: readonly number[];
  /**
   * Judge a completion: `len` is the used length, `written[i]` the bytes of writable buffer `i`
   * as the driver sees them. A string is the problem.
   */
  verify(dut: Dut, len: number, written: readonly Uint8Array[]): string | undefined;
}

/** The workload of `kind` as data (see {@link WorkPayload}). */
export function workPayload(kind: DeviceKind, seed = 1): WorkPayload {
  switch (kind) {
    case 'blk': {
      const data = pattern(512, seed);
      const sector = 1 + (seed % 64);
      return {
        q: 0,
        out: [blkHeader(1, sector), data],
        inLens: [1],
        verify: (dut, len, written) => {
          const s = written[0]?.[0];
          if (s === undefined) return `used len ${len}: the device did not write the status byte`;
          if (s !== 0) return `write request completed with status ${s} (expected VIRTIO_BLK_S_OK 0)`;
          if (len < 1) return `used len ${len}, but the device wrote the status byte`;
          const disk = dut.io.readDisk?.(512 * sector, 512);
          if (disk !== undefined && !disk.every((b, i) => b === data[i])) return 'the written sector does not hold the data sent';
          return undefined;
        },
      };
    }
    case 'rng':
      return { q: 0, out: [], inLens: [64], verify: (_d, len) => (len >= 1 && len <= 64 ? undefined : `used len ${len} for a 64-byte buffer`) };
    case 'net': {
      const frame = ethFrame(60, undefined, seed);
      const msg = new Uint8Array(12 + frame.length); // zeroed virtio_net_hdr (12 bytes, VERSION_1) + frame
      msg.set(frame, 12);
      return {
        q: 1,
        out: [msg],
        inLens: [],
        verify: (dut) => {
          const sent = dut.io.sentFrames;
          if (sent !== undefined && !sent.some((f) => f.length === frame.length && f.every((b, i) => b === frame[i]))) return 'the transmitted frame did not reach the backend intact';
          return undefined;
        },
      };
    }
    case 'console': {
      const text = new TextEncoder().encode(`hello ${seed}\r\n`);
      return {
        q: 1,
        out: [text],
        inLens: [],
        verify: (dut) => {
          const o = dut.io.consoleOutput;
          if (o !== undefined) {
            const s = String.fromCharCode(...o);
            if (!s.includes(new TextDecoder().decode(text))) return `port 0 output ${JSON.stringify(s.slice(-40))} lacks the text sent`;
          }
          return undefined;
        },
      };
    }
  }
}

/** Build the workload of `kind` in the raw driver's DMA memory (optionally splitting the readable part into `split` pieces). */
export function buildWork(raw: RawDriver, kind: DeviceKind, opts: { split?: number; seed?: number } = {}): Work {
  const mem = raw.mem;
  const p = workPayload(kind, opts.seed ?? 1);
  const readable: Array<{ addr: number; data: Uint8Array }> = [];
  const writable: Array<{ addr: number; len: number }> = [];
  const bufs: RawBuf[] = [];
  for (const data of p.out) {
    const pieces = Math.max(1, Math.min(opts.split ?? 1, data.length));
    const step = Math.ceil(data.length / pieces);
    for (let o = 0; o < data.length; o += step) {
      const d = data.slice(o, Math.min(data.length, o + step));
      const a = mem.alloc(d.length, 16);
      mem.write(a, d);
      readable.push({ addr: a, data: d });
      bufs.push({ addr: a, len: d.length });
    }
  }
  for (const len of p.inLens) {
    const a = mem.alloc(len, 16);
    mem.write(a, new Uint8Array(len).fill(0xa5));
    writable.push({ addr: a, len });
    bufs.push({ addr: a, len, write: true });
  }
  return {
    q: p.q,
    bufs,
    readable,
    writable,
    verify: (r, u) =>
      p.verify(
        r.dut,
        u.len,
        writable.map((w) => r.mem.read(w.addr, w.len)),
      ),
  };
}

/** Accept function: default acceptance with changes. */
export function acceptWith(opts: { add?: number[]; drop?: number[] } = {}): (o: FeatureSet) => FeatureSet {
  return (o) => {
    const f = defaultAccept(o);
    for (const b of opts.drop ?? []) f.clear(b);
    for (const b of opts.add ?? []) f.set(b);
    return f;
  };
}

/** Default acceptance without EVENT_IDX / packed, for checks that read split-ring fields. */
export const acceptSplitNoEvent = acceptWith({ drop: [VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED] });

/**
 * Make register reads current where the transport answers asynchronously (vhost-user: wait for
 * the outstanding replies, refresh the config cache); a no-op for PCI and MMIO.
 */
export async function settleTransport(ctx: CheckContext, ms = Math.min(ctx.waitMs, 1000)): Promise<void> {
  await ctx.dut.vhostUser?.sync(ms);
}

/** Open and initialize a raw driver on the check's DUT. */
export function rawInit(ctx: CheckContext, o: RawInitOptions & { interrupts?: 'msix' | 'intx' } = {}): RawDriver {
  const raw = RawDriver.open(ctx, o.interrupts !== undefined ? { interrupts: o.interrupts } : {});
  raw.init(o);
  return raw;
}

/** Post `w`, kick and wait for its used element (undefined on timeout). */
export async function runWork(ctx: CheckContext, raw: RawDriver, w: Work, opts: { kick?: boolean } = {}): Promise<UsedElem | undefined> {
  const rq = raw.queue(w.q);
  const id = rq.post(w.bufs);
  if (opts.kick ?? true) rq.kick();
  return waitUsed(ctx, raw, w.q, id);
}

/** Wait for the used element of `id` on queue `q`. */
export async function waitUsed(ctx: CheckContext, raw: RawDriver, q: number, id: number, ms = ctx.waitMs): Promise<UsedElem | undefined> {
  const rq = raw.queue(q);
  let got: UsedElem | undefined;
  await waitFor(
    () => {
      for (const u of rq.collect()) if (u.id === id) got = u;
      return got !== undefined;
    },
    ms,
    ctx.signal,
  );
  return got;
}

/** Do one valid request and judge it; returns a problem or undefined. */
export async function workOk(ctx: CheckContext, raw: RawDriver, seed = 1): Promise<string | undefined> {
  const w = buildWork(raw, ctx.dut.kind, { seed });
  const u = await runWork(ctx, raw, w);
  if (u === undefined) return `a valid ${ctx.dut.kind} request on queue ${w.q} was not completed within ${ctx.waitMs} ms`;
  return w.verify(raw, u);
}

/**
 * Judge a deliberately malformed submission: `corrupt` posts something invalid on the workload
 * queue and kicks. Allowed reactions: DEVICE_NEEDS_RESET (then a configuration-change
 * notification is due, basic.dev-status-field.device.3) → REJECT; or the chain is dropped /
 * completed without harm → PASS. Either way the device must come back after a reset and complete
 * a valid request (else WEDGED), and must not have written `guard` memory (else FAIL).
 *
 * Over vhost-user the back-end refuses by signalling its error eventfd, NACKing or closing the
 * connection (all read as NEEDS_RESET) → REJECT; the status field and its notification belong to
 * the front-end, so basic.dev-status-field.device.3 is SKIP there. A back-end that silently stops
 * the ring (a valid request on the same ring is not served either) is REJECT too.
 */
export async function judgeMalformed(
  ctx: CheckContext,
  corrupt: (raw: RawDriver, q: number) => { guard?: Array<{ addr: number; len: number; inRam?: boolean }> } | void,
  init: RawInitOptions = {},
): Promise<CheckResult> {
  const vu = ctx.dut.vhostUser;
  const raw = rawInit(ctx, init);
  try {
    const q = workQueue(ctx.dut.kind);
    const r = corrupt(raw, q) ?? {};
    const guards = (r.guard ?? []).map((g) => {
      const m = g.inRam === true ? raw.ramMem : raw.mem;
      return { ...g, m, before: m.read(g.addr, g.len) };
    });
    await settle(6);
    // Out-of-process devices answer asynchronously: give NEEDS_RESET and its notification time.
    await waitFor(() => raw.needsReset(), Math.min(ctx.waitMs, 300), ctx.signal);
    const nr = raw.needsReset();
    if (nr && vu === undefined) await waitFor(() => raw.irq.config > 0, ctx.waitMs, ctx.signal);
    const cfgIrq = raw.irq.config;
    for (const g of guards) {
      const now = g.m.read(g.addr, g.len);
      if (!now.every((b, i) => b === g.before[i])) return fail(`the device wrote ${g.len} bytes at 0x${g.addr.toString(16)} that the malformed request did not give it to write`);
    }
    if (nr && cfgIrq === 0 && vu === undefined) return fail('the device set DEVICE_NEEDS_RESET but sent no configuration-change notification');
    let stopped = false;
    const signal = vu?.errorReason;
    if (vu !== undefined && !nr) {
      // Did the back-end skip the bad chain, or stop the ring? A valid request on the same ring tells.
      const rq = raw.queue(q);
      if (rq instanceof RawSplitQueue) rq.nextDesc = rq.size >> 1;
      const w = buildWork(raw, ctx.dut.kind, { seed: 5 });
      const u = await runWork(ctx, raw, w);
      stopped = u === undefined;
    }
    const vuSkip = (how: string): Record<string, ClauseOutcome> => ({
      'basic.dev-status-field.device.3': { verdict: 'SKIP', detail: `not observable over vhost-user: the front-end owns the status field and its notification (the back-end ${how})` },
    });
    raw.reset();
    if (raw.regs.status() !== 0) return fail(`status reads 0x${raw.regs.status().toString(16)} after writing 0 (reset)`);
    const raw2 = rawInit(ctx, init);
    try {
      const p = await workOk(ctx, raw2, 9);
      if (p !== undefined) return ctx.signal.aborted ? wedged(p) : wedged(`after the malformed request and a reset the device no longer answers: ${p}`);
    } finally {
      raw2.close();
    }
    if (vu !== undefined && nr) return { verdict: 'REJECT', detail: `refused: ${signal ?? 'error state'}; working again after reset`, perClause: vuSkip(`signalled: ${signal ?? 'an error'}`) };
    if (stopped) return { verdict: 'REJECT', detail: 'the back-end stopped the ring without an error signal (a valid request on it was not served); working again after reset', perClause: vuSkip('stopped the ring silently') };
    if (nr) return reject(`DEVICE_NEEDS_RESET set, ${cfgIrq} config-change notification(s), working again after reset`);
    return pass('request dropped or completed without harm; device keeps working after reset', {
      'basic.dev-status-field.device.3': { verdict: 'SKIP', detail: vu !== undefined ? 'the back-end signalled no error for this input' : 'the device did not set DEVICE_NEEDS_RESET for this input' },
    });
  } finally {
    raw.close();
  }
}

export { skip, pass, fail, reject };

/** Run `body` with `raw` and close `raw` afterwards, however `body` ends. */
export async function withRaw<T>(raw: RawDriver, body: (raw: RawDriver) => Promise<T>): Promise<T> {
  try {
    return await body(raw);
  } finally {
    raw.close();
  }
}
