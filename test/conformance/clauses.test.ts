/**
 * The clause index (spec/clauses/*.json): complete, well-formed, paraphrased — and every clause
 * id that a test or source file names must exist in it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CLAUSE_AREAS,
  CLAUSE_ID_RE,
  CLAUSE_LEVELS,
  CLAUSE_ROLES,
  loadClauses,
  validateClause,
  type Clause,
} from '../../src/conformance/clauses.js';
import { coverage, scanSource, scanTests } from '../../src/conformance/coverage.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const index = loadClauses(join(repo, 'spec', 'clauses'));

/** The shared extraction lives beside the clone (../shared); CI checks it out there too. */
const sharedDir = resolve(repo, '..', 'shared', 'spec');
const hasShared = existsSync(join(sharedDir, 'normative.json')) && existsSync(join(sharedDir, 'swiotlb-rfc.json'));
const SKIP_NOTE = hasShared ? '' : ' (skipped: ../shared/spec not found beside the repository)';

interface SharedStatement {
  id: string;
  role: string;
  level: string;
  section?: string;
  section_number?: string;
  legacy?: boolean;
  text: string;
}
function loadShared(): SharedStatement[] {
  const n = JSON.parse(readFileSync(join(sharedDir, 'normative.json'), 'utf8')) as SharedStatement[];
  const r = JSON.parse(readFileSync(join(sharedDir, 'swiotlb-rfc.json'), 'utf8')) as SharedStatement[];
  return [...n, ...r];
}

const words = (s: string): string[] => s.toLowerCase().match(/[a-z0-9_]+/g) ?? [];

/** Longest run of consecutive words that `a` shares with `b`. */
function longestSharedRun(a: string, b: string): number {
  const wa = words(a);
  const wb = words(b);
  let best = 0;
  // dynamic programming over word positions (inputs are short)
  let prev = new Array<number>(wb.length + 1).fill(0);
  for (let i = 1; i <= wa.length; i++) {
    const cur = new Array<number>(wb.length + 1).fill(0);
    for (let j = 1; j <= wb.length; j++) {
      if (wa[i - 1] === wb[j - 1]) {
        cur[j] = prev[j - 1]! + 1;
        if (cur[j]! > best) best = cur[j]!;
      }
    }
    prev = cur;
  }
  return best;
}

describe('clause index', () => {
  it('loads every area file with unique, well-formed ids', () => {
    expect(index.clauses.length).toBeGreaterThan(0);
    const areas = new Set(index.clauses.map((c) => c.area));
    expect([...areas].sort()).toEqual([...CLAUSE_AREAS].sort());
    expect(index.byId.size).toBe(index.clauses.length);
    for (const c of index.clauses) {
      expect(validateClause(c), c.id).toEqual([]);
      expect(CLAUSE_ID_RE.test(c.id), c.id).toBe(true);
    }
  });

  it('roles and levels are valid and agree with the id', () => {
    for (const c of index.clauses) {
      expect(CLAUSE_ROLES, c.id).toContain(c.role);
      expect(CLAUSE_LEVELS, c.id).toContain(c.level);
      const parts = c.id.split('.');
      expect(parts[parts.length - 2], c.id).toBe(c.role);
      expect(parts[0], c.id).toBe(c.area);
    }
  });

  it('vsock is indexed but out of scope; every other area is in scope', () => {
    for (const c of index.clauses) expect(c.inScope, c.id).toBe(c.area !== 'vsock');
    expect(index.clauses.some((c) => c.area === 'vsock')).toBe(true);
  });

  it('every summary is a substantive one-liner, distinct, and not a placeholder', () => {
    const seen = new Map<string, string>();
    for (const c of index.clauses) {
      const s = c.summary.trim();
      expect(s.length, c.id).toBeGreaterThanOrEqual(20);
      expect(s.split(/\s+/).length, `${c.id}: summary too long`).toBeLessThanOrEqual(30);
      expect(s, c.id).not.toMatch(/\n|\b(?:TODO|TBD|FIXME|XXX|lorem|placeholder)\b/i);
      const other = seen.get(s);
      expect(other, `${c.id} has the same summary as ${other}`).toBeUndefined();
      seen.set(s, c.id);
    }
  });

  it('validateClause rejects malformed entries', () => {
    const good: Clause = index.clauses[0]!;
    expect(validateClause(good)).toEqual([]);
    expect(validateClause({ ...good, role: 'host' }).join()).toMatch(/bad role/);
    expect(validateClause({ ...good, level: 'MIGHT' }).join()).toMatch(/bad level/);
    expect(validateClause({ ...good, summary: '' }).join()).toMatch(/summary/);
    expect(validateClause({ ...good, summary: 'two\nlines here please' }).join()).toMatch(/one line/);
    expect(validateClause({ ...good, id: 'nope' }).join()).toMatch(/shape/);
    expect(validateClause({ ...good, area: 'pci' }).join()).toMatch(/does not match/);
    expect(validateClause(null)).toEqual(['entry is not an object']);
  });
});

describe(`clause index against the shared extraction${SKIP_NOTE}`, () => {
  it.skipIf(!hasShared)('has exactly the ids of normative.json and swiotlb-rfc.json', () => {
    const shared = loadShared();
    const want = shared.map((s) => s.id).sort();
    const have = index.clauses.map((c) => c.id).sort();
    expect(have.filter((id) => !want.includes(id)), 'ids in the index but not in the shared data').toEqual([]);
    expect(want.filter((id) => !index.byId.has(id)), 'shared ids missing from the index').toEqual([]);
    expect(have.length).toBe(want.length);
  });

  it.skipIf(!hasShared)('copies role, level, legacy and section facts faithfully', () => {
    for (const s of loadShared()) {
      const c = index.byId.get(s.id)!;
      expect(c.role, s.id).toBe(s.role);
      expect(c.level, s.id).toBe(s.level);
      expect(c.legacy, s.id).toBe(s.legacy === true);
      if (s.section_number !== undefined) {
        expect(c.section_number, s.id).toBe(s.section_number);
        const path = (s.section ?? '').split(' / ');
        expect(c.section, s.id).toBe(path[path.length - 1]);
      } else {
        expect(c.section_number, s.id).toBeNull();
      }
    }
  });

  it.skipIf(!hasShared)('no summary shares a run of 8 or more consecutive words with its statement text', () => {
    const copied: string[] = [];
    for (const s of loadShared()) {
      const c = index.byId.get(s.id)!;
      const run = longestSharedRun(c.summary, s.text);
      if (run >= 8) copied.push(`${s.id} (${run} words)`);
    }
    expect(copied, 'summaries too close to the spec text; paraphrase them').toEqual([]);
  });

  it('the overlap check itself detects a copied sentence', () => {
    const text = 'The device MUST NOT write to any descriptor table entry at any time.';
    expect(longestSharedRun('the device must not write to any descriptor table entry', text)).toBeGreaterThanOrEqual(8);
    expect(longestSharedRun('Device never modifies descriptor table entries.', text)).toBeLessThan(8);
  });
});

describe('clause ids referenced by tests and source', () => {
  it('every id named in a test title, test file or source file exists in the index', () => {
    const tests = scanTests(repo);
    const source = scanSource(repo);
    // Ids anywhere in test files (e.g. expected `clause` values), not just bracketed titles.
    const testRefs = scanSource(repo, { dirs: ['test'], exclude: [] });
    const refs = new Map(source);
    for (const [id, sites] of testRefs) refs.set(id, [...(refs.get(id) ?? []), ...sites]);
    const report = coverage(index, tests, refs);
    const lines = report.unknown.map((u) => `${u.id} at ${u.sites.map((s) => `${s.file}:${s.line}`).join(', ')}`);
    expect(lines, 'unknown clause ids (typo, or not in spec/clauses): fix the reference').toEqual([]);
  });
});
