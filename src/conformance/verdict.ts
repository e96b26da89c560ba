/**
 * Verdicts of the conformance suite (modelled on virtio-villain's, `reference/anchors.md` §2.10).
 *
 * - PASS: the device (or driver) did what the clause asks.
 * - REJECT: the device refused a bad input in a way the spec allows (e.g. DEVICE_NEEDS_RESET plus
 *   a configuration-change notification after a malformed chain) and kept answering after reset.
 * - FAIL: an observation contradicts the clause.
 * - WEDGED: the device stopped answering within the time limit (a hung check ends as WEDGED; the
 *   runner goes on).
 * - SKIP: not applicable here, with the reason (feature not offered, device type differs, target
 *   cannot build the needed variant, no legacy interface).
 * - UNCHECKED: a clause no check covers (only in reports, never returned by a check).
 */

/** One verdict. */
export type Verdict = 'PASS' | 'REJECT' | 'FAIL' | 'WEDGED' | 'SKIP' | 'UNCHECKED';

/** All verdicts, in report order. */
export const VERDICTS: readonly Verdict[] = ['PASS', 'REJECT', 'FAIL', 'WEDGED', 'SKIP', 'UNCHECKED'];

/** Verdict for one clause inside a check result (overrides the check's verdict for that clause). */
export interface ClauseOutcome {
  readonly verdict: Exclude<Verdict, 'UNCHECKED'>;
  readonly detail: string;
}

/** What a check returns. */
export interface CheckResult {
  readonly verdict: Exclude<Verdict, 'UNCHECKED'>;
  /** What was observed (one line or a few). */
  readonly detail: string;
  /** Per-clause verdicts when a check covers clauses with different outcomes (default: the check's verdict). */
  readonly perClause?: Readonly<Record<string, ClauseOutcome>>;
}

/** PASS with what was observed. */
export const pass = (detail: string, perClause?: Record<string, ClauseOutcome>): CheckResult => (perClause ? { verdict: 'PASS', detail, perClause } : { verdict: 'PASS', detail });
/** REJECT: refused as the spec allows. */
export const reject = (detail: string): CheckResult => ({ verdict: 'REJECT', detail });
/** FAIL with the contradicting observation. */
export const fail = (detail: string): CheckResult => ({ verdict: 'FAIL', detail });
/** SKIP with the reason. */
export const skip = (reason: string): CheckResult => ({ verdict: 'SKIP', detail: reason });
/** WEDGED: stopped answering. */
export const wedged = (detail: string): CheckResult => ({ verdict: 'WEDGED', detail });

/**
 * Severity used to combine several outcomes for one clause (several checks, several
 * configurations): FAIL > WEDGED > PASS > REJECT > SKIP > UNCHECKED. A clause is FAIL when any run
 * failed, PASS when at least one run passed and none failed, SKIP only when nothing applied.
 */
const RANK: Readonly<Record<Verdict, number>> = { FAIL: 5, WEDGED: 4, PASS: 3, REJECT: 2, SKIP: 1, UNCHECKED: 0 };

/** Combine two verdicts for the same clause. */
export function combineVerdicts(a: Verdict, b: Verdict): Verdict {
  return RANK[b] > RANK[a] ? b : a;
}

/** True for verdicts that count as "checked" in the coverage figure (everything but UNCHECKED). */
export function isChecked(v: Verdict): boolean {
  return v !== 'UNCHECKED';
}

/** True for verdicts backed by an observation of the behaviour (PASS, REJECT, FAIL, WEDGED). */
export function isObserved(v: Verdict): boolean {
  return v === 'PASS' || v === 'REJECT' || v === 'FAIL' || v === 'WEDGED';
}
