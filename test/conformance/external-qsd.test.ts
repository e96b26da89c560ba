/**
 * The conformance suite against two vhost-user-blk back-ends in other processes:
 * qemu-storage-daemon's vhost-user-blk export (libvhost-user) and virtiokit's own
 * `serve blk --vhost-user`. Both JSON reports go to `.ci-out/conformance/`; the test asserts the
 * runner kept its time limits and the reports are well formed, then prints the verdicts side by
 * side. A difference between the two is a finding to show, not a test failure.
 *
 * qemu-storage-daemon comes with Debian's qemu-system-common (bookworm); when it is missing the
 * test installs it with apt-get (root on Debian only), else it is skipped with the reason.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClauses } from '../../src/conformance/clauses.js';
import { CHECKS } from '../../src/conformance/registry.js';
import { buildReport, type ConformanceReport } from '../../src/conformance/report.js';
import { runSuite, type SuiteResult } from '../../src/conformance/runner.js';
import { VhostUserTarget } from '../../src/conformance/targets/vhost-user.js';
import { VERDICTS } from '../../src/conformance/verdict.js';
import { native } from '../../src/native/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = join(ROOT, '.ci-out', 'conformance');
/** Per-check limit; the whole file stays well under 90 s. */
const CHECK_MS = 2000;
/** Slack over the limit a check run may take (closing the DUT, a slow 2-core machine). */
const SLACK_MS = 2500;
const DISK_BYTES = 16 * 1024 * 1024;

function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Find qemu-storage-daemon, installing its Debian package when we may; else why not. */
function ensureQsd(): { path?: string; why: string } {
  const p = which('qemu-storage-daemon');
  if (p !== undefined) return { path: p, why: '' };
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || !existsSync('/etc/debian_version') || which('apt-get') === undefined) return { why: 'qemu-storage-daemon not installed (Debian: apt-get install qemu-system-common) and cannot install it here (needs root on Debian)' };
  try {
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=180', 'update', '-qq'], { stdio: 'ignore', timeout: 180_000 });
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=180', 'install', '-y', '-qq', '--no-install-recommends', 'qemu-system-common'], { stdio: 'ignore', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (e) {
    return { why: `apt-get install qemu-system-common failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
  }
  const q = which('qemu-storage-daemon');
  return q !== undefined ? { path: q, why: '' } : { why: 'qemu-system-common installed but no qemu-storage-daemon on PATH' };
}

function makeDisk(path: string): void {
  writeFileSync(path, '');
  const fd = openSync(path, 'r+');
  ftruncateSync(fd, DISK_BYTES);
  closeSync(fd);
}

/** Spawn a back-end and wait until its socket accepts connections. */
async function startBackend(cmd: string, args: string[], sock: string, name: string): Promise<{ child: ChildProcess; log: () => string; stop: () => Promise<void> }> {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const end = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before listening: ${log}`);
    if (existsSync(sock)) {
      try {
        native.close(native.connectUnix(sock));
        break;
      } catch {
        /* not yet */
      }
    }
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not listen on ${sock} within 20 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // The probe connection above ends a session at once; let the back-end accept the next client.
  await new Promise((r) => setTimeout(r, 100));
  return {
    child,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

interface Side {
  name: string;
  suite: SuiteResult;
  report: ConformanceReport;
  file: string;
}

async function runAgainst(name: string, sock: string, disk: string): Promise<Side> {
  const target = await VhostUserTarget.create(sock, { device: 'blk', disk, timeoutMs: 3000 });
  const suite = await runSuite({ target, checks: CHECKS, timeoutMs: CHECK_MS });
  const report = buildReport(suite, loadClauses());
  mkdirSync(OUT, { recursive: true });
  const file = join(OUT, `vhost-user-${name}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return { name, suite, report, file };
}

function expectWellFormed(s: Side): void {
  const back = JSON.parse(readFileSync(s.file, 'utf8')) as ConformanceReport;
  expect(back.target).toBe(s.report.target);
  expect(back.unknownClauses, `${s.name}: checks citing clause ids the index lacks`).toEqual([]);
  expect(back.clauses.length).toBeGreaterThan(0);
  for (const c of back.clauses) expect(VERDICTS, `${s.name}: clause ${c.id}`).toContain(c.verdict);
  const counts = back.summary.clauses;
  expect(VERDICTS.reduce((a, v) => a + counts[v], 0)).toBe(back.clauses.length);
  expect(back.summary.checkRuns).toBe(s.suite.runs.length);
  // The runner itself never hung: every run ended within its limit plus the closing slack.
  for (const r of s.suite.runs) expect(r.ms, `${s.name}: ${r.check} took ${r.ms} ms`).toBeLessThan(CHECK_MS + SLACK_MS);
  // vhost-user observations happened (not everything SKIPped).
  expect(s.suite.runs.some((r) => r.verdict === 'PASS')).toBe(true);
}

function countLine(s: Side): string {
  const runs = s.report.summary.runs;
  const cl = s.report.summary.clauses;
  return `${s.name.padEnd(6)} check runs: ${VERDICTS.filter((v) => v !== 'UNCHECKED').map((v) => `${v} ${runs[v]}`).join(', ')} | clauses: ${VERDICTS.map((v) => `${v} ${cl[v]}`).join(', ')} | ${s.suite.ms} ms`;
}

/** Side-by-side verdicts where the two differ (clauses) and the check runs whose verdicts differ. */
function diff(ours: Side, qsd: Side): string {
  const lines: string[] = [];
  const q = new Map(qsd.report.clauses.map((c) => [c.id, c]));
  const rows: Array<[string, string, string]> = [];
  for (const c of ours.report.clauses) {
    const o = q.get(c.id);
    if (o !== undefined && o.verdict !== c.verdict) rows.push([c.id, c.verdict, o.verdict]);
  }
  lines.push(`clauses with different verdicts: ${rows.length}`);
  lines.push(`${'clause'.padEnd(58)} ${'ours'.padEnd(9)} qsd`);
  for (const [id, a, b] of rows) lines.push(`${id.padEnd(58)} ${a.padEnd(9)} ${b}`);
  const qr = new Map(qsd.suite.runs.map((r) => [r.check, r]));
  const runRows = ours.suite.runs.filter((r) => {
    const o = qr.get(r.check);
    return o !== undefined && (o.verdict !== r.verdict || (r.verdict !== 'SKIP' && o.detail !== r.detail && /DEVIATION/.test(o.detail + r.detail)));
  });
  lines.push(`check runs with different verdicts: ${runRows.length}`);
  for (const r of runRows) {
    const o = qr.get(r.check)!;
    lines.push(`  ${r.check}\n    ours ${r.verdict}: ${r.detail}\n    qsd  ${o.verdict}: ${o.detail}`);
  }
  return lines.join('\n');
}

const qsdBin = native.available ? ensureQsd() : { why: `native addon not loaded (${native.unavailableReason ?? '?'})` };
if (qsdBin.path === undefined) console.log(`SKIP vhost-user conformance against qemu-storage-daemon: ${qsdBin.why}`);

describe.runIf(native.available)('conformance suite over vhost-user (external back-ends)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vk-vuconf-'));
  const sides: Partial<Record<'ours' | 'qsd', Side>> = {};
  const stops: Array<() => Promise<void>> = [];
  beforeAll(() => mkdirSync(OUT, { recursive: true }));
  afterAll(async () => {
    for (const s of stops) await s();
    rmSync(dir, { recursive: true, force: true });
  });

  it('[basic.split-vq.vq-used-ring.device.2][basic.dev-reset.device.1] virtiokit serve blk --vhost-user: report well formed, no check outlives its limit', { timeout: 60_000 }, async () => {
    const disk = join(dir, 'ours.raw');
    const sock = join(dir, 'ours.sock');
    makeDisk(disk);
    const b = await startBackend(process.execPath, ['--import', 'tsx', join(ROOT, 'test/guests/serve-entry.ts'), 'serve', 'blk', '--vhost-user', sock, '--disk', disk], sock, 'virtiokit serve');
    stops.push(b.stop);
    try {
      sides.ours = await runAgainst('ours', sock, disk);
    } finally {
      await b.stop();
    }
    expectWellFormed(sides.ours);
    console.log(countLine(sides.ours));
  });

  it.runIf(qsdBin.path !== undefined)('[basic.split-vq.vq-used-ring.device.2][basic.dev-reset.device.1] qemu-storage-daemon vhost-user-blk: report well formed, no check outlives its limit', { timeout: 60_000 }, async () => {
    const disk = join(dir, 'qsd.raw');
    const sock = join(dir, 'qsd.sock');
    makeDisk(disk);
    const b = await startBackend(
      qsdBin.path!,
      ['--blockdev', `driver=file,node-name=d,filename=${disk}`, '--export', `type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=${sock},writable=on`],
      sock,
      'qemu-storage-daemon',
    );
    stops.push(b.stop);
    try {
      sides.qsd = await runAgainst('qsd', sock, disk);
    } finally {
      await b.stop();
    }
    expectWellFormed(sides.qsd);
    console.log(countLine(sides.qsd));
  });

  it.runIf(qsdBin.path !== undefined)('side-by-side verdicts, virtiokit vs qemu-storage-daemon (differences are findings, printed)', () => {
    const { ours, qsd } = sides;
    expect(ours, 'the virtiokit run did not produce a report').toBeDefined();
    expect(qsd, 'the qemu-storage-daemon run did not produce a report').toBeDefined();
    // Same suite, same clause list: the comparison is like for like.
    expect(ours!.report.clauses.map((c) => c.id)).toEqual(qsd!.report.clauses.map((c) => c.id));
    console.log(`vhost-user conformance, reports in ${OUT}\n${countLine(ours!)}\n${countLine(qsd!)}\n${diff(ours!, qsd!)}`);
  });
});
