/** Test helpers for the split ring: a guest RAM space, paired driver/device, raw ring writers. */
import { AddressSpace } from '../../../src/memory/space.js';
import type { RegionSpec } from '../../../src/memory/region.js';
import { RecordingSink } from '../../../src/device/choke.js';
import { ChainBatch, DescChain, SgBatch, type QueueConfig, type DriverQueueOptions } from '../../../src/queue/types.js';
import { createSplitDeviceQueue, type SplitDeviceQueue } from '../../../src/queue/split/device.js';
import { SplitDriverQueue } from '../../../src/queue/split/driver.js';
import { layoutSplitRings, type SplitRingLayout } from '../../../src/queue/split/layout.js';

/**
 * Which code path the env's queues use, so one test file can run the same cases through several:
 * - 'pop': the per-chain API as written (pop / add / getUsed);
 * - 'batch': pop, add and getUsed are routed through popBatch / addBatch / getUsedBatch (one chain per call);
 * - 'slow': the per-chain API with the fast paths switched off (the complete walkers only);
 * - 'visit': pop, add and getUsed are routed through popEach / addEach / collectEach (one chain per
 *   call; the visitor keeps the chain in flight so the test completes it with pushUsed as usual).
 * Set it at the top of a test file, before the tests run (each test file has its own module instance).
 */
export type PathMode = 'pop' | 'batch' | 'slow' | 'visit';
let pathMode: PathMode = 'pop';
export function setPathMode(m: PathMode): void {
  pathMode = m;
}
/** The path mode in force (tests of per-call chain capacity do not apply to popEach). */
export function getPathMode(): PathMode {
  return pathMode;
}

/** Switch a queue's fast path off (test hook: the private `fastOk` flag of the split queues). */
export function disableFastPath(q: SplitDeviceQueue | SplitDriverQueue): void {
  (q as unknown as { fastOk: boolean }).fastOk = false;
}

function routeThroughBatches(dev: SplitDeviceQueue, drv: SplitDriverQueue): void {
  dev.pop = (c: DescChain): boolean => {
    const b = new ChainBatch(1, c.len.length);
    if (dev.popBatch(b, 1) !== 1) return false;
    b.copyChain(0, c);
    return true;
  };
  drv.add = (sg, token) => {
    const b = new SgBatch(1, Math.max(sg.count, 1)).begin(token);
    for (let i = 0; i < sg.count; i++) {
      if (i < sg.readable) b.out(sg.addr[i]!, sg.len[i]!);
      else b.in(sg.addr[i]!, sg.len[i]!);
    }
    return drv.addBatch(b) === 1 ? b.chain[3]! : -1;
  };
  const tok = new Int32Array(1);
  const len = new Uint32Array(1);
  drv.getUsed = () => {
    if (drv.getUsedBatch(tok, len, 1) !== 1) return false;
    (drv as unknown as { lastToken: number }).lastToken = tok[0]!;
    (drv as unknown as { lastLen: number }).lastLen = len[0]!;
    return true;
  };
}

/** Copy a DescChain (the visitor's chain is only valid during the call). */
export function copyDescChain(from: DescChain, to: DescChain): void {
  to.head = from.head;
  to.count = from.count;
  to.readable = from.readable;
  to.readableBytes = from.readableBytes;
  to.writableBytes = from.writableBytes;
  to.descCount = from.descCount;
  for (let i = 0; i < from.count; i++) {
    to.region[i] = from.region[i]!;
    to.offset[i] = from.offset[i]!;
    to.addr[i] = from.addr[i]!;
    to.len[i] = from.len[i]!;
  }
}

function routeThroughVisitors(dev: SplitDeviceQueue, drv: SplitDriverQueue): void {
  dev.pop = (c: DescChain): boolean => {
    let got = false;
    const n = dev.popEach(
      {
        visit(ch: DescChain): number {
          if (ch.count > c.len.length) throw new Error(`test chain capacity ${c.len.length} < ${ch.count} segments`);
          copyDescChain(ch, c);
          got = true;
          return -1; // keep in flight: the test completes it with pushUsed
        },
      },
      1,
    );
    return n === 1 && got;
  };
  drv.add = (sg, token) => {
    const filler = {
      token,
      readable: sg.readable,
      fill(k: number, addr: Float64Array, len: Uint32Array): number {
        if (k > 0) return 0;
        for (let i = 0; i < sg.count; i++) {
          addr[i] = sg.addr[i]!;
          len[i] = sg.len[i]!;
        }
        return sg.count;
      },
    };
    if (drv.addEach(filler, 1) !== 1) return -1;
    // addEach does not report heads: read the one it just put in the avail ring (test-only peek).
    const q = drv as unknown as { availShadow: number; avail: Uint16Array; mask: number };
    return q.avail[2 + ((q.availShadow - 1) & q.mask)]!;
  };
  drv.getUsed = () => {
    let got = false;
    drv.collectEach(
      {
        used(token: number, len: number): void {
          (drv as unknown as { lastToken: number }).lastToken = token;
          (drv as unknown as { lastLen: number }).lastLen = len;
          got = true;
        },
      },
      1,
    );
    return got;
  };
}

export const RAM_BASE = 0x10000;
export const RAM_SIZE = 0x100000;

/** An AddressSpace that records every resolve and its outcome. */
export class RecordingSpace extends AddressSpace {
  calls = 0;
  readonly bad: string[] = [];
  override resolve(addr: number, len: number, write: boolean): number {
    this.calls++;
    const r = super.resolve(addr, len, write);
    if (r >= 0) {
      const reg = this.regions[r]!;
      const inside = addr >= reg.base && addr + len <= reg.base + reg.size && this.off === reg.offset + (addr - reg.base) && !(write && reg.readOnly);
      if (!inside) this.bad.push(`resolve(0x${addr.toString(16)}, ${len}, ${write}) -> region ${r} off ${this.off}`);
    }
    return r;
  }
}

export interface EnvOptions {
  size?: number;
  eventIdx?: boolean;
  indirect?: boolean;
  inOrder?: boolean;
  maxChainSegments?: number;
  /** Extra regions (e.g. a read-only one) added to the space. */
  extra?: RegionSpec[];
  driverOpts?: DriverQueueOptions;
  arrayBuffer?: boolean;
  noDriver?: boolean;
}

export interface Env {
  space: RecordingSpace;
  ram: Uint8Array;
  layout: SplitRingLayout;
  cfg: QueueConfig;
  dev: SplitDeviceQueue;
  drv: SplitDriverQueue;
  devSink: RecordingSink;
  drvSink: RecordingSink;
  /** First byte of the free data area after the rings. */
  data: number;
  raw: RawRing;
}

export function makeEnv(o: EnvOptions = {}): Env {
  const size = o.size ?? 16;
  const buf = o.arrayBuffer ? new ArrayBuffer(RAM_SIZE) : new SharedArrayBuffer(RAM_SIZE);
  const space = new RecordingSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: buf, name: 'ram' }, ...(o.extra ?? [])], 'guest');
  const layout = layoutSplitRings(RAM_BASE, size);
  const cfg: QueueConfig = {
    index: 3,
    size,
    maxSize: Math.max(size, 256),
    desc: layout.desc,
    driver: layout.driver,
    device: layout.device,
    eventIdx: o.eventIdx ?? false,
    indirect: o.indirect ?? false,
    inOrder: o.inOrder ?? false,
  };
  if (o.maxChainSegments !== undefined) cfg.maxChainSegments = o.maxChainSegments;
  const devSink = new RecordingSink();
  const drvSink = new RecordingSink();
  const drv = new SplitDriverQueue(space, cfg, drvSink, o.driverOpts);
  const dev = createSplitDeviceQueue(space, cfg, devSink) as SplitDeviceQueue;
  if (dev === null) throw new Error(`setup failed: ${devSink.last?.message}`);
  if (pathMode === 'batch') routeThroughBatches(dev, drv);
  if (pathMode === 'visit') routeThroughVisitors(dev, drv);
  if (pathMode === 'slow') {
    disableFastPath(dev);
    disableFastPath(drv);
  }
  const data = RAM_BASE + Math.ceil(layout.bytes / 4096) * 4096;
  return { space, ram: new Uint8Array(buf), layout, cfg, dev, drv, devSink, drvSink, data, raw: new RawRing(space, layout, size) };
}

/** Writes rings directly, as a (possibly malicious) driver or device would. */
export class RawRing {
  availIdx = 0;
  constructor(
    readonly space: AddressSpace,
    readonly layout: SplitRingLayout,
    readonly size: number,
  ) {}
  /** Write descriptor `i` (addr may exceed 2^53 via hi). */
  desc(i: number, addr: number, len: number, flags: number, next = 0, hi?: number): void {
    const a = this.layout.desc + 16 * i;
    this.space.writeU32(a, hi === undefined ? addr % 2 ** 32 : addr >>> 0);
    this.space.writeU32(a + 4, hi ?? Math.floor(addr / 2 ** 32));
    this.space.writeU32(a + 8, len);
    this.space.writeU16(a + 12, flags);
    this.space.writeU16(a + 14, next);
  }
  /** Write an indirect-table entry at bus address `table`. */
  indirect(table: number, i: number, addr: number, len: number, flags: number, next = 0): void {
    const a = table + 16 * i;
    this.space.writeU64(a, addr);
    this.space.writeU32(a + 8, len);
    this.space.writeU16(a + 12, flags);
    this.space.writeU16(a + 14, next);
  }
  /** Put heads into the avail ring and publish the new idx. */
  offer(...heads: number[]): void {
    for (const h of heads) {
      this.space.writeU16(this.layout.driver + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.space.writeU16(this.layout.driver + 2, this.availIdx);
  }
  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.space.writeU16(this.layout.driver + 2, this.availIdx);
  }
  availFlags(v: number): void {
    this.space.writeU16(this.layout.driver, v);
  }
  usedEvent(v: number): void {
    this.space.writeU16(this.layout.driver + 4 + 2 * this.size, v);
  }
  availEvent(v: number): void {
    this.space.writeU16(this.layout.device + 4 + 8 * this.size, v);
  }
  usedFlags(v: number): void {
    this.space.writeU16(this.layout.device, v);
  }
  usedIdx(): number {
    return this.space.readU16(this.layout.device + 2);
  }
  setUsedIdx(v: number): void {
    this.space.writeU16(this.layout.device + 2, v);
  }
  usedElem(i: number): { id: number; len: number } {
    const a = this.layout.device + 4 + 8 * (i % this.size);
    return { id: this.space.readU32(a), len: this.space.readU32(a + 4) };
  }
  writeUsedElem(i: number, id: number, len: number): void {
    const a = this.layout.device + 4 + 8 * (i % this.size);
    this.space.writeU32(a, id);
    this.space.writeU32(a + 4, len);
  }
}

export function newChain(cap = 64): DescChain {
  return new DescChain(cap);
}
