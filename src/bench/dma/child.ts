/**
 * The fresh-process side of the DMA benchmark: one round of one model session, or one round of
 * the copy-bandwidth comparison (bounce pool and C memcpy back to back, order alternating between
 * rounds). Request as JSON in argv[2]; progress as `P <n>` lines on stderr; the reply as one
 * JSON line on stdout (`child-main.ts` is the entry point, `runner.ts` the parent).
 */
import { runBounceCopyBench } from './copy-bench.js';
import { runMemcpyBench, type CopyRates } from './memcpy.js';
import type { PointMeasure, SessionPlan } from './scenario.js';
import { runSession, type SessionResult } from './session.js';

/** Request of a session round. */
export interface SessionRequest {
  kind: 'session';
  plan: SessionPlan;
  measure: PointMeasure;
  /** Profile the device process into this directory (the parent starts this process with --cpu-prof). */
  deviceProfileDir?: string;
}

/** Request of a copy round. */
export interface CopyRequest {
  kind: 'copy';
  sizes: number[];
  ms: number;
  reps: number;
  cBinary: string;
  cFirst: boolean;
}

export type ChildRequest = SessionRequest | CopyRequest;

/** Reply of a copy round. */
export interface CopyResult {
  pool: CopyRates;
  copyBatch: CopyRates;
  c: CopyRates;
}

export type ChildReply = { ok: true; session?: SessionResult; copy?: CopyResult } | { ok: false; code: string; message: string };

/** Run one request in this process. */
export async function runChild(req: ChildRequest, progress?: (done: number) => void): Promise<{ session?: SessionResult; copy?: CopyResult }> {
  if (req.kind === 'session') {
    const opts = req.deviceProfileDir !== undefined ? { deviceProfileDir: req.deviceProfileDir } : {};
    return { session: await runSession(req.plan, req.measure, opts, progress) };
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
