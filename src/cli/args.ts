/**
 * A small, strict command-line parser: `--name value`, `--name=value`, boolean `--name`, `-h`
 * for `--help`, `--` to end options. Every mistake is a {@link UsageError} with a one-line message
 * (the CLI prints it and exits with code 2).
 */
import { VirtioError } from '../errors.js';

/** A bad command line. */
export class UsageError extends VirtioError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'UsageError';
  }
}

/** Kinds of option values. */
export type FlagType = 'boolean' | 'string' | 'int' | 'choice';

/** Declares one option. */
export interface FlagSpec {
  /** Long name without dashes, e.g. `rounds`. */
  name: string;
  type: FlagType;
  /** One-line help text. */
  description: string;
  /** Placeholder in help (`FILE`, `N`). */
  valueName?: string;
  /** Allowed values for `choice`. */
  choices?: readonly string[];
  /** Inclusive bounds for `int`. */
  min?: number;
  max?: number;
  /** `string` only: may be given several times; the values are joined with ',' in order. */
  repeatable?: boolean;
}

/** Parsed option values by name. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** Result of {@link parseArgs}. */
export interface ParsedArgs {
  /** Non-option arguments in order. */
  positionals: string[];
  /** Option values (absent options are undefined). */
  flags: FlagValues;
  /** True when `--help` / `-h` was given. */
  help: boolean;
}

const INT_RE = /^[+-]?\d+$/;

function parseValue(spec: FlagSpec, raw: string): string | number {
  switch (spec.type) {
    case 'int': {
      const lo = spec.min ?? Number.MIN_SAFE_INTEGER;
      const hi = spec.max ?? Number.MAX_SAFE_INTEGER;
      const range = spec.min !== undefined || spec.max !== undefined ? ` between ${lo} and ${hi}` : '';
      if (!INT_RE.test(raw)) throw new UsageError(`--${spec.name} must be an integer${range} (got '${raw}')`);
      const n = Number(raw);
      if (!Number.isSafeInteger(n) || n < lo || n > hi) throw new UsageError(`--${spec.name} must be an integer${range} (got '${raw}')`);
      return n;
    }
    case 'choice': {
      const choices = spec.choices ?? [];
      if (!choices.includes(raw)) throw new UsageError(`--${spec.name} must be one of ${choices.join(', ')} (got '${raw}')`);
      return raw;
    }
    case 'string':
      if (raw === '') throw new UsageError(`--${spec.name} needs a non-empty value`);
      return raw;
    default:
      throw new UsageError(`--${spec.name} takes no value`);
  }
}

/**
 * Parse `argv` (without the node executable and script) against `specs`.
 * @param context how to name the command in error messages (e.g. `virtiokit bench queue`)
 * @throws UsageError on an unknown option, a missing or bad value, or an option given twice
 */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], context = 'virtiokit'): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flags: FlagValues = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') {
      help = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const spec = byName.get(name);
      if (spec === undefined) throw new UsageError(`unknown option --${name} for '${context}' (see '${context} --help')`);
      if (flags[name] !== undefined && !(spec.repeatable === true && spec.type === 'string')) throw new UsageError(`option --${name} given more than once`);
      if (spec.type === 'boolean') {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`);
        flags[name] = true;
        continue;
      }
      let raw: string;
      if (eq >= 0) {
        raw = a.slice(eq + 1);
      } else {
        const next = argv[i + 1];
        if (next === undefined || (next.startsWith('-') && next !== '-' && !INT_RE.test(next))) {
          throw new UsageError(`option --${name} needs a value${spec.valueName ? ` (${spec.valueName})` : ''}`);
        }
        raw = next;
        i++;
      }
      const value = parseValue(spec, raw);
      const prev = flags[name];
      flags[name] = prev !== undefined && typeof prev === 'string' && typeof value === 'string' ? `${prev},${value}` : value;
      continue;
    }
    if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a} for '${context}' (options are long: --name; see '${context} --help')`);
    positionals.push(a);
  }
  return { positionals, flags, help };
}

/** Help lines for a set of options. */
export function formatFlags(specs: readonly FlagSpec[]): string[] {
  const rows: Array<[string, string]> = specs.map((s) => {
    const value = s.type === 'boolean' ? '' : ` ${s.type === 'choice' ? (s.choices ?? []).join('|') : (s.valueName ?? 'VALUE')}`;
    return [`--${s.name}${value}`, s.description] as [string, string];
  });
  rows.push(['-h, --help', 'show this help']);
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([l, d]) => `  ${l.padEnd(w)}  ${d}`);
}
