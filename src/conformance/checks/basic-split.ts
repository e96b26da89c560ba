/** Split virtqueue checks (virtio 1.4 §2.7): device-side behaviour on valid and broken rings. */
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../queue/types.js';
import { ANY_TRANSPORT, defineCheck, type Check, type CheckContext } from '../check.js';
import { RawSplitQueue, settle, waitFor, type PostOptions, type RawDriver } from '../raw.js';
import { fail, pass, type CheckResult } from '../verdict.js';
import { acceptWith, buildWork, judgeMalformed, rawInit, runWork, waitUsed, withRaw, workOk } from './util.js';

const SPLIT_ONLY = acceptWith({ drop: [VIRTIO_F_RING_PACKED] });
const ROBUST = ['basic.dev-status-field.device.3', 'basic.dev-reset.device.1'];

function splitQ(raw: { queue(q: number): unknown }, q: number): RawSplitQueue {
  const rq = raw.queue(q);
  if (!(rq instanceof RawSplitQueue)) throw new Error('expected a split ring');
  return rq;
}

/** Make head `head` available and notify the device. */
function availKick(rq: RawSplitQueue, head: number): void {
  rq.pushAvail(head);
  rq.publish();
  rq.kick();
}

/**
 * A robustness check on a split ring: `corrupt` writes something malformed on the workload
 * queue (and kicks); judgeMalformed gives the verdict.
 */
function malformedSplit(
  id: string,
  title: string,
  corrupt: (raw: RawDriver, rq: RawSplitQueue) => { guard?: Array<{ addr: number; len: number }> } | void,
  extra: Pick<Check, 'needs' | 'devices'> = {},
): Check {
  return defineCheck({
    id,
    title,
    clauses: ROBUST,
    role: 'device',
    transports: ANY_TRANSPORT,
    ...extra,
    run: (ctx) => judgeMalformed(ctx, (raw, q) => corrupt(raw, splitQ(raw, q)), { accept: SPLIT_ONLY }),
  });
}

/**
 * Post the workload (built with `work`) through an indirect table laid out by `post`, wait for it
 * and judge it: FAIL naming `what` if it is not completed, PASS with `ok` if it verifies.
 */
async function indirectChain(ctx: CheckContext, work: { split?: number }, post: PostOptions, what: string, ok: string): Promise<CheckResult> {
  return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
    const w = buildWork(raw, ctx.dut.kind, work);
    const rq = raw.queue(w.q);
    const id = rq.post(w.bufs, { indirect: true, ...post });
    rq.kick();
    const got = await waitUsed(ctx, raw, w.q, id);
    if (got === undefined) return fail(`${what} not completed${raw.needsReset() ? ' (device set NEEDS_RESET)' : ''}`);
    const p = w.verify(raw, got);
    return p === undefined ? pass(ok) : fail(p);
  });
}

/**
 * Negotiate with `accept`, set the avail flags and used_event of the workload queue, do one valid
 * request and expect a used-buffer notification: FAIL with `none` if none came, PASS with `ok(n)`.
 */
async function usedNotif(
  ctx: CheckContext,
  accept: { add?: number[]; drop?: number[] },
  availFlags: number,
  usedEvent: number,
  none: string,
  ok: (n: number) => string,
): Promise<CheckResult> {
  return withRaw(rawInit(ctx, { accept: acceptWith(accept) }), async (raw) => {
    const q = buildWork(raw, ctx.dut.kind).q;
    const rq = splitQ(raw, q);
    rq.setAvailFlags(availFlags);
    rq.setUsedEvent(usedEvent);
    const before = raw.irq.queue;
    const p = await workOk(ctx, raw);
    if (p !== undefined) return fail(p);
    await waitFor(() => raw.irq.queue > before, ctx.waitMs, ctx.signal);
    if (raw.irq.queue === before) return fail(none);
    return pass(ok(raw.irq.queue - before));
  });
}

async function framing(ctx: CheckContext): Promise<CheckResult> {
  return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
    for (const split of [2, 5]) {
      const w = buildWork(raw, ctx.dut.kind, { split, seed: split });
      const u = await runWork(ctx, raw, w);
      if (u === undefined) return fail(`a request whose readable part is split over ${split} descriptors was not completed`);
      const p = w.verify(raw, u);
      if (p !== undefined) return fail(`readable part split over ${split} descriptors: ${p}`);
    }
    return pass('requests with the readable part split over 2 and 5 descriptors completed correctly');
  });
}

export const splitChecks: readonly Check[] = [
  defineCheck({
    id: 'split.used-ring-len',
    title: 'used element len is filled before used idx moves and covers bytes really written',
    clauses: ['basic.split-vq.vq-used-ring.device.1', 'basic.split-vq.vq-used-ring.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
        const w = buildWork(raw, ctx.dut.kind);
        const rq = splitQ(raw, w.q);
        rq.post(w.bufs);
        rq.kick();
        const ok = await waitFor(() => rq.usedIdx() !== 0, ctx.waitMs, ctx.signal);
        if (!ok) return fail(`request on queue ${w.q} not completed`);
        const e = rq.usedElem(0);
        const writable = w.writable.reduce((a, b) => a + b.len, 0);
        if (e.len > writable) return fail(`used len ${e.len} exceeds the ${writable} writable bytes`);
        // Bytes claimed written must differ from the fill pattern or match what the device meant to write.
        let left = e.len;
        let unchanged = 0;
        for (const b of w.writable) {
          const take = Math.min(left, b.len);
          const now = raw.mem.read(b.addr, take);
          for (const x of now) if (x === 0xa5) unchanged++;
          left -= take;
        }
        if (e.len > 0 && unchanged === e.len && e.len > 1) return fail(`used len ${e.len} but none of those bytes was written`);
        const p = w.verify(raw, e);
        if (p !== undefined) return fail(p);
        return pass(`used idx moved to 1 with len ${e.len} (of ${writable} writable bytes) already in place`);
      });
    },
  }),
  defineCheck({
    id: 'split.message-framing',
    title: 'device accepts a request whose readable part is split arbitrarily across descriptors',
    clauses: ['basic.split-vq.message-framing.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: ['blk', 'net', 'console'],
    run: framing,
  }),
  defineCheck({
    id: 'split.readable-and-table-untouched',
    title: 'device writes neither device-readable buffers nor the descriptor table',
    clauses: ['basic.split-vq.vq-desc-table.device.1', 'basic.split-vq.vq-desc-table.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
        const w = buildWork(raw, ctx.dut.kind, { split: 2 });
        const rq = splitQ(raw, w.q);
        const before = raw.mem.read(rq.desc, 16 * rq.size);
        const u = await runWork(ctx, raw, w);
        if (u === undefined) return fail('request not completed');
        // Snapshot after the driver's own writes (post wrote the descriptors before the kick).
        const after = raw.mem.read(rq.desc, 16 * rq.size);
        void before;
        for (const r of w.readable) {
          const now = raw.mem.read(r.addr, r.data.length);
          if (!now.every((b, i) => b === r.data[i])) return fail(`device-readable buffer at 0x${r.addr.toString(16)} was modified`);
        }
        // Compare the table with what the driver wrote: re-post nothing, just re-read after settling.
        await settle(4);
        const later = raw.mem.read(rq.desc, 16 * rq.size);
        if (!later.every((b, i) => b === after[i])) return fail('the descriptor table changed after completion');
        const d0 = raw.mem.read(rq.desc, 16);
        const addr0 = new DataView(d0.buffer).getUint32(0, true);
        if (w.bufs[0] !== undefined && addr0 !== (w.bufs[0].addr >>> 0)) return fail('descriptor 0 no longer holds the address the driver wrote');
        return pass(`${w.readable.length} readable buffer(s) and the descriptor table unchanged`);
      });
    },
  }),
  defineCheck({
    id: 'split.indirect-write-flag-ignored',
    title: 'WRITE on the descriptor that points to an indirect table is ignored',
    clauses: ['basic.split-vq.indirect-desc.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    needs: [VIRTIO_F_INDIRECT_DESC],
    async run(ctx) {
      return indirectChain(ctx, {}, { indirectFlags: VIRTQ_DESC_F_WRITE }, 'indirect chain with WRITE on the ring descriptor', 'indirect chain with WRITE set on the indirect descriptor processed normally');
    },
  }),
  defineCheck({
    id: 'split.direct-then-indirect',
    title: 'a chain of direct descriptors ending in an indirect one is processed',
    clauses: ['basic.split-vq.indirect-desc.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: ['blk', 'net', 'console'],
    needs: [VIRTIO_F_INDIRECT_DESC],
    async run(ctx) {
      return indirectChain(ctx, { split: 3 }, { directPrefix: 1 }, 'chain of 1 direct + 1 indirect descriptor', 'direct descriptor followed by an indirect table processed');
    },
  }),
  defineCheck({
    id: 'split.used-notif-flags',
    title: 'without EVENT_IDX: notifies when avail flags is 0, ignoring used_event',
    clauses: ['basic.split-vq.used-buffer-notif-suppression.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      // used_event far away: must be ignored without EVENT_IDX.
      return usedNotif(ctx, { drop: [VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED] }, 0, 0x4000, 'no used-buffer notification with avail flags 0 (used_event far away must be ignored)', (n) => `${n} used-buffer notification(s) with flags 0 and an unrelated used_event`);
    },
  }),
  defineCheck({
    id: 'split.used-notif-event-idx',
    title: 'with EVENT_IDX: ignores NO_INTERRUPT and notifies when reaching used_event',
    clauses: ['basic.split-vq.used-buffer-notif-suppression.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    needs: [VIRTIO_F_EVENT_IDX],
    async run(ctx) {
      // Avail flags NO_INTERRUPT (1) must be ignored with EVENT_IDX; the first used entry (index 0) must be notified.
      return usedNotif(ctx, { add: [VIRTIO_F_EVENT_IDX], drop: [VIRTIO_F_RING_PACKED] }, 1, 0, 'no notification although the used entry filled (index 0) equals used_event 0', () => 'notified at used_event despite avail flags NO_INTERRUPT');
    },
  }),
  defineCheck({
    id: 'split.avail-notif-suppression',
    title: 'used flags are 0/1 without EVENT_IDX and stay 0 with it',
    clauses: ['basic.split-vq.available-buffer-notif-suppression.device.1', 'basic.split-vq.available-buffer-notif-suppression.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      const seen: string[] = [];
      for (const ev of [false, true]) {
        const raw = rawInit(ctx, { accept: acceptWith(ev ? { add: [VIRTIO_F_EVENT_IDX], drop: [VIRTIO_F_RING_PACKED] } : { drop: [VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED] }) });
        try {
          if (ev && !raw.features.has(VIRTIO_F_EVENT_IDX)) {
            seen.push('EVENT_IDX not offered');
            continue;
          }
          const q = buildWork(raw, ctx.dut.kind).q;
          const rq = splitQ(raw, q);
          const flags: number[] = [rq.usedFlags()];
          for (let i = 0; i < 3; i++) {
            const p = await workOk(ctx, raw, i + 2);
            if (p !== undefined) return fail(p);
            flags.push(rq.usedFlags());
          }
          const bad = flags.find((f) => (ev ? f !== 0 : f !== 0 && f !== 1));
          if (bad !== undefined) return fail(`${ev ? 'with' : 'without'} EVENT_IDX the used flags read ${bad}`);
          seen.push(`${ev ? 'with' : 'without'} EVENT_IDX flags ${[...new Set(flags)].join('/')}`);
        } finally {
          raw.close();
        }
      }
      return pass(seen.join('; '));
    },
  }),
  defineCheck({
    id: 'split.spurious-kick',
    title: 'kicks without new buffers are harmless',
    clauses: ['basic.split-vq.available-buffer-notif-suppression.device.3'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
        const q = buildWork(raw, ctx.dut.kind).q;
        for (let i = 0; i < 5; i++) raw.queue(q).kick();
        await settle(3);
        if (raw.needsReset()) return fail('empty kicks made the device set NEEDS_RESET');
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(`after 5 empty kicks: ${p}`);
        for (let i = 0; i < 3; i++) raw.queue(q).kick();
        await settle(3);
        if (raw.needsReset()) return fail('empty kicks after a request made the device set NEEDS_RESET');
        return pass('8 kicks without new buffers ignored; requests still served');
      });
    },
  }),
  // ------------------------------------------------------------------ malformed rings (anchors §4)
  malformedSplit(
    'split.malformed.loop',
    'a descriptor chain that loops is refused or dropped, never spun on',
    (raw, rq) => {
      const a = raw.mem.alloc(64, 16);
      rq.writeDesc(0, a, 16, VIRTQ_DESC_F_NEXT, 1);
      rq.writeDesc(1, a + 16, 16, VIRTQ_DESC_F_NEXT, 0);
      availKick(rq, 0);
    },
  ),
  malformedSplit(
    'split.malformed.next-out-of-range',
    'a next index beyond the queue size is refused or dropped',
    (raw, rq) => {
      const a = raw.mem.alloc(64, 16);
      rq.writeDesc(0, a, 16, VIRTQ_DESC_F_NEXT, rq.size + 3);
      availKick(rq, 0);
    },
  ),
  malformedSplit(
    'split.malformed.head-out-of-range',
    'an avail entry naming a head beyond the queue size is refused or dropped',
    (_raw, rq) => {
      availKick(rq, rq.size + 1);
    },
  ),
  malformedSplit(
    'split.malformed.avail-idx-ahead',
    'avail idx more than a queue size ahead is refused, not processed as garbage',
    (_raw, rq) => {
      rq.publish(rq.size + 5);
      rq.kick();
    },
  ),
  malformedSplit(
    'split.malformed.nested-indirect',
    'an indirect descriptor inside an indirect table is refused or dropped',
    (raw, rq) => {
      const inner = raw.mem.alloc(32, 16);
      const table = raw.mem.alloc(16, 16);
      const s = raw.mem.space;
      s.writeU32(table, inner >>> 0);
      s.writeU32(table + 4, 0);
      s.writeU32(table + 8, 32);
      s.writeU16(table + 12, VIRTQ_DESC_F_INDIRECT);
      s.writeU16(table + 14, 0);
      rq.writeDesc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
      availKick(rq, 0);
    },
    { needs: [VIRTIO_F_INDIRECT_DESC] },
  ),
  malformedSplit(
    'split.malformed.indirect-length',
    'an indirect table whose length is not a multiple of 16 is refused or dropped',
    (raw, rq) => {
      const table = raw.mem.alloc(32, 16);
      rq.writeDesc(0, table, 20, VIRTQ_DESC_F_INDIRECT, 0);
      availKick(rq, 0);
    },
    { needs: [VIRTIO_F_INDIRECT_DESC] },
  ),
  malformedSplit(
    'split.malformed.buffer-outside-memory',
    'a buffer address outside guest memory is refused; nothing is written anywhere',
    (raw, rq) => {
      rq.writeDesc(0, 0x7fff_0000_0000, 64, VIRTQ_DESC_F_WRITE, 0);
      availKick(rq, 0);
    },
  ),
  malformedSplit(
    'split.malformed.readable-after-writable',
    'a readable descriptor after a writable one does not make the device write readable memory',
    (raw, rq) => {
      const w = raw.mem.alloc(64, 16);
      const r = raw.mem.alloc(64, 16);
      raw.mem.write(r, new Uint8Array(64).fill(0x5a));
      rq.writeDesc(0, w, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
      rq.writeDesc(1, r, 64, 0, 0);
      availKick(rq, 0);
      return { guard: [{ addr: r, len: 64 }] };
    },
    { devices: ['blk', 'net', 'console'] },
  ),
];
