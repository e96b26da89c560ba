/**
 * `virtiokit` entry: routes the words of the command line to a command of the table in
 * commands.ts, parses its options, prints help, and turns failures into one-line messages:
 * exit 2 for a bad command line, 1 for a failed command (stack traces only with
 * DEBUG=virtiokit:*).
 */
import { pathToFileURL } from 'node:url';
import { isVirtioError } from '../errors.js';
import { formatFlags, parseArgs, UsageError } from './args.js';
import type { CliIO, Command } from './command.js';
import { COMMANDS } from './commands.js';

/** stdout / stderr. */
export const STDIO: CliIO = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

function globalHelp(commands: readonly Command[]): string {
  const rows = commands.map((c) => [c.path.join(' '), c.summary] as const);
  const w = Math.max(...rows.map((r) => r[0].length));
  return [
    'virtiokit — emulate virtio devices on Node.js and measure what isolating them costs',
    '',
    'usage: virtiokit <command> [options]',
    '',
    'commands:',
    ...rows.map(([p, s]) => `  ${p.padEnd(w)}  ${s}`),
    '',
    "run 'virtiokit <command> --help' for a command's options",
  ].join('\n');
}

function commandHelp(c: Command): string {
  const name = `virtiokit ${c.path.join(' ')}`;
  return [`usage: ${name} [options]${c.positionalUsage ? ` ${c.positionalUsage}` : ''}`, '', c.description, '', 'options:', ...formatFlags(c.flags)].join('\n');
}

/** Find the command whose path is the longest prefix of the leading words. */
function route(words: readonly string[], commands: readonly Command[]): Command | undefined {
  let found: Command | undefined;
  for (const c of commands) {
    if (c.path.length <= words.length && c.path.every((w, i) => words[i] === w) && (found === undefined || c.path.length > found.path.length)) found = c;
  }
  return found;
}

/**
 * Run the CLI.
 * @param argv arguments after the script name
 * @returns the exit code (0 ok, 1 command failed, 2 bad command line)
 */
export async function run(argv: readonly string[], io: CliIO = STDIO, commands: readonly Command[] = COMMANDS): Promise<number> {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (words[0] === 'help') {
    const c = route(words.slice(1), commands);
    io.out(c ? commandHelp(c) : globalHelp(commands));
    return 0;
  }
  const cmd = route(words, commands);
  if (cmd === undefined) {
    if (words.length === 0) {
      if (wantsHelp) {
        io.out(globalHelp(commands));
        return 0;
      }
      if (argv.length === 0) {
        io.err(globalHelp(commands));
        return 2;
      }
      io.err(`virtiokit: unknown option ${argv[0]} (see 'virtiokit --help')`);
      return 2;
    }
    // A group such as `bench`: list its subcommands.
    const group = commands.filter((c) => words.every((w, i) => c.path[i] === w));
    if (group.length > 0) {
      const subs = group.map((c) => c.path.slice(words.length).join(' ')).join(', ');
      if (wantsHelp) {
        io.out(globalHelp(group));
        return 0;
      }
      io.err(`virtiokit: '${words.join(' ')}' needs a subcommand: ${subs} (see 'virtiokit --help')`);
      return 2;
    }
    io.err(`virtiokit: unknown command '${words.join(' ')}' (see 'virtiokit --help')`);
    return 2;
  }
  const name = `virtiokit ${cmd.path.join(' ')}`;
  let args;
  try {
    args = parseArgs(argv.slice(cmd.path.length), cmd.flags, name);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${name}: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (args.help) {
    io.out(commandHelp(cmd));
    return 0;
  }
  try {
    return await cmd.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${name}: ${e.message}`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    io.err(`${name}: ${isVirtioError(e) ? `${msg} [${e.code}]` : msg}`);
    if (/virtiokit/.test(process.env['DEBUG'] ?? '') && e instanceof Error && e.stack) io.err(e.stack);
    return 1;
  }
}

// Run directly (`npx tsx src/cli/main.ts bench queue`) as well as through bin/virtiokit.js.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await run(process.argv.slice(2));
}
