/** The human-readable tables of a {@link DmaBenchReport}. */
import type { DmaBenchReport, DmaRow } from './report-types.js';
import { MODEL_NAMES } from './scenario.js';

function table(head: string[], rows: string[][], right: boolean[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => r.map((c, i) => (right[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [fmt(head), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(fmt)].join('\n');
}

/** 512 B, 4 KiB, 256 KiB. */
export function fmtSize(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : `${n}`;
}

function num(x: number | null | undefined, digits = 0): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (digits === 0 && Math.abs(x) >= 1e4) return `${(x / 1000).toFixed(x >= 1e6 ? 0 : 1)}k`;
  return x.toFixed(digits);
}

function config(r: DmaRow): string {
  const parts = [r.ring, `q${r.queues}`, `d${r.depth}`, r.op];
  if (r.indirect) parts.push('indirect');
  if (!r.event_idx) parts.push('no-evidx');
  if (!r.batch) parts.push('kick/req');
  return parts.join(' ');
}

const MiB = 1024 * 1024;

function heldText(h: Record<string, string | number | boolean>): string {
  const parts: string[] = [];
  if (h['model'] !== undefined) parts.push(String(h['model']));
  if (h['size'] !== undefined) parts.push(fmtSize(Number(h['size'])));
  if (h['ring'] !== undefined) parts.push(String(h['ring']));
  if (h['queues'] !== undefined) parts.push(`q${String(h['queues'])}`);
  if (h['depth'] !== undefined) parts.push(`d${String(h['depth'])}`);
  if (h['op'] !== undefined) parts.push(String(h['op']));
  if (h['indirect'] === true) parts.push('indirect');
  if (h['eventIdx'] === false) parts.push('no-evidx');
  if (h['batch'] === false) parts.push('kick/req');
  return parts.join(' ');
}

/** Format the whole report. */
export function formatDmaReport(rep: DmaBenchReport): string {
  const out: string[] = [];
  const loads = rep.machine.loadavg_per_round.map((l) => l.before[0]!.toFixed(1)).join(', ');
  out.push(`virtio-blk (RAM disk) DMA benchmark — ${rep.preset}, ${rep.rounds} round(s), warm-up ${rep.measure.warmupMs} ms + ${rep.measure.ms} ms per point; ${rep.machine.cpu}, ${rep.machine.cores} cores, Node ${rep.machine.node}; loadavg per round: ${loads}`);
  out.push('medians over rounds; ratios taken within each round, then the median. "x direct" = IOPS / the direct-DMA model with the same process boundary (vfio-user: direct, in-process: inproc, vhost-user: vhost-qsd).');
  if (rep.vhost_user_vs_qsd !== null) out.push(`vhost-user-blk, same front-end and tmpfs disk: virtiokit back-end / qemu-storage-daemon IOPS (4K reads, depth 32) = ${rep.vhost_user_vs_qsd.toFixed(2)}x`);
  for (const m of rep.models) if (!m.measured) out.push(`(${m.model} not measured: ${m.reason ?? 'no results'})`);
  out.push('');
  const order = (r: DmaRow): number => MODEL_NAMES.indexOf(r.model);
  const rows = [...rep.rows].sort((a, b) => order(a) - order(b) || config(a).localeCompare(config(b)) || a.size - b.size);
  out.push(
    table(
      ['model', 'config', 'size', 'IOPS', 'MB/s', 'p50 us', 'p99 us', 'x direct', 'cpu us/req vmm', 'dev', 'copied B/req', 'RSS MiB vmm', 'dev', 'pool hw KiB'],
      rows.map((r) => [
        r.model,
        config(r),
        fmtSize(r.size),
        num(r.iops),
        num(r.mbps),
        num(r.p50_us, 1),
        num(r.p99_us, 1),
        num(r.ratio_vs_direct, 2),
        num(r.cpu_us_per_req_vmm, 1),
        num(r.cpu_us_per_req_device, 1),
        num(r.bytes_copied_per_req),
        num(r.peak_rss_vmm_bytes !== null ? r.peak_rss_vmm_bytes / MiB : null),
        num(r.peak_rss_device_bytes !== null ? r.peak_rss_device_bytes / MiB : null),
        num(r.bounce_pool_high_water_bytes !== null ? r.bounce_pool_high_water_bytes / 1024 : null),
      ]),
      [false, false, true, true, true, true, true, true, true, true, true, true, true, true],
    ),
  );
  if (rep.comparisons.length > 0) {
    out.push('', 'One changed dimension (to / from, same-round medians; the rest held):');
    out.push(
      table(
        ['dimension', 'from -> to', 'held', 'IOPS x', 'p50 x', 'cpu x'],
        rep.comparisons.map((c) => [c.dimension, `${String(c.from)} -> ${String(c.to)}`, heldText(c.held), num(c.iops_ratio, 2), num(c.p50_ratio, 2), num(c.cpu_ratio, 2)]),
        [false, false, false, true, true, true],
      ),
    );
  }
  if (rep.copy.length > 0) {
    out.push('', 'Bounce copy bandwidth vs C memcpy (GB/s; pool = queueMapSg+queueUnmapSg, one native copyBatch per 32 buffers; ratio = same-round median [min-max]):');
    out.push(
      table(
        ['size', 'pool', 'copyBatch', 'C memcpy', 'pool / C', 'copyBatch / C'],
        rep.copy.map((c) => [fmtSize(c.size), c.pool_gbps.toFixed(1), c.copybatch_gbps.toFixed(1), c.c_memcpy_gbps.toFixed(1), `${c.pool_vs_c.toFixed(2)} [${c.pool_vs_c_min.toFixed(2)}-${c.pool_vs_c_max.toFixed(2)}]`, c.copybatch_vs_c.toFixed(2)]),
        [true, true, true, true, true, true],
      ),
    );
  }
  out.push('', 'Targets:');
  for (const t of rep.targets) {
    out.push(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.description}: measured ${t.measured ?? '-'} (target ${t.target}) — ${t.note}`);
    for (const p of t.where_time_goes ?? []) {
      out.push(`      where the time goes, ${p.source} (busy ${p.busyMs.toFixed(0)} ms, idle ${p.idleMs.toFixed(0)} ms):`);
      for (const e of p.top.slice(0, 8)) out.push(`        ${(e.share * 100).toFixed(1).padStart(5)}%  ${e.fn}`);
    }
  }
  if (rep.failures.length > 0) {
    out.push('', `Failures (${rep.failures.length}):`);
    for (const f of rep.failures.slice(0, 20)) out.push(`  round ${f.round} ${f.model ?? ''} ${f.what}: ${f.error}`);
  }
  return `${out.join('\n')}\n`;
}
