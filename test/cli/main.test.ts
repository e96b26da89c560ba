import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Command, CliIO } from '../../src/cli/command.js';
import { run } from '../../src/cli/main.js';
import { VirtioError } from '../../src/errors.js';

function capture(): CliIO & { outText: string[]; errText: string[] } {
  const outText: string[] = [];
  const errText: string[] = [];
  return { outText, errText, out: (t) => outText.push(t), err: (t) => errText.push(t) };
}

async function cli(argv: string[], commands?: Command[]): Promise<{ code: number; out: string; err: string }> {
  const io = capture();
  const code = commands ? await run(argv, io, commands) : await run(argv, io);
  return { code, out: io.outText.join('\n'), err: io.errText.join('\n') };
}

function expectOneLineError(r: { code: number; err: string }, re: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.err.trim().split('\n')).toHaveLength(1);
  expect(r.err).toMatch(re);
  expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
}

describe('virtiokit CLI routing', () => {
  it('--help lists the commands (exit 0)', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/usage: virtiokit <command>/);
    expect(r.out).toMatch(/bench queue/);
  });

  it('no arguments prints the help on stderr with exit 2', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bench queue/);
  });

  it('bench queue --help shows the options (exit 0)', async () => {
    for (const argv of [['bench', 'queue', '--help'], ['bench', 'queue', '-h'], ['help', 'bench', 'queue']]) {
      const r = await cli(argv);
      expect(r.code).toBe(0);
      for (const f of ['--json FILE', '--quick', '--rounds N', '--ring split|packed|both', '--descs 1|3|both', '--agents 1|2|both', '--api visit|batch|chain']) expect(r.out).toContain(f);
    }
  });

  it('unknown commands, missing subcommands and unknown global options: one line, exit 2', async () => {
    expectOneLineError(await cli(['frobnicate']), /unknown command 'frobnicate'/);
    expectOneLineError(await cli(['bench']), /'bench' needs a subcommand: queue/);
    expectOneLineError(await cli(['bench', 'nope']), /unknown command 'bench nope'/);
    expectOneLineError(await cli(['--bogus']), /unknown option --bogus/);
  });

  it('bad bench queue options: one line, exit 2, before any measuring', async () => {
    expectOneLineError(await cli(['bench', 'queue', '--rounds', '0']), /virtiokit bench queue: --rounds must be an integer between 1 and 50/);
    expectOneLineError(await cli(['bench', 'queue', '--ring', 'ring']), /--ring must be one of split, packed, both/);
    expectOneLineError(await cli(['bench', 'queue', '--descs', '2']), /--descs must be one of 1, 3, both/);
    expectOneLineError(await cli(['bench', 'queue', '--agents', '3']), /--agents must be one of 1, 2, both/);
    expectOneLineError(await cli(['bench', 'queue', '--json']), /--json needs a value/);
    expectOneLineError(await cli(['bench', 'queue', '--api', 'fast']), /--api must be one of visit, batch, chain/);
    expectOneLineError(await cli(['bench', 'queue', '--fast']), /unknown option --fast/);
    expectOneLineError(await cli(['bench', 'queue', 'extra']), /unexpected argument 'extra'/);
  });

  it('routes to the longest matching command path and passes parsed flags', async () => {
    const seen: unknown[] = [];
    const mk = (path: string[]): Command => ({
      path,
      summary: path.join(' '),
      description: 'd',
      flags: [{ name: 'n', type: 'int', min: 0, max: 9, description: 'n' }],
      run: async (a) => {
        seen.push([path.join(' '), a.flags['n']]);
        return 0;
      },
    });
    const table = [mk(['a']), mk(['a', 'b'])];
    expect((await cli(['a', 'b', '--n', '3'], table)).code).toBe(0);
    expect((await cli(['a', '--n=4'], table)).code).toBe(0);
    expect(seen).toEqual([['a b', 3], ['a', 4]]);
  });

  it('a failing command prints one line with the error code and exits 1', async () => {
    const failing: Command = {
      path: ['boom'],
      summary: 's',
      description: 'd',
      flags: [],
      run: async () => {
        throw new VirtioError('NATIVE_UNAVAILABLE', 'no C compiler: install gcc');
      },
    };
    const r = await cli(['boom'], [failing]);
    expect(r.code).toBe(1);
    expect(r.err).toBe('virtiokit boom: no C compiler: install gcc [NATIVE_UNAVAILABLE]');
  });
});

describe('bin/virtiokit.js', () => {
  it('says to build when dist/ is missing (exit 1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'virtiokit-bin-'));
    try {
      const src = fileURLToPath(new URL('../../bin/virtiokit.js', import.meta.url));
      const copy = join(dir, 'bin', 'virtiokit.js');
      await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 'bin')));
      copyFileSync(src, copy);
      const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(process.execPath, [copy, '--help'], (err, _out, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stderr }));
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/dist\/cli\/main\.js is missing; run "npm run build"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
