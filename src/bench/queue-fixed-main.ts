/**
 * Fixed-work single-thread run of the queue benchmark workload, for instruction counting
 * (perf-limits.md §4.2), which is immune to machine load:
 *
 *   for n in 2000 6000; do
 *     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *       node --single-threaded dist/bench/queue-fixed-main.js split 3 $n
 *   done
 *   # instructions per chain = (Ir(6000) - Ir(2000)) / (4000 * 64)
 *
 * Arguments: ring (split|packed), descriptors per chain (1|3), batches of 64 chains, and optionally
 * the queue API style (visit|batch|chain, default visit). VIRTIOKIT_EXTRA_QUEUES=N creates and uses N
 * other queue pairs first (the counts must not change: each queue runs its own specialised loops).
 * Prints the chains completed; exits 1 on a failure.
 */
import { BenchDevice, BenchDriver, effectiveApi } from './queue-agents.js';
import { describeSinks, makeDeviceQueue, makeDriverQueue } from './queue-impl.js';
import { BENCH_BATCH, BENCH_MEM_SIZE } from './queue-layout.js';

function main(): number {
  const [ring, descsArg, batchesArg, apiArg] = process.argv.slice(2);
  const descs = descsArg === '3' ? 3 : descsArg === '1' ? 1 : 0;
  const batches = Number(batchesArg);
  if ((ring !== 'split' && ring !== 'packed') || descs === 0 || !Number.isSafeInteger(batches) || batches < 1 || (apiArg !== undefined && apiArg !== 'batch' && apiArg !== 'chain' && apiArg !== 'visit')) {
    process.stderr.write('usage: queue-fixed-main split|packed 1|3 BATCHES [visit|batch|chain]\n');
    return 2;
  }
  const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
  // Other queues first, as in a VMM with several: the measured queue must not depend on being alone.
  const extra = process.env.VIRTIOKIT_EXTRA_QUEUES ?? '0';
  if (!/^\d{1,3}$/.test(extra)) {
    process.stderr.write(`queue-fixed-main: VIRTIOKIT_EXTRA_QUEUES must be a number of queues (0-999), got ${JSON.stringify(extra)}\n`);
    return 2;
  }
  for (let i = 0; i < Number(extra); i++) {
    const g = new SharedArrayBuffer(BENCH_MEM_SIZE);
    const other = new BenchDriver(makeDriverQueue(ring, g).drv, g, descs, 'visit');
    const ev = makeDeviceQueue(ring, g);
    const dev = new BenchDevice(ev.dq, ev.space, descs, 'visit');
    other.post(BENCH_BATCH);
    dev.batch();
    other.reclaim();
  }
  const d = makeDriverQueue(ring, guest);
  const v = makeDeviceQueue(ring, guest);
  const api = effectiveApi(apiArg === 'chain' || apiArg === 'batch' ? apiArg : 'visit', v.dq, d.drv);
  const driver = new BenchDriver(d.drv, guest, descs, api);
  const device = new BenchDevice(v.dq, v.space, descs, api);
  let done = 0;
  for (let i = 0; i < batches; i++) {
    if (driver.post(BENCH_BATCH) !== BENCH_BATCH || device.batch() !== BENCH_BATCH) {
      process.stderr.write(`queue-fixed-main: batch ${i} failed: ${describeSinks(v.sink, d.sink)}\n`);
      return 1;
    }
    done += driver.reclaim();
  }
  if (driver.badStatus !== 0) {
    process.stderr.write(`queue-fixed-main: ${driver.badStatus} status bytes not written\n`);
    return 1;
  }
  process.stdout.write(`${done} chains (${api} API)\n`);
  return 0;
}

process.exitCode = main();
