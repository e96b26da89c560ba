/**
 * Driver-side checks: run virtiokit's simulated driver (src/driver/) against the DUT through an
 * access recorder, then judge the recorded accesses with {@link judgeDriver}.
 */
import { VirtioPciDriver } from '../../driver/driver.js';
import { VirtioMmioDriver } from '../../driver/mmio/driver.js';
import { DEFAULT_SWIOTLB_BIT } from '../../features/bits.js';
import { defineCheck, type Check, type CheckContext } from '../check.js';
import { decodeMmio, decodePci, judgeDriver, judgedClauses, MmioAccessRecorder, PciAccessRecorder, type DriverRecording } from '../driver-judge.js';
import { fail, pass, type CheckResult, type ClauseOutcome } from '../verdict.js';
import { buildWork } from './util.js';
import { RawDriver } from '../raw.js';

function toResult(rec: DriverRecording, extra: string): CheckResult {
  const js = judgeDriver(rec);
  const per: Record<string, ClauseOutcome> = {};
  for (const j of js) per[j.clause] = { verdict: j.verdict, detail: j.detail };
  const failed = js.filter((j) => j.verdict === 'FAIL');
  if (failed.length > 0) return { verdict: 'FAIL', detail: failed.map((j) => `[${j.clause}] ${j.detail}`).join('; '), perClause: per };
  return pass(`${js.filter((j) => j.verdict === 'PASS').length} driver clauses hold over ${rec.events.length} decoded accesses${extra}`, per);
}

/** One request through the simulated driver's queue (the workload payload). */
async function simWork(ctx: CheckContext, q: { submit(out: readonly Uint8Array[], inLens?: readonly number[]): Promise<unknown> }, kind: CheckContext['dut']['kind']): Promise<void> {
  const probe = RawDriver.open(ctx);
  try {
    probe.negotiate();
    const w = buildWork(probe, kind);
    const outs = w.readable.map((r) => r.data);
    const ins = w.writable.map((b) => b.len);
    await Promise.race([q.submit(outs, ins), new Promise((r) => setTimeout(r, ctx.waitMs))]);
  } finally {
    probe.close();
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
      const wq = ctx.dut.kind === 'net' || ctx.dut.kind === 'console' ? 1 : q;
      await simWork(ctx, drv.queue(wq), ctx.dut.kind);
      drv.close();
      const words = [0, 1, 2, 3].map((i) => drv.offered?.word(i) ?? 0);
      const cap = p.swiotlb;
      const rec2: DriverRecording = {
        transport: 'pci',
        events: decodePci(rec.log, { common: at(p.common.bar, p.common.offset), notify: at(p.notify.bar, p.notify.offset), notifyLength: p.notify.length, notifyMultiplier: p.notify.multiplier }),
        offered: words,
        ...(cap !== undefined ? { swiotlb: { bit: DEFAULT_SWIOTLB_BIT, base: at(cap.bar, cap.offset), size: cap.length } } : {}),
      };
      return toResult(rec2, drv.swiotlb ? ' (SWIOTLB negotiated)' : '');
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
      const wq = ctx.dut.kind === 'net' || ctx.dut.kind === 'console' ? 1 : 0;
      await simWork(ctx, drv.queue(wq), ctx.dut.kind);
      drv.close();
      const pool = m.platform.pool;
      const rec2: DriverRecording = {
        transport: 'mmio',
        events: decodeMmio(rec.log),
        offered: [0, 1, 2, 3].map((i) => drv.offered?.word(i) ?? 0),
        ...(pool !== undefined ? { swiotlb: { bit: DEFAULT_SWIOTLB_BIT, base: pool.base, size: pool.size } } : {}),
      };
      return toResult(rec2, drv.swiotlb ? ' (SWIOTLB negotiated)' : '');
    },
  }),
];
