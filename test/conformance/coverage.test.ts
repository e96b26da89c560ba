/**
 * Coverage tooling: scanning test titles and source for clause ids, the report, the CLI entry.
 * Fixtures are written to a temporary tree; ids inside them are assembled at run time so that
 * this file itself does not cite (or mis-cite) any clause.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clause, ClauseIndex } from '../../src/conformance/clauses.js';
import { coverage, formatCoverage, runCoverageCli, scanSource, scanTests } from '../../src/conformance/coverage.js';

const id = (...parts: string[]): string => parts.join('.');
const RESET = id('basic', 'dev-reset', 'device', '1');
const RESET2 = id('basic', 'dev-reset', 'device', '2');
const DRV = id('basic', 'dev-reset', 'driver', '1');
const PCI = id('pci', 'common-cfg', 'device', '7');
const VSOCK = id('vsock', 'feature-bits', 'device', '1');
const TYPO = id('basic', 'dev-reset', 'devcie', '1');
const BOGUS = id('pci', 'no-such-section', 'device', '9');

function clause(cid: string, level: Clause['level'], extra: Partial<Clause> = {}): Clause {
  const parts = cid.split('.');
  return {
    id: cid,
    area: parts[0] as Clause['area'],
    role: parts[parts.length - 2] as Clause['role'],
    level,
    chapter: parts[0] === 'pci' ? 'Virtio Over PCI Bus' : parts[0] === 'vsock' ? 'Socket Device' : 'Basic Facilities',
    section_number: '1.2.3',
    section: 'Device Requirements: Something',
    legacy: false,
    inScope: parts[0] !== 'vsock',
    summary: 'A paraphrased requirement for the fixture.',
    ...extra,
  };
}

const clauses = [
  clause(RESET, 'MUST'),
  clause(RESET2, 'MUST NOT'),
  clause(DRV, 'SHOULD'),
  clause(PCI, 'MUST', { legacy: true }),
  clause(VSOCK, 'MUST'),
];
const index: ClauseIndex = { clauses, byId: new Map(clauses.map((c) => [c.id, c])), dir: '(fixture)' };

let root = '';
function write(rel: string, text: string): void {
  const p = join(root, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'vk-coverage-'));
  write(
    'test/a/one.test.ts',
    [
      `import { describe, it } from 'vitest';`,
      `describe('reset', () => {`,
      `  it('[${RESET}][${RESET2}] adjacent brackets', () => {});`,
      `  it("[${RESET}, ${PCI}] comma list", () => {});`,
      `  it(`,
      `    '[${DRV}] title on the next line',`,
      `    () => { const a = [1]; const net = { x: { y: 0 } }; void a[net.x.y]; },`,
      `  );`,
      '  it(`[' + VSOCK + '] template title`, () => {});',
      `  it('[fast-check] [0] not ids', () => {});`,
      `  it('[${TYPO}] misspelt role', () => {});`,
      `});`,
    ].join('\n'),
  );
  write('test/a/helper.ts', `it('[${BOGUS}] not a test file, ignored', () => {});\n`);
  write(
    'src/dev/reset.ts',
    [
      `// ${RESET}: status goes back to 0`,
      `export const clause = '${RESET2}'; // twice on a line: ${RESET2}`,
      `/* ${BOGUS} */`,
    ].join('\n'),
  );
  write('src/conformance/doc.ts', `// example id ${BOGUS}\n`);
  write('spec/clauses/basic.json', `${JSON.stringify(clauses.filter((c) => c.area === 'basic'))}\n`);
  write('spec/clauses/pci.json', `${JSON.stringify(clauses.filter((c) => c.area === 'pci'))}\n`);
  write('spec/clauses/vsock.json', `${JSON.stringify(clauses.filter((c) => c.area === 'vsock'))}\n`);
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('scanTests', () => {
  it('finds [a][b], [a, b], next-line and template titles with file, line and title', () => {
    const t = scanTests(root);
    expect(t.get(RESET)?.map((s) => s.line)).toEqual([3, 4]);
    expect(t.get(RESET2)).toEqual([{ file: 'test/a/one.test.ts', line: 3, title: `[${RESET}][${RESET2}] adjacent brackets` }]);
    expect(t.get(PCI)?.[0]?.title).toBe(`[${RESET}, ${PCI}] comma list`);
    expect(t.get(DRV)?.[0]?.line).toBe(6);
    expect(t.get(VSOCK)?.[0]?.title).toBe(`[${VSOCK}] template title`);
  });

  it('keeps misspelt ids, ignores non-id brackets, code indexing and non-test files', () => {
    const t = scanTests(root);
    expect(t.has(TYPO)).toBe(true);
    expect([...t.keys()].sort()).toEqual([DRV, PCI, RESET, RESET2, TYPO, VSOCK].sort());
    expect(t.has(BOGUS)).toBe(false);
  });
});

describe('scanSource', () => {
  it('finds ids in comments and strings once per line, skipping src/conformance', () => {
    const s = scanSource(root);
    expect(s.get(RESET)).toEqual([{ file: 'src/dev/reset.ts', line: 1 }]);
    expect(s.get(RESET2)).toEqual([{ file: 'src/dev/reset.ts', line: 2 }]);
    expect(s.get(BOGUS)).toEqual([{ file: 'src/dev/reset.ts', line: 3 }]);
    expect(s.size).toBe(3);
  });

  it('can be pointed at other directories', () => {
    const s = scanSource(root, { dirs: ['src'], exclude: [] });
    expect(s.get(BOGUS)?.map((x) => x.file).sort()).toEqual(['src/conformance/doc.ts', 'src/dev/reset.ts']);
  });
});

describe('coverage', () => {
  it('counts tested / implemented clauses per chapter, role and level; vsock stays out of the figures', () => {
    const r = coverage(index, scanTests(root), scanSource(root));
    // device MUST/MUST NOT in scope: RESET, RESET2, PCI (vsock excluded)
    expect(r.headline).toMatchObject({ total: 3, tested: 3, implemented: 2 });
    expect(r.headlineNonLegacy).toMatchObject({ total: 2, tested: 2 });
    expect(r.inScope).toMatchObject({ total: 4, tested: 4, implemented: 2 });
    const basic = r.byChapter.find((c) => c.area === 'basic')!;
    expect(basic).toMatchObject({ total: 3, tested: 3, implemented: 2, inScope: true });
    expect(r.byChapter.find((c) => c.area === 'vsock')).toMatchObject({ total: 1, tested: 1, inScope: false });
    expect(r.byRole.find((x) => x.key === 'driver')).toMatchObject({ total: 1, tested: 1, implemented: 0 });
    expect(r.byLevel.find((x) => x.key === 'MUST')).toMatchObject({ total: 2, tested: 2 });
    expect(r.byRoleLevel.find((x) => x.key === 'device MUST NOT')).toMatchObject({ total: 1, tested: 1 });
    expect(r.untestedDeviceMust).toEqual([]);
    expect(r.perClause[RESET]).toEqual({ tests: 2, sources: 1 });
  });

  it('lists unknown ids with where they were referenced', () => {
    const r = coverage(index, scanTests(root), scanSource(root));
    expect(r.unknown.map((u) => u.id)).toEqual([BOGUS, TYPO].sort());
    expect(r.unknown.find((u) => u.id === TYPO)?.sites).toEqual([{ file: 'test/a/one.test.ts', line: 11, kind: 'test' }]);
    expect(r.unknown.find((u) => u.id === BOGUS)?.sites).toEqual([{ file: 'src/dev/reset.ts', line: 3, kind: 'source' }]);
  });

  it('reports untested device MUST clauses when tests are missing', () => {
    const r = coverage(index, new Map(), new Map());
    expect(r.headline).toMatchObject({ total: 3, tested: 0, implemented: 0 });
    expect([...r.untestedDeviceMust].sort()).toEqual([PCI, RESET, RESET2].sort());
    expect(r.unknown).toEqual([]);
    expect(formatCoverage(r, { untested: true })).toContain(`  ${PCI}`);
  });
});

describe('runCoverageCli', () => {
  it('prints the table, writes JSON, and fails with --strict on unknown ids', () => {
    let out = '';
    const json = join(root, 'report.json');
    expect(runCoverageCli(['--root', root, '--json', json], (s) => (out += s))).toBe(0);
    expect(out).toMatch(/device-side MUST\/MUST NOT coverage \(in scope\): 3\/3 tested/);
    expect(out).toMatch(/unknown ids: 2/);
    expect(out).toMatch(/Socket Device .*\(out of scope\)/);
    const parsed = JSON.parse(readFileSync(json, 'utf8')) as { headline: { total: number } };
    expect(parsed.headline.total).toBe(3);
    expect(runCoverageCli(['--root', root, '--strict'], () => {})).toBe(1);
    expect(runCoverageCli(['--bogus'], () => {})).toBe(2);
    expect(runCoverageCli(['--json'], () => {})).toBe(2);
  });
});
