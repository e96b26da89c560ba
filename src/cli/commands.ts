/**
 * The command table of `virtiokit`. Add a command by writing a {@link Command} in its own file
 * and listing it here; `main.ts` routes, parses options and prints help from this table.
 */
import { benchDmaCommand } from './bench-dma.js';
import { benchQueueCommand } from './bench-queue.js';
import type { Command } from './command.js';
import { conformanceCommand } from './conformance.js';
import { serveCommand } from './serve.js';

/** Every command, in help order. */
export const COMMANDS: readonly Command[] = [benchQueueCommand, benchDmaCommand, serveCommand, conformanceCommand];
