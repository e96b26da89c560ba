import { describe, expect, it } from 'vitest';
import { BenchDevice, BenchDriver, effectiveApi, type QueueApi } from '../../src/bench/queue-agents.js';
import { runJsCell } from '../../src/bench/queue-cell.js';
import { expandCells } from '../../src/bench/queue-bench.js';
import { makeDeviceQueue, makeDriverQueue } from '../../src/bench/queue-impl.js';
import { BENCH_BATCH, BENCH_MEM_SIZE, DESC_OFF, STATUS_OFF, type RingKind } from '../../src/bench/queue-layout.js';
import { TINY_MEASURE } from '../../src/bench/measure.js';
import { runPlainSplit } from '../../src/bench/queue-plain.js';
import { runPlainTwoAgents } from '../../src/bench/queue-plain-two.js';

describe('queue benchmark JS harness (library queues)', () => {
  it.each(expandCells(['split', 'packed'], [1, 3], [1, 2]))('tiny run of %o returns positive rates', async (cell) => {
    const m = await runJsCell(cell, TINY_MEASURE);
    expect(['visit', 'batch', 'chain']).toContain(m.api);
    // split implements the visitor API: the default harness must use it there
    if (cell.ring === 'split') expect(m.api).toBe('visit');
    expect(m.mchainsPerS).toHaveLength(TINY_MEASURE.reps);
    for (const v of m.mchainsPerS) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    expect(m.chains).toBeGreaterThan(0);
  });

  it.each(['split', 'packed'] as const)('two agents with sides (%s): busy ns per chain of driver post, reclaim and device batch', async (ring) => {
    const m = await runJsCell({ ring, descs: 3, agents: 2 }, { ...TINY_MEASURE, sides: true });
    expect(m.sides).toBeDefined();
    for (const v of [m.sides!.postNs, m.sides!.reclaimNs, m.sides!.deviceNs]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    // The device serves only the timed repetition's chains (drained before and after), so its busy
    // time per chain cannot exceed the elapsed time per chain (margin: clock granularity).
    const elapsedNs = 1e3 / Math.min(...m.mchainsPerS);
    expect(m.sides!.deviceNs).toBeLessThan(elapsedNs * 1.5);
    expect((await runJsCell({ ring, descs: 3, agents: 2 }, TINY_MEASURE)).sides).toBeUndefined();
  });

  it.each([1, 3] as const)('plain-JS yardstick with two agents (%d descriptors): device in a worker, every status written', async (descs) => {
    const m = await runPlainTwoAgents(descs, TINY_MEASURE);
    expect(m.chains).toBeGreaterThan(0);
    expect(m.mchainsPerS).toHaveLength(TINY_MEASURE.reps);
    expect(m.mchainsPerS[0]).toBeGreaterThan(0);
  });

  it.each([1, 3] as const)('plain-JS yardstick (%d descriptors) completes chains with every status written', (descs) => {
    const m = runPlainSplit(descs, TINY_MEASURE);
    expect(m.chains).toBeGreaterThan(0);
    expect(m.mchainsPerS[0]).toBeGreaterThan(0);
  });

  it.each(expandCells(['split', 'packed'], [1, 3], [1]).map((c) => ({ ring: c.ring, descs: c.descs, api: 'chain' as QueueApi })))('per-chain API tiny run of %o', async ({ ring, descs, api }) => {
    const m = await runJsCell({ ring, descs, agents: 1 }, TINY_MEASURE, api);
    expect(m.api).toBe('chain');
    expect(m.mchainsPerS[0]).toBeGreaterThan(0);
  });

  it.each([
    ['split', 'chain'],
    ['split', 'batch'],
    ['split', 'visit'],
    ['packed', 'chain'],
    ['packed', 'batch'],
    ['packed', 'visit'],
  ] as Array<[RingKind, QueueApi]>)('%s (%s API): one batch of blk requests round-trips and the device writes every status byte', (ring, want) => {
    const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
    const d = makeDriverQueue(ring, guest);
    const v = makeDeviceQueue(ring, guest);
    const api = effectiveApi(want, v.dq, d.drv);
    const driver = new BenchDriver(d.drv, guest, 3, api);
    const device = new BenchDevice(v.dq, v.space, 3, api);
    expect(driver.post(BENCH_BATCH)).toBe(BENCH_BATCH);
    const u8 = new Uint8Array(guest);
    // before the device ran, the driver's 0xff markers are in place
    let unset = 0;
    for (let t = 0; t < 256; t++) if (u8[STATUS_OFF + t] === 0xff) unset++;
    expect(unset).toBe(BENCH_BATCH);
    expect(device.batch()).toBe(BENCH_BATCH);
    expect(device.checksum).toBeGreaterThan(0); // sectors 1..63 were read from the headers
    expect(driver.reclaim()).toBe(BENCH_BATCH);
    expect(driver.badStatus).toBe(0);
    expect(driver.inFlight).toBe(0);
    expect(v.sink.errors).toHaveLength(0);
    expect(d.sink.errors).toHaveLength(0);
  });

  it.each([
    ['split', 'chain'],
    ['split', 'visit'],
    ['packed', 'chain'],
    ['packed', 'visit'],
  ] as Array<[RingKind, QueueApi]>)('%s (%s API): a descriptor pointing outside guest memory parks the queue and the harness reports it', (ring, want) => {
    const guest = new SharedArrayBuffer(BENCH_MEM_SIZE);
    const d = makeDriverQueue(ring, guest);
    const v = makeDeviceQueue(ring, guest);
    const api = effectiveApi(want, v.dq, d.drv);
    const driver = new BenchDriver(d.drv, guest, 1, api);
    const device = new BenchDevice(v.dq, v.space, 1, api);
    expect(driver.post(1)).toBe(1);
    // corrupt the (only) descriptor's address high word: far outside the space
    new Uint32Array(guest)[(DESC_OFF >> 2) + 1] = 0x10;
    expect(device.batch()).toBe(-1);
    expect(v.dq.parked).toBe(true);
    expect(v.sink.errors[0]?.code).toBe('ADDRESS_OUT_OF_SPACE');
  });
});
