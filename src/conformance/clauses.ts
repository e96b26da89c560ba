/**
 * The clause index: one entry per normative statement of VIRTIO 1.4 (chapters 2–6, the
 * parts virtiokit cares about) plus the 2025 VIRTIO_F_SWIOTLB RFC, with stable ids.
 *
 * The data lives in `spec/clauses/<area>.json` (one file per area). Facts (id, role, level,
 * chapter, section number/title, legacy flag) come from the shared extraction
 * (`../shared/spec/normative.json`, `swiotlb-rfc.json`); each `summary` is our own one-line
 * paraphrase — the spec text itself is not part of this repository.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtioError } from '../errors.js';

/** Which side a statement binds. */
export type ClauseRole = 'device' | 'driver';

/**
 * Strongest RFC 2119 keyword in the statement. `-` marks an RFC sentence that states a fact
 * without a keyword (kept because implementations depend on it).
 */
export type ClauseLevel = 'MUST' | 'MUST NOT' | 'SHOULD' | 'SHOULD NOT' | 'MAY' | '-';

/** All roles, in report order. */
export const CLAUSE_ROLES: readonly ClauseRole[] = ['device', 'driver'];
/** All levels, strongest first (report order). */
export const CLAUSE_LEVELS: readonly ClauseLevel[] = ['MUST', 'MUST NOT', 'SHOULD', 'SHOULD NOT', 'MAY', '-'];

/**
 * Id areas, in report order. An id is `<area>.<section-slug>[.<sub-slug>].<role>.<n>`.
 * `vsock` is indexed but out of virtiokit's scope.
 */
export const CLAUSE_AREAS = [
  'basic',
  'init',
  'pci',
  'mmio',
  'net',
  'blk',
  'console',
  'rng',
  'vsock',
  'reserved',
  'rfc-swiotlb',
] as const;

/** One id area (first id segment). */
export type ClauseArea = (typeof CLAUSE_AREAS)[number];

/** Shape of a complete clause id (area, one or more slugs, role, ordinal). */
export const CLAUSE_ID_RE = new RegExp(`^(?:${CLAUSE_AREAS.join('|')})(?:\\.[a-z0-9-]+)+\\.(?:device|driver)\\.[0-9]+$`);

/** One indexed normative statement. */
export interface Clause {
  /** Stable id, e.g. `basic.split-vq.indirect-desc.device.1`. */
  readonly id: string;
  /** First id segment. */
  readonly area: ClauseArea;
  readonly role: ClauseRole;
  readonly level: ClauseLevel;
  /** Chapter title (for transports and device types: the transport / device type title). */
  readonly chapter: string;
  /** Computed section number of the requirements block (null for RFC statements). */
  readonly section_number: string | null;
  /** Short section title (last heading of the path). */
  readonly section: string;
  /** True for legacy-interface statements. */
  readonly legacy: boolean;
  /** False for areas virtiokit does not implement (vsock); they are left out of coverage figures. */
  readonly inScope: boolean;
  /** One-line paraphrase (our own words) of what the statement requires. */
  readonly summary: string;
}

/** The loaded index. */
export interface ClauseIndex {
  /** All clauses in file/area order. */
  readonly clauses: readonly Clause[];
  /** Lookup by id. */
  readonly byId: ReadonlyMap<string, Clause>;
  /** Directory the index was read from. */
  readonly dir: string;
}

/** True for an id of the right shape (does not say whether it exists). */
export function isClauseIdShape(id: string): boolean {
  return CLAUSE_ID_RE.test(id);
}

/**
 * Checks one raw entry; returns a list of problems (empty when valid).
 * Used by the loader and by the index tests.
 */
export function validateClause(raw: unknown): string[] {
  const errs: string[] = [];
  if (typeof raw !== 'object' || raw === null) return ['entry is not an object'];
  const e = raw as Record<string, unknown>;
  const id = typeof e.id === 'string' ? e.id : '';
  if (!id) errs.push('missing id');
  else if (!CLAUSE_ID_RE.test(id)) errs.push(`id ${id} does not have the shape <area>.<slug>….<role>.<n>`);
  if (!(CLAUSE_AREAS as readonly string[]).includes(e.area as string)) errs.push(`${id}: bad area ${String(e.area)}`);
  else if (id && !id.startsWith(`${String(e.area)}.`)) errs.push(`${id}: area ${String(e.area)} does not match the id`);
  if (!(CLAUSE_ROLES as readonly string[]).includes(e.role as string)) errs.push(`${id}: bad role ${String(e.role)}`);
  else if (id && !id.includes(`.${String(e.role)}.`)) errs.push(`${id}: role ${String(e.role)} does not match the id`);
  if (!(CLAUSE_LEVELS as readonly string[]).includes(e.level as string)) errs.push(`${id}: bad level ${String(e.level)}`);
  if (typeof e.chapter !== 'string' || !e.chapter) errs.push(`${id}: missing chapter`);
  if (e.section_number !== null && (typeof e.section_number !== 'string' || !/^[0-9]+(\.[0-9]+)*$/.test(e.section_number)))
    errs.push(`${id}: bad section_number ${String(e.section_number)}`);
  if (typeof e.section !== 'string' || !e.section) errs.push(`${id}: missing section`);
  if (typeof e.legacy !== 'boolean') errs.push(`${id}: legacy must be a boolean`);
  if (typeof e.inScope !== 'boolean') errs.push(`${id}: inScope must be a boolean`);
  if (typeof e.summary !== 'string' || e.summary.trim().length < 10) errs.push(`${id}: summary is missing or too short`);
  else if (/\n/.test(e.summary)) errs.push(`${id}: summary must be one line`);
  return errs;
}

/**
 * Finds the directory holding `spec/clauses/` by walking up from this module
 * (works from `src/` under tsx and from a build output directory alike).
 */
export function defaultClauseDir(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = resolve(start);
  for (;;) {
    const candidate = join(dir, 'spec', 'clauses');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) {
      throw new VirtioError('INVALID_ARGUMENT', `no spec/clauses directory found above ${start}; pass the directory explicitly`);
    }
    dir = up;
  }
}

/**
 * Loads every `*.json` file of the clause directory (default: the repository's `spec/clauses`).
 * Throws `VirtioError('INVALID_ARGUMENT')` naming the file and entry when an entry is malformed
 * or an id appears twice.
 */
export function loadClauses(dir: string = defaultClauseDir()): ClauseIndex {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort((a, b) => areaRank(a.slice(0, -5)) - areaRank(b.slice(0, -5)) || a.localeCompare(b));
  const clauses: Clause[] = [];
  const byId = new Map<string, Clause>();
  for (const f of files) {
    const path = join(dir, f);
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(path, 'utf8'));
    } catch (cause) {
      throw new VirtioError('INVALID_ARGUMENT', `${path} is not valid JSON; fix or regenerate it (scripts/gen-clauses.ts)`, { cause });
    }
    if (!Array.isArray(data)) throw new VirtioError('INVALID_ARGUMENT', `${path} must hold a JSON array of clause entries`);
    for (const raw of data as unknown[]) {
      const errs = validateClause(raw);
      if (errs.length) throw new VirtioError('INVALID_ARGUMENT', `${path}: ${errs.join('; ')}`);
      const c = raw as Clause;
      if (byId.has(c.id)) throw new VirtioError('INVALID_ARGUMENT', `${path}: clause id ${c.id} appears twice in the index`);
      byId.set(c.id, c);
      clauses.push(c);
    }
  }
  return { clauses, byId, dir };
}

function areaRank(area: string): number {
  const i = (CLAUSE_AREAS as readonly string[]).indexOf(area);
  return i < 0 ? CLAUSE_AREAS.length : i;
}
