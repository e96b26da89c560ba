/**
 * SCRATCH probe (to be deleted): per-request cost of the SWIOTLB bounce path.
 *   npx tsx src/bench/dma/bounce-probe.ts MODE N
 * MODE: map4k | mapreq | copy | req-direct | req-swiotlb
 */
import { performance, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import inspector from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { VIRTIO_BLK_T_IN } from '../../device/blk/constants.js';
import { createGuestRam } from '../../memory/ram.js';
import { native } from '../../native/index.js';
import { SgList } from '../../queue/types.js';
import { nativeCopiers, OP_STRIDE } from '../../swiotlb/copy.js';
import { BouncePool } from '../../swiotlb/pool.js';
import { SwiotlbWindow } from '../../swiotlb/window.js';
import { INPROC_MODEL, INPROC_SWIOTLB_MODEL } from './model-inproc.js';
import { RAM_BASE, sizingFor } from './models.js';
import { openDriver } from './session.js';
import { SlotBuffers } from './workload.js';

const mode = process.argv[2] ?? 'map4k';
const N = Number(process.argv[3] ?? 100000);
const WARM = Number(process.env.WARM ?? 20000);

function heap(): { used: number; total: number; gcs: number } {
  const h = v8.getHeapStatistics();
  const ns = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')!;
  return { used: h.used_heap_size, total: h.total_heap_size, gcs: ns.space_used_size };
}

async function main(): Promise<void> {
  let run: (n: number) => void;
  let close: () => Promise<void> | void = () => undefined;
  if (mode === 'map4k' || mode === 'mapreq' || mode === 'copy' || mode === 'qmap4k' || mode === 'qmapreq') {
    const cop = nativeCopiers(native);
    const ram = createGuestRam([{ base: RAM_BASE, size: 8 << 20, name: 'ram' }], { backing: 'memfd' });
    const win = await SwiotlbWindow.allocate(4 << 20, { backing: 'auto', base: 0x1_0000_0000 });
    console.error(`window buffer: ${Object.prototype.toString.call(win.buffer)}`);
    const bp = new BouncePool({ window: win, ram: ram.space, copy: cop.copy, copyBatch: cop.copyBatch });
    const sgs: SgList[] = [];
    for (let b = 0; b < 32; b++) {
      const sg = new SgList(3);
      if (mode.endsWith('map4k')) sg.out(RAM_BASE + b * 8192, 4096);
      else sg.out(RAM_BASE + b * 8192 + 4096, 16).in(RAM_BASE + b * 8192, 4096).in(RAM_BASE + b * 8192 + 4096 + 16, 1);
      sgs.push(sg);
    }
    const out = new SgList(3);
    const wr = win.asAddressSpace().regions[0]!;
    const region = ram.space.regions[0]!;
    const bufs: ArrayBufferLike[] = [wr.buffer, region.buffer];
    const ops = new Float64Array(OP_STRIDE);
    ops[0] = 0;
    ops[2] = 1;
    ops[4] = 4096;
    if (mode === 'copy') {
      run = (n) => {
        for (let i = 0, b = 0; i < n; i++) {
          ops[1] = wr.offset + b * 8192;
          ops[3] = region.offset + b * 8192;
          cop.copyBatch(bufs, ops, 1);
          if (++b === 32) b = 0;
        }
      };
    } else if (mode.startsWith('q')) {
      const outs: SgList[] = [];
      for (let b = 0; b < 32; b++) outs.push(new SgList(3));
      run = (n) => {
        for (let i = 0; i < n; i += 32) {
          for (let b = 0; b < 32; b++) bp.queueMapSg(sgs[b]!, outs[b]!);
          bp.flush();
          for (let b = 0; b < 32; b++) bp.queueUnmapSg(outs[b]!);
          bp.flush();
        }
      };
    } else {
      run = (n) => {
        for (let i = 0, b = 0; i < n; i++) {
          bp.mapSg(sgs[b]!, out);
          bp.unmapSg(out);
          if (++b === 32) b = 0;
        }
      };
    }
    close = () => {
      win.close();
      ram.close();
    };
  } else {
    const model = mode === 'req-direct' ? INPROC_MODEL : INPROC_SWIOTLB_MODEL;
    const plan = { maxSize: 4096, maxDepth: 32 };
    const sess = await model.open(sizingFor(plan));
    const drv = openDriver(sess, { ring: (process.env.RING as 'split' | 'packed') ?? 'split', indirect: false, eventIdx: true, queues: 1 });
    const bufs = new SlotBuffers(drv.ram, 1, 32, 4096);
    const vq = drv.queue(0);
    const space = sess.guestRam;
    const D = 32;
    const sgs: SgList[] = [];
    const stU8: Uint8Array[] = [];
    const stOff = new Float64Array(D);
    for (let k = 0; k < D; k++) {
      const ctl = bufs.ctl[k]!;
      const data = bufs.data[k]!;
      const ri = space.resolve(ctl, 64, true);
      const r = space.regions[ri]!;
      const off = space.off;
      r.dv.setUint32(off, VIRTIO_BLK_T_IN, true);
      r.dv.setUint32(off + 8, k * 8, true);
      stU8.push(r.u8);
      stOff[k] = off + 16;
      sgs.push(new SgList(3).out(ctl, 16).in(data, 4096).in(ctl + 16, 1));
    }
    for (let k = 0; k < D; k++) {
      stU8[k]![stOff[k]!] = 0xff;
      if (!vq.add(sgs[k]!, k)) throw new Error('add failed');
    }
    vq.kick();
    let errors = 0;
    run = (n) => {
      let done = 0;
      while (done < n) {
        let added = 0;
        for (let c = 0; c < D && vq.poll(); c++) {
          const k = vq.lastToken;
          if (stU8[k]![stOff[k]!] !== 0) errors++;
          done++;
          stU8[k]![stOff[k]!] = 0xff;
          if (!vq.add(sgs[k]!, k)) throw new Error('re-add failed');
          added++;
        }
        if (added > 0) vq.kick();
        else throw new Error('no progress');
      }
      if (errors > 0) throw new Error(`${errors} errors`);
    };
    close = async () => {
      drv.close();
      await sess.close();
    };
  }
  run(WARM);
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) g();
  let gcs = 0;
  const obs = new PerformanceObserver((l) => (gcs += l.getEntries().length));
  obs.observe({ entryTypes: ['gc'] });
  if (process.env.MARK) console.log('MEASURE-START');
  const insp = process.env.HEAPPROF ? new inspector.Session() : undefined;
  if (insp) {
    insp.connect();
    insp.post('HeapProfiler.enable');
    insp.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  }
  const h0 = heap();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  run(N);
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const h1 = heap();
  if (process.env.MARK) console.log('MEASURE-END');
  if (insp) {
    insp.post('HeapProfiler.stopSampling', (err, r) => {
      if (err === null) writeFileSync(process.env.HEAPPROF!, JSON.stringify((r as { profile: unknown }).profile));
    });
  }
  await new Promise((r) => setTimeout(r, 10));
  obs.disconnect();
  console.log(
    JSON.stringify({
      mode,
      n: N,
      wallNsPerOp: +(((t1 - t0) * 1e6) / N).toFixed(1),
      cpuNsPerOp: +(((c1.user + c1.system) * 1e3) / N).toFixed(1),
      heapUsedDeltaBytesPerOp: +((h1.used - h0.used) / N).toFixed(3),
      heapTotalDelta: h1.total - h0.total,
      gcs,
      newSpaceBytesPerOp: +((h1.gcs - h0.gcs) / N).toFixed(3),
    }),
  );
  await close();
}

await main();
