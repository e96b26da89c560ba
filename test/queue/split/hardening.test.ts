/** Device-side validation of what a (malicious) driver puts in the rings: one test per check. */
import { describe, expect, it } from 'vitest';
import { F_INDIRECT, F_NEXT, F_WRITE, expectParked } from './expect.js';
import { makeEnv, newChain, RAM_BASE, RAM_SIZE, type Env, getPathMode } from './helpers.js';
import { createSplitDeviceQueue } from '../../../src/queue/split/device.js';
import { RecordingSink } from '../../../src/device/choke.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { layoutSplitRings } from '../../../src/queue/split/layout.js';

function env(o: Parameters<typeof makeEnv>[0] = {}): Env {
  return makeEnv({ size: 8, ...o });
}

describe('split device queue hardening', () => {
  it('[basic.split-vq.vq-available-ring.driver.1] avail idx more than queue size ahead -> AVAIL_IDX_AHEAD', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, 0);
    e.raw.setAvailIdx(9); // 9 > size 8
    expectParked(e, 'AVAIL_IDX_AHEAD', 'basic.split-vq.vq-available-ring.driver.1');
  });

  it('avail idx exactly queue size ahead is accepted (boundary)', () => {
    const e = env();
    for (let i = 0; i < 8; i++) {
      e.raw.desc(i, e.data + 16 * i, 16, 0);
      e.raw.offer(i);
    }
    const c = newChain();
    for (let i = 0; i < 8; i++) expect(e.dev.pop(c)).toBe(true);
    expect(e.dev.pop(c)).toBe(false);
    expect(e.devSink.errors).toHaveLength(0);
  });

  it('[no clause: table has queue-size entries] head index >= queue size -> DESC_INDEX_OUT_OF_RANGE', () => {
    const e = env();
    e.raw.offer(8);
    expectParked(e, 'DESC_INDEX_OUT_OF_RANGE', undefined);
  });

  it('[no clause: table has queue-size entries] next index >= queue size -> DESC_INDEX_OUT_OF_RANGE', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, F_NEXT, 8);
    e.raw.offer(0);
    expectParked(e, 'DESC_INDEX_OUT_OF_RANGE', undefined);
  });

  it('[basic.split-vq.vq-desc-table.driver.1] looping chain -> CHAIN_LOOP, bounded by the queue size', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, F_NEXT, 1);
    e.raw.desc(1, e.data + 16, 16, F_NEXT, 0);
    e.raw.offer(0);
    expectParked(e, 'CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1');
  });

  it('[basic.split-vq.vq-desc-table.driver.1] a self-loop in a 32768-entry queue ends (no spin)', () => {
    const e = makeEnv({ size: 32768 });
    for (let i = 0; i < 32768; i++) e.raw.desc(i, e.data, i === 0 ? 1 : 0, F_NEXT, (i + 1) & 32767);
    e.raw.offer(5);
    expectParked(e, 'CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1');
  });

  it('a chain of exactly queue-size descriptors is accepted', () => {
    const e = env();
    for (let i = 0; i < 8; i++) e.raw.desc(i, e.data + 16 * i, 16, i < 7 ? F_NEXT : 0, i + 1);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect(c.count).toBe(8);
    expect(c.descCount).toBe(8);
  });

  it('[basic.split-vq.indirect-desc.driver.1] INDIRECT without VIRTIO_F_INDIRECT_DESC -> INDIRECT_NOT_NEGOTIATED', () => {
    const e = env({ indirect: false });
    e.raw.desc(0, e.data, 32, F_INDIRECT);
    e.raw.offer(0);
    expectParked(e, 'INDIRECT_NOT_NEGOTIATED', 'basic.split-vq.indirect-desc.driver.1');
  });

  it('[basic.split-vq.indirect-desc.driver.4] INDIRECT and NEXT both set -> INDIRECT_WITH_NEXT', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 4096, 16, 0);
    e.raw.desc(0, e.data, 16, F_INDIRECT | F_NEXT, 1);
    e.raw.desc(1, e.data + 4096, 16, 0);
    e.raw.offer(0);
    expectParked(e, 'INDIRECT_WITH_NEXT', 'basic.split-vq.indirect-desc.driver.4');
  });

  for (const [len, what] of [
    [0, 'zero'],
    [24, 'not a multiple of 16'],
    [16 * 9, 'more entries than the queue size'],
  ] as const) {
    it(`[basic.split-vq.indirect-desc.driver.3] indirect table length ${len} (${what}) -> INDIRECT_BAD_LENGTH`, () => {
      const e = env({ indirect: true });
      e.raw.desc(0, e.data, len, F_INDIRECT);
      e.raw.offer(0);
      expectParked(e, 'INDIRECT_BAD_LENGTH', 'basic.split-vq.indirect-desc.driver.3');
    });
  }

  it('[basic.split-vq.indirect-desc.driver.3] indirect tables bounded by maxChainSegments when given', () => {
    const e = env({ indirect: true, maxChainSegments: 20 });
    for (let i = 0; i < 12; i++) e.raw.indirect(e.data, i, e.data + 4096 + 16 * i, 16, i < 11 ? F_NEXT : 0, i + 1);
    e.raw.desc(0, e.data, 16 * 12, F_INDIRECT);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect(c.count).toBe(12);
  });

  it('[basic.split-vq.vq-desc-table.device.1] indirect table outside the space -> ADDRESS_OUT_OF_SPACE', () => {
    const e = env({ indirect: true });
    e.raw.desc(0, RAM_BASE + RAM_SIZE - 16, 32, F_INDIRECT); // straddles the end
    e.raw.offer(0);
    expectParked(e, 'ADDRESS_OUT_OF_SPACE', 'basic.split-vq.vq-desc-table.device.1');
  });

  it('[basic.split-vq.indirect-desc.driver.2] INDIRECT inside an indirect table -> NESTED_INDIRECT', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 256, 16, F_INDIRECT);
    e.raw.desc(0, e.data, 16, F_INDIRECT);
    e.raw.offer(0);
    expectParked(e, 'NESTED_INDIRECT', 'basic.split-vq.indirect-desc.driver.2');
  });

  it('[basic.split-vq.vq-desc-table.driver.1] self-referencing indirect table -> CHAIN_LOOP', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 4096, 16, F_NEXT, 1);
    e.raw.indirect(e.data, 1, e.data + 4096, 16, F_NEXT, 0);
    e.raw.desc(0, e.data, 32, F_INDIRECT);
    e.raw.offer(0);
    expectParked(e, 'CHAIN_LOOP', 'basic.split-vq.vq-desc-table.driver.1');
  });

  it('[no clause: indirect table has len/16 entries] indirect next >= table length -> DESC_INDEX_OUT_OF_RANGE', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 4096, 16, F_NEXT, 2);
    e.raw.desc(0, e.data, 32, F_INDIRECT);
    e.raw.offer(0);
    expectParked(e, 'DESC_INDEX_OUT_OF_RANGE', undefined);
  });

  it('[basic.split-vq.indirect-desc.device.1] WRITE flag on the descriptor pointing at the table is ignored', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 4096, 16, F_NEXT, 1);
    e.raw.indirect(e.data, 1, e.data + 8192, 32, F_WRITE);
    e.raw.desc(0, e.data, 32, F_INDIRECT | F_WRITE);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect([c.count, c.readable, c.readableBytes, c.writableBytes]).toEqual([2, 1, 16, 32]);
  });

  it('[basic.split-vq.indirect-desc.device.2] normal descriptors followed by one indirect descriptor', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 8192, 64, F_WRITE);
    e.raw.desc(0, e.data + 4096, 16, F_NEXT, 1);
    e.raw.desc(1, e.data, 16, F_INDIRECT);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect([c.count, c.readable, c.writableBytes, c.addr[0], c.addr[1]]).toEqual([2, 1, 64, e.data + 4096, e.data + 8192]);
  });

  it('[basic.split-vq.message-framing.driver.1] readable after writable -> READABLE_AFTER_WRITABLE', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, F_WRITE | F_NEXT, 1);
    e.raw.desc(1, e.data + 16, 16, 0);
    e.raw.offer(0);
    expectParked(e, 'READABLE_AFTER_WRITABLE', 'basic.split-vq.message-framing.driver.1');
  });

  it('[basic.split-vq.message-framing.driver.1] readable indirect entry after a writable direct one -> READABLE_AFTER_WRITABLE', () => {
    const e = env({ indirect: true });
    e.raw.indirect(e.data, 0, e.data + 4096, 16, 0);
    e.raw.desc(0, e.data + 8192, 16, F_WRITE | F_NEXT, 1);
    e.raw.desc(1, e.data, 16, F_INDIRECT);
    e.raw.offer(0);
    expectParked(e, 'READABLE_AFTER_WRITABLE', 'basic.split-vq.message-framing.driver.1');
  });

  it('[basic.split-vq.vq-desc-table.device.1] address + len overflowing 2^64 -> ADDRESS_OVERFLOW', () => {
    const e = env();
    e.raw.desc(0, 0xfffffff0, 0x100, 0, 0, 0xffffffff);
    e.raw.offer(0);
    expectParked(e, 'ADDRESS_OVERFLOW', 'basic.split-vq.vq-desc-table.device.1');
  });

  it('[basic.split-vq.vq-desc-table.device.1] buffer outside the space -> ADDRESS_OUT_OF_SPACE', () => {
    const e = env();
    e.raw.desc(0, RAM_BASE + RAM_SIZE - 8, 16, 0);
    e.raw.offer(0);
    expectParked(e, 'ADDRESS_OUT_OF_SPACE', 'basic.split-vq.vq-desc-table.device.1');
  });

  it('[basic.split-vq.vq-desc-table.device.1] address above 2^53 -> ADDRESS_OUT_OF_SPACE (exact, no rounding)', () => {
    const e = env();
    e.raw.desc(0, RAM_BASE, 16, 0, 0, 0x00200000); // 2^53 + RAM_BASE: would round into RAM as a double
    e.raw.offer(0);
    expectParked(e, 'ADDRESS_OUT_OF_SPACE', 'basic.split-vq.vq-desc-table.device.1');
  });

  it('[basic.split-vq.vq-desc-table.device.1] writable buffer in a read-only region -> ADDRESS_READ_ONLY', () => {
    const ro = new ArrayBuffer(0x1000);
    const e = env({ extra: [{ base: 0x800000, size: 0x1000, buffer: ro, readOnly: true, name: 'rom' }] });
    e.raw.desc(0, 0x800000, 16, 0, 0);
    e.raw.desc(1, 0x800000, 16, F_WRITE);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true); // readable buffer in a read-only region is fine
    expect(c.region[0]).toBe(1);
    e.raw.offer(1);
    expect(e.dev.pop(c)).toBe(false);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['ADDRESS_READ_ONLY']);
    expect(e.dev.parked).toBe(true);
  });

  it('buffers in a second region resolve into it (region cache miss path)', () => {
    const b2 = new ArrayBuffer(0x2000);
    const e = env({ extra: [{ base: 0x900000, size: 0x2000, buffer: b2, offset: 0, name: 'r2' }] });
    e.raw.desc(0, e.data, 16, F_NEXT, 1);
    e.raw.desc(1, 0x900100, 32, F_WRITE | F_NEXT, 2);
    e.raw.desc(2, e.data + 64, 8, F_WRITE);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect(Array.from(c.region.subarray(0, 3))).toEqual([0, 1, 0]);
    expect(c.offset[1]).toBe(0x100);
    expect(c.offset[2]).toBe(e.data + 64 - RAM_BASE);
  });

  // popEach has no caller-supplied chain: its limit is maxChainSegments (next test).
  it.skipIf(getPathMode() === 'visit')('[basic.split-vq.message-framing.device.2] more segments than the chain capacity -> CHAIN_LOOP', () => {
    const e = env();
    for (let i = 0; i < 3; i++) e.raw.desc(i, e.data + 16 * i, 16, i < 2 ? F_NEXT : 0, i + 1);
    e.raw.offer(0);
    expect(e.dev.pop(newChain(2))).toBe(false);
    expect(e.devSink.errors.map((x) => [x.code, x.clause])).toEqual([['CHAIN_LOOP', 'basic.split-vq.message-framing.device.2']]);
  });

  it('[basic.split-vq.message-framing.device.2] more segments than maxChainSegments -> CHAIN_LOOP', () => {
    const e = env({ maxChainSegments: 2 });
    for (let i = 0; i < 3; i++) e.raw.desc(i, e.data + 16 * i, 16, i < 2 ? F_NEXT : 0, i + 1);
    e.raw.offer(0);
    expectParked(e, 'CHAIN_LOOP', 'basic.split-vq.message-framing.device.2');
  });

  it('[no clause: head offered twice] head already in flight -> HEAD_IN_FLIGHT', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, 0);
    e.raw.offer(0, 0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect(e.dev.pop(c)).toBe(false);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['HEAD_IN_FLIGHT']);
    expect(e.dev.parked).toBe(true);
  });

  it('a head may be offered again once it was returned', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, 0);
    const c = newChain();
    for (let i = 0; i < 3; i++) {
      e.raw.offer(0);
      expect(e.dev.pop(c)).toBe(true);
      e.dev.pushUsed(0, 0);
    }
    expect(e.devSink.errors).toHaveLength(0);
  });

  it('zero-length descriptors are skipped: not recorded, address not resolved, WRITE flag not ordered', () => {
    const e = env();
    e.raw.desc(0, 0xdead0000000, 0, F_WRITE | F_NEXT, 1); // garbage address, zero length, writable
    e.raw.desc(1, e.data, 16, F_NEXT, 2); // readable after a zero-length writable one: accepted
    e.raw.desc(2, 0, 0, F_NEXT, 3);
    e.raw.desc(3, e.data + 16, 8, F_WRITE);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    expect([c.count, c.readable, c.readableBytes, c.writableBytes, c.descCount]).toEqual([2, 1, 16, 8, 4]);
    expect(e.devSink.errors).toHaveLength(0);
  });

  it('[basic.split-vq.vq-desc-table.driver.1] chain longer than 2^32 bytes -> CHAIN_TOO_LONG_BYTES', () => {
    let big: ArrayBuffer;
    try {
      big = new ArrayBuffer(2 ** 31);
    } catch {
      return; // cannot reserve 2 GiB here (pages are never touched)
    }
    const e = env({ extra: [{ base: 0x100000000, size: 2 ** 31, buffer: big, name: 'big' }] });
    for (let i = 0; i < 3; i++) e.raw.desc(i, 0x100000000, 2 ** 31 - 1, i < 2 ? F_NEXT : 0, i + 1);
    e.raw.offer(0);
    expectParked(e, 'CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1');
  });

  it('pushUsed of a head that is not in flight -> USED_BAD_ID, ring untouched', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, 0);
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(true);
    e.dev.pushUsed(5, 0);
    e.dev.pushUsed(8, 0);
    e.dev.pushUsed(0, 3);
    e.dev.pushUsed(0, 3); // twice
    e.dev.pushUsedBatch([0, 1], [1, 1], 2);
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['USED_BAD_ID', 'USED_BAD_ID', 'USED_BAD_ID', 'USED_BAD_ID', 'USED_BAD_ID']);
    expect(e.raw.usedIdx()).toBe(1);
    expect(e.raw.usedElem(0)).toEqual({ id: 0, len: 3 });
  });

  it('after an error: parked, one report, later pops return false without touching memory, reset() recovers', () => {
    const e = env();
    e.raw.desc(0, e.data, 16, F_NEXT, 0); // self loop
    e.raw.offer(0);
    const c = newChain();
    expect(e.dev.pop(c)).toBe(false);
    expect(e.dev.parked).toBe(true);
    // fix the ring and offer more: the parked queue ignores it all
    e.raw.desc(0, e.data, 16, 0);
    e.raw.desc(1, RAM_BASE + RAM_SIZE + 5, 16, 0);
    e.raw.offer(1, 0);
    const calls = e.space.calls;
    for (let i = 0; i < 100; i++) expect(e.dev.pop(c)).toBe(false);
    expect(e.dev.hasAvailable()).toBe(false);
    expect(e.dev.enableNotifications()).toBe(false);
    e.dev.disableNotifications();
    expect(e.space.calls).toBe(calls);
    expect(e.devSink.errors).toHaveLength(1);
    expect(e.devSink.errors[0]!.queue).toBe(3);
    // reset: queue state back to 0; the driver re-initialises its ring from index 0
    e.dev.reset();
    expect(e.dev.parked).toBe(false);
    e.raw.setAvailIdx(0);
    e.raw.offer(0);
    expect(e.dev.pop(c)).toBe(true);
    expect(c.head).toBe(0);
  });

  it('messages carry numbers and the queue index', () => {
    const e = env();
    e.raw.offer(12);
    e.dev.pop(newChain());
    expect(e.devSink.last!.message).toMatch(/queue 3/);
    expect(e.devSink.last!.message).toMatch(/12/);
    expect(e.devSink.last!.queue).toBe(3);
  });
});

describe('split device queue setup validation', () => {
  const mk = (size: number, maxSize: number, desc: number, driver: number, device: number, readOnlyUsed = false) => {
    const buf = new SharedArrayBuffer(0x40000);
    const regions = [{ base: 0, size: 0x20000, buffer: buf, name: 'ram' }, { base: 0x20000, size: 0x20000, buffer: buf, offset: 0x20000, readOnly: true, name: 'ro' }];
    const space = new AddressSpace(regions, 'g');
    const sink = new RecordingSink();
    const q = createSplitDeviceQueue(space, { index: 1, size, maxSize, desc, driver, device: readOnlyUsed ? 0x20000 : device, eventIdx: false, indirect: false, inOrder: false }, sink);
    return { q, sink };
  };
  const L = layoutSplitRings(0x1000, 256);

  it('valid configuration creates a queue', () => {
    const { q, sink } = mk(256, 256, L.desc, L.driver, L.device);
    expect(q).not.toBeNull();
    expect(sink.errors).toHaveLength(0);
  });

  for (const [size, maxSize, clause] of [
    [0, 256, 'pci.common-cfg.driver.3'],
    [3, 256, 'pci.common-cfg.driver.3'],
    [100, 256, 'pci.common-cfg.driver.3'],
    [512, 256, 'mmio.regs.driver.9'],
    [65536, 65536, 'mmio.regs.driver.9'],
  ] as const) {
    it(`[${clause}] queue size ${size} (max ${maxSize}) -> QUEUE_SIZE_INVALID`, () => {
      const { q, sink } = mk(size, maxSize, 0x1000, 0x3000, 0x4000);
      expect(q).toBeNull();
      expect(sink.errors.map((x) => [x.code, x.clause, x.queue])).toEqual([['QUEUE_SIZE_INVALID', clause, 1]]);
    });
  }

  for (const [what, d, a, u] of [
    ['descriptor table not 16-aligned', L.desc + 8, L.driver, L.device],
    ['available ring not 2-aligned', L.desc, L.driver + 1, L.device],
    ['used ring not 4-aligned', L.desc, L.driver, L.device + 2],
  ] as const) {
    it(`[basic.split-vq.vq.driver.1] ${what} -> RING_MISALIGNED`, () => {
      const { q, sink } = mk(256, 256, d, a, u);
      expect(q).toBeNull();
      expect(sink.errors.map((x) => [x.code, x.clause])).toEqual([['RING_MISALIGNED', 'basic.split-vq.vq.driver.1']]);
    });
  }

  for (const [what, d, a, u] of [
    ['descriptor table past the end of the space', 0x3f800, L.driver, L.device],
    ['descriptor table straddling two regions', 0x1f800, L.driver, L.device],
    ['available ring outside', L.desc, 0x7fff0, L.device],
    ['used ring outside', L.desc, L.driver, 0x3fffc],
  ] as const) {
    it(`${what} -> RING_OUT_OF_SPACE`, () => {
      const { q, sink } = mk(256, 256, d, a, u);
      expect(q).toBeNull();
      expect(sink.errors.map((x) => x.code)).toEqual(['RING_OUT_OF_SPACE']);
    });
  }

  it('used ring in a read-only region -> RING_OUT_OF_SPACE', () => {
    const { q, sink } = mk(256, 256, L.desc, L.driver, 0, true);
    expect(q).toBeNull();
    expect(sink.errors.map((x) => x.code)).toEqual(['RING_OUT_OF_SPACE']);
  });

  it('rings include the event-index fields (used ring 6+8*QS bytes must fit)', () => {
    // used ring ending 2 bytes short of the region end: idx fields fit, avail_event does not
    const { q, sink } = mk(256, 256, L.desc, L.driver, 0x20000 - (6 + 8 * 256) + 2);
    expect(q).toBeNull();
    expect(sink.errors.map((x) => x.code)).toEqual(['RING_OUT_OF_SPACE']);
  });
});
