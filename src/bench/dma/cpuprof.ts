/**
 * Summaries of V8 CPU profiles (`node --cpu-prof` `.cpuprofile` files): self time per function,
 * top N — "where the time goes" for a missed target.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { PACKAGE_ROOT } from '../c-build.js';

/** One function's share of the samples. */
export interface ProfileEntry {
  /** `name (file:line)`. */
  fn: string;
  /** Self time in ms. */
  selfMs: number;
  /** Share of the non-idle samples (0..1). */
  share: number;
}

/** Summary of one profile. */
export interface ProfileSummary {
  /** Which process / thread (file name). */
  source: string;
  /** Non-idle sampled time (ms). */
  busyMs: number;
  /** Idle (waiting in the event loop) time (ms). */
  idleMs: number;
  top: ProfileEntry[];
}

/** @internal */
export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** The parts of a V8 CPU profile the summary reads. */
export interface CpuProfile {
  nodes: CpuProfileNode[];
  /** Profile start (µs, the monotonic clock of process.hrtime). */
  startTime?: number;
  samples: number[];
  timeDeltas: number[];
}

/** Only samples taken in [fromUs, toUs] (process.hrtime clock, µs) count. */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

function label(cf: CpuProfileNode['callFrame']): string {
  const name = cf.functionName === '' ? '(anonymous)' : cf.functionName;
  // No script: a V8 builtin or a native (addon) function — its time is the native call's.
  if (cf.url === '') return name.startsWith('(') && name !== '(anonymous)' ? name : `${name} [native]`;
  let file = cf.url.replace(/^file:\/\//, '');
  if (file.startsWith(PACKAGE_ROOT)) file = relative(PACKAGE_ROOT, file);
  return `${name} (${file}:${cf.lineNumber + 1})`;
}

/** Summarise a parsed profile (optionally only the samples inside `window`). */
export function summarizeProfile(p: CpuProfile, source: string, topN = 10, window?: ProfileWindow): ProfileSummary {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nodes = new Map<number, CpuProfileNode>();
  for (const n of p.nodes) nodes.set(n.id, n);
  const byId = new Map<number, string>();
  for (const n of p.nodes) {
    let l = label(n.callFrame);
    // An unnamed native function: name it by its caller (e.g. an addon call inside `transact`).
    if (l === '(anonymous) [native]') {
      const up = nodes.get(parent.get(n.id) ?? -1);
      if (up !== undefined) l = `native code called from ${label(up.callFrame)}`;
    }
    byId.set(n.id, l);
  }
  const self = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  let t = p.startTime ?? 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) continue;
    const us = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    const fn = byId.get(p.samples[i]!) ?? '(unknown)';
    if (fn === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    self.set(fn, (self.get(fn) ?? 0) + us);
  }
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([fn, us]) => ({ fn, selfMs: us / 1000, share: busy > 0 ? us / busy : 0 }));
  return { source, busyMs: busy / 1000, idleMs: idle / 1000, top };
}

/** Summaries of every `.cpuprofile` in `dir` (main thread and workers), busiest first. */
export async function summarizeProfileDir(dir: string, tag: string, topN = 10, window?: ProfileWindow): Promise<ProfileSummary[]> {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  const out: ProfileSummary[] = [];
  for (const f of files) {
    try {
      const p = JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile;
      const sum = summarizeProfile(p, `${tag}: ${f}`, topN, window);
      if (sum.busyMs >= 1) out.push(sum); // idle worker threads say nothing
    } catch {
      // a truncated profile (process killed): skip
    }
  }
  return out.sort((a, b) => b.busyMs - a.busyMs);
}
