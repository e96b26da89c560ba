/**
 * `virtiokit conformance`: run the spec-conformance suite (src/conformance/) against a target and
 * print the per-chapter summary; optionally write the JSON report and JUnit XML, or print the
 * clause-index coverage (`--coverage`, tests citing clause ids).
 */
import { writeFileSync } from 'node:fs';
import { UsageError, type FlagSpec } from './args.js';
import type { Command } from './command.js';
import { loadClauses } from '../conformance/clauses.js';
import { runCoverageCli } from '../conformance/coverage.js';
import { CHECKS } from '../conformance/registry.js';
import { buildReport, formatReport, toJUnit } from '../conformance/report.js';
import { runSuite } from '../conformance/runner.js';
import { openTarget } from '../conformance/targets/remote.js';
import type { DeviceKind, TransportKind } from '../conformance/check.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'target', type: 'string', valueName: 'TARGET', description: 'inproc (default), vfio-user:SOCKET or vhost-user:SOCKET[,device=blk][,disk=FILE]' },
  { name: 'device', type: 'choice', choices: ['blk', 'net', 'rng', 'console'], description: 'only this device type (default: all the target has)' },
  { name: 'transport', type: 'choice', choices: ['pci', 'mmio', 'vhost-user'], description: 'only this transport (default: all the target has)' },
  { name: 'swiotlb', type: 'choice', choices: ['on', 'off'], description: 'only with / without a SWIOTLB window (default: both)' },
  { name: 'clauses', type: 'string', valueName: 'PATTERN', description: "only checks covering a matching clause id ('*' wildcard, else substring)" },
  { name: 'timeout', type: 'int', valueName: 'MS', min: 50, max: 600000, description: 'time limit per check (default 3000)' },
  { name: 'json', type: 'string', valueName: 'FILE', description: 'write the JSON report (per-clause verdicts)' },
  { name: 'junit', type: 'string', valueName: 'FILE', description: 'write JUnit XML' },
  { name: 'unchecked', type: 'boolean', description: 'list device MUST/MUST NOT clauses without a verdict' },
  { name: 'coverage', type: 'boolean', description: 'print the clause-index coverage of the tests instead of running checks' },
];

/** The command table entry. */
export const conformanceCommand: Command = {
  path: ['conformance'],
  summary: 'run the virtio spec-conformance suite against a device',
  description: [
    'Runs every applicable check with a fresh device and a time limit, and reports per clause:',
    'PASS, REJECT (bad input refused as the spec allows), FAIL, WEDGED (stopped answering), SKIP',
    '(not applicable, with the reason) or UNCHECKED (no check). Exit code 1 when anything FAILs or WEDGEs.',
  ].join('\n'),
  flags: FLAGS,
  async run(args, io) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument '${args.positionals[0]}'`);
    const f = args.flags;
    if (f.coverage === true) {
      return runCoverageCli(f.unchecked === true ? ['--untested'] : [], (s) => io.out(s));
    }
    const target = await openTarget(typeof f.target === 'string' ? f.target : 'inproc');
    try {
      const suite = await runSuite({
        target,
        checks: CHECKS,
        ...(typeof f.device === 'string' ? { devices: [f.device as DeviceKind] } : {}),
        ...(typeof f.transport === 'string' ? { transports: [f.transport as TransportKind] } : {}),
        ...(typeof f.swiotlb === 'string' ? { swiotlb: [f.swiotlb === 'on'] } : {}),
        ...(typeof f.clauses === 'string' ? { clauses: f.clauses } : {}),
        ...(typeof f.timeout === 'number' ? { timeoutMs: f.timeout } : {}),
      });
      const report = buildReport(suite, loadClauses());
      io.out(`${formatReport(report, { unchecked: f.unchecked === true })}\n`);
      if (typeof f.json === 'string') writeFileSync(f.json, `${JSON.stringify(report, null, 2)}\n`);
      if (typeof f.junit === 'string') writeFileSync(f.junit, toJUnit(suite));
      return report.summary.runs.FAIL + report.summary.runs.WEDGED > 0 ? 1 : 0;
    } finally {
      await target.close?.();
    }
  },
};
