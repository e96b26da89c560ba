/** `virtiokit bench queue`: the queue throughput benchmark (src/bench/queue-bench.ts). */
import { constants } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { VirtioError } from '../errors.js';
import { DEFAULT_MEASURE, DEFAULT_ROUNDS, expandCells, QUICK_MEASURE, QUICK_ROUNDS, runQueueBench } from '../bench/queue-bench.js';
import { formatTable } from '../bench/queue-report.js';
import type { Agents, ChainDescs, RingKind } from '../bench/queue-layout.js';
import { UsageError, type FlagSpec } from './args.js';
import type { Command } from './command.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'json', type: 'string', valueName: 'FILE', description: 'also write the full report as JSON to FILE' },
  { name: 'quick', type: 'boolean', description: `short run: ${QUICK_ROUNDS} rounds of ${QUICK_MEASURE.reps} × ${QUICK_MEASURE.ms} ms (about 10 s)` },
  { name: 'rounds', type: 'int', valueName: 'N', min: 1, max: 50, description: `rounds, each in fresh processes (default ${DEFAULT_ROUNDS}; --quick: ${QUICK_ROUNDS})` },
  { name: 'ring', type: 'choice', choices: ['split', 'packed', 'both'], description: 'ring layout (default both)' },
  { name: 'descs', type: 'choice', choices: ['1', '3', 'both'], description: 'descriptors per chain: 1, or 3 as a virtio-blk read (default both)' },
  { name: 'agents', type: 'choice', choices: ['1', '2', 'both'], description: '1 = one thread; 2 = driver and device on two threads (default both)' },
  { name: 'sides', type: 'boolean', description: 'two agents: also time each side (driver post, reclaim, device batch) in JS and C, ns per chain; two clock reads per call' },
  { name: 'api', type: 'choice', choices: ['visit', 'batch', 'chain'], description: 'queue calls: visit = popEach/addEach/collectEach, one pass per chain (default); batch = popBatch/addBatch/getUsedBatch; chain = pop/add/getUsed' },
];

function pick<T>(v: unknown, both: readonly T[], one: (s: string) => T): T[] {
  if (v === undefined || v === 'both') return [...both];
  return [one(String(v))];
}

/** The command table entry. */
export const benchQueueCommand: Command = {
  path: ['bench', 'queue'],
  summary: 'device-side throughput of the split and packed queues vs a C reference',
  description: [
    'Measures how many descriptor chains per second the library\'s device-side queues process',
    '(queue size 256, batches of 64; 1-descriptor chains and virtio-blk-like 3-descriptor chains),',
    'single-threaded and with driver and device on two threads over shared memory, next to the',
    'same algorithm in a small C program (bench/c/queue_bench.c, built with cc -O2 on first use).',
    'Prints median [min–max] over rounds; every JS/C ratio is taken within one round.',
    'Needs a C compiler (cc, or set CC). Two-agent numbers need both CPU cores free.',
  ].join('\n'),
  flags: FLAGS,
  async run(args, io) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument '${args.positionals[0]}' for 'virtiokit bench queue'`);
    const f = args.flags;
    const quick = f['quick'] === true;
    const rounds = typeof f['rounds'] === 'number' ? f['rounds'] : quick ? QUICK_ROUNDS : DEFAULT_ROUNDS;
    const cells = expandCells(
      pick<RingKind>(f['ring'], ['split', 'packed'], (s) => s as RingKind),
      pick<ChainDescs>(f['descs'], [1, 3], (s) => (s === '3' ? 3 : 1)),
      pick<Agents>(f['agents'], [1, 2], (s) => (s === '2' ? 2 : 1)),
    );
    const jsonPath = typeof f['json'] === 'string' ? resolve(f['json']) : undefined;
    if (jsonPath !== undefined) {
      // Fail before a minute of measuring, not after.
      try {
        await mkdir(dirname(jsonPath), { recursive: true });
        await access(dirname(jsonPath), constants.W_OK);
      } catch (e) {
        throw new VirtioError('INVALID_ARGUMENT', `cannot write the JSON report to ${jsonPath}: ${(e as Error).message}`, { cause: e });
      }
    }
    const base = quick ? QUICK_MEASURE : DEFAULT_MEASURE;
    const report = await runQueueBench({
      cells,
      rounds,
      measure: f['sides'] === true ? { ...base, sides: true } : base,
      api: f['api'] === 'chain' || f['api'] === 'batch' ? f['api'] : 'visit',
      progress: (line) => io.err(line),
    });
    io.out(formatTable(report));
    if (jsonPath !== undefined) {
      try {
        await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
      } catch (e) {
        throw new VirtioError('INVALID_ARGUMENT', `cannot write the JSON report to ${jsonPath}: ${(e as Error).message}`, { cause: e });
      }
      io.err(`JSON report written to ${jsonPath}`);
    }
    return 0;
  },
};
