/** `virtiokit bench dma`: bounce vs direct vs message DMA on a RAM-backed virtio-blk (src/bench/dma/). */
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { VirtioError } from '../errors.js';
import { FULL, MODEL_NAMES, QUICK, type ModelName } from '../bench/dma/scenario.js';
import { UsageError, type FlagSpec } from './args.js';
import type { Command } from './command.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'json', type: 'string', valueName: 'FILE', description: 'write the JSON report to FILE (default bench-results/<timestamp>.json)' },
  { name: 'svg', type: 'string', valueName: 'FILE', description: 'write the throughput plot to FILE (default: next to the JSON, .svg)' },
  { name: 'quick', type: 'boolean', description: `short run (default): ${QUICK.rounds} rounds, 4 sizes, comparisons on 4 models — under a minute` },
  { name: 'full', type: 'boolean', description: `every size 512 B..256 KiB, depth 1 and 32, reads and writes, every comparison on every model, ${FULL.rounds} rounds` },
  { name: 'rounds', type: 'int', valueName: 'N', min: 1, max: 50, description: 'rounds (each model session in a fresh process per round)' },
  { name: 'models', type: 'string', valueName: 'LIST', description: `comma-separated models (default all: ${MODEL_NAMES.join(',')})` },
  { name: 'no-profile', type: 'boolean', description: 'do not CPU-profile missed targets' },
];

async function writable(path: string, what: string): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true });
    await access(dirname(path), constants.W_OK);
  } catch (e) {
    throw new VirtioError('INVALID_ARGUMENT', `cannot write the ${what} to ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The command table entry. */
export const benchDmaCommand: Command = {
  path: ['bench', 'dma'],
  summary: 'bounce vs direct vs message DMA: a RAM-backed virtio-blk per DMA model, with C memcpy limits',
  description: [
    'Drives a RAM-backed virtio-blk with the simulated guest driver under five DMA models:',
    'inproc (one process, direct DMA), inproc-swiotlb (one process, bounce window), and over vfio-user',
    'with a device process: direct (memfd DMA_MAP), swiotlb (window BAR only), message (DMA_READ/WRITE).',
    'Request sizes 512 B..256 KiB, depth 1 and 32, one and two queues, reads and writes; each comparison',
    'changes one dimension (model, split/packed, indirect, event idx, notification batching) and records',
    'the negotiated features. Per point: IOPS, MB/s, p50/p99 latency, CPU per request in each process,',
    'bytes copied per request, peak RSS. Beside them: C memcpy (bench/c/memcpy_bench.c, cc -O2) vs the',
    'bounce pool copy at the same sizes. Medians over rounds, ratios within a round. Writes a JSON report',
    'and an SVG plot (throughput vs size per model). Needs a C compiler (cc or $CC) and the native addon',
    'for the vfio-user models (they are reported as skipped otherwise).',
    'vhost-qsd / vhost-ours: the same vhost-user front-end (this process) against qemu-storage-daemon',
    '(skipped when not installed) and against virtiokit\'s own back-end, each on a disk file on tmpfs;',
    'their 4 KiB depth-32 read ratio is `vhost_user_vs_qsd` in the JSON.',
  ].join('\n'),
  flags: FLAGS,
  async run(args, io) {
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument '${args.positionals[0]}' for 'virtiokit bench dma'`);
    const f = args.flags;
    if (f['quick'] === true && f['full'] === true) throw new UsageError('--quick and --full exclude each other');
    const preset = f['full'] === true ? FULL : QUICK;
    let models: ModelName[] | undefined;
    if (typeof f['models'] === 'string') {
      models = f['models'].split(',').map((s) => s.trim()) as ModelName[];
      for (const m of models) if (!MODEL_NAMES.includes(m)) throw new UsageError(`--models: unknown model '${m}' (known: ${MODEL_NAMES.join(', ')})`);
    }
    // Loaded here, not at CLI start-up: every `virtiokit` process (device processes too) would
    // otherwise load the benchmark and the charting library.
    const { defaultReportPath, svgPathFor, writeDmaOutputs } = await import('../bench/dma/output.js');
    const { runDmaBench } = await import('../bench/dma/runner.js');
    const { formatDmaReport } = await import('../bench/dma/format.js');
    const t = new Date();
    const jsonPath = resolve(typeof f['json'] === 'string' ? f['json'] : defaultReportPath(t));
    const svgPath = resolve(typeof f['svg'] === 'string' ? f['svg'] : svgPathFor(jsonPath));
    await writable(jsonPath, 'JSON report');
    await writable(svgPath, 'SVG plot');
    const report = await runDmaBench({
      preset,
      ...(typeof f['rounds'] === 'number' ? { rounds: f['rounds'] } : {}),
      ...(models !== undefined ? { models } : {}),
      profile: f['no-profile'] !== true,
      progress: { write: (s) => process.stderr.write(s), isTTY: process.stderr.isTTY === true },
    });
    io.out(formatDmaReport(report));
    await writeDmaOutputs(report, jsonPath, svgPath);
    io.err(`JSON report: ${jsonPath}\nSVG plot: ${svgPath}`);
    return 0;
  },
};
