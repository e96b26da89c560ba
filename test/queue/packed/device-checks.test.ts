/**
 * Device-side validation of the packed ring: one regression test per check, titled with the clause id
 * it enforces (or the error code where the spec has no normative clause for it).
 */
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../../src/memory/space.js';
import { RecordingSink } from '../../../src/device/choke.js';
import { DescChain, SgList, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../../src/queue/types.js';
import { createPackedDeviceQueue, PackedDeviceQueue } from '../../../src/queue/packed/device.js';
import { layoutPackedRings } from '../../../src/queue/packed/layout.js';
import { availFlags, makeFixture, sameBytes, RAM_BASE, RAM_SIZE, snapshot, writeDesc, writeDescHiLo, writeIndirect, type Fixture } from './helpers.js';

const A1 = availFlags(1);

/** After an error: parked, exactly one sink error with this code/clause, later pops touch nothing. */
function expectParked(f: Fixture, code: string, clause: string | undefined, chain = new DescChain(64)): void {
  expect(f.dev.parked).toBe(true);
  expect(f.sink.errors.length).toBe(1);
  const e = f.sink.errors[0]!;
  expect(e.code).toBe(code);
  expect(e.clause).toBe(clause);
  expect(e.queue).toBe(f.cfg.index);
  expect(e.message).toMatch(/\d/);
  // Later pops: false, no resolve, no memory change, no new error — even with a valid buffer offered.
  writeDesc(f, 0, { addr: RAM_BASE + 0x8000, len: 8, id: 0, flags: A1 });
  const before = snapshot(f);
  const nResolves = f.space.log.length;
  for (let i = 0; i < 5; i++) expect(f.dev.pop(chain)).toBe(false);
  expect(f.dev.hasAvailable()).toBe(false);
  expect(f.space.log.length).toBe(nResolves);
  expect(sameBytes(snapshot(f), before)).toBe(true);
  expect(f.sink.errors.length).toBe(1);
  // reset() un-parks and forgets state (without touching memory)
  f.dev.reset();
  expect(sameBytes(snapshot(f), before)).toBe(true);
  expect(f.dev.parked).toBe(false);
  expect(f.dev.pop(chain)).toBe(true);
}

function cfgFor(size: number, over: Partial<QueueConfig> = {}): QueueConfig {
  const l = layoutPackedRings(RAM_BASE, size);
  return { index: 1, size, maxSize: 1024, desc: l.desc, driver: l.driver, device: l.device, eventIdx: false, indirect: false, inOrder: false, ...over };
}

function ramSpace(readOnlyTail = false): AddressSpace {
  const buf = new ArrayBuffer(RAM_SIZE);
  const regions = readOnlyTail
    ? [
        { base: RAM_BASE, size: RAM_SIZE / 2, buffer: buf, name: 'rw' },
        { base: RAM_BASE + RAM_SIZE / 2, size: RAM_SIZE / 2, buffer: buf, offset: RAM_SIZE / 2, readOnly: true, name: 'ro' },
      ]
    : [{ base: RAM_BASE, size: RAM_SIZE, buffer: buf, name: 'ram' }];
  return new AddressSpace(regions, 'guest');
}

describe('packed device queue setup', () => {
  it('[pci.common-cfg.driver.2] refuses queue size 0', () => {
    const sink = new RecordingSink();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(0), sink)).toBeNull();
    expect(sink.errors.map((e) => [e.code, e.clause, e.queue])).toEqual([['QUEUE_SIZE_INVALID', 'pci.common-cfg.driver.2', 1]]);
  });

  it('[mmio.regs.driver.9] refuses a size above the device maximum or above 32768', () => {
    const sink = new RecordingSink();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(1025), sink)).toBeNull();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(32769, { maxSize: 65536 }), sink)).toBeNull();
    expect(sink.errors.map((e) => [e.code, e.clause])).toEqual([
      ['QUEUE_SIZE_INVALID', 'mmio.regs.driver.9'],
      ['QUEUE_SIZE_INVALID', 'mmio.regs.driver.9'],
    ]);
  });

  it('accepts sizes that are not powers of 2 (packed rings need not be)', () => {
    const sink = new RecordingSink();
    for (const s of [1, 3, 100, 257, 32768]) {
      const q = createPackedDeviceQueue(ramSpace(), cfgFor(s, { maxSize: 32768 }), sink);
      expect(q).toBeInstanceOf(PackedDeviceQueue);
      expect(q!.size).toBe(s);
      expect(q!.kind).toBe('packed');
    }
    expect(sink.errors).toEqual([]);
  });

  it.each([
    ['desc', 8],
    ['driver', 2],
    ['device', 2],
  ] as const)('[basic.packed-vq.vq.driver.1] refuses a misaligned %s area', (part, delta) => {
    const sink = new RecordingSink();
    const cfg = cfgFor(8);
    cfg[part] += delta;
    expect(createPackedDeviceQueue(ramSpace(), cfg, sink)).toBeNull();
    expect(sink.errors.map((e) => [e.code, e.clause])).toEqual([['RING_MISALIGNED', 'basic.packed-vq.vq.driver.1']]);
  });

  it('RING_OUT_OF_SPACE: areas outside the space, straddling its end, or a read-only device area', () => {
    const sink = new RecordingSink();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(8, { desc: 0x1000 }), sink)).toBeNull();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(8, { desc: RAM_BASE + RAM_SIZE - 64 }), sink)).toBeNull();
    expect(createPackedDeviceQueue(ramSpace(), cfgFor(8, { driver: RAM_BASE + RAM_SIZE }), sink)).toBeNull();
    const roDevice = RAM_BASE + RAM_SIZE / 2 + 64;
    expect(createPackedDeviceQueue(ramSpace(true), cfgFor(8, { device: roDevice }), sink)).toBeNull();
    expect(sink.errors.map((e) => e.code)).toEqual(['RING_OUT_OF_SPACE', 'RING_OUT_OF_SPACE', 'RING_OUT_OF_SPACE', 'RING_OUT_OF_SPACE']);
    // a read-only DRIVER area is fine: the device only reads it
    expect(createPackedDeviceQueue(ramSpace(true), cfgFor(8, { driver: roDevice }), sink)).not.toBeNull();
    expect(sink.errors.length).toBe(4);
  });
});

describe('packed device queue: descriptor checks', () => {
  const chain = new DescChain(64);

  it('[basic.packed-vq.vq-desc-table.device.2] uses a descriptor only when AVAIL matches its wrap counter and USED does not', () => {
    const f = makeFixture({ size: 4 });
    const buf = f.alloc(16);
    // zero-initialized ring: nothing available
    expect(f.dev.hasAvailable()).toBe(false);
    expect(f.dev.pop(chain)).toBe(false);
    for (const flags of [0, 0x8000, 0x8080, 0x0000 | 0x80 | 0x8000]) {
      writeDesc(f, 0, { addr: buf, len: 16, id: 0, flags });
      expect(f.dev.pop(chain)).toBe(false);
    }
    writeDesc(f, 0, { addr: buf, len: 16, id: 0, flags: availFlags(0) }); // wrong lap
    expect(f.dev.pop(chain)).toBe(false);
    writeDesc(f, 0, { addr: buf, len: 16, id: 0, flags: A1 });
    expect(f.dev.hasAvailable()).toBe(true);
    expect(f.dev.pop(chain)).toBe(true);
    expect(f.sink.errors).toEqual([]);
  });

  it('[basic.packed-vq.scatter-gather-support.device.1] takes the buffer id from the LAST descriptor of a list', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 7, flags: A1 | VIRTQ_DESC_F_NEXT });
    writeDesc(f, 2, { addr: f.alloc(8), len: 8, id: 5, flags: A1 | VIRTQ_DESC_F_WRITE });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 6, flags: A1 | VIRTQ_DESC_F_NEXT });
    expect(f.dev.pop(chain)).toBe(true);
    expect([chain.head, chain.count, chain.readable, chain.descCount]).toEqual([5, 3, 2, 3]);
    expect(f.dev.inFlight).toBe(1);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.6] a list whose later descriptor is not available yet is left alone (no error)', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT });
    expect(f.dev.pop(chain)).toBe(false);
    expect(f.dev.pop(chain)).toBe(false);
    expect(f.dev.parked).toBe(false);
    expect(f.dev.inFlight).toBe(0);
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(true);
    expect(chain.count).toBe(2);
    expect(f.sink.errors).toEqual([]);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.2] refuses a list longer than the queue size (loop), TTL = size', () => {
    const f = makeFixture({ size: 4 });
    for (let i = 0; i < 4; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT });
    const resolvesBefore = f.space.log.length;
    expect(f.dev.pop(new DescChain(4))).toBe(false);
    // bounded: at most the queue size of descriptors examined
    expect(f.space.log.length - resolvesBefore).toBeLessThanOrEqual(4);
    expect(f.dev.parked).toBe(true);
    expect(f.sink.errors.length).toBe(1);
    expect(f.sink.errors[0]!.code).toBe('CHAIN_LOOP');
    expect(f.sink.errors[0]!.clause).toBe('basic.packed-vq.scatter-gather-support.driver.2');
  });

  it('[basic.packed-vq.scatter-gather-support.driver.2] with a device limit above the queue size, NEXT on every slot still stops at the queue size', () => {
    const f = makeFixture({ size: 3, maxChainSegments: 8 });
    for (let i = 0; i < 3; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 1, flags: A1 | VIRTQ_DESC_F_NEXT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.2', chain);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.1] refuses more descriptors than the device allows (maxChainSegments)', () => {
    const f = makeFixture({ size: 8, maxChainSegments: 2 });
    for (let i = 0; i < 3; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | (i < 2 ? VIRTQ_DESC_F_NEXT : 0) });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1', chain);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.1] the DescChain capacity is a device limit too', () => {
    const f = makeFixture({ size: 8 });
    for (let i = 0; i < 3; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | (i < 2 ? VIRTQ_DESC_F_NEXT : 0) });
    expect(f.dev.pop(new DescChain(2))).toBe(false);
    expectParked(f, 'CHAIN_LOOP', 'basic.packed-vq.scatter-gather-support.driver.1', chain);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.3] refuses a readable descriptor after a writable one', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE });
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', chain);
  });

  it('PACKED_BAD_ID: refuses a buffer id not below the queue size', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 8, flags: A1 });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'PACKED_BAD_ID', undefined, chain);
  });

  it('HEAD_IN_FLIGHT: refuses a buffer id that is still in flight', () => {
    const f = makeFixture({ size: 8 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(true);
    expect(f.dev.pop(chain)).toBe(false);
    expect(f.sink.errors[0]!.message).toContain('id 0');
    expectParked(f, 'HEAD_IN_FLIGHT', undefined, chain);
  });

  it('[basic.packed-vq.vq-desc-table.driver.1] refuses more descriptors in flight than the ring holds (re-offered slots)', () => {
    const f = makeFixture({ size: 4 });
    // a 3-slot list (id 0) and a 1-slot buffer (id 1): the whole ring is in flight, ids 2 and 3 are free
    for (let i = 0; i < 3; i++) writeDesc(f, i, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | (i < 2 ? VIRTQ_DESC_F_NEXT : 0) });
    writeDesc(f, 3, { addr: f.alloc(8), len: 8, id: 1, flags: A1 });
    for (let i = 0; i < 2; i++) expect(f.dev.pop(chain)).toBe(true);
    // driver overwrites slot 0 for lap 2 although the device has not used it
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 2, flags: availFlags(0) });
    expect(f.dev.pop(chain)).toBe(false);
    expect(f.sink.errors[0]!.code).toBe('HEAD_IN_FLIGHT');
    expect(f.sink.errors[0]!.clause).toBe('basic.packed-vq.vq-desc-table.driver.1');
  });

  it('[basic.packed-vq.indirect-desc.driver.1] refuses INDIRECT when VIRTIO_F_INDIRECT_DESC was not negotiated', () => {
    const f = makeFixture({ size: 8, indirect: false });
    const t = f.alloc(16);
    writeIndirect(f, t, 0, { addr: f.alloc(8), len: 8, flags: 0 });
    writeDesc(f, 0, { addr: t, len: 16, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'INDIRECT_NOT_NEGOTIATED', 'basic.packed-vq.indirect-desc.driver.1', chain);
  });

  it('[basic.packed-vq.indirect-desc.driver.4] refuses INDIRECT together with NEXT', () => {
    const f = makeFixture({ size: 8, indirect: true });
    const t = f.alloc(16);
    writeIndirect(f, t, 0, { addr: f.alloc(8), len: 8, flags: 0 });
    writeDesc(f, 0, { addr: t, len: 16, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT });
    writeDesc(f, 1, { addr: f.alloc(8), len: 8, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'INDIRECT_WITH_NEXT', 'basic.packed-vq.indirect-desc.driver.4', chain);
  });

  it('[basic.packed-vq.indirect-desc.driver.4] refuses an INDIRECT descriptor at the end of a NEXT-linked list', () => {
    const f = makeFixture({ size: 8, indirect: true });
    const t = f.alloc(16);
    writeIndirect(f, t, 0, { addr: f.alloc(8), len: 8, flags: 0 });
    writeDesc(f, 0, { addr: f.alloc(8), len: 8, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT });
    writeDesc(f, 1, { addr: t, len: 16, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'INDIRECT_WITH_NEXT', 'basic.packed-vq.indirect-desc.driver.4', chain);
  });

  it.each([0, 24, 8])('INDIRECT_BAD_LENGTH: refuses an indirect table of %i bytes (must be a non-zero multiple of 16)', (len) => {
    const f = makeFixture({ size: 8, indirect: true });
    const t = f.alloc(64);
    writeDesc(f, 0, { addr: t, len, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'INDIRECT_BAD_LENGTH', undefined, chain);
  });

  it('[basic.packed-vq.indirect-desc.driver.3] refuses an indirect table longer than the device allows', () => {
    const f = makeFixture({ size: 8, indirect: true, maxChainSegments: 4 });
    const t = f.alloc(16 * 5);
    for (let i = 0; i < 5; i++) writeIndirect(f, t, i, { addr: f.alloc(8), len: 8, flags: 0 });
    writeDesc(f, 0, { addr: t, len: 16 * 5, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'INDIRECT_BAD_LENGTH', 'basic.packed-vq.indirect-desc.driver.3', chain);
  });

  it('[basic.packed-vq.indirect-desc.driver.2] refuses a nested indirect table; ignores other reserved flags and ids in the table', () => {
    const f = makeFixture({ size: 8, indirect: true });
    const t = f.alloc(32);
    // NEXT and AVAIL/USED bits and an id inside the table are reserved and ignored
    writeIndirect(f, t, 0, { addr: f.alloc(8), len: 8, flags: VIRTQ_DESC_F_NEXT | 0x80, id: 99 });
    writeIndirect(f, t, 1, { addr: f.alloc(8), len: 8, flags: VIRTQ_DESC_F_WRITE | 0x8000 });
    writeDesc(f, 0, { addr: t, len: 32, id: 2, flags: A1 | VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE });
    expect(f.dev.pop(chain)).toBe(true);
    expect([chain.head, chain.count, chain.readable, chain.descCount]).toEqual([2, 2, 1, 1]);
    // nested
    const t2 = f.alloc(16);
    writeIndirect(f, t2, 0, { addr: t, len: 32, flags: VIRTQ_DESC_F_INDIRECT });
    writeDesc(f, 1, { addr: t2, len: 16, id: 3, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'NESTED_INDIRECT', 'basic.packed-vq.indirect-desc.driver.2', chain);
  });

  it('[basic.packed-vq.scatter-gather-support.driver.3] refuses a readable entry after a writable one inside an indirect table', () => {
    const f = makeFixture({ size: 8, indirect: true });
    const t = f.alloc(32);
    writeIndirect(f, t, 0, { addr: f.alloc(8), len: 8, flags: VIRTQ_DESC_F_WRITE });
    writeIndirect(f, t, 1, { addr: f.alloc(8), len: 8, flags: 0 });
    writeDesc(f, 0, { addr: t, len: 32, id: 0, flags: A1 | VIRTQ_DESC_F_INDIRECT });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'READABLE_AFTER_WRITABLE', 'basic.packed-vq.scatter-gather-support.driver.3', chain);
  });

  it('ADDRESS_OUT_OF_SPACE: buffer or indirect table outside the space, or straddling its end', () => {
    for (const [addr, len, flags] of [
      [0x100, 8, A1],
      [RAM_BASE + RAM_SIZE - 4, 8, A1 | VIRTQ_DESC_F_WRITE],
      [RAM_BASE + RAM_SIZE, 16, A1 | VIRTQ_DESC_F_INDIRECT],
    ] as const) {
      const f = makeFixture({ size: 8, indirect: true });
      writeDesc(f, 0, { addr, len, id: 0, flags });
      expect(f.dev.pop(chain)).toBe(false);
      expectParked(f, 'ADDRESS_OUT_OF_SPACE', undefined, chain);
    }
  });

  it('ADDRESS_OVERFLOW / OUT_OF_SPACE: 64-bit addresses beyond 2^53 are refused without precision loss', () => {
    let f = makeFixture({ size: 8 });
    writeDescHiLo(f, 0, { lo: 0xfffffff0, hi: 0xffffffff, len: 0x20, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'ADDRESS_OVERFLOW', undefined, chain);
    f = makeFixture({ size: 8 });
    // 2^53 + RAM_BASE would alias RAM_BASE if converted to a double carelessly
    writeDescHiLo(f, 0, { lo: RAM_BASE, hi: 0x200000, len: 8, id: 0, flags: A1 });
    expect(f.dev.pop(chain)).toBe(false);
    expectParked(f, 'ADDRESS_OUT_OF_SPACE', undefined, chain);
  });

  it('[basic.packed-vq.vq-desc-table.device.1] ADDRESS_READ_ONLY: a device-writable buffer in a read-only region is refused; readable ones resolve for read only', () => {
    const f = makeFixture({ size: 8 });
    // a fixture variant with a read-only region: build the device on a space with an extra RO region
    const roBuf = new ArrayBuffer(4096);
    const space = new (f.space.constructor as typeof AddressSpace)(
      [
        { base: RAM_BASE, size: RAM_SIZE, buffer: f.backing, offset: 4096, name: 'ram' },
        { base: 0x8000_0000, size: 4096, buffer: roBuf, readOnly: true, name: 'rom' },
      ],
      'guest+rom',
    );
    const sink = new RecordingSink();
    const dev = createPackedDeviceQueue(space, f.cfg, sink)!;
    writeDesc(f, 0, { addr: 0x8000_0000, len: 8, id: 0, flags: A1 });
    expect(dev.pop(chain)).toBe(true); // readable from ROM: fine
    writeDesc(f, 1, { addr: 0x8000_0010, len: 8, id: 1, flags: A1 | VIRTQ_DESC_F_WRITE });
    expect(dev.pop(chain)).toBe(false);
    expect(dev.parked).toBe(true);
    expect(sink.errors.map((e) => e.code)).toEqual(['ADDRESS_READ_ONLY']);
  });

  it('[basic.packed-vq.vq-desc-table.device.1] segments are resolved for write only when device-writable', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(4);
    const r = f.alloc(8);
    const w = f.alloc(8);
    f.drv.add(sg.clear().out(r, 8).in(w, 8), 1);
    f.drv.publish();
    f.space.log.length = 0;
    expect(f.dev.pop(chain)).toBe(true);
    expect(f.space.log.map((e) => [e.addr, e.write])).toEqual([
      [r, false],
      [w, true],
    ]);
  });

  it('CHAIN_TOO_LONG_BYTES: refuses a buffer totalling more than 2^32 bytes', () => {
    // A space that claims a huge region above 4 GiB (nothing is copied, only resolved).
    class HugeSpace extends AddressSpace {
      override resolve(addr: number, len: number, write: boolean): number {
        if (addr >= 2 ** 32 && addr + len <= 2 ** 40) {
          this.off = 0;
          return 0;
        }
        return super.resolve(addr, len, write);
      }
    }
    const f = makeFixture({ size: 8 });
    const space = new HugeSpace([{ base: RAM_BASE, size: RAM_SIZE, buffer: f.backing, offset: 4096, name: 'ram' }], 'huge');
    const sink = new RecordingSink();
    const dev = createPackedDeviceQueue(space, f.cfg, sink)!;
    writeDescHiLo(f, 0, { lo: 0, hi: 1, len: 0x80000000, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT });
    writeDescHiLo(f, 1, { lo: 0, hi: 2, len: 0x80000000, id: 0, flags: A1 | VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE });
    writeDescHiLo(f, 2, { lo: 0, hi: 3, len: 1, id: 0, flags: A1 | VIRTQ_DESC_F_WRITE });
    expect(dev.pop(chain)).toBe(false);
    expect(sink.errors.map((e) => [e.code, e.clause])).toEqual([['CHAIN_TOO_LONG_BYTES', 'basic.split-vq.vq-desc-table.driver.1']]);
    // exactly 2^32 is allowed
    dev.reset();
    writeDescHiLo(f, 2, { lo: 0, hi: 3, len: 0, id: 0, flags: A1 | VIRTQ_DESC_F_WRITE });
    expect(dev.pop(chain)).toBe(true);
    expect(chain.readableBytes + chain.writableBytes).toBe(2 ** 32);
  });
});

describe('packed device queue: used side', () => {
  const chain = new DescChain(8);

  it('USED_BAD_ID: pushUsed of an id not in flight or out of range parks the queue, writes nothing', () => {
    for (const bad of [0, 8, -1, 1.5, 40000]) {
      const f = makeFixture({ size: 8 });
      const before = snapshot(f);
      f.dev.pushUsed(bad, 0);
      expect(sameBytes(snapshot(f), before)).toBe(true);
      expect(f.dev.parked).toBe(true);
      expect(f.sink.errors.map((e) => e.code)).toEqual(['USED_BAD_ID']);
    }
  });

  it('USED_BAD_ID: a batch with a duplicate id is refused as a whole', () => {
    const f = makeFixture({ size: 8 });
    const sg = new SgList(2);
    f.drv.add(sg.clear().in(f.alloc(8), 8), 0);
    f.drv.add(sg.clear().in(f.alloc(8), 8), 1);
    f.drv.publish();
    const ids: number[] = [];
    while (f.dev.pop(chain)) ids.push(chain.head);
    const before = snapshot(f);
    f.dev.pushUsedBatch([ids[0]!, ids[1]!, ids[0]!], [1, 1, 1], 3);
    expect(sameBytes(snapshot(f), before)).toBe(true);
    expect(f.sink.errors.map((e) => e.code)).toEqual(['USED_BAD_ID']);
    expect(f.sink.errors[0]!.message).toContain('duplicate');
    // in-flight buffers can still be completed while parked (no leaked heads)
    f.dev.pushUsedBatch(ids, [1, 2], 2);
    expect(f.drv.getUsed()).toBe(true);
    expect(f.drv.getUsed()).toBe(true);
    expect(f.drv.getUsed()).toBe(false);
    expect(f.dev.inFlight).toBe(0);
  });

  it('[basic.packed-vq.vq.device.2] used descriptors carry AVAIL=USED=wrap, WRITE only when len > 0, and land in completion order', () => {
    const f = makeFixture({ size: 2 });
    const sg = new SgList(2);
    for (let lap = 0; lap < 3; lap++) {
      f.drv.add(sg.clear().in(f.alloc(8), 8), 0);
      f.drv.add(sg.clear().out(f.alloc(8), 8), 1);
      f.drv.publish();
      const ids: number[] = [];
      while (f.dev.pop(chain)) ids.push(chain.head);
      f.dev.pushUsed(ids[1]!, 0);
      f.dev.pushUsed(ids[0]!, 8);
      const wrap = lap % 2 === 0 ? 1 : 0;
      const w = wrap ? 0x8080 : 0;
      expect(f.space.readU16(f.layout.desc + 14)).toBe(w);
      expect(f.space.readU16(f.layout.desc + 12)).toBe(ids[1]);
      expect(f.space.readU16(f.layout.desc + 16 + 14)).toBe(w | VIRTQ_DESC_F_WRITE);
      expect(f.space.readU16(f.layout.desc + 16 + 12)).toBe(ids[0]);
      expect(f.space.readU32(f.layout.desc + 16 + 8)).toBe(8);
      while (f.drv.getUsed());
    }
  });

  it('setBase refuses offsets beyond the queue size', () => {
    const f = makeFixture({ size: 8 });
    f.dev.setBase(9);
    expect(f.sink.errors.map((e) => e.code)).toEqual(['INVALID_ARGUMENT']);
  });
});
