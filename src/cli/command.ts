/**
 * The CLI's command contract. Each command is one entry of the table in commands.ts: a path of
 * words (`['bench', 'queue']`), its options, and a `run` that returns the exit code.
 */
import type { FlagSpec, ParsedArgs } from './args.js';

/** Where a command writes. */
export interface CliIO {
  /** Normal output (tables, results). */
  out(text: string): void;
  /** Progress and errors. */
  err(text: string): void;
}

/** One CLI command. */
export interface Command {
  /** Words after `virtiokit`, e.g. `['bench', 'queue']`. */
  path: readonly string[];
  /** One line for the command list. */
  summary: string;
  /** Longer help text (paragraphs), shown by `--help`. */
  description: string;
  /** Positional arguments (for help), e.g. `[FILE]`; none when absent. */
  positionalUsage?: string;
  flags: readonly FlagSpec[];
  /** Run with parsed arguments; resolves to the exit code. Throw VirtioError for failures. */
  run(args: ParsedArgs, io: CliIO): Promise<number>;
}
