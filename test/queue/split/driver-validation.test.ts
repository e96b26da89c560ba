/** Driver-side checks of what a (malicious) device writes into the used ring. */
import { describe, expect, it } from 'vitest';
import { makeEnv, type Env } from './helpers.js';
import { SgList } from '../../../src/queue/types.js';

function posted(): Env {
  const e = makeEnv({ size: 8 });
  const sg = new SgList(3);
  e.drv.add(sg.clear().out(e.data, 16).in(e.data + 64, 100).in(e.data + 256, 1), 11); // head 0, descs 0-2
  e.drv.add(sg.clear().in(e.data + 512, 8), 12); // head 3
  e.drv.publish();
  return e;
}

function expectStopped(e: Env, code: string, clause: string | undefined): void {
  expect(e.drv.getUsed()).toBe(false);
  expect(e.drvSink.errors.map((x) => [x.code, x.clause, x.queue])).toEqual([[code, clause, 3]]);
  expect(e.drv.parked).toBe(true);
  expect(e.drv.getUsed()).toBe(false);
  expect(e.drvSink.errors).toHaveLength(1);
}

describe('split driver validates the used ring', () => {
  it('used idx further ahead than the buffers in flight -> DEVICE_USED_IDX_AHEAD', () => {
    const e = posted();
    e.raw.writeUsedElem(0, 0, 0);
    e.raw.setUsedIdx(3); // only 2 in flight
    expectStopped(e, 'DEVICE_USED_IDX_AHEAD', undefined);
  });

  it('used idx 9 on a size-8 queue -> DEVICE_USED_IDX_AHEAD', () => {
    const e = posted();
    e.raw.setUsedIdx(9);
    expectStopped(e, 'DEVICE_USED_IDX_AHEAD', undefined);
  });

  for (const [id, why] of [
    [8, 'id >= queue size'],
    [0x10000, 'id with high bits'],
    [1, 'a non-head descriptor of a chain'],
    [5, 'a free descriptor'],
  ] as const) {
    it(`used id ${id} (${why}) -> DEVICE_USED_BAD_ID`, () => {
      const e = posted();
      e.raw.writeUsedElem(0, id, 0);
      e.raw.setUsedIdx(1);
      expectStopped(e, 'DEVICE_USED_BAD_ID', undefined);
    });
  }

  it('the same id returned twice -> DEVICE_USED_BAD_ID on the second', () => {
    const e = posted();
    e.raw.writeUsedElem(0, 3, 0);
    e.raw.writeUsedElem(1, 3, 0);
    e.raw.setUsedIdx(2);
    expect(e.drv.getUsed()).toBe(true);
    expect(e.drv.lastToken).toBe(12);
    expectStopped(e, 'DEVICE_USED_BAD_ID', undefined);
  });

  it('[basic.split-vq.vq-used-ring.device.2] len beyond the writable bytes -> DEVICE_USED_BAD_LEN', () => {
    const e = posted();
    e.raw.writeUsedElem(0, 0, 102); // writable = 100 + 1
    e.raw.setUsedIdx(1);
    expectStopped(e, 'DEVICE_USED_BAD_LEN', 'basic.split-vq.vq-used-ring.device.2');
  });

  it('len equal to the writable bytes is accepted; tokens come back', () => {
    const e = posted();
    e.raw.writeUsedElem(0, 0, 101);
    e.raw.writeUsedElem(1, 3, 8);
    e.raw.setUsedIdx(2);
    expect(e.drv.getUsed()).toBe(true);
    expect([e.drv.lastToken, e.drv.lastLen]).toEqual([11, 101]);
    expect(e.drv.getUsed()).toBe(true);
    expect([e.drv.lastToken, e.drv.lastLen]).toEqual([12, 8]);
    expect(e.drv.getUsed()).toBe(false);
    expect(e.drv.freeCount).toBe(8);
    expect(e.drvSink.errors).toEqual([]);
  });

  it('add returns -1 when the ring has no room', () => {
    const e = makeEnv({ size: 4 });
    const sg = new SgList(3);
    expect(e.drv.add(sg.clear().out(e.data, 1).out(e.data, 1).out(e.data, 1), 0)).toBe(0);
    expect(e.drv.add(sg.clear().out(e.data, 1).out(e.data, 1), 1)).toBe(-1);
    expect(e.drv.add(sg.clear().out(e.data, 1), 1)).toBe(3);
    expect(e.drv.freeCount).toBe(0);
  });
});
