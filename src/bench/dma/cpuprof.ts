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
}

/** The parts of a V8 CPU profile the summary reads. */
export interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(cf: CpuProfileNode['callFrame']): string {
  const name = cf.functionName === '' ? '(anonymous)' : cf.functionName;
  // No script: a V8 builtin or a native (addon) function — its time is the native call's.
  if (cf.url === '') return name.startsWith('(') && name !== '(anonymous)' ? name : `${name} [native]`;
  let file = cf.url.replace(/^file:\/\//, '');
  if (file.startsWith(PACKAGE_ROOT)) file = relative(PACKAGE_ROOT, file);
  return `${name} (${file}:${cf.lineNumber + 1})`;
}

/** Summarise a parsed profile. */
export function summarizeProfile(p: CpuProfile, source: string, topN = 10): ProfileSummary {
  const byId = new Map<number, string>();
  for (const n of p.nodes) byId.set(n.id, label(n.callFrame));
  const self = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (let i = 0; i < p.samples.length; i++) {
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
export async function summarizeProfileDir(dir: string, tag: string, topN = 10): Promise<ProfileSummary[]> {
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
      out.push(summarizeProfile(p, `${tag}: ${f}`, topN));
    } catch {
      // a truncated profile (process killed): skip
    }
  }
  return out.sort((a, b) => b.busyMs - a.busyMs);
}
