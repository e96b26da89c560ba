/**
 * Driver-side checks: run virtiokit's simulated driver (src/driver/) against the DUT through an
 * access recorder, then judge the recorded accesses with {@link judgeDriver}.
 */
import { VirtioPciDriver } from '../../driver/driver.js';
import { VirtioMmioDriver } from '../../driver/mmio/driver.js';
import { DEFAULT_SWIOTLB_BIT } from '../../features/bits.js';
import { defineCheck, type Check, type CheckContext } from '../check.js';
import { decodeMmio, decodePci, judgeDriver, judgedClauses, MmioAccessRecorder, PciAccessRecorder, type DriverRecording } from '../driver-judge.js';
import type { SubmitResult } from '../../driver/virtqueue.js';
import { fail, pass, type CheckResult, type ClauseOutcome } from '../verdict.js';
import { workPayload, workQueue } from './util.js';

/** How the workload went on the live device the simulated driver brought to DRIVER_OK. */
type WorkOutcome =
  | { readonly ok: true; readonly detail: string }
  | { readonly ok: false; readonly verdict: 'FAIL' | 'WEDGED'; readonly detail: string };

/**
 * Judge the recording, then fold in the workload: the driver clauses only PASS when the request
 * the simulated driver submitted was served. A workload that never completed makes the check
 * WEDGED (and so is every clause the recording alone would have passed); one that completed wrongly
 * (or could not be submitted) FAILs the check, but the device is at fault there, not the driver, so
 * those clauses are SKIP with the reason. Nothing is claimed PASS from a run whose queue never
 * worked. Clauses the recording contradicts stay FAIL, and a FAIL wins.
 */
function toResult(rec: DriverRecording, extra: string, work: WorkOutcome): CheckResult {
  const js = judgeDriver(rec);
  const per: Record<string, ClauseOutcome> = {};
  for (const j of js) per[j.clause] = { verdict: j.verdict, detail: j.detail };
  const failed = js.filter((j) => j.verdict === 'FAIL');
  const workNote = work.ok ? `; ${work.detail}` : `; workload: ${work.detail}`;
  if (failed.length > 0) return { verdict: 'FAIL', detail: failed.map((j) => `[${j.clause}] ${j.detail}`).join('; ') + workNote, perClause: per };
  const passed = js.filter((j) => j.verdict === 'PASS').length;
  if (!work.ok) {
    // WEDGED: the device stopped answering, so the run proves nothing either way. FAIL: the device
    // under test served the request wrongly — its fault, not the driver's — so the driver clauses
    // are not judged from this run (SKIP with the reason) while the check itself FAILs.
    const clauseVerdict = work.verdict === 'WEDGED' ? 'WEDGED' : 'SKIP';
    for (const j of js) if (j.verdict === 'PASS') per[j.clause] = { verdict: clauseVerdict, detail: `recorded accesses hold (${j.detail}), but the workload was not served: ${work.detail}` };
    return { verdict: work.verdict, detail: `${passed} driver clauses hold over ${rec.events.length} decoded accesses${extra}, but the workload was not served: ${work.detail}`, perClause: per };
  }
  return pass(`${passed} driver clauses hold over ${rec.events.length} decoded accesses${extra}${workNote}`, per);
}

/** What the simulated driver's queue offers (VirtqueueDriver). */
interface SubmitQueue {
  submit(out: readonly Uint8Array[], inLens?: readonly number[]): Promise<SubmitResult>;
}

/**
 * One request of the device type's workload through the simulated driver's queue `q`, on the
 * device exactly as the driver left it after DRIVER_OK (no second driver, no reset, no
 * re-negotiation). Waits at most `ctx.waitMs` (or until the check is aborted) for the completion
 * and judges it with the workload's own verification.
 */
async function simWork(ctx: CheckContext, q: SubmitQueue, qi: number): Promise<WorkOutcome> {
  const kind = ctx.dut.kind;
  const w = workPayload(kind);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const t0 = performance.now();
  try {
    const late = new Promise<'timeout' | 'aborted'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ctx.waitMs);
      onAbort = (): void => resolve('aborted');
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
    const r = await Promise.race([q.submit(w.out, w.inLens), late]);
    if (r === 'timeout' || r === 'aborted') {
      return { ok: false, verdict: 'WEDGED', detail: `a valid ${kind} request on queue ${qi} was not completed within ${r === 'timeout' ? `${ctx.waitMs} ms` : 'the check time limit'}` };
    }
    const p = w.verify(ctx.dut, r.len, r.data);
    if (p !== undefined) return { ok: false, verdict: 'FAIL', detail: `a valid ${kind} request on queue ${qi} completed wrongly: ${p}` };
    return { ok: true, detail: `a valid ${kind} request on queue ${qi} was served (used len ${r.len}, ${Math.round(performance.now() - t0)} ms)` };
  } catch (e) {
    return { ok: false, verdict: 'FAIL', detail: `submitting a valid ${kind} request on queue ${qi} failed: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    if (onAbort !== undefined) ctx.signal.removeEventListener('abort', onAbort);
  }
}

export const driverChecks: readonly Check[] = [
  defineCheck({
    id: 'driver.sim-pci',
    title: 'the simulated virtio-pci driver: init order, status bits, features, queue setup, widths, SWIOTLB addresses',
    clauses: judgedClauses('pci'),
    role: 'driver',
    transports: ['pci'],
    async run(ctx) {
      const rec = new PciAccessRecorder(ctx.dut.pci!);
      const drv = new VirtioPciDriver(rec, { guestRam: ctx.dut.ram, queueSize: 16 });
      const p = drv.probe;
      const at = (bar: number, off: number): number => p.bars.find((b) => b.index === bar)!.address + off;
      rec.log.length = 0; // judge from the reset on (the probe only sizes BARs)
      try {
        drv.init();
      } catch (e) {
        return fail(`the simulated driver failed to initialize: ${e instanceof Error ? e.message : String(e)}`);
      }
      const q = drv.queues.findIndex((x) => x !== undefined);
      const wq = ctx.dut.kind === 'net' || ctx.dut.kind === 'console' ? workQueue(ctx.dut.kind) : q;
      const work = await simWork(ctx, drv.queue(wq), wq);
      const sw = drv.swiotlb; // read before close(): the reset forgets the negotiated set
      drv.close();
      const words = [0, 1, 2, 3].map((i) => drv.offered?.word(i) ?? 0);
      const cap = p.swiotlb;
      const rec2: DriverRecording = {
        transport: 'pci',
        events: decodePci(rec.log, { common: at(p.common.bar, p.common.offset), notify: at(p.notify.bar, p.notify.offset), notifyLength: p.notify.length, notifyMultiplier: p.notify.multiplier }),
        offered: words,
        ...(cap !== undefined ? { swiotlb: { bit: DEFAULT_SWIOTLB_BIT, base: at(cap.bar, cap.offset), size: cap.length } } : {}),
      };
      return toResult(rec2, sw ? ' (SWIOTLB negotiated)' : '', work);
    },
  }),
  defineCheck({
    id: 'driver.sim-mmio',
    title: 'the simulated virtio-mmio driver: probe order, init order, register widths, selectors, SWIOTLB pool addresses',
    clauses: judgedClauses('mmio'),
    role: 'driver',
    transports: ['mmio'],
    async run(ctx) {
      const m = ctx.dut.mmio!;
      const rec = new MmioAccessRecorder(m.access);
      let drv: VirtioMmioDriver;
      try {
        drv = new VirtioMmioDriver(rec, { guestRam: ctx.dut.ram, platform: m.platform, queueSize: 16 }).init();
      } catch (e) {
        return fail(`the simulated driver failed to initialize: ${e instanceof Error ? e.message : String(e)}`);
      }
      const wq = workQueue(ctx.dut.kind);
      const work = await simWork(ctx, drv.queue(wq), wq);
      const sw = drv.swiotlb; // read before close(): the reset forgets the negotiated set
      drv.close();
      const pool = m.platform.pool;
      const rec2: DriverRecording = {
        transport: 'mmio',
        events: decodeMmio(rec.log),
        offered: [0, 1, 2, 3].map((i) => drv.offered?.word(i) ?? 0),
        ...(pool !== undefined ? { swiotlb: { bit: DEFAULT_SWIOTLB_BIT, base: pool.base, size: pool.size } } : {}),
      };
      return toResult(rec2, sw ? ' (SWIOTLB negotiated)' : '', work);
    },
  }),
];
