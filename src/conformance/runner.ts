/**
 * The conformance runner: every applicable check runs in isolation — a FRESH device under test
 * from the target, a time limit, its own abort signal — and ends with one verdict. A check that
 * does not settle within its limit is WEDGED and the runner moves on (the check's waits see the
 * abort and stop). A check that throws is FAIL with the error (a device that makes the check's
 * driver code throw — a missing capability, a refused FEATURES_OK — did not conform).
 *
 * Limitation: a device that spins synchronously inside a register access blocks this thread; only
 * an out-of-process target (vfio-user) turns that into a timeout.
 */
import { logger } from '../log.js';
import { isVirtioError } from '../errors.js';
import { TRANSPORT_KINDS, type Check, type CheckContext, type DeviceKind, type Dut, type TransportKind } from './check.js';
import { RawDriver } from './raw.js';
import type { Target } from './targets/target.js';
import type { CheckResult, ClauseOutcome, Verdict } from './verdict.js';

const log = logger('conformance');

/** Default time limit of one check (ms). */
export const DEFAULT_CHECK_TIMEOUT_MS = 3000;

/** One configuration the suite runs in. */
export interface SuiteConfig {
  readonly device: DeviceKind;
  readonly transport: TransportKind;
  readonly swiotlb: boolean;
}

/** One check run. */
export interface CheckRun extends SuiteConfig {
  readonly check: string;
  readonly title: string;
  readonly role: 'device' | 'driver';
  readonly clauses: readonly string[];
  readonly verdict: Exclude<Verdict, 'UNCHECKED'>;
  readonly detail: string;
  readonly perClause?: Readonly<Record<string, ClauseOutcome>>;
  /** Wall time in ms. */
  readonly ms: number;
  readonly notes: readonly string[];
}

/** Options of {@link runSuite}. */
export interface RunOptions {
  readonly target: Target;
  /** Checks to run (default: the registry). */
  readonly checks: readonly Check[];
  readonly devices?: readonly DeviceKind[];
  readonly transports?: readonly TransportKind[];
  readonly swiotlb?: readonly boolean[];
  /** Only checks covering a clause id matching this pattern (`*` wildcard, else substring). */
  readonly clauses?: string;
  /** Default per-check limit (ms). */
  readonly timeoutMs?: number;
  /** Called after each run (progress). */
  readonly onRun?: (r: CheckRun) => void;
}

/** Result of {@link runSuite}. */
export interface SuiteResult {
  readonly target: string;
  readonly configs: readonly SuiteConfig[];
  readonly runs: readonly CheckRun[];
  /** Ids of the checks considered (after the clause filter). */
  readonly checks: readonly string[];
  readonly ms: number;
}

/** Clause-pattern matcher: `*` is a wildcard; without one, a substring match. */
export function clauseMatcher(pattern: string | undefined): (id: string) => boolean {
  if (pattern === undefined || pattern === '') return () => true;
  if (!pattern.includes('*')) return (id) => id.includes(pattern);
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (id) => re.test(id);
}

/** Why `check` does not apply to `cfg`, or undefined when it does. */
export function notApplicable(check: Check, cfg: SuiteConfig): string | undefined {
  if (check.devices !== undefined && !check.devices.includes(cfg.device)) return `device type differs (check is for ${check.devices.join('/')}, device is ${cfg.device})`;
  const transports = check.transports ?? TRANSPORT_KINDS;
  if (cfg.transport === 'vhost-user' && !transports.includes('vhost-user')) {
    return `not observable over vhost-user: the check needs ${transports.join('/')} registers (device status, queue or interrupt registers, capabilities) that a vhost-user back-end does not have`;
  }
  if (!transports.includes(cfg.transport)) return `transport differs (check is for ${transports.join('/')}, transport is ${cfg.transport})`;
  if (check.swiotlb !== undefined && check.swiotlb !== cfg.swiotlb) return check.swiotlb ? 'needs a SWIOTLB window (run with --swiotlb on)' : 'applies only without a SWIOTLB window';
  return undefined;
}

function missingFeatures(check: Check, dut: Dut): number[] {
  if (check.needs === undefined || check.needs.length === 0) return [];
  const raw = RawDriver.open(dut);
  try {
    const offered = raw.readOffered();
    return check.needs.filter((b) => !offered.has(b));
  } finally {
    raw.close();
  }
}

/**
 * Run one check on a fresh device: open, feature gate, run with a time limit, close.
 * Never throws and never waits (much) longer than the limit.
 */
export async function runCheck(check: Check, target: Target, cfg: SuiteConfig, timeoutMs = DEFAULT_CHECK_TIMEOUT_MS): Promise<CheckRun> {
  const t0 = performance.now();
  const notes: string[] = [];
  const done = (res: CheckResult): CheckRun => ({
    ...cfg,
    check: check.id,
    title: check.title,
    role: check.role,
    clauses: check.clauses,
    verdict: res.verdict,
    detail: res.detail,
    ...(res.perClause !== undefined ? { perClause: res.perClause } : {}),
    ms: Math.round((performance.now() - t0) * 10) / 10,
    notes,
  });
  const na = notApplicable(check, cfg);
  if (na !== undefined) return done({ verdict: 'SKIP', detail: na });
  let dut: Dut;
  try {
    dut = await target.open({ device: cfg.device, transport: cfg.transport, swiotlb: cfg.swiotlb, ...(check.variant !== undefined ? { variant: check.variant } : {}) });
  } catch (e) {
    return done({ verdict: 'SKIP', detail: `target cannot build this device: ${errText(e)}` });
  }
  const limit = check.timeoutMs ?? timeoutMs;
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  try {
    const missing = missingFeatures(check, dut);
    if (missing.length > 0) return done({ verdict: 'SKIP', detail: `feature bit(s) ${missing.join(', ')} not offered` });
    const ctx: CheckContext = { dut, signal: ac.signal, waitMs: Math.max(50, Math.floor(limit / 3)), note: (t) => notes.push(t) };
    const timeout = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(() => {
        ac.abort();
        resolve({ verdict: 'WEDGED', detail: `no verdict within ${limit} ms: the device stopped answering (or the check waited forever)` });
      }, limit);
    });
    const res = await Promise.race([
      check.run(ctx).catch((e: unknown): CheckResult => ({ verdict: 'FAIL', detail: `check aborted: ${errText(e)}` })),
      timeout,
    ]);
    return done(res);
  } catch (e) {
    return done({ verdict: 'FAIL', detail: `check aborted: ${errText(e)}` });
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    ac.abort();
    try {
      await dut.close();
    } catch (e) {
      log('closing the DUT failed: %O', e);
    }
  }
}

function errText(e: unknown): string {
  if (isVirtioError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** The configurations a run covers (target capabilities ∩ filters). */
export function suiteConfigs(o: Pick<RunOptions, 'target' | 'devices' | 'transports' | 'swiotlb'>): SuiteConfig[] {
  const out: SuiteConfig[] = [];
  for (const device of o.target.devices) {
    if (o.devices !== undefined && !o.devices.includes(device)) continue;
    for (const transport of o.target.transports) {
      if (o.transports !== undefined && !o.transports.includes(transport)) continue;
      for (const swiotlb of o.target.swiotlbModes) {
        if (o.swiotlb !== undefined && !o.swiotlb.includes(swiotlb)) continue;
        out.push({ device, transport, swiotlb });
      }
    }
  }
  return out;
}

/** Run every applicable check in every configuration, one at a time. */
export async function runSuite(o: RunOptions): Promise<SuiteResult> {
  const t0 = performance.now();
  const match = clauseMatcher(o.clauses);
  const checks = o.checks.filter((c) => c.clauses.some(match));
  const configs = suiteConfigs(o);
  const runs: CheckRun[] = [];
  for (const cfg of configs) {
    for (const c of checks) {
      const r = await runCheck(c, o.target, cfg, o.timeoutMs);
      runs.push(r);
      o.onRun?.(r);
    }
  }
  return { target: o.target.name, configs, runs, checks: checks.map((c) => c.id), ms: Math.round(performance.now() - t0) };
}
