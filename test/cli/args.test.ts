import { describe, expect, it } from 'vitest';
import { formatFlags, parseArgs, UsageError, type FlagSpec } from '../../src/cli/args.js';
import { isVirtioError } from '../../src/errors.js';

const SPECS: FlagSpec[] = [
  { name: 'json', type: 'string', valueName: 'FILE', description: 'json file' },
  { name: 'quick', type: 'boolean', description: 'quick' },
  { name: 'rounds', type: 'int', valueName: 'N', min: 1, max: 50, description: 'rounds' },
  { name: 'ring', type: 'choice', choices: ['split', 'packed', 'both'], description: 'ring' },
];

function usageError(argv: string[]): string {
  try {
    parseArgs(argv, SPECS, 'virtiokit bench queue');
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect(isVirtioError(e, 'INVALID_ARGUMENT')).toBe(true);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error(`expected a UsageError for ${JSON.stringify(argv)}`);
}

describe('CLI argument parser', () => {
  it('parses every kind of option, in both spellings', () => {
    const a = parseArgs(['--json', 'out.json', '--quick', '--rounds=7', '--ring', 'packed'], SPECS);
    expect(a.flags).toEqual({ json: 'out.json', quick: true, rounds: 7, ring: 'packed' });
    expect(a.positionals).toEqual([]);
    expect(a.help).toBe(false);
  });

  it('keeps positionals, honours -- and recognises -h/--help', () => {
    const a = parseArgs(['x', '--quick', '-h', '--', '--ring', 'y'], SPECS);
    expect(a.positionals).toEqual(['x', '--ring', 'y']);
    expect(a.help).toBe(true);
    expect(parseArgs(['--help'], SPECS).help).toBe(true);
  });

  it('leaves absent options undefined', () => {
    expect(parseArgs([], SPECS).flags).toEqual({});
  });

  it('rejects unknown long and short options, naming the command', () => {
    expect(usageError(['--bogus'])).toMatch(/unknown option --bogus for 'virtiokit bench queue'/);
    expect(usageError(['--bogus=1'])).toMatch(/unknown option --bogus/);
    expect(usageError(['-q'])).toMatch(/unknown option -q/);
  });

  it('rejects a missing value', () => {
    expect(usageError(['--rounds'])).toMatch(/--rounds needs a value \(N\)/);
    expect(usageError(['--json', '--quick'])).toMatch(/--json needs a value/);
    expect(usageError(['--json='])).toMatch(/--json needs a non-empty value/);
  });

  it('rejects non-integers and out-of-range integers', () => {
    expect(usageError(['--rounds', 'five'])).toMatch(/--rounds must be an integer between 1 and 50 \(got 'five'\)/);
    expect(usageError(['--rounds', '2.5'])).toMatch(/integer/);
    expect(usageError(['--rounds', '0'])).toMatch(/between 1 and 50/);
    expect(usageError(['--rounds', '-3'])).toMatch(/between 1 and 50 \(got '-3'\)/);
    expect(usageError(['--rounds', '51'])).toMatch(/between 1 and 50/);
    expect(usageError(['--rounds', '1e3'])).toMatch(/integer/);
    expect(usageError(['--rounds', '99999999999999999999'])).toMatch(/integer/);
  });

  it('rejects values outside a choice list, listing the choices', () => {
    expect(usageError(['--ring', 'ring'])).toBe("--ring must be one of split, packed, both (got 'ring')");
    expect(usageError(['--ring=SPLIT'])).toMatch(/one of split, packed, both/);
  });

  it('rejects a value on a boolean option and an option given twice', () => {
    expect(usageError(['--quick=yes'])).toMatch(/--quick takes no value/);
    expect(usageError(['--quick', '--quick'])).toMatch(/--quick given more than once/);
    expect(usageError(['--rounds', '2', '--rounds=3'])).toMatch(/--rounds given more than once/);
  });

  it('formats help lines for every option plus --help', () => {
    const lines = formatFlags(SPECS);
    expect(lines).toHaveLength(SPECS.length + 1);
    expect(lines.join('\n')).toMatch(/--ring split\|packed\|both/);
    expect(lines.join('\n')).toMatch(/--rounds N/);
    expect(lines.join('\n')).toMatch(/-h, --help/);
  });
});
