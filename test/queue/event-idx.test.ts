import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { packedNeedEvent, vringNeedEvent } from '../../src/queue/event-idx.js';

describe('vringNeedEvent', () => {
  it('[basic.split-vq.used-buffer-notif-suppression.device.2] notifies iff event idx in [old, new) mod 2^16', () => {
    expect(vringNeedEvent(0, 1, 0)).toBe(true);
    expect(vringNeedEvent(1, 1, 0)).toBe(false);
    expect(vringNeedEvent(5, 10, 3)).toBe(true);
    expect(vringNeedEvent(2, 10, 3)).toBe(false);
    expect(vringNeedEvent(10, 10, 3)).toBe(false);
    expect(vringNeedEvent(0xffff, 2, 0xfffe)).toBe(true); // across the wrap
    expect(vringNeedEvent(2, 2, 0xfffe)).toBe(false);
    expect(vringNeedEvent(7, 7, 7)).toBe(false); // nothing moved
  });

  it('matches a brute-force walk over the written entries', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 300 }), (ev, old, n) => {
        let hit = false;
        for (let i = 0; i < n; i++) if (((old + i) & 0xffff) === ev) hit = true;
        expect(vringNeedEvent(ev, (old + n) & 0xffff, old)).toBe(hit);
      }),
    );
  });
});

describe('packedNeedEvent', () => {
  it('matches a brute-force walk over ring positions with wrap counters', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.nat(), fc.nat(), fc.nat(), (size, a, b, c) => {
        const oldPos = a % (2 * size); // position in [0, 2*size): offset + lap*size
        const n = b % (size + 1);
        const evPos = c % (2 * size);
        const enc = (pos: number): number => (pos % size) | ((pos < size ? 1 : 0) << 15); // wrap counter starts at 1
        let hit = false;
        for (let i = 0; i < n; i++) if ((oldPos + i) % (2 * size) === evPos) hit = true;
        expect(packedNeedEvent(enc(evPos), enc((oldPos + n) % (2 * size)), enc(oldPos), size)).toBe(hit);
      }),
    );
  });
});
