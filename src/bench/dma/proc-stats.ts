/**
 * CPU time and peak RSS of a process from /proc (Linux): used for the device process, whose code
 * the benchmark does not control. CPU time is the sum of every thread's `schedstat` run time
 * (nanoseconds); where schedstat is missing, `stat` utime + stime (clock ticks, 10 ms). The peak
 * RSS (VmHWM) can be reset to the current RSS by writing 5 to `clear_refs`, so each point reports
 * its own peak.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const TICK_NS = 1e7; // USER_HZ 100 on Linux

/** CPU nanoseconds used so far by every thread of `pid` (NaN when /proc cannot tell). */
export function procCpuNs(pid: number | 'self'): number {
  const base = `/proc/${pid}`;
  try {
    let sum = 0;
    let ok = false;
    for (const t of readdirSync(`${base}/task`)) {
      try {
        const f = readFileSync(`${base}/task/${t}/schedstat`, 'utf8');
        const ns = Number(f.split(' ')[0]);
        if (Number.isFinite(ns)) {
          sum += ns;
          ok = true;
        }
      } catch {
        // the thread exited meanwhile
      }
    }
    if (ok) return sum;
  } catch {
    // fall through to stat
  }
  try {
    const s = readFileSync(`${base}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields after the command: state(3) … utime(14) stime(15) → indices 11, 12
    return (Number(f[11]) + Number(f[12])) * TICK_NS;
  } catch {
    return Number.NaN;
  }
}

/** VmHWM (peak resident set) of `pid` in bytes, NaN when unknown. */
export function procPeakRss(pid: number | 'self'): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(s);
    return m !== null ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Reset the peak RSS of `pid` to its current RSS; false when not permitted / not Linux. */
export function resetPeakRss(pid: number | 'self'): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
