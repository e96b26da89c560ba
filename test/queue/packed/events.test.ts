import { describe, expect, it } from 'vitest';
import { DescChain, SgList } from '../../../src/queue/types.js';
import { RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE } from '../../../src/queue/packed/layout.js';
import { makeFixture, type Fixture } from './helpers.js';

function addOne(f: Fixture, sg: SgList, token: number, n = 1): void {
  sg.clear();
  for (let i = 0; i < n; i++) sg.in(f.alloc(8), 8);
  expect(f.drv.add(sg, token)).toBeGreaterThanOrEqual(0);
}

/** Serve everything available; return how many. */
function serveAll(f: Fixture, chain: DescChain): number {
  let n = 0;
  while (f.dev.pop(chain)) {
    f.dev.pushUsed(chain.head, 0);
    n++;
  }
  return n;
}

describe('packed event suppression: device reads the DRIVER area', () => {
  it('ENABLE (driver enableInterrupts without EVENT_IDX) → interrupt after each push', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    f.drv.enableInterrupts();
    expect(f.space.readU16(f.layout.driver + 2)).toBe(RING_EVENT_FLAGS_ENABLE);
    expect(f.dev.needsInterrupt()).toBe(false); // nothing pushed yet
    for (let i = 0; i < 20; i++) {
      addOne(f, sg, i);
      f.drv.publish();
      expect(serveAll(f, chain)).toBe(1);
      expect(f.dev.needsInterrupt()).toBe(true);
      expect(f.dev.needsInterrupt()).toBe(false); // already accounted
      expect(f.drv.getUsed()).toBe(true);
    }
  });

  it('DISABLE → no interrupt', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    f.drv.disableInterrupts();
    expect(f.space.readU16(f.layout.driver + 2)).toBe(RING_EVENT_FLAGS_DISABLE);
    addOne(f, sg, 1);
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(false);
  });

  it('DESC with EVENT_IDX → interrupt only when the used position passes desc_event_off/wrap', () => {
    const f = makeFixture({ size: 5, eventIdx: true });
    const sg = new SgList(4);
    const chain = new DescChain(4);
    // Driver asks for an interrupt at its next used position (offset 0, wrap 1).
    f.drv.enableInterrupts();
    expect(f.space.readU16(f.layout.driver + 2)).toBe(RING_EVENT_FLAGS_DESC);
    expect(f.space.readU16(f.layout.driver)).toBe(1 << 15);
    addOne(f, sg, 1);
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(true);
    expect(f.drv.getUsed()).toBe(true);
    // Driver does not re-arm: the event stays at (0, wrap 1), already passed → no more interrupts this lap.
    for (let i = 0; i < 3; i++) {
      addOne(f, sg, 2 + i);
      f.drv.publish();
      serveAll(f, chain);
      expect(f.dev.needsInterrupt()).toBe(false);
      expect(f.drv.getUsed()).toBe(true);
    }
    // Ask for the event at offset 2 of the next lap (wrap 0): used position is now 4 (wrap 1).
    f.space.writeU16(f.layout.driver, 2 | (0 << 15));
    addOne(f, sg, 10); // slot 4 → used position 0 wrap 0
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(false);
    expect(f.drv.getUsed()).toBe(true);
    addOne(f, sg, 11, 2); // slots 0,1 → used position 2 wrap 0: crosses slot 1, not 2
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(false);
    expect(f.drv.getUsed()).toBe(true);
    addOne(f, sg, 12); // slot 2 → crosses the event
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(true);
    expect(f.drv.getUsed()).toBe(true);
  });

  it('DESC: a multi-slot buffer whose slots include the event position triggers', () => {
    const f = makeFixture({ size: 6, eventIdx: true });
    const sg = new SgList(4);
    const chain = new DescChain(4);
    f.space.writeU16(f.layout.driver, 2 | (1 << 15));
    f.space.writeU16(f.layout.driver + 2, RING_EVENT_FLAGS_DESC);
    addOne(f, sg, 1, 4); // slots 0..3
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(true);
  });

  it('DESC without EVENT_IDX is treated as ENABLE (spurious interrupts are harmless)', () => {
    const f = makeFixture({ size: 6, eventIdx: false });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    f.space.writeU16(f.layout.driver, 5 | (0 << 15));
    f.space.writeU16(f.layout.driver + 2, RING_EVENT_FLAGS_DESC);
    addOne(f, sg, 1);
    f.drv.publish();
    serveAll(f, chain);
    expect(f.dev.needsInterrupt()).toBe(true);
  });
});

describe('packed event suppression: driver reads the DEVICE area', () => {
  it('device disableNotifications → publish says no kick; enableNotifications → kick', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    f.dev.disableNotifications();
    expect(f.space.readU16(f.layout.device + 2)).toBe(RING_EVENT_FLAGS_DISABLE);
    addOne(f, sg, 1);
    expect(f.drv.publish()).toBe(false);
    expect(f.dev.enableNotifications()).toBe(true); // a buffer arrived meanwhile
    expect(f.space.readU16(f.layout.device + 2)).toBe(RING_EVENT_FLAGS_ENABLE);
    serveAll(f, chain);
    expect(f.dev.enableNotifications()).toBe(false);
    addOne(f, sg, 2);
    expect(f.drv.publish()).toBe(true);
    expect(f.drv.publish()).toBe(false); // nothing new
  });

  it('device DESC with EVENT_IDX: driver kicks once the avail position passes the event', () => {
    const f = makeFixture({ size: 4, eventIdx: true });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    expect(f.dev.enableNotifications()).toBe(false);
    expect(f.space.readU16(f.layout.device + 2)).toBe(RING_EVENT_FLAGS_DESC);
    expect(f.space.readU16(f.layout.device)).toBe(1 << 15); // next avail offset 0, wrap 1
    addOne(f, sg, 1);
    expect(f.drv.publish()).toBe(true);
    // device does not re-arm: event stays at slot 0 of lap 1
    addOne(f, sg, 2);
    expect(f.drv.publish()).toBe(false);
    serveAll(f, chain);
    while (f.drv.getUsed());
    // device re-arms at its next avail position (slot 2, wrap 1)
    expect(f.dev.enableNotifications()).toBe(false);
    expect(f.space.readU16(f.layout.device)).toBe(2 | (1 << 15));
    addOne(f, sg, 3);
    addOne(f, sg, 4);
    addOne(f, sg, 5); // wraps: slot 0 of lap 2
    expect(f.drv.publish()).toBe(true);
    serveAll(f, chain);
    while (f.drv.getUsed());
    // re-armed at (1, wrap 0): adding at slot 1 passes it
    expect(f.dev.enableNotifications()).toBe(false);
    expect(f.space.readU16(f.layout.device)).toBe(1);
    addOne(f, sg, 6);
    expect(f.drv.publish()).toBe(true);
  });

  it('[basic.packed-vq.vq-desc-table.driver.3] notificationData carries next_off/next_wrap in bits 16..31', () => {
    const f = makeFixture({ size: 3 });
    const sg = new SgList(2);
    const chain = new DescChain(2);
    expect(f.drv.notificationData()).toBe((1 << 31) >>> 0);
    for (let i = 0; i < 4; i++) {
      addOne(f, sg, i);
      f.drv.publish();
      serveAll(f, chain);
      expect(f.drv.getUsed()).toBe(true);
    }
    // 4 descriptors made available on a 3-ring: next offset 1, wrap 0
    expect(f.drv.notificationData()).toBe(1 << 16);
    addOne(f, sg, 9);
    // before publish the held-back head is still "not yet available"
    expect(f.drv.notificationData()).toBe(1 << 16);
    f.drv.publish();
    expect(f.drv.notificationData()).toBe(2 << 16);
  });
});
