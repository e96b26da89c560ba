/** Driver and device paired over one address space: data round trips, notifications, wrap, in-order. */
import { describe, expect, it } from 'vitest';
import { makeEnv, newChain, RAM_BASE } from './helpers.js';
import { SgList } from '../../../src/queue/types.js';
import { readFromChain, writeToChain } from '../../../src/queue/chain-io.js';
import { layoutSplitRings, SplitDeviceQueue, createSplitDeviceQueue } from '../../../src/queue/split/index.js';

describe('split ring round trips', () => {
  for (const nseg of [1, 3, 8]) {
    it(`${nseg}-descriptor chains carry data both ways`, () => {
      const e = makeEnv({ size: 16 });
      const sg = new SgList(16);
      const c = newChain();
      for (let round = 0; round < 40; round++) {
        sg.clear();
        const nR = Math.ceil(nseg / 2);
        for (let i = 0; i < nseg; i++) {
          const a = e.data + i * 256;
          if (i < nR) {
            for (let k = 0; k < 100; k++) e.space.writeU8(a + k, (round + i + k) & 0xff);
            sg.out(a, 100);
          } else sg.in(a, 50);
        }
        expect(e.drv.add(sg, 1000 + round)).toBeGreaterThanOrEqual(0);
        e.drv.publish();
        expect(e.dev.pop(c)).toBe(true);
        expect(c.count).toBe(nseg);
        expect(c.readable).toBe(nR);
        const got = new Uint8Array(100 * nR);
        expect(readFromChain(e.space, c, got)).toBe(100 * nR);
        for (let i = 0; i < nR; i++) for (let k = 0; k < 100; k++) expect(got[i * 100 + k]).toBe((round + i + k) & 0xff);
        const nW = nseg - nR;
        const out = new Uint8Array(50 * nW).map((_, k) => (k * 7 + round) & 0xff);
        expect(writeToChain(e.space, c, out)).toBe(50 * nW);
        e.dev.pushUsed(c.head, 50 * nW);
        expect(e.drv.getUsed()).toBe(true);
        expect([e.drv.lastToken, e.drv.lastLen]).toEqual([1000 + round, 50 * nW]);
        for (let i = 0; i < nW; i++) for (let k = 0; k < 50; k++) expect(e.space.readU8(e.data + (nR + i) * 256 + k)).toBe(out[i * 50 + k]);
        expect(e.drv.getUsed()).toBe(false);
      }
      expect(e.drv.freeCount).toBe(16);
      expect(e.devSink.errors).toEqual([]);
      expect(e.drvSink.errors).toEqual([]);
    });
  }

  it('indirect chains (driver uses a table at or above the threshold)', () => {
    let next = 0;
    const freed: number[] = [];
    const e = makeEnv({ size: 8, indirect: true, driverOpts: { indirectThreshold: 3, allocIndirect: (b) => { const a = RAM_BASE + 0x80000 + next; next += Math.ceil(b / 16) * 16; return a; }, freeIndirect: (a) => freed.push(a) } });
    const sg = new SgList(32);
    const c = newChain(32);
    sg.clear().out(e.data, 16).in(e.data + 4096, 4096).in(e.data + 8192, 1);
    const h = e.drv.add(sg, 7);
    expect(e.drv.freeCount).toBe(7); // one ring descriptor for the whole chain
    e.drv.publish();
    expect(e.dev.pop(c)).toBe(true);
    expect(c.head).toBe(h);
    expect([c.count, c.readable, c.readableBytes, c.writableBytes]).toEqual([3, 1, 16, 4097]);
    expect(c.descCount).toBe(4);
    e.dev.pushUsed(h, 4097);
    expect(e.drv.getUsed()).toBe(true);
    expect(e.drv.lastToken).toBe(7);
    expect(freed).toEqual([RAM_BASE + 0x80000]);
    expect(e.drv.freeCount).toBe(8);
  });

  it('more than 65536 chains: 16-bit indices wrap on both sides', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    const sg = new SgList(2);
    const c = newChain();
    const heads = new Uint16Array(8);
    const lens = new Uint32Array(8);
    let done = 0;
    let tok = 0;
    while (done < 70000) {
      for (let i = 0; i < 4; i++) e.drv.add(sg.clear().out(e.data + 16 * i, 16).in(e.data + 4096 + 16 * i, 16), tok++);
      e.drv.publish();
      let k = 0;
      while (e.dev.pop(c)) {
        heads[k] = c.head;
        lens[k] = k;
        k++;
      }
      expect(k).toBe(4);
      e.dev.pushUsedBatch(heads, lens, k);
      let j = 0;
      while (e.drv.getUsed()) {
        expect(e.drv.lastToken).toBe(done);
        expect(e.drv.lastLen).toBe(j++);
        done++;
      }
    }
    expect(e.dev.getBase()).toBe(done & 0xffff);
    expect(e.raw.usedIdx()).toBe(done & 0xffff);
    expect(done).toBeGreaterThan(65536);
    expect(e.devSink.errors.length + e.drvSink.errors.length).toBe(0);
  });

  it('getBase/setBase hand a ring over to a new device queue', () => {
    const e = makeEnv({ size: 8 });
    const sg = new SgList(1);
    const c = newChain();
    for (let i = 0; i < 3; i++) e.drv.add(sg.clear().out(e.data + i * 16, 16), i);
    e.drv.publish();
    for (let i = 0; i < 2; i++) {
      expect(e.dev.pop(c)).toBe(true);
      e.dev.pushUsed(c.head, 0);
    }
    expect(e.dev.getBase()).toBe(2);
    const dev2 = createSplitDeviceQueue(e.space, e.cfg, e.devSink) as SplitDeviceQueue;
    dev2.setBase(e.dev.getBase());
    expect(dev2.pop(c)).toBe(true);
    expect(c.addr[0]).toBe(e.data + 32);
    dev2.pushUsed(c.head, 0);
    expect(e.raw.usedIdx()).toBe(3);
    let n = 0;
    while (e.drv.getUsed()) n++;
    expect(n).toBe(3);
  });

  it('layoutSplitRings aligns every part and reports the span', () => {
    for (const [base, size] of [[0x1003, 256], [0x0, 1], [0x10, 3 + 1], [0x7, 32768]] as const) {
      const L = layoutSplitRings(base, size);
      expect(L.desc % 16).toBe(0);
      expect(L.desc).toBeGreaterThanOrEqual(base);
      expect(L.driver % 2).toBe(0);
      expect(L.driver).toBeGreaterThanOrEqual(L.desc + 16 * size);
      expect(L.device % 4).toBe(0);
      expect(L.device).toBeGreaterThanOrEqual(L.driver + 6 + 2 * size);
      expect(L.bytes).toBe(L.device + 6 + 8 * size - base);
    }
  });

  it('notificationData: avail idx in bits 16-31 (next_off bits 16-30, next_wrap bit 31)', () => {
    const e = makeEnv({ size: 8 });
    const sg = new SgList(1);
    const c = newChain();
    expect(e.drv.notificationData()).toBe(0);
    for (let i = 0; i < 0x8003; i++) {
      e.drv.add(sg.clear().out(e.data, 1), 0);
      e.drv.publish();
      e.dev.pop(c);
      e.dev.pushUsed(c.head, 0);
      e.drv.getUsed();
    }
    const v = e.drv.notificationData();
    expect((v >>> 16) & 0x7fff).toBe(3); // next_off
    expect(v >>> 31).toBe(1); // next_wrap
    expect(v & 0xffff).toBe(0); // vq index left to the transport
  });
});

describe('split ring notification suppression', () => {
  function post(e: ReturnType<typeof makeEnv>, n: number): boolean {
    const sg = new SgList(1);
    for (let i = 0; i < n; i++) e.drv.add(sg.clear().in(e.data + 64 * i, 64), i);
    return e.drv.publish();
  }

  it('[basic.split-vq.used-buffer-notif-suppression.device.1] without EVENT_IDX: interrupt unless NO_INTERRUPT', () => {
    const e = makeEnv({ size: 8 });
    const c = newChain();
    post(e, 2);
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0);
    expect(e.dev.needsInterrupt()).toBe(true);
    expect(e.dev.needsInterrupt()).toBe(false); // nothing new since
    e.drv.disableInterrupts();
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0);
    expect(e.dev.needsInterrupt()).toBe(false);
    e.drv.enableInterrupts();
    post(e, 1);
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0);
    expect(e.dev.needsInterrupt()).toBe(true);
  });

  it('[basic.split-vq.available-buffer-notif-suppression.driver.2] without EVENT_IDX: kick unless NO_NOTIFY', () => {
    const e = makeEnv({ size: 8 });
    expect(post(e, 1)).toBe(true);
    e.dev.disableNotifications();
    expect(e.raw.space.readU16(e.layout.device)).toBe(1);
    expect(post(e, 1)).toBe(false);
    expect(e.dev.enableNotifications()).toBe(true); // two buffers waiting
    expect(post(e, 1)).toBe(true);
    expect(e.drv.publish()).toBe(false); // nothing new: no kick
  });

  it('[basic.split-vq.used-buffer-notif-suppression.device.2] with EVENT_IDX: interrupt when used idx passes used_event', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    const c = newChain();
    post(e, 4);
    e.drv.enableInterrupts(); // used_event = 0
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0); // writes entry 0
    expect(e.dev.needsInterrupt()).toBe(true);
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0); // entry 1: driver did not ask
    expect(e.dev.needsInterrupt()).toBe(false);
    e.drv.getUsed();
    e.drv.getUsed();
    e.drv.enableInterrupts(); // used_event = 2
    e.dev.pop(c);
    e.dev.pop(c);
    e.dev.pushUsedBatch([2, 3], [0, 0], 2); // entries 2 and 3 in one go
    expect(e.dev.needsInterrupt()).toBe(true);
    e.drv.disableInterrupts();
    expect(e.raw.space.readU16(e.layout.driver)).toBe(0); // flags stay 0 with EVENT_IDX
  });

  it('[basic.split-vq.used-buffer-notif-suppression.device.2] regression: device reads used_event from the AVAIL ring, not avail_event', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    const c = newChain();
    post(e, 2);
    e.raw.usedEvent(5); // avail ring tail: "not until entry 5"
    e.raw.availEvent(0); // used ring tail: a decoy that would say "notify now"
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0);
    expect(e.dev.needsInterrupt()).toBe(false);
    e.raw.usedEvent(1);
    e.raw.availEvent(7);
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 0);
    expect(e.dev.needsInterrupt()).toBe(true);
  });

  it('[basic.split-vq.available-buffer-notif-suppression.driver.3] regression: driver reads avail_event from the USED ring, not used_event', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    e.raw.availEvent(3); // used ring tail: "not until entry 3"
    e.raw.usedEvent(0); // decoy in the avail ring
    expect(post(e, 1)).toBe(false); // wrote entry 0
    e.raw.availEvent(1);
    e.raw.usedEvent(9);
    expect(post(e, 1)).toBe(true); // wrote entry 1
  });

  it('[basic.split-vq.available-buffer-notif-suppression.device.2] with EVENT_IDX: enable/disable via avail_event, flags stay 0', () => {
    const e = makeEnv({ size: 8, eventIdx: true });
    const c = newChain();
    expect(post(e, 1)).toBe(true); // avail_event 0, entry 0 written
    e.dev.disableNotifications();
    expect(e.raw.space.readU16(e.layout.device)).toBe(0);
    e.dev.pop(c);
    expect(post(e, 1)).toBe(false); // avail_event still 0, entry 1 written
    expect(e.dev.enableNotifications()).toBe(true); // entry 1 is waiting
    e.dev.pop(c);
    expect(e.dev.enableNotifications()).toBe(false);
    expect(post(e, 1)).toBe(true); // avail_event = 2
  });

  it('hasAvailable reflects the avail ring without validating', () => {
    const e = makeEnv({ size: 8 });
    expect(e.dev.hasAvailable()).toBe(false);
    post(e, 1);
    expect(e.dev.hasAvailable()).toBe(true);
    e.dev.pop(newChain());
    expect(e.dev.hasAvailable()).toBe(false);
  });
});

describe('split ring VIRTIO_F_IN_ORDER', () => {
  it('[basic.split-vq.vq-desc-table.driver.2] driver allocates descriptors in ring order, next = x+1 wrapping to 0', () => {
    const e = makeEnv({ size: 4, inOrder: true });
    const sg = new SgList(4);
    const c = newChain();
    e.drv.add(sg.clear().out(e.data, 1).out(e.data + 1, 1).in(e.data + 2, 1), 0); // 0,1,2
    e.drv.publish();
    e.dev.pop(c);
    e.dev.pushUsed(c.head, 1);
    e.drv.getUsed();
    const h = e.drv.add(sg.clear().out(e.data, 1).in(e.data + 1, 1), 1); // 3,0
    expect(h).toBe(3);
    expect(e.space.readU16(e.layout.desc + 16 * 3 + 14)).toBe(0);
    expect(e.space.readU16(e.layout.desc + 16 * 3 + 12) & 1).toBe(1);
  });

  it('[reserved.reserved-feature-bits.device.5] device must complete in order; pushUsedInOrder writes one element per batch', () => {
    const e = makeEnv({ size: 8, inOrder: true });
    const sg = new SgList(2);
    const c = newChain();
    const heads: number[] = [];
    for (let i = 0; i < 4; i++) e.drv.add(sg.clear().out(e.data, 4).in(e.data + 100 * (i + 1), 10 + i), 50 + i);
    e.drv.publish();
    while (e.dev.pop(c)) heads.push(c.head);
    expect(heads).toEqual([0, 2, 4, 6]);
    e.dev.pushUsed(heads[1]!, 0); // out of order
    expect(e.devSink.errors.map((x) => x.code)).toEqual(['USED_BAD_ID']);
    e.dev.pushUsedInOrder(3, 5); // completes 0, 2, 4 with one element
    expect(e.raw.usedIdx()).toBe(3);
    expect(e.raw.usedElem(0)).toEqual({ id: 4, len: 5 });
    e.dev.pushUsed(6, 13);
    const got: Array<[number, number]> = [];
    while (e.drv.getUsed()) got.push([e.drv.lastToken, e.drv.lastLen]);
    // earlier chains of a batch are reported with their full writable length (as Linux does)
    expect(got).toEqual([[50, 10], [51, 11], [52, 5], [53, 13]]);
    expect(e.drv.freeCount).toBe(8);
    expect(e.drvSink.errors).toEqual([]);
  });
});
