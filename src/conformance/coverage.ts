/**
 * Conformance coverage: which indexed clauses have tests and implementation sites.
 *
 * Nothing is typed by hand: tests are found by scanning test titles for clause ids in square
 * brackets (`it('[basic.split-vq.desc.device.2] ...')`, several as `[a][b]` or `[a, b]`), and
 * implementation sites by scanning source files for clause ids (normally in a comment beside
 * the check). Ids that are referenced but absent from the index are reported as unknown.
 *
 * CLI: `node --import tsx src/conformance/coverage.ts [--root DIR] [--json FILE] [--untested] [--strict]`
 * (the `virtiokit conformance --coverage` command calls {@link runCoverageCli}).
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CLAUSE_AREAS,
  CLAUSE_LEVELS,
  CLAUSE_ROLES,
  defaultClauseDir,
  loadClauses,
  type Clause,
  type ClauseIndex,
  type ClauseLevel,
  type ClauseRole,
} from './clauses.js';

/** A test whose title names a clause id. */
export interface TestSite {
  /** Path relative to the scanned root, `/`-separated. */
  readonly file: string;
  /** 1-based line of the citation. */
  readonly line: number;
  /** The string literal holding the citation (normally the test title). */
  readonly title: string;
}

/** A source line that names a clause id. */
export interface SourceSite {
  /** Path relative to the scanned root, `/`-separated. */
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
}

/** Where to look. Paths are relative to the root. */
export interface ScanOptions {
  /** Directories to walk (default: `['test']` for tests, `['src']` for source). */
  readonly dirs?: readonly string[];
  /** Path prefixes to skip (default for source: `['src/conformance']`, the tooling's own docs). */
  readonly exclude?: readonly string[];
  /** Which file names to read (default: test files `*.test.ts`/`*.spec.ts`…; source: TS/JS/C/C++). */
  readonly fileFilter?: (name: string) => boolean;
}

const AREA_ALT = CLAUSE_AREAS.map((a) => a.replace(/-/g, '\\-')).join('|');
/** A token that claims to be a clause id: known area + at least two more segments. */
const CITED_TOKEN_RE = new RegExp(`^(?:${AREA_ALT})(?:\\.[a-z0-9-]+){2,}$`);
/** Bracket group not preceded by an identifier/call (so `a[b.c.d]` in code is skipped). */
const BRACKET_RE = /(?<![\w$)])\[([^[\]\n]+)\]/g;
/** Id-like token in source: area, two or more slugs, ordinal. */
const SOURCE_ID_RE = new RegExp(`(?<![\\w.-])(?:${AREA_ALT})(?:\\.[a-z0-9-]+){2,}\\.[0-9]+(?![\\w-])`, 'g');

const TEST_FILE_RE = /\.(?:test|spec)\.[cm]?[jt]sx?$/;
const SOURCE_FILE_RE = /\.(?:[cm]?[jt]sx?|c|cc|cpp|h|hpp)$/;

function walk(root: string, dirs: readonly string[], exclude: readonly string[], filter: (name: string) => boolean): string[] {
  const out: string[] = [];
  const skip = exclude.map((p) => p.replace(/\/+$/, ''));
  const rel = (abs: string): string => relative(root, abs).split(sep).join('/');
  const excluded = (r: string): boolean => skip.some((p) => r === p || r.startsWith(`${p}/`));
  const visit = (abs: string): void => {
    let names: string[];
    try {
      names = readdirSync(abs);
    } catch {
      return;
    }
    names.sort();
    for (const n of names) {
      if (n === 'node_modules' || n.startsWith('.')) continue;
      const p = join(abs, n);
      const r = rel(p);
      if (excluded(r)) continue;
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) visit(p);
      else if (st.isFile() && filter(n)) out.push(r);
    }
  };
  for (const d of dirs) if (!excluded(d)) visit(join(root, d));
  return out;
}

function push<T>(m: Map<string, T[]>, k: string, v: T): void {
  const l = m.get(k);
  if (l) l.push(v);
  else m.set(k, [v]);
}

/** The string literal around column `col` of `line` (best effort), else the trimmed line. */
function enclosingString(line: string, col: number): string {
  for (let i = col - 1; i >= 0; i--) {
    const q = line[i];
    if (q === "'" || q === '"' || q === '`') {
      const end = line.indexOf(q, col);
      if (end > 0) return line.slice(i + 1, end);
      return line.slice(i + 1).trim();
    }
  }
  return line.trim();
}

/**
 * Clause ids cited in test files, in square brackets inside a string (the test title):
 * `[id]`, `[id1][id2]`, `[id1, id2]`. A bracket group counts only when every token in it
 * looks like a clause id (known area + at least two more segments), so `[fast-check]` or
 * `[0]` are ignored while misspelt ids are kept (and show up as unknown).
 */
export function scanTests(root: string, opts: ScanOptions = {}): Map<string, TestSite[]> {
  const files = walk(root, opts.dirs ?? ['test'], opts.exclude ?? [], opts.fileFilter ?? ((n) => TEST_FILE_RE.test(n)));
  const out = new Map<string, TestSite[]>();
  for (const file of files) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    for (let li = 0; li < lines.length; li++) {
      const line = lines[li]!;
      if (!line.includes('[')) continue;
      BRACKET_RE.lastIndex = 0;
      for (let m = BRACKET_RE.exec(line); m; m = BRACKET_RE.exec(line)) {
        const before = line.slice(0, m.index);
        if (!/['"`]/.test(before)) continue; // not inside a string literal
        const tokens = m[1]!.split(/[\s,]+/).filter((t) => t.length > 0);
        if (tokens.length === 0 || !tokens.every((t) => CITED_TOKEN_RE.test(t))) continue;
        const title = enclosingString(line, m.index);
        for (const id of tokens) push(out, id, { file, line: li + 1, title });
      }
    }
  }
  return out;
}

/**
 * Clause ids named anywhere in source files (comments beside checks, `clause:` strings).
 * Default: walk `src/`, skipping `src/conformance` (this tooling's own examples).
 */
export function scanSource(root: string, opts: ScanOptions = {}): Map<string, SourceSite[]> {
  const files = walk(
    root,
    opts.dirs ?? ['src'],
    opts.exclude ?? ['src/conformance'],
    opts.fileFilter ?? ((n) => SOURCE_FILE_RE.test(n) && !n.endsWith('.d.ts')),
  );
  const out = new Map<string, SourceSite[]>();
  for (const file of files) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    for (let li = 0; li < lines.length; li++) {
      const line = lines[li]!;
      SOURCE_ID_RE.lastIndex = 0;
      const seen = new Set<string>();
      for (let m = SOURCE_ID_RE.exec(line); m; m = SOURCE_ID_RE.exec(line)) {
        if (seen.has(m[0])) continue;
        seen.add(m[0]);
        push(out, m[0], { file, line: li + 1 });
      }
    }
  }
  return out;
}

/** Counts for one group of clauses. */
export interface CoverageRow {
  /** Group label (chapter title, role, level, …). */
  readonly key: string;
  /** Clauses in the group. */
  readonly total: number;
  /** Clauses with at least one test. */
  readonly tested: number;
  /** Clauses with at least one implementation site. */
  readonly implemented: number;
}

/** A chapter row (one per id area). */
export interface ChapterRow extends CoverageRow {
  readonly area: string;
  readonly inScope: boolean;
}

/** An id referenced in tests or source that the index does not contain. */
export interface UnknownRef {
  readonly id: string;
  readonly sites: ReadonlyArray<{ readonly file: string; readonly line: number; readonly kind: 'test' | 'source' }>;
}

/** Result of {@link coverage}. */
export interface CoverageReport {
  /**
   * The tracked figure: in-scope device-side MUST / MUST NOT clauses with at least one test
   * (legacy-interface statements included; see `headlineNonLegacy` for the modern-only figure).
   */
  readonly headline: CoverageRow;
  /** Same as `headline` without legacy-interface statements. */
  readonly headlineNonLegacy: CoverageRow;
  /** All in-scope clauses. */
  readonly inScope: CoverageRow;
  /** One row per area, including out-of-scope ones (flagged). */
  readonly byChapter: readonly ChapterRow[];
  /** In-scope clauses by role. */
  readonly byRole: readonly CoverageRow[];
  /** In-scope clauses by level. */
  readonly byLevel: readonly CoverageRow[];
  /** In-scope clauses by role and level (`device MUST`, …). */
  readonly byRoleLevel: readonly CoverageRow[];
  /** Referenced ids missing from the index (typos or nonexistent clauses). */
  readonly unknown: readonly UnknownRef[];
  /** In-scope device MUST / MUST NOT clause ids without a test. */
  readonly untestedDeviceMust: readonly string[];
  /** Per covered clause: how many tests and source sites cite it. */
  readonly perClause: Readonly<Record<string, { readonly tests: number; readonly sources: number }>>;
}

function row(key: string, list: readonly Clause[], tests: ReadonlyMap<string, unknown>, source: ReadonlyMap<string, unknown>): CoverageRow {
  let tested = 0;
  let implemented = 0;
  for (const c of list) {
    if (tests.has(c.id)) tested++;
    if (source.has(c.id)) implemented++;
  }
  return { key, total: list.length, tested, implemented };
}

const isDeviceMust = (c: Clause): boolean => c.inScope && c.role === 'device' && (c.level === 'MUST' || c.level === 'MUST NOT');

/** Computes the coverage report of `index` given scanned test and source citations. */
export function coverage(
  index: ClauseIndex,
  tests: ReadonlyMap<string, readonly TestSite[]>,
  source: ReadonlyMap<string, readonly SourceSite[]>,
): CoverageReport {
  const all = index.clauses;
  const scoped = all.filter((c) => c.inScope);
  const byChapter: ChapterRow[] = [];
  for (const area of CLAUSE_AREAS) {
    const list = all.filter((c) => c.area === area);
    if (list.length === 0) continue;
    byChapter.push({ ...row(list[0]!.chapter, list, tests, source), area, inScope: list.every((c) => c.inScope) });
  }
  const byRole = CLAUSE_ROLES.map((r: ClauseRole) => row(r, scoped.filter((c) => c.role === r), tests, source));
  const byLevel = CLAUSE_LEVELS.map((l: ClauseLevel) => row(l, scoped.filter((c) => c.level === l), tests, source)).filter((r) => r.total > 0);
  const byRoleLevel: CoverageRow[] = [];
  for (const r of CLAUSE_ROLES)
    for (const l of CLAUSE_LEVELS) {
      const list = scoped.filter((c) => c.role === r && c.level === l);
      if (list.length) byRoleLevel.push(row(`${r} ${l}`, list, tests, source));
    }
  const deviceMust = all.filter(isDeviceMust);

  const unknownMap = new Map<string, Array<{ file: string; line: number; kind: 'test' | 'source' }>>();
  for (const [id, sites] of tests)
    if (!index.byId.has(id)) for (const s of sites) push(unknownMap, id, { file: s.file, line: s.line, kind: 'test' });
  for (const [id, sites] of source)
    if (!index.byId.has(id)) for (const s of sites) push(unknownMap, id, { file: s.file, line: s.line, kind: 'source' });
  const unknown = [...unknownMap].sort(([a], [b]) => a.localeCompare(b)).map(([id, sites]) => ({ id, sites }));

  const perClause: Record<string, { tests: number; sources: number }> = {};
  for (const c of all) {
    const t = tests.get(c.id)?.length ?? 0;
    const s = source.get(c.id)?.length ?? 0;
    if (t || s) perClause[c.id] = { tests: t, sources: s };
  }

  return {
    headline: row('device MUST/MUST NOT', deviceMust, tests, source),
    headlineNonLegacy: row('device MUST/MUST NOT, non-legacy', deviceMust.filter((c) => !c.legacy), tests, source),
    inScope: row('all in-scope clauses', scoped, tests, source),
    byChapter,
    byRole,
    byLevel,
    byRoleLevel,
    unknown,
    untestedDeviceMust: deviceMust.filter((c) => !tests.has(c.id)).map((c) => c.id),
    perClause,
  };
}

function pct(n: number, d: number): string {
  return d === 0 ? '   -  ' : `${((100 * n) / d).toFixed(1).padStart(5)}%`;
}

function fmtRows(title: string, rows: readonly CoverageRow[], note?: (r: CoverageRow) => string): string[] {
  const w = Math.max(title.length, ...rows.map((r) => r.key.length));
  const out = [`${title.padEnd(w)}  total  tested        impl`];
  for (const r of rows)
    out.push(
      `${r.key.padEnd(w)}  ${String(r.total).padStart(5)}  ${String(r.tested).padStart(5)} ${pct(r.tested, r.total)}  ${String(r.implemented).padStart(5)}${note ? note(r) : ''}`,
    );
  return out;
}

/** Human-readable table of a report. */
export function formatCoverage(report: CoverageReport, opts: { untested?: boolean } = {}): string {
  const h = report.headline;
  const lines: string[] = [
    `device-side MUST/MUST NOT coverage (in scope): ${h.tested}/${h.total} tested (${pct(h.tested, h.total).trim()}), ${h.implemented} with implementation sites`,
    `  without legacy-interface statements: ${report.headlineNonLegacy.tested}/${report.headlineNonLegacy.total} (${pct(report.headlineNonLegacy.tested, report.headlineNonLegacy.total).trim()})`,
    `all in-scope clauses: ${report.inScope.tested}/${report.inScope.total} tested (${pct(report.inScope.tested, report.inScope.total).trim()})`,
    '',
    ...fmtRows('chapter', report.byChapter, (r) => ((r as ChapterRow).inScope ? '' : '  (out of scope)')),
    '',
    ...fmtRows('role', report.byRole),
    '',
    ...fmtRows('level', report.byLevel),
    '',
    ...fmtRows('role/level', report.byRoleLevel),
  ];
  lines.push('');
  if (report.unknown.length === 0) lines.push('unknown ids: none');
  else {
    lines.push(`unknown ids: ${report.unknown.length}`);
    for (const u of report.unknown)
      lines.push(`  ${u.id}  ${u.sites.map((s) => `${s.file}:${s.line} (${s.kind})`).join(', ')}`);
  }
  if (opts.untested) {
    lines.push('', `untested device MUST/MUST NOT (${report.untestedDeviceMust.length}):`);
    for (const id of report.untestedDeviceMust) lines.push(`  ${id}`);
  }
  return lines.join('\n');
}

/** Repository root that holds `spec/clauses` (walking up from this module). */
export function defaultRoot(): string {
  return dirname(dirname(defaultClauseDir()));
}

/** Scans `root` and computes its report (index from `root/spec/clauses`). */
export function coverageOf(root: string = defaultRoot()): CoverageReport {
  const index = loadClauses(join(root, 'spec', 'clauses'));
  return coverage(index, scanTests(root), scanSource(root));
}

/**
 * CLI entry: `[--root DIR] [--json FILE] [--untested] [--strict]`. Prints the table to `out`;
 * `--json FILE` also writes the report as JSON (`-` for stdout instead of the table).
 * Returns the exit code: 2 on bad arguments, 1 with `--strict` when unknown ids exist, else 0.
 */
export function runCoverageCli(argv: readonly string[], out: (s: string) => void = (s) => process.stdout.write(s)): number {
  let root: string | undefined;
  let json: string | undefined;
  let untested = false;
  let strict = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root' && i + 1 < argv.length) root = resolve(argv[++i]!);
    else if (a === '--json' && i + 1 < argv.length) json = argv[++i]!;
    else if (a === '--untested') untested = true;
    else if (a === '--strict') strict = true;
    else {
      out(`unknown or incomplete argument ${String(a)}\nusage: coverage [--root DIR] [--json FILE|-] [--untested] [--strict]\n`);
      return 2;
    }
  }
  const report = coverageOf(root ?? defaultRoot());
  if (json === '-') out(`${JSON.stringify(report, null, 2)}\n`);
  else {
    if (json !== undefined) writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
    out(`${formatCoverage(report, { untested })}\n`);
  }
  return strict && report.unknown.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = runCoverageCli(process.argv.slice(2));
}
