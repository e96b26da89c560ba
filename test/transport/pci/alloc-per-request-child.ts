/**
 * Child process of alloc-per-request.test.ts: JS-heap bytes allocated per request on the
 * in-process virtio-pci path (simulated driver → notify BAR write → device → MSI-X → driver).
 *
 * Run with `node --expose-gc --no-concurrent-recompilation --min-semi-space-size=64 --max-semi-space-size=64 --import tsx
 * test/transport/pci/alloc-per-request-child.ts <blk|rng> <off|on> <packed|split> [requests] [native|js]`
 * (device, SWIOTLB, ring layout, requests per round, bounce copier). Prints one JSON line:
 * `{ bytesPerRequest, gcs, rounds, msi, modelStats, ... }`. With ALLOC_PROFILE=1 it also prints the
 * allocation sites of one more round to stderr.
 *
 * Shape: one queue, 4 requests in flight, each completion re-posted at once with a kick per
 * request — with the device in this thread every kick completes the request and sends an MSI-X
 * message before it returns (as in the DMA benchmark's in-process models).
 *
 * Method: warm up (every function on the path optimized), gc() twice, then per round read the heap
 * space sizes, run `requests` requests, read them again — with a GC profiler running so that a
 * collection in between (which would hide allocations) is seen and reported. The cost of the
 * measurement itself (reading the statistics, starting the profiler) is taken from an empty round
 * and subtracted. The smallest of several rounds is reported: allocation per request is
 * deterministic, what varies between rounds is only one-off work (a late optimization's data).
 */
import v8 from 'node:v8';
import { BlkDevice, RamBackend, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../../src/device/blk/index.js';
import { RngDevice } from '../../../src/device/rng/index.js';
import type { VirtioDeviceModel } from '../../../src/device/types.js';
import { VirtioPciDriver } from '../../../src/driver/driver.js';
import type { VirtqueueDriver } from '../../../src/driver/virtqueue.js';
import { createPciDevice } from '../../../src/embed/index.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { native } from '../../../src/native/index.js';
import { SgList } from '../../../src/queue/types.js';
import { nativeCopiers } from '../../../src/swiotlb/copy.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const [devName = 'blk', swiotlb = 'off', ring = 'packed', nArg = '20000', copier = 'native'] = process.argv.slice(2);
const N = Number(nArg);
const DEPTH = 4;
const DATA = 512;
const RAM_BASE = 0x10_0000;
const RAM_SIZE = 8 << 20;

const ram = new AddressSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: new SharedArrayBuffer(RAM_SIZE), name: 'ram' }], 'guest-ram');
const bounce = swiotlb === 'on';
const model: VirtioDeviceModel = devName === 'rng' ? new RngDevice() : new BlkDevice(new RamBackend(1 << 20));
const dev = await createPciDevice({
  model,
  guestRam: bounce ? new AddressSpace([], 'nothing') : ram,
  swiotlb: bounce ? { policy: 'required', size: 1 << 20, backing: 'shared' } : { policy: 'off' },
  queue: { packed: ring === 'packed', eventIdx: true, indirect: true },
});
// The bounce pool's copiers as the DMA benchmark sets them (src/bench/dma/session.ts): native when
// the addon loads. The default JS copier makes a subarray view per copy by design (src/swiotlb).
const copiers = bounce && copier === 'native' && native.available ? nativeCopiers(native) : undefined;
const drv = VirtioPciDriver.open(dev, { guestRam: ram, ...(copiers !== undefined ? { bounce: { copy: copiers.copy, copyBatch: copiers.copyBatch } } : {}) });
if (drv.swiotlb !== bounce) throw new Error(`SWIOTLB negotiated ${drv.swiotlb}, wanted ${bounce}`);
const vq: VirtqueueDriver = drv.queue(0);

// Per-slot requests, built once: blk alternates write / read of 512 bytes; rng asks for 64 bytes.
const alloc = (n: number): number => drv.ram.alloc(n, 64);
const sgs: SgList[] = [];
for (let k = 0; k < DEPTH; k++) {
  const sg = new SgList(3);
  if (devName === 'rng') {
    sg.in(alloc(64), 64);
  } else {
    const hdr = alloc(16);
    const h = new Uint8Array(16); // type (le32), reserved, sector (le64): a disjoint range per slot
    h[0] = k % 2 === 0 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    h[8] = k * 8;
    ram.write(hdr, h);
    sg.out(hdr, 16);
    if (k % 2 === 0) sg.out(alloc(DATA), DATA);
    else sg.in(alloc(DATA), DATA);
    sg.in(alloc(1), 1);
  }
  sgs.push(sg);
}

for (let k = 0; k < DEPTH; k++) {
  if (!vq.add(sgs[k]!, k)) throw new Error('initial add failed');
  vq.kick();
}

/** Complete `n` requests, re-posting each at once with a kick per request (one MSI each). */
function run(n: number): void {
  let done = 0;
  while (done < n) {
    let progress = 0;
    while (done < n && vq.poll()) {
      const k = vq.lastToken;
      progress++;
      done++;
      if (!vq.add(sgs[k]!, k)) throw new Error('re-post failed');
      vq.kick();
    }
    if (progress === 0) throw new Error(`no completion (${vq.inFlight} in flight)`);
  }
}

const COUNTED = new Set(['new_space', 'new_large_object_space', 'old_space', 'large_object_space']);
function used(): { young: number; old: number } {
  let young = 0;
  let old = 0;
  for (const s of v8.getHeapSpaceStatistics()) {
    if (!COUNTED.has(s.space_name)) continue;
    if (s.space_name.startsWith('new')) young += s.space_used_size;
    else old += s.space_used_size;
  }
  return { young, old };
}

interface Round {
  young: number;
  old: number;
  gcs: number;
}
function round(n: number): Round {
  gc!();
  gc!();
  const prof = new v8.GCProfiler();
  prof.start();
  const a = used();
  run(n);
  const b = used();
  const st = prof.stop();
  return { young: b.young - a.young, old: b.old - a.old, gcs: st.statistics.length };
}

run(10000); // warm-up: every function on the path optimized
const base: Round[] = [];
const rounds: Round[] = [];
for (let r = 0; r < 5; r++) {
  base.push(round(0));
  rounds.push(round(N));
}
const min = (xs: number[]): number => Math.min(...xs);
const b0 = min(base.map((r) => r.young + r.old));
const totals = rounds.map((r) => r.young + r.old - b0);
const best = totals.indexOf(min(totals));
const out = {
  device: devName,
  swiotlb,
  ring,
  requests: N,
  native: native.available,
  copier: copiers !== undefined ? 'native' : 'js',
  bytesPerRequest: totals[best]! / N,
  rounds: rounds.map((r, i) => ({ bytesPerRequest: totals[i]! / N, young: r.young, old: r.old, gcs: r.gcs })),
  baseline: b0,
  gcs: rounds[best]!.gcs,
  msi: drv.stats.msi,
  modelStats: (model as { stats?: unknown }).stats,
};
process.stdout.write(JSON.stringify(out) + '\n');

// ALLOC_PROFILE=1: where the bytes come from (sampling heap profiler, every allocation sampled).
if (process.env.ALLOC_PROFILE === '1') {
  const { Session } = await import('node:inspector/promises');
  const s = new Session();
  s.connect();
  await s.post('HeapProfiler.enable');
  await s.post('HeapProfiler.startSampling', { samplingInterval: 8, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  run(N);
  const { profile } = (await s.post('HeapProfiler.stopSampling')) as { profile: { head: ProfNode } };
  interface ProfNode { callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }; selfSize: number; children: ProfNode[] }
  const rows: Array<[number, string]> = [];
  const walk = (n: ProfNode, stack: string[]): void => {
    const f = n.callFrame;
    const here = [...stack, `${f.functionName || '(anon)'} ${f.url.replace(/.*\/src\//, 'src/')}:${f.lineNumber + 1}:${f.columnNumber + 1}`];
    if (n.selfSize > 0) rows.push([n.selfSize, here.slice(-8).reverse().join(' <- ')]);
    for (const c of n.children) walk(c, here);
  };
  walk(profile.head, []);
  rows.sort((a, b) => b[0] - a[0]);
  for (const [sz, st] of rows.slice(0, 25)) process.stderr.write(`${(sz / N).toFixed(1)} B/req  ${st}\n`);
}
drv.close();
dev.close();
