import { describe, expect, it } from 'vitest';
import { loadClauses } from '../../src/conformance/clauses.js';
import { buildReport, formatReport, toJUnit } from '../../src/conformance/report.js';
import type { CheckRun, SuiteResult } from '../../src/conformance/runner.js';

const base = { device: 'rng', transport: 'pci', swiotlb: false, title: 't', role: 'device', ms: 1.5, notes: [] } as const;
const suite: SuiteResult = {
  target: 'fake<&>',
  configs: [{ device: 'rng', transport: 'pci', swiotlb: false }],
  checks: ['a', 'b', 'c'],
  ms: 12,
  runs: [
    { ...base, check: 'a', clauses: ['rng.dev-op.device.1'], verdict: 'PASS', detail: 'fine' },
    { ...base, check: 'b', clauses: ['rng.dev-op.device.1', 'basic.dev-reset.device.1'], verdict: 'FAIL', detail: 'broke <here> & "there"' },
    { ...base, check: 'c', clauses: ['basic.dev-reset.device.2'], verdict: 'WEDGED', detail: 'hung', perClause: { 'basic.dev-reset.device.2': { verdict: 'SKIP', detail: 'n/a' } } },
    { ...base, check: 'd', clauses: ['pci.isr.device.1'], verdict: 'SKIP', detail: 'no' },
  ] as CheckRun[],
};

/** Minimal well-formedness check: balanced tags, quoted attributes, no raw '<' or '&' in text. */
function wellFormed(xml: string): boolean {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w-]*)((?:\s+[\w-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/g;
  let pos = 0;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    if (m.index !== pos) return false;
    pos = re.lastIndex;
    if (m[5] !== undefined) {
      if (/&(?!amp;|lt;|gt;|quot;|apos;)/.test(m[5])) return false;
      continue;
    }
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else if (m[4] !== '/') stack.push(m[2]!);
  }
  return pos === body.length && stack.length === 0;
}

describe('report', () => {
  const idx = loadClauses();
  const rep = buildReport(suite, idx);

  it('JSON has target, summary and one entry per in-scope clause with id/role/level/verdict/checks', () => {
    const j = JSON.parse(JSON.stringify(rep)) as { target: string; summary: Record<string, unknown>; clauses: Array<Record<string, unknown>> };
    expect(j.target).toBe('fake<&>');
    expect(Object.keys(j.summary)).toEqual(expect.arrayContaining(['runs', 'clauses', 'deviceMust', 'byChapter', 'byLevel', 'failures']));
    expect(j.clauses.length).toBe(idx.clauses.filter((c) => c.inScope).length);
    for (const c of j.clauses) expect(Object.keys(c)).toEqual(expect.arrayContaining(['id', 'role', 'level', 'verdict', 'checks']));
  });

  it('combines per clause: FAIL wins, per-clause overrides apply, uncovered clauses are UNCHECKED', () => {
    const by = new Map(rep.clauses.map((c) => [c.id, c]));
    expect(by.get('rng.dev-op.device.1')!.verdict).toBe('FAIL');
    expect(by.get('rng.dev-op.device.1')!.checks.map((c) => c.check)).toEqual(['a', 'b']);
    expect(by.get('basic.dev-reset.device.1')!.verdict).toBe('FAIL');
    expect(by.get('basic.dev-reset.device.2')!.verdict).toBe('SKIP');
    expect(by.get('pci.isr.device.1')!.verdict).toBe('SKIP');
    expect(by.get('pci.isr.device.2')!.verdict).toBe('UNCHECKED');
    expect(rep.summary.runs.FAIL).toBe(1);
    expect(rep.summary.runs.WEDGED).toBe(1);
    expect(rep.summary.failures.length).toBe(2);
    const dm = rep.summary.deviceMust;
    expect(dm.checked).toBe(dm.total - dm.counts.UNCHECKED);
    expect(formatReport(rep)).toContain('device-side MUST/MUST NOT coverage');
  });

  it('JUnit XML is well formed with failure / error / skipped elements and escaped text', () => {
    const x = toJUnit(suite);
    expect(wellFormed(x)).toBe(true);
    expect(wellFormed('<a><b></a></b>')).toBe(false);
    expect(x).toContain('<failure message="broke &lt;here&gt; &amp; &quot;there&quot;" type="FAIL"/>');
    expect(x).toContain('<error message="hung" type="WEDGED"/>');
    expect(x).toContain('<skipped message="no"/>');
    expect(x).toMatch(/<testsuites [^>]*tests="4" failures="1" errors="1" skipped="1"/);
  });
});
