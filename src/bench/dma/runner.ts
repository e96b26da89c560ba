/**
 * `virtiokit bench dma`: bounce vs direct vs message DMA on a RAM-backed virtio-blk.
 *
 * Method (reference/perf-limits.md §7, reference/anchors.md §5): each round runs every model
 * session in a fresh process (the vfio-user models spawn their device process too), plus one copy
 * round (bounce pool vs C memcpy, alternating order); every ratio is taken within a round, then
 * the median over rounds; the load average is recorded per round. Each point has an untimed
 * warm-up. Missed targets get a CPU profile (`--cpu-prof` of the benchmark process and, for
 * vfio-user, of the device process) summarised as top functions by self time.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { VirtioError } from '../../errors.js';
import { logger } from '../../log.js';
import { nodeArgsFor, siblingModule } from '../launch.js';
import { buildComparisons, buildCopyRows, buildRows, type RoundPoint } from './aggregate.js';
import type { ChildReply, ChildRequest, CopyResult } from './child.js';
import { summarizeProfileDir, type ProfileSummary } from './cpuprof.js';
import { buildMemcpyBench, MEMCPY_FLAGS, type MemcpyBinary } from './memcpy.js';
import { Progress, type ProgressSink } from './progress.js';
import type { DmaBenchReport, DmaRow, TargetResult } from './report-types.js';
import { BASE_DRIVER, BASE_POINT, MODEL_INFO, MODEL_NAMES, planSession, type ModelName, type Preset, type SessionPlan } from './scenario.js';
import type { SessionResult } from './session.js';

const log = logger('bench');

/** Options of {@link runDmaBench}. */
export interface DmaBenchOptions {
  preset: Preset;
  /** Models to run (default all). */
  models?: readonly ModelName[];
  /** Rounds (default: the preset's). */
  rounds?: number;
  /** Profile missed targets (default true). */
  profile?: boolean;
  /** Progress output (default: none). */
  progress?: ProgressSink;
  /** Skip the C memcpy / copy comparison (tests without a compiler). */
  skipCopy?: boolean;
}

interface ChildRun {
  reply: ChildReply;
}

/** Run one child process; `onTick` gets each `P n` progress line. */
function runChildProcess(req: ChildRequest, onTick: (n: number) => void, timeoutMs = 600_000): Promise<ChildRun> {
  const url = siblingModule('child-main', import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgsFor(url, [JSON.stringify(req)]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let errTail = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => {
      errTail += d.toString();
      let nl: number;
      while ((nl = errTail.indexOf('\n')) >= 0) {
        const line = errTail.slice(0, nl);
        errTail = errTail.slice(nl + 1);
        const m = /^P (\d+)$/.exec(line);
        if (m !== null) onTick(Number(m[1]));
        else err += `${line}\n`;
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new VirtioError('INTERNAL', `could not start a benchmark process: ${e.message}`, { cause: e }));
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve({ reply: JSON.parse(line) as ChildReply });
      } catch {
        reject(new VirtioError('INTERNAL', `benchmark process exited (${code ?? sig}) without a result: ${(err + errTail).trim().slice(-800)}`));
      }
    });
  });
}

function machineInfo(): DmaBenchReport['machine'] {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, node: process.version, platform: `${os.platform()} ${os.arch()}`, kernel: os.release(), total_mem_bytes: os.totalmem(), loadavg_per_round: [] };
}

const r2 = (x: number): number => Math.round(x * 100) / 100;

function findRow(rows: DmaRow[], model: ModelName, over: Partial<DmaRow> = {}): DmaRow | undefined {
  const want = { ring: BASE_DRIVER.ring, indirect: BASE_DRIVER.indirect, event_idx: BASE_DRIVER.eventIdx, queues: BASE_DRIVER.queues, size: BASE_POINT.size, depth: BASE_POINT.depth, op: BASE_POINT.op, batch: BASE_POINT.batch, ...over };
  return rows.find((r) => r.model === model && r.ring === want.ring && r.indirect === want.indirect && r.event_idx === want.event_idx && r.queues === want.queues && r.size === want.size && r.depth === want.depth && r.op === want.op && r.batch === want.batch);
}

/** Why two queues cannot scale in one process. */
export const QUEUE_WORKERS_MISSING =
  'the in-process embedding (src/embed, src/device/core.ts) runs every virtqueue on its main thread (only the vfio-user device process has --queue-workers), so a second queue adds no CPU';

/**
 * `vhost-ours` / `vhost-qsd` IOPS at the base point (4 KiB reads, depth 32, split, 1 queue):
 * the same-round ratio, then the median (null unless both were measured).
 */
export function vhostVsQsd(rows: DmaRow[]): number | null {
  const ours = findRow(rows, 'vhost-ours');
  return ours?.ratio_vs_direct ?? null; // the direct counterpart of vhost-ours is vhost-qsd (aggregate.ts)
}

/** Read the targets from the rows and the copy comparison. */
export function evaluateTargets(rows: DmaRow[], copy: DmaBenchReport['copy']): TargetResult[] {
  const out: TargetResult[] = [];
  const big = copy.filter((c) => c.size >= 4096);
  const worst = big.length > 0 ? big.reduce((a, b) => (b.pool_vs_c < a.pool_vs_c ? b : a)) : undefined;
  out.push({
    id: 'bounce-copy-vs-memcpy',
    description: 'bounce copies (BouncePool queueMapSg/queueUnmapSg, one native copyBatch per 32 buffers as per kick) >= 0.9x C memcpy GB/s for requests >= 4 KiB',
    target: 0.9,
    measured: worst !== undefined ? r2(worst.pool_vs_c) : null,
    met: worst !== undefined && worst.pool_vs_c >= 0.9,
    note: worst !== undefined ? `lowest ratio at ${worst.size} B (pool ${worst.pool_gbps.toFixed(1)} GB/s, bare copyBatch ${worst.copybatch_gbps.toFixed(1)} GB/s, C ${worst.c_memcpy_gbps.toFixed(1)} GB/s); ratios per size: ${big.map((c) => `${c.size}: ${c.pool_vs_c.toFixed(2)}`).join(', ')}` : 'not measured (no copy sizes >= 4 KiB, or no C compiler)',
  });
  const sw = findRow(rows, 'swiotlb');
  const swIn = findRow(rows, 'inproc-swiotlb');
  const pick = sw?.ratio_vs_direct != null ? sw : swIn;
  out.push({
    id: 'swiotlb-vs-direct-4k-qd32',
    description: 'SWIOTLB >= 0.7x direct IOPS at 4 KiB, queue depth 32',
    target: 0.7,
    measured: pick?.ratio_vs_direct != null ? r2(pick.ratio_vs_direct) : null,
    met: pick?.ratio_vs_direct != null && pick.ratio_vs_direct >= 0.7,
    note:
      pick === undefined
        ? 'not measured'
        : `${pick.model} vs ${pick.model === 'swiotlb' ? 'direct (vfio-user, device process)' : 'inproc (one process)'}` +
          (sw?.ratio_vs_direct != null && swIn?.ratio_vs_direct != null ? `; in one process inproc-swiotlb/inproc = ${swIn.ratio_vs_direct.toFixed(2)}` : ''),
  });
  const qModel: ModelName = findRow(rows, 'direct', { queues: 2 }) !== undefined ? 'direct' : 'inproc';
  const q1 = findRow(rows, qModel);
  const q2 = findRow(rows, qModel, { queues: 2 });
  let qr: number | null = null;
  if (q1 !== undefined && q2 !== undefined) {
    const r: number[] = [];
    for (const a of q2.per_round) {
      const b = q1.per_round.find((x) => x.round === a.round);
      if (b !== undefined && b.iops > 0) r.push(a.iops / b.iops);
    }
    r.sort((a, b) => a - b);
    qr = r.length > 0 ? (r.length % 2 === 1 ? r[r.length >> 1]! : (r[r.length / 2 - 1]! + r[r.length / 2]!) / 2) : null;
  }
  out.push({
    id: 'two-queues-two-workers',
    description: 'two queues on two workers >= 1.7x one queue (4 KiB, depth 32 per queue)',
    target: 1.7,
    measured: qr !== null ? r2(qr) : null,
    // The vfio-user models run their 2-queue steps on a device with --queue-workers (session.ts); in-process queues stay on one thread.
    met: qModel === 'direct' && qr !== null && qr >= 1.7,
    note:
      qModel === 'direct'
        ? `direct: 2 queues on 2 worker threads of the device process (--queue-workers) / 1 queue on its main thread; the driver side drives both queues from one thread, and on 2 vCPUs one queue already keeps the driver and the device busy on both cores`
        : `${qModel}: 2 queues / 1 queue, both with a single-threaded device (the 2-queue run also has twice the requests in flight, so any gain is from more overlap, not from a second worker). Missed: ${QUEUE_WORKERS_MISSING}`,
  });
  // Only when a vhost-user model ran: runs without them keep the three targets above.
  const ours = findRow(rows, 'vhost-ours');
  const qsd = findRow(rows, 'vhost-qsd');
  if (ours !== undefined || qsd !== undefined) {
    const v = vhostVsQsd(rows);
    let note: string;
    if (ours === undefined || qsd === undefined || v === null) {
      note = `not measured: ${ours === undefined ? 'vhost-ours' : 'vhost-qsd'} has no 4 KiB depth-32 read row (see models / failures)`;
    } else {
      const per: number[] = [];
      for (const a of ours.per_round) {
        const b = qsd.per_round.find((x) => x.round === a.round);
        if (b !== undefined && b.iops > 0) per.push(a.iops / b.iops);
      }
      const cpu = (r: DmaRow): string => (r.cpu_us_per_req_device !== null ? `${r.cpu_us_per_req_device.toFixed(1)}` : '-');
      note =
        `same TypeScript front-end, disk file on tmpfs; ours ${Math.round(ours.iops)} IOPS (device CPU ${cpu(ours)} us/req, p50 ${ours.p50_us.toFixed(0)} us) vs qemu-storage-daemon ${Math.round(qsd.iops)} IOPS (device CPU ${cpu(qsd)} us/req, p50 ${qsd.p50_us.toFixed(0)} us); ` +
        `per-round ratios ${per.map((x) => x.toFixed(2)).join(', ')}`;
    }
    out.push({
      id: 'vhost-user-vs-qsd-4k-qd32',
      description: "virtiokit's vhost-user-blk back-end >= 1.0x qemu-storage-daemon IOPS on the same front-end and RAM disk (4 KiB reads, depth 32)",
      target: 1.0,
      measured: v !== null ? r2(v) : null,
      met: v !== null && v >= 1.0,
      note,
    });
  }
  return out;
}

/** Run the benchmark. */
export async function runDmaBench(o: DmaBenchOptions): Promise<DmaBenchReport> {
  const preset = o.preset;
  const rounds = o.rounds ?? preset.rounds;
  const models = [...(o.models ?? MODEL_NAMES)];
  const started = new Date().toISOString();
  const machine = machineInfo();
  const failures: DmaBenchReport['failures'] = [];
  let cbin: MemcpyBinary | undefined;
  if (o.skipCopy !== true) cbin = await buildMemcpyBench();
  const plans: SessionPlan[] = models.map((m) => planSession(m, preset));
  const perRound = plans.reduce((a, p) => a + p.steps.reduce((b, s) => b + s.points.length, 0), 0) + (cbin !== undefined ? 1 : 0);
  const progress = o.progress !== undefined ? new Progress(o.progress, perRound * rounds) : undefined;
  const points: RoundPoint[] = [];
  const copies: CopyResult[] = [];
  const skipped = new Map<ModelName, string>();
  const infos = new Map<ModelName, Record<string, string | number | boolean>>();

  for (let round = 1; round <= rounds; round++) {
    const before = os.loadavg().map(r2);
    // Rotate the model order per round so no model always runs first after start-up.
    const order = plans.map((_, i) => plans[(i + round - 1) % plans.length]!);
    for (const plan of order) {
      if (skipped.has(plan.model)) {
        progress?.tick(plan.steps.reduce((a, s) => a + s.points.length, 0), `round ${round}/${rounds}: ${plan.model} skipped`);
        continue;
      }
      let seen = 0;
      const label = `round ${round}/${rounds}: ${plan.model}`;
      const req: ChildRequest = { kind: 'session', plan, measure: preset.measure };
      try {
        const { reply } = await runChildProcess(req, (n) => {
          progress?.tick(n - seen, label);
          seen = n;
        });
        if (!reply.ok) throw new VirtioError('INTERNAL', `${reply.code}: ${reply.message}`);
        const s = reply.session as SessionResult;
        if (s.skipped !== undefined) {
          skipped.set(plan.model, s.skipped);
          progress?.note(`${plan.model}: skipped — ${s.skipped}`);
        } else {
          infos.set(plan.model, s.info);
          for (const p of s.points) points.push({ ...p, round, model: plan.model });
          for (const f of s.failures) failures.push({ round, model: plan.model, what: f.point !== undefined ? `${JSON.stringify(f.driver)} ${JSON.stringify(f.point)}` : JSON.stringify(f.driver), error: f.error });
        }
      } catch (e) {
        failures.push({ round, model: plan.model, what: 'session', error: (e as Error).message });
        progress?.note(`${plan.model} round ${round} failed: ${(e as Error).message}`);
      }
      const total = plan.steps.reduce((a, s) => a + s.points.length, 0);
      if (seen < total) progress?.tick(total - seen, label);
    }
    if (cbin !== undefined) {
      try {
        const { reply } = await runChildProcess({ kind: 'copy', sizes: preset.copySizes, ms: preset.copyMs, reps: preset.copyReps, cBinary: cbin.path, cFirst: round % 2 === 0 }, () => undefined);
        if (!reply.ok) throw new VirtioError('INTERNAL', `${reply.code}: ${reply.message}`);
        if (reply.copy !== undefined) copies.push(reply.copy);
      } catch (e) {
        failures.push({ round, what: 'copy', error: (e as Error).message });
      }
      progress?.tick(1, `round ${round}/${rounds}: bounce copy vs C memcpy`);
    }
    machine.loadavg_per_round.push({ round, before, after: os.loadavg().map(r2) });
  }

  const rows = buildRows(points);
  const copy = buildCopyRows(copies, preset.copySizes);
  const targets = evaluateTargets(rows, copy);

  if (o.profile !== false) {
    const missed = targets.filter((t) => !t.met && (t.measured !== null || t.id === 'two-queues-two-workers'));
    progress?.addTotal(missed.length);
    for (const t of missed) {
      try {
        t.where_time_goes = await profileTarget(t.id, models, preset, cbin, skipped);
      } catch (e) {
        t.note += `; profiling failed: ${(e as Error).message}`;
      }
      progress?.tick(1, `profiling ${t.id}`);
    }
  }
  progress?.end();

  const memcpyRatio: Record<string, number> = {};
  for (const c of copy) memcpyRatio[String(c.size)] = r2(c.pool_vs_c);
  return {
    schema: 'virtiokit-bench-dma/1',
    started,
    finished: new Date().toISOString(),
    preset: preset.name,
    rounds,
    measure: preset.measure,
    machine,
    compiler: cbin !== undefined ? { command: cbin.compiler, version: cbin.compilerVersion, flags: [...MEMCPY_FLAGS] } : null,
    models: models.map((m) => {
      const reason = skipped.get(m);
      const info = infos.get(m);
      return { model: m, description: MODEL_INFO[m], measured: reason === undefined && info !== undefined, ...(reason !== undefined ? { reason } : {}), ...(info !== undefined ? { info } : {}) };
    }),
    rows,
    comparisons: buildComparisons(points),
    copy,
    memcpy_ratio_vs_c: copy.length > 0 ? memcpyRatio : null,
    vhost_user_vs_qsd: ((v) => (v !== null ? r2(v) : null))(vhostVsQsd(rows)),
    targets,
    failures,
  };
}

/** One profiled run for a missed target; summaries of the benchmark process and the device process. */
async function profileTarget(id: string, models: ModelName[], preset: Preset, cbin: MemcpyBinary | undefined, skipped: Map<ModelName, string>): Promise<ProfileSummary[]> {
  const dir = await mkdtemp(join(os.tmpdir(), 'virtiokit-prof-'));
  const m = { ...preset.measure, ms: Math.max(300, preset.measure.ms * 4) };
  const usable = (x: ModelName): boolean => models.includes(x) && !skipped.has(x);
  try {
    let req: ChildRequest | undefined;
    if (id === 'bounce-copy-vs-memcpy' && cbin !== undefined) {
      req = { kind: 'copy', sizes: preset.copySizes.filter((s) => s >= 4096), ms: preset.copyMs * 2, reps: 1, cBinary: cbin.path, cFirst: false, profile: true };
    } else if (id === 'swiotlb-vs-direct-4k-qd32' || id === 'two-queues-two-workers') {
      const two = id === 'two-queues-two-workers';
      const model: ModelName | undefined = two ? (usable('direct') ? 'direct' : usable('inproc') ? 'inproc' : undefined) : usable('swiotlb') ? 'swiotlb' : usable('inproc-swiotlb') ? 'inproc-swiotlb' : undefined;
      if (model === undefined) return [];
      const plan: SessionPlan = { model, steps: [{ driver: { ...BASE_DRIVER, queues: two ? 2 : 1 }, points: [{ ...BASE_POINT }] }], maxSize: BASE_POINT.size, maxDepth: BASE_POINT.depth, maxQueues: two ? 2 : 1 };
      req = { kind: 'session', plan, measure: m, deviceProfileDir: dir, profile: true };
    } else if (id === 'vhost-user-vs-qsd-4k-qd32' && usable('vhost-ours')) {
      // Our back-end process under --cpu-prof (qemu-storage-daemon is C: nothing to compare it with here).
      const plan: SessionPlan = { model: 'vhost-ours', steps: [{ driver: { ...BASE_DRIVER }, points: [{ ...BASE_POINT }] }], maxSize: BASE_POINT.size, maxDepth: BASE_POINT.depth, maxQueues: 1 };
      req = { kind: 'session', plan, measure: m, deviceProfileDir: dir, profile: true };
    }
    if (req === undefined) return [];
    const { reply } = await runChildProcess(req, () => undefined);
    if (!reply.ok) throw new VirtioError('INTERNAL', `${reply.code}: ${reply.message}`);
    if (reply.session?.skipped !== undefined) throw new VirtioError('INTERNAL', `profiled session skipped: ${reply.session.skipped}`);
    const out = [...(reply.profile !== undefined ? [reply.profile] : []), ...(await summarizeProfileDir(dir, reply.profileWindow !== undefined ? 'device process, same span' : 'device process (whole lifetime)', 12, reply.profileWindow))];
    log('profiled %s: %d profiles', id, out.length);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
