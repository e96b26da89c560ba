/**
 * The fresh-process side of the DMA benchmark: one round of one model session, or one round of
 * the copy-bandwidth comparison (bounce pool and C memcpy back to back, order alternating between
 * rounds). Request as JSON in argv[2]; progress as `P <n>` lines on stderr; the reply as one
 * JSON line on stdout (`child-main.ts` is the entry point, `runner.ts` the parent).
 */
import { Session } from 'node:inspector/promises';
import { runBounceCopyBench } from './copy-bench.js';
import { summarizeProfile, type CpuProfile, type ProfileSummary, type ProfileWindow } from './cpuprof.js';
import { runMemcpyBench, type CopyRates } from './memcpy.js';
import type { PointMeasure, SessionPlan } from './scenario.js';
import { runSession, type SessionResult } from './session.js';

/** Request of a session round. */
export interface SessionRequest {
  kind: 'session';
  plan: SessionPlan;
  measure: PointMeasure;
  /** Profile the device process into this directory (`--cpu-prof`). */
  deviceProfileDir?: string;
  /** Profile this process while the points run (V8 inspector) and return the summary. */
  profile?: boolean;
}

/** Request of a copy round. */
export interface CopyRequest {
  kind: 'copy';
  sizes: number[];
  ms: number;
  reps: number;
  cBinary: string;
  cFirst: boolean;
  /** Profile run: only the bounce-pool loop, profiled, no C run. */
  profile?: boolean;
}

export type ChildRequest = SessionRequest | CopyRequest;

/** Reply of a copy round. */
export interface CopyResult {
  pool: CopyRates;
  copyBatch: CopyRates;
  c: CopyRates;
}

export type ChildReply = { ok: true; session?: SessionResult; copy?: CopyResult; profile?: ProfileSummary; profileWindow?: ProfileWindow } | { ok: false; code: string; message: string };

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** Start / stop a V8 CPU profile of this thread. */
class InspectorProfiler {
  private readonly s = new Session();
  async start(): Promise<void> {
    this.s.connect();
    await this.s.post('Profiler.enable');
    await this.s.post('Profiler.setSamplingInterval', { interval: 200 });
    await this.s.post('Profiler.start');
  }
  async stop(source: string): Promise<ProfileSummary> {
    const r = (await this.s.post('Profiler.stop')) as { profile: CpuProfile };
    this.s.disconnect();
    return summarizeProfile(r.profile, source, 12);
  }
}

/** Run one request in this process. */
export async function runChild(req: ChildRequest, progress?: (done: number) => void): Promise<{ session?: SessionResult; copy?: CopyResult; profile?: ProfileSummary; profileWindow?: ProfileWindow }> {
  const prof = req.profile === true ? new InspectorProfiler() : undefined;
  let profile: ProfileSummary | undefined;
  if (req.kind === 'session') {
    const opts = req.deviceProfileDir !== undefined ? { deviceProfileDir: req.deviceProfileDir } : {};
    // The window (process.hrtime clock, shared by every process on the host) lets the parent cut
    // the device process's whole-lifetime profile down to the same span.
    const win: ProfileWindow = { fromUs: 0, toUs: 0 };
    const hooks =
      prof !== undefined
        ? {
            start: async () => {
              await prof.start();
              win.fromUs = nowUs();
            },
            stop: async () => {
              win.toUs = nowUs();
              profile = await prof.stop(`benchmark process (driver/VMM), ${req.plan.model}, measured points only`);
            },
          }
        : undefined;
    const session = await runSession(req.plan, req.measure, opts, progress, hooks);
    return profile !== undefined ? { session, profile, profileWindow: win } : { session };
  }
  if (prof !== undefined) {
    await prof.start();
    const js = await runBounceCopyBench(req.sizes, req.ms, req.reps, 'pool');
    profile = await prof.stop('benchmark process, bounce pool queueMapSg/flush/queueUnmapSg loop only');
    return { copy: { pool: js.pool, copyBatch: js.copyBatch, c: {} }, profile };
  }
  let c: CopyRates;
  let js: Awaited<ReturnType<typeof runBounceCopyBench>>;
  if (req.cFirst) {
    c = await runMemcpyBench(req.cBinary, req.sizes, req.ms, req.reps);
    js = await runBounceCopyBench(req.sizes, req.ms, req.reps);
  } else {
    js = await runBounceCopyBench(req.sizes, req.ms, req.reps);
    c = await runMemcpyBench(req.cBinary, req.sizes, req.ms, req.reps);
  }
  progress?.(1);
  return { copy: { pool: js.pool, copyBatch: js.copyBatch, c } };
}
