/** Driver-side behaviour and validation of what a (possibly buggy) device returns. */
import { describe, expect, it } from 'vitest';
import { RecordingSink } from '../../../src/device/choke.js';
import { isVirtioError } from '../../../src/errors.js';
import { DescChain, SgList, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/queue/types.js';
import { PackedDriverQueue } from '../../../src/queue/packed/driver.js';
import { makeFixture, writeDesc, type Fixture } from './helpers.js';

/** Device-side forgery: write a used descriptor at slot `i` for wrap `w`. */
function forgeUsed(f: Fixture, i: number, id: number, len: number, write: boolean, w = 1): void {
  writeDesc(f, i, { addr: 0, len, id, flags: (w ? 0x8080 : 0) | (write ? VIRTQ_DESC_F_WRITE : 0) });
}

describe('packed driver queue', () => {
  it('zeroes the ring and both event areas when built', () => {
    const f = makeFixture({ size: 4 });
    f.u8.fill(0xee, f.at(f.layout.desc), f.at(f.layout.desc) + f.layout.bytes);
    new PackedDriverQueue(f.space, f.cfg, new RecordingSink());
    expect(f.u8.subarray(f.at(f.layout.desc), f.at(f.layout.desc) + f.layout.bytes).every((b) => b === 0)).toBe(true);
  });

  it('[basic.packed-vq.vq.driver.1] refuses (throws) a misaligned or unmapped ring: the host built the driver wrong', () => {
    const f = makeFixture({ size: 4 });
    expect(() => new PackedDriverQueue(f.space, { ...f.cfg, desc: f.cfg.desc + 4 }, new RecordingSink())).toThrowError(/aligned/);
    try {
      new PackedDriverQueue(f.space, { ...f.cfg, device: 0x10 }, new RecordingSink());
      expect.unreachable();
    } catch (e) {
      expect(isVirtioError(e, 'RING_OUT_OF_SPACE')).toBe(true);
    }
  });

  it('[basic.packed-vq.scatter-gather-support.driver.6] exposes the head last: nothing is available before publish, everything after', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(4);
    const chain = new DescChain(4);
    f.drv.add(sg.clear().out(f.alloc(8), 8).in(f.alloc(8), 8), 1);
    f.drv.add(sg.clear().in(f.alloc(8), 8), 2);
    // second buffer's head (slot 2) is written, its list complete; first head (slot 0) held back
    expect(f.space.readU16(f.layout.desc + 14)).toBe(0);
    expect(f.space.readU16(f.layout.desc + 16 + 14)).toBe(0x80 | VIRTQ_DESC_F_WRITE);
    expect(f.space.readU16(f.layout.desc + 32 + 14)).toBe(0x80 | VIRTQ_DESC_F_WRITE);
    expect(f.dev.hasAvailable()).toBe(false);
    expect(f.drv.publish()).toBe(true);
    expect(f.space.readU16(f.layout.desc + 14)).toBe(0x80 | VIRTQ_DESC_F_NEXT);
    expect(f.dev.pop(chain)).toBe(true);
    expect(f.dev.pop(chain)).toBe(true);
    expect(f.dev.pop(chain)).toBe(false);
  });

  it('[basic.packed-vq.indirect-desc.driver.2] writes only WRITE flags inside indirect tables, frees tables on completion', () => {
    const freed: number[] = [];
    const f = makeFixture({ size: 4, indirect: true });
    const tables: number[] = [];
    const drv = new PackedDriverQueue(f.space, f.cfg, f.drvSink, {
      indirectThreshold: 2,
      allocIndirect: (b) => {
        const t = f.alloc(b);
        tables.push(t);
        return t;
      },
      freeIndirect: (a) => freed.push(a),
    });
    const sg = new SgList(4);
    drv.add(sg.clear().out(f.alloc(8), 8).in(f.alloc(8), 8).in(f.alloc(8), 8), 5);
    drv.publish();
    const t = tables[0]!;
    expect([0, 1, 2].map((i) => f.space.readU16(t + 16 * i + 14))).toEqual([0, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE]);
    expect(f.space.readU16(f.layout.desc + 14)).toBe(0x80 | VIRTQ_DESC_F_INDIRECT);
    expect(f.space.readU32(f.layout.desc + 8)).toBe(48);
    const chain = new DescChain(8);
    expect(f.dev.pop(chain)).toBe(true);
    f.dev.pushUsed(chain.head, 16);
    expect(drv.getUsed()).toBe(true);
    expect([drv.lastToken, drv.lastLen]).toEqual([5, 16]);
    expect(freed).toEqual([t]);
  });

  it('returns -1 when the ring has no room, and throws for empty or impossible lists', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(8);
    sg.clear().in(f.alloc(8), 8).in(f.alloc(8), 8).in(f.alloc(8), 8);
    expect(f.drv.add(sg, 1)).toBeGreaterThanOrEqual(0);
    expect(f.drv.freeCount).toBe(1);
    expect(f.drv.add(sg, 2)).toBe(-1);
    expect(f.drv.add(sg.clear().in(f.alloc(8), 8), 3)).toBeGreaterThanOrEqual(0);
    expect(f.drv.add(sg, 4)).toBe(-1);
    expect(() => f.drv.add(sg.clear(), 5)).toThrowError(/segments/);
    for (let i = 0; i < 5; i++) sg.in(f.alloc(8), 8);
    expect(() => f.drv.add(sg, 6)).toThrowError(/segments/);
    expect(f.drvSink.errors).toEqual([]);
  });

  it('DEVICE_USED_BAD_ID: a used id out of range is reported once; the queue is then broken', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    f.drv.add(sg.clear().in(f.alloc(8), 8), 1);
    f.drv.publish();
    forgeUsed(f, 0, 4, 0, false);
    expect(f.drv.getUsed()).toBe(false);
    expect(f.drv.broken).toBe(true);
    expect(f.drv.getUsed()).toBe(false);
    expect(f.drvSink.errors.map((e) => [e.code, e.queue])).toEqual([['DEVICE_USED_BAD_ID', f.cfg.index]]);
    expect(f.drv.inFlight).toBe(1);
  });

  it('DEVICE_USED_BAD_ID: a used id that is not in flight is reported', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    const id = f.drv.add(sg.clear().in(f.alloc(8), 8), 1);
    f.drv.publish();
    forgeUsed(f, 0, id + 1, 0, false);
    expect(f.drv.getUsed()).toBe(false);
    expect(f.drvSink.errors.map((e) => e.code)).toEqual(['DEVICE_USED_BAD_ID']);
  });

  it('DEVICE_USED_BAD_LEN: a written length beyond the writable bytes is reported', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    const id = f.drv.add(sg.clear().out(f.alloc(100), 100).in(f.alloc(8), 8), 1);
    f.drv.publish();
    forgeUsed(f, 0, id, 9, true);
    expect(f.drv.getUsed()).toBe(false);
    expect(f.drvSink.errors.map((e) => e.code)).toEqual(['DEVICE_USED_BAD_LEN']);
    expect(f.drvSink.errors[0]!.message).toContain('9');
  });

  it('a used descriptor without WRITE has no length (reserved, ignored)', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    const id = f.drv.add(sg.clear().out(f.alloc(8), 8), 1);
    f.drv.publish();
    forgeUsed(f, 0, id, 0xffffffff, false);
    expect(f.drv.getUsed()).toBe(true);
    expect([f.drv.lastToken, f.drv.lastLen]).toEqual([1, 0]);
    expect(f.drvSink.errors).toEqual([]);
  });

  it('does not take a used descriptor of the wrong lap or a still-available one', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    const id = f.drv.add(sg.clear().in(f.alloc(8), 8), 1);
    f.drv.publish();
    expect(f.drv.getUsed()).toBe(false); // still available (AVAIL != USED)
    forgeUsed(f, 0, id, 0, false, 0); // used for wrap 0: not our lap
    expect(f.drv.getUsed()).toBe(false);
    forgeUsed(f, 0, id, 0, false, 1);
    expect(f.drv.getUsed()).toBe(true);
    expect(f.drvSink.errors).toEqual([]);
  });

  it('uses addresses above 4 GiB exactly (two 32-bit halves)', () => {
    const f = makeFixture({ size: 4 });
    const sg = new SgList(2);
    const hiAddr = 2 ** 40 + 0x1234_5678;
    f.drv.add(sg.clear().out(hiAddr, 8), 1);
    f.drv.publish();
    expect(f.space.readU32(f.layout.desc)).toBe(0x1234_5678);
    expect(f.space.readU32(f.layout.desc + 4)).toBe(0x100);
  });
});
