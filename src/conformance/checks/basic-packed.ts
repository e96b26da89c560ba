/** Packed virtqueue checks (virtio 1.4 §2.8). */
import { VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { VIRTQ_DESC_F_USED } from '../../queue/types.js';
import { ANY_TRANSPORT, defineCheck, type Check, type CheckContext } from '../check.js';
import { RawPackedQueue, settle, waitFor, type RawDriver, type UsedElem } from '../raw.js';
import { fail, pass, type CheckResult } from '../verdict.js';
import { acceptWith, buildWork, rawInit, runWork } from './util.js';

const PACKED = acceptWith({ add: [VIRTIO_F_RING_PACKED] });

function packedInit(ctx: CheckContext): { raw: ReturnType<typeof rawInit>; pq: (q: number) => RawPackedQueue } {
  const raw = rawInit(ctx, { accept: PACKED });
  return {
    raw,
    pq: (q) => {
      const rq = raw.queue(q);
      if (!(rq instanceof RawPackedQueue)) throw new Error('RING_PACKED was not negotiated');
      return rq;
    },
  };
}

type PackedQueueOf = (q: number) => RawPackedQueue;

/**
 * A device-side check that needs a packed ring (negotiates RING_PACKED on any transport): `body`
 * runs with a raw driver initialized for packed rings, closed afterwards.
 */
function packedCheck(
  c: Omit<Check, 'role' | 'transports' | 'variant' | 'needs' | 'run'> & { body(ctx: CheckContext, raw: RawDriver, pq: PackedQueueOf): Promise<CheckResult> },
): Check {
  const { body, ...rest } = c;
  return defineCheck({
    ...rest,
    role: 'device',
    transports: ANY_TRANSPORT,
    variant: { packed: true },
    needs: [VIRTIO_F_RING_PACKED],
    async run(ctx) {
      const { raw, pq } = packedInit(ctx);
      try {
        return await body(ctx, raw, pq);
      } finally {
        raw.close();
      }
    },
  });
}

async function order(ctx: CheckContext, raw: RawDriver, pq: PackedQueueOf): Promise<CheckResult> {
  const w0 = buildWork(raw, ctx.dut.kind, { split: 3, seed: 40 });
  const rq = pq(w0.q);
  const ws = [w0, buildWork(raw, ctx.dut.kind, { split: 2, seed: 41 }), buildWork(raw, ctx.dut.kind, { seed: 42 })];
  const ids = ws.map((w) => rq.post(w.bufs));
  rq.kick();
  const used: UsedElem[] = [];
  await waitFor(() => (used.push(...rq.collect()), used.length >= 3), ctx.waitMs, ctx.signal);
  if (used.length < 3) return fail(`${used.length} of 3 packed chains used${raw.needsReset() ? ' (NEEDS_RESET)' : ''}`);
  for (let i = 0; i < 3; i++) {
    const p = ws[ids.indexOf(used[i]!.id)]?.verify(raw, used[i]!);
    if (p !== undefined) return fail(`chain ${i}: ${p}`);
  }
  if (used.map((u) => u.id).join() !== ids.join()) return fail(`used ids ${used.map((u) => u.id).join(',')} vs available ${ids.join(',')} (the device completes synchronously, so completion order is ring order)`);
  return pass('3 multi-descriptor chains processed in ring order, descriptors of each in list order');
}

export const packedChecks: readonly Check[] = [
  packedCheck({
    id: 'packed.ring-order',
    title: 'packed: descriptors handled in ring order, NEXT lists in order, used written in completion order',
    clauses: ['basic.packed-vq.vq.device.1', 'basic.packed-vq.vq.device.2', 'basic.packed-vq.scatter-gather-support.device.1'],
    body: order,
  }),
  packedCheck({
    id: 'packed.readable-untouched',
    title: 'packed: device-readable buffers are never written',
    clauses: ['basic.packed-vq.vq-desc-table.device.1'],
    async body(ctx, raw) {
      const w = buildWork(raw, ctx.dut.kind, { split: 2 });
      const u = await runWork(ctx, raw, w);
      if (u === undefined) return fail('request not completed');
      for (const r of w.readable) if (!raw.mem.read(r.addr, r.data.length).every((b, i) => b === r.data[i])) return fail(`readable buffer at 0x${r.addr.toString(16)} modified`);
      return pass(`${w.readable.length} readable buffer(s) unchanged`);
    },
  }),
  packedCheck({
    id: 'packed.avail-flag-gates',
    title: 'packed: a descriptor is consumed only once its AVAIL flag marks it available',
    clauses: ['basic.packed-vq.vq-desc-table.device.2'],
    async body(ctx, raw, pq) {
      const w = buildWork(raw, ctx.dut.kind);
      const rq = pq(w.q);
      const slot = rq.nextAvail;
      const id = rq.post(w.bufs, { noPublish: true });
      // AVAIL not flipped (still 0 in wrap 1; USED set): not available.
      rq.publishAt(slot, VIRTQ_DESC_F_USED | (w.bufs.length > 1 ? 1 : 0) | (w.bufs[0]!.write === true ? 2 : 0));
      rq.kick();
      await settle(6);
      if (rq.collect().length > 0) return fail('the device consumed a descriptor whose AVAIL flag did not mark it available');
      rq.publishAt(slot, rq.availBits(1) | (w.bufs.length > 1 ? 1 : 0) | (w.bufs[0]!.write === true ? 2 : 0));
      rq.kick();
      let got = false;
      await waitFor(() => (got = got || rq.collect().some((u) => u.id === id)), ctx.waitMs, ctx.signal);
      if (!got) return fail('after making the descriptor available the device did not use it');
      return pass('ignored while AVAIL did not flip; consumed once it did');
    },
  }),
  packedCheck({
    id: 'packed.used-descriptor-left-alone',
    title: 'packed: a descriptor marked used is not written again by the device',
    clauses: ['basic.packed-vq.vq-desc-table.device.3'],
    async body(ctx, raw, pq) {
      const w = buildWork(raw, ctx.dut.kind);
      const rq = pq(w.q);
      const slot = rq.nextAvail;
      const u = await runWork(ctx, raw, w);
      if (u === undefined) return fail('request not completed');
      const snap = raw.mem.read(rq.desc + 16 * slot, 16);
      for (let i = 0; i < 4; i++) rq.kick();
      await settle(6);
      if (!raw.mem.read(rq.desc + 16 * slot, 16).every((b, i) => b === snap[i])) return fail('the used descriptor changed after the device marked it used');
      return pass('used descriptor unchanged across further kicks');
    },
  }),
];
