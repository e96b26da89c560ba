/**
 * Queued bounce paths (queueMapSg / queueUnmapSg / flush) and the SgList fast path of mapSg:
 * same slots and bounce addresses as map() one segment at a time, copies deferred to the flush,
 * everything else flushing first.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type BatchCopier, jsCopy, runBatch } from '../../src/swiotlb/copy.js';
import { SgList } from '../../src/queue/types.js';
import { expectBytes, expectCode, fillRam, fixture, RAM_BASE, readDev, readRam } from './helpers.js';

function recordingBatch(): { fn: BatchCopier; calls: number[] } {
  const calls: number[] = [];
  const fn: BatchCopier = (bufs, ops, count) => {
    calls.push(count);
    return runBatch(jsCopy, bufs.map((b) => new Uint8Array(b)), ops, count);
  };
  return { fn, calls };
}

/** A virtio-blk-like read request: 16-byte header out, `size` bytes in, 1-byte status in. */
function blkRead(base: number, size: number): SgList {
  return new SgList(3).out(base, 16).in(base + 0x1000, size).in(base + 0x20, 1);
}

describe('BouncePool queued paths (one copy call per kick / per interrupt)', () => {
  it('[rfc-swiotlb.feature.driver.1] queueMapSg gives window addresses at once, copies in only at flush', () => {
    const rec = recordingBatch();
    const f = fixture({ pool: { copyBatch: rec.fn } });
    const lists = [blkRead(RAM_BASE, 4096), blkRead(RAM_BASE + 0x4000, 512)];
    const hdrs = lists.map((l, i) => fillRam(f, l.addr[0]!, 16, i + 1));
    const outs = [new SgList(3), new SgList(3)];
    f.pool.queueMapSg(lists[0]!, outs[0]!);
    f.pool.queueMapSg(lists[1]!, outs[1]!);
    expect(rec.calls).toEqual([]);
    expect(f.pool.queuedCopies).toBe(6);
    for (const o of outs) for (let i = 0; i < 3; i++) expect(f.window.contains(o.addr[i]!, o.len[i]!)).toBe(true);
    expect(readDev(f, outs[0]!.addr[0]!, 16).every((x) => x === 0)).toBe(true); // not copied yet
    f.pool.flush();
    expect(rec.calls).toEqual([6]);
    expect(f.pool.queuedCopies).toBe(0);
    for (let i = 0; i < 2; i++) expectBytes(readDev(f, outs[i]!.addr[0]!, 16), hdrs[i]!);
    f.pool.flush(); // nothing queued: no call
    expect(rec.calls).toEqual([6]);
  });

  it('queueUnmapSg copies device-written segments back and frees the slots only at flush', () => {
    const rec = recordingBatch();
    const f = fixture({ pool: { copyBatch: rec.fn } });
    const sg = blkRead(RAM_BASE, 4096);
    const out = new SgList(3);
    f.pool.mapSg(sg, out);
    const used = f.pool.stats().usedSlots;
    f.dev.write(out.addr[1]!, new Uint8Array(4096).fill(0x77));
    f.dev.write(out.addr[2]!, Uint8Array.of(0));
    f.dev.write(out.addr[0]!, new Uint8Array(16).fill(9)); // readable: never copied back
    fillRam(f, RAM_BASE + 0x20, 1, 5);
    f.pool.queueUnmapSg(out);
    expect(f.pool.stats()).toMatchObject({ usedSlots: used, liveMappings: 3 });
    expect(readRam(f, RAM_BASE + 0x1000, 4096).every((x) => x === 0x77)).toBe(false);
    expectCode(() => f.pool.queueUnmapSg(out), 'BOUNCE_BAD_HANDLE'); // already queued
    f.pool.flush();
    expect(rec.calls).toEqual([3, 2]);
    expect(readRam(f, RAM_BASE + 0x1000, 4096).every((x) => x === 0x77)).toBe(true);
    expect(readRam(f, RAM_BASE + 0x20, 1)[0]).toBe(0);
    expect(readRam(f, RAM_BASE, 16).every((x) => x === 9)).toBe(false);
    expect(f.pool.stats()).toMatchObject({ usedSlots: 0, liveMappings: 0, bytesToDevice: 4113, bytesFromDevice: 4097 });
    f.pool.verify();
  });

  it('every other operation runs the queue first (order preserved)', () => {
    const f = fixture();
    const sg = new SgList(1).in(RAM_BASE, 64);
    const out = new SgList(1);
    const data = fillRam(f, RAM_BASE, 64, 3);
    f.pool.queueMapSg(sg, out);
    // syncForCpu of a from-device mapping whose copy-in is still queued: the queue runs first, so
    // RAM gets back what map copied in (not stale window bytes).
    f.pool.syncForCpu(out.addr[0]!, 64, 'from-device');
    expectBytes(readRam(f, RAM_BASE, 64), data);
    f.pool.queueUnmapSg(out);
    const a = f.pool.map(RAM_BASE + 0x100, 8, 'to-device'); // flushes: the queued unmap frees its slot first
    expect(f.pool.stats().liveMappings).toBe(1);
    f.pool.unmap(a, 8, 'to-device');
    f.pool.queueMapSg(sg, out);
    f.pool.reset(); // forgets the queue too
    expect(f.pool.queuedCopies).toBe(0);
    f.pool.verify();
  });

  it('queueMapSg is all or nothing: a refused segment leaves nothing mapped or queued', () => {
    const f = fixture({ windowSize: 16 * 4096 });
    const out = new SgList(3);
    f.pool.queueMapSg(new SgList(1).out(RAM_BASE, 100), new SgList(1));
    expectCode(() => f.pool.queueMapSg(new SgList(3).out(RAM_BASE, 16).in(RAM_BASE + 0x1000, 4096).in(RAM_BASE + 0x3000, 300 * 1024), out), 'BOUNCE_MAP_TOO_LARGE');
    expectCode(() => f.pool.queueMapSg(new SgList(2).out(RAM_BASE, 16).in(0x10, 16), out), 'INVALID_ARGUMENT');
    expect(f.pool.queuedCopies).toBe(1);
    expect(f.pool.stats()).toMatchObject({ liveMappings: 1, usedSlots: 1 });
    f.pool.verify();
  });

  it('[rfc-swiotlb.feature.driver.1] mapSg / queueMapSg choose the same slots as map() segment by segment (property)', () => {
    const seg = fc.record({ off: fc.integer({ min: 0, max: (1 << 20) - 1 }), size: fc.integer({ min: 1, max: 9000 }), write: fc.boolean() });
    fc.assert(
      fc.property(fc.array(fc.array(seg, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 2 }), fc.boolean(), (reqs, align, queued) => {
        const minAlignMask = [0, 0x7ff, 0xfff][align]!;
        const a = fixture({ windowSize: 256 * 1024, minAlignMask });
        const b = fixture({ windowSize: 256 * 1024, minAlignMask });
        const live: Array<{ out: SgList; singles: number[]; sg: SgList }> = [];
        for (const [r, req] of reqs.entries()) {
          const sorted = [...req.filter((s) => !s.write), ...req.filter((s) => s.write)];
          const sg = new SgList(sorted.length);
          for (const s of sorted) (s.write ? sg.in.bind(sg) : sg.out.bind(sg))(RAM_BASE + s.off, s.size);
          const out = new SgList(sorted.length);
          let errA: unknown;
          let errB: unknown;
          try {
            if (queued) a.pool.queueMapSg(sg, out);
            else a.pool.mapSg(sg, out);
          } catch (e) {
            errA = e;
          }
          const singles: number[] = [];
          try {
            for (let i = 0; i < sg.count; i++) singles.push(b.pool.map(sg.addr[i]!, sg.len[i]!, i < sg.readable ? 'to-device' : 'from-device'));
          } catch (e) {
            errB = e;
            for (let i = 0; i < singles.length; i++) b.pool.unmap(singles[i]!, sg.len[i]!, i < sg.readable ? 'to-device' : 'from-device');
          }
          expect((errA as { code?: string } | undefined)?.code).toBe((errB as { code?: string } | undefined)?.code);
          if (errA === undefined) {
            expect(Array.from(out.addr.subarray(0, sg.count))).toEqual(singles);
            live.push({ out, singles, sg });
          }
          // Unmap the oldest now and then, so that the search wraps and skips live allocations.
          if (r % 3 === 2 && live.length > 0) {
            const x = live.shift()!;
            if (queued) {
              a.pool.queueUnmapSg(x.out);
              a.pool.flush(); // queued unmaps hold their slots until the flush
            } else {
              a.pool.unmapSg(x.out);
            }
            for (let i = 0; i < x.sg.count; i++) b.pool.unmap(x.singles[i]!, x.sg.len[i]!, i < x.sg.readable ? 'to-device' : 'from-device');
          }
        }
        a.pool.flush();
        expect(a.pool.stats().usedSlots).toBe(b.pool.stats().usedSlots);
        a.pool.verify();
      }),
      { numRuns: 60 },
    );
  });
});
