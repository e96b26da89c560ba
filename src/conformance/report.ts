/**
 * Reports of a conformance run: per-clause verdicts (JSON), a summary table per chapter and
 * level, and JUnit XML (one testsuite per configuration, one testcase per check run).
 *
 * JSON shape: `{ "target", "summary", "clauses": [{ "id", "role", "level", "verdict", "checks": [...] }] }`.
 * A clause no check covers is UNCHECKED. Clause verdicts combine every run of every check that
 * names the clause (FAIL > WEDGED > PASS > REJECT > SKIP; see verdict.ts).
 */
import { CLAUSE_LEVELS, type Clause, type ClauseIndex, type ClauseLevel, type ClauseRole } from './clauses.js';
import type { CheckRun, SuiteResult } from './runner.js';
import { VERDICTS, combineVerdicts, isObserved, type Verdict } from './verdict.js';

/** One check run as cited under a clause. */
export interface ClauseCheckRef {
  readonly check: string;
  readonly device: string;
  readonly transport: string;
  readonly swiotlb: boolean;
  readonly verdict: Verdict;
  readonly detail: string;
}

/** One clause of the report. */
export interface ClauseResult {
  readonly id: string;
  readonly role: ClauseRole;
  readonly level: ClauseLevel;
  readonly chapter: string;
  readonly legacy: boolean;
  readonly verdict: Verdict;
  readonly checks: readonly ClauseCheckRef[];
}

/** Counts per verdict. */
export type VerdictCounts = Record<Verdict, number>;

/** A summary row (chapter, level, ...). */
export interface SummaryRow {
  readonly key: string;
  readonly total: number;
  readonly counts: VerdictCounts;
}

/** The headline figure. */
export interface CoverageFigure {
  /** In-scope device-side MUST / MUST NOT clauses. */
  readonly total: number;
  /** With a verdict other than UNCHECKED. */
  readonly checked: number;
  /** With an observed verdict (PASS, REJECT, FAIL, WEDGED) — SKIPs excluded. */
  readonly observed: number;
  readonly counts: VerdictCounts;
}

/** Summary of a run. */
export interface ReportSummary {
  readonly configs: number;
  readonly checkRuns: number;
  /** Check runs per verdict. */
  readonly runs: VerdictCounts;
  /** Clauses (in scope) per verdict. */
  readonly clauses: VerdictCounts;
  /** Device-side MUST/MUST NOT coverage. */
  readonly deviceMust: CoverageFigure;
  /** Same, driver side. */
  readonly driverMust: CoverageFigure;
  readonly byChapter: readonly SummaryRow[];
  readonly byLevel: readonly SummaryRow[];
  /** Check runs that FAILed or WEDGED. */
  readonly failures: ReadonlyArray<{ check: string; config: string; verdict: Verdict; detail: string }>;
  readonly ms: number;
}

/** The JSON report. */
export interface ConformanceReport {
  readonly target: string;
  readonly summary: ReportSummary;
  readonly clauses: readonly ClauseResult[];
  /** Check ids referring to clause ids the index does not have (a registry bug). */
  readonly unknownClauses: readonly string[];
}

const zero = (): VerdictCounts => ({ PASS: 0, REJECT: 0, FAIL: 0, WEDGED: 0, SKIP: 0, UNCHECKED: 0 });

function cfgName(r: { device: string; transport: string; swiotlb: boolean }): string {
  return `${r.device}/${r.transport}/swiotlb-${r.swiotlb ? 'on' : 'off'}`;
}

function figure(list: readonly ClauseResult[]): CoverageFigure {
  const counts = zero();
  for (const c of list) counts[c.verdict]++;
  return { total: list.length, checked: list.length - counts.UNCHECKED, observed: list.filter((c) => isObserved(c.verdict)).length, counts };
}

const isMust = (c: { level: ClauseLevel }): boolean => c.level === 'MUST' || c.level === 'MUST NOT';

/** Build the report of `suite` against the clause index (out-of-scope clauses are left out). */
export function buildReport(suite: SuiteResult, index: ClauseIndex): ConformanceReport {
  const refs = new Map<string, ClauseCheckRef[]>();
  const unknown = new Set<string>();
  for (const r of suite.runs) {
    for (const id of r.clauses) {
      if (!index.byId.has(id)) {
        unknown.add(`${r.check}: ${id}`);
        continue;
      }
      const o = r.perClause?.[id];
      const ref: ClauseCheckRef = { check: r.check, device: r.device, transport: r.transport, swiotlb: r.swiotlb, verdict: o?.verdict ?? r.verdict, detail: o?.detail ?? r.detail };
      const l = refs.get(id);
      if (l) l.push(ref);
      else refs.set(id, [ref]);
    }
  }
  const clauses: ClauseResult[] = [];
  for (const c of index.clauses) {
    if (!c.inScope) continue;
    const rs = refs.get(c.id) ?? [];
    let v: Verdict = 'UNCHECKED';
    for (const r of rs) v = combineVerdicts(v, r.verdict);
    clauses.push({ id: c.id, role: c.role, level: c.level, chapter: c.chapter, legacy: c.legacy, verdict: v, checks: rs });
  }
  const runs = zero();
  for (const r of suite.runs) runs[r.verdict]++;
  const cl = zero();
  for (const c of clauses) cl[c.verdict]++;
  const byChapter: SummaryRow[] = [];
  for (const ch of [...new Set(clauses.map((c) => c.chapter))]) {
    const list = clauses.filter((c) => c.chapter === ch);
    const counts = zero();
    for (const c of list) counts[c.verdict]++;
    byChapter.push({ key: ch, total: list.length, counts });
  }
  const byLevel: SummaryRow[] = [];
  for (const lv of CLAUSE_LEVELS) {
    const list = clauses.filter((c) => c.level === lv);
    if (list.length === 0) continue;
    const counts = zero();
    for (const c of list) counts[c.verdict]++;
    byLevel.push({ key: lv, total: list.length, counts });
  }
  const failures = suite.runs.filter((r) => r.verdict === 'FAIL' || r.verdict === 'WEDGED').map((r) => ({ check: r.check, config: cfgName(r), verdict: r.verdict, detail: r.detail }));
  return {
    target: suite.target,
    summary: {
      configs: suite.configs.length,
      checkRuns: suite.runs.length,
      runs,
      clauses: cl,
      deviceMust: figure(clauses.filter((c) => c.role === 'device' && isMust(c))),
      driverMust: figure(clauses.filter((c) => c.role === 'driver' && isMust(c))),
      byChapter,
      byLevel,
      failures,
      ms: suite.ms,
    },
    clauses,
    unknownClauses: [...unknown].sort(),
  };
}

function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`;
}

function table(title: string, rows: readonly SummaryRow[]): string[] {
  const w = Math.max(title.length, ...rows.map((r) => r.key.length));
  const cols = VERDICTS;
  const out = [`${title.padEnd(w)}  total  ${cols.map((c) => c.padStart(9)).join(' ')}`];
  for (const r of rows) out.push(`${r.key.padEnd(w)}  ${String(r.total).padStart(5)}  ${cols.map((c) => String(r.counts[c]).padStart(9)).join(' ')}`);
  return out;
}

/** Human-readable summary. */
export function formatReport(rep: ConformanceReport, opts: { unchecked?: boolean; failures?: boolean } = {}): string {
  const s = rep.summary;
  const d = s.deviceMust;
  const lines = [
    `target ${rep.target}: ${s.checkRuns} check runs in ${s.configs} configuration(s), ${s.ms} ms`,
    `runs: ${VERDICTS.filter((v) => v !== 'UNCHECKED').map((v) => `${v} ${s.runs[v]}`).join(', ')}`,
    `device-side MUST/MUST NOT coverage: ${d.checked}/${d.total} with a verdict (${pct(d.checked, d.total)}); ${d.observed}/${d.total} observed (${pct(d.observed, d.total)}), ${d.counts.SKIP} SKIP`,
    `driver-side MUST/MUST NOT: ${s.driverMust.checked}/${s.driverMust.total} with a verdict (${pct(s.driverMust.checked, s.driverMust.total)})`,
    '',
    ...table('chapter', s.byChapter),
    '',
    ...table('level', s.byLevel),
  ];
  if (rep.unknownClauses.length > 0) lines.push('', `unknown clause ids in checks: ${rep.unknownClauses.join(', ')}`);
  if ((opts.failures ?? true) && s.failures.length > 0) {
    lines.push('', `FAIL / WEDGED (${s.failures.length}):`);
    for (const f of s.failures) lines.push(`  ${f.verdict} ${f.check} [${f.config}]: ${f.detail}`);
  }
  if (opts.unchecked === true) {
    const un = rep.clauses.filter((c) => c.role === 'device' && isMust(c) && c.verdict === 'UNCHECKED');
    lines.push('', `UNCHECKED device MUST/MUST NOT (${un.length}):`);
    for (const c of un) lines.push(`  ${c.id}`);
  }
  return lines.join('\n');
}

function xml(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '?').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/**
 * JUnit XML: one `<testsuite>` per configuration, one `<testcase>` per check run. FAIL is a
 * `<failure>`, WEDGED an `<error>`, SKIP `<skipped>`; PASS and REJECT pass (REJECT says so in
 * `<system-out>`).
 */
export function toJUnit(suite: SuiteResult): string {
  const by = new Map<string, CheckRun[]>();
  for (const r of suite.runs) {
    const k = cfgName(r);
    const l = by.get(k);
    if (l) l.push(r);
    else by.set(k, [r]);
  }
  const total = suite.runs.length;
  const failures = suite.runs.filter((r) => r.verdict === 'FAIL').length;
  const errors = suite.runs.filter((r) => r.verdict === 'WEDGED').length;
  const skipped = suite.runs.filter((r) => r.verdict === 'SKIP').length;
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="${xml(`virtiokit conformance ${suite.target}`)}" tests="${total}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${(suite.ms / 1000).toFixed(3)}">`];
  for (const [k, runs] of by) {
    const f = runs.filter((r) => r.verdict === 'FAIL').length;
    const e = runs.filter((r) => r.verdict === 'WEDGED').length;
    const sk = runs.filter((r) => r.verdict === 'SKIP').length;
    const t = runs.reduce((a, r) => a + r.ms, 0) / 1000;
    out.push(`  <testsuite name="${xml(k)}" tests="${runs.length}" failures="${f}" errors="${e}" skipped="${sk}" time="${t.toFixed(3)}">`);
    for (const r of runs) {
      out.push(`    <testcase classname="${xml(`${k}.${r.role}`)}" name="${xml(`${r.check} [${r.clauses.join(' ')}]`)}" time="${(r.ms / 1000).toFixed(3)}">`);
      if (r.verdict === 'FAIL') out.push(`      <failure message="${xml(r.detail)}" type="FAIL"/>`);
      else if (r.verdict === 'WEDGED') out.push(`      <error message="${xml(r.detail)}" type="WEDGED"/>`);
      else if (r.verdict === 'SKIP') out.push(`      <skipped message="${xml(r.detail)}"/>`);
      else out.push(`      <system-out>${xml(`${r.verdict}: ${r.detail}`)}</system-out>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

/** Convenience: the clause index entries a report covers, by id. */
export function clauseOf(index: ClauseIndex, id: string): Clause | undefined {
  return index.byId.get(id);
}
