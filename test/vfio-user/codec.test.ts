/** vfio-user codec: round trips and the validation of every malformed payload. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeDmaAccess,
  decodeDmaMap,
  decodeDmaUnmap,
  decodeIrqInfo,
  decodeRegionAccess,
  decodeRegionInfoReply,
  decodeRegionInfoRequest,
  decodeSetIrqs,
  decodeVersion,
  encodeDmaAccess,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeIrqInfo,
  encodeRegionAccess,
  encodeRegionInfoReply,
  encodeRegionInfoRequest,
  encodeSetIrqs,
  encodeVersion,
  errorReply,
  readHeader,
} from '../../src/vfio-user/codec.js';
import { Cmd, Errno, FLAG_ERROR, FLAG_TYPE_REPLY, HEADER_SIZE, IRQ_SET_ACTION_TRIGGER, IRQ_SET_DATA_BOOL, IRQ_SET_DATA_EVENTFD } from '../../src/vfio-user/protocol.js';

const payload = (m: Uint8Array): Uint8Array => m.subarray(HEADER_SIZE);

function errnoOf(f: () => unknown): number | undefined {
  try {
    f();
  } catch (e) {
    return (e as { errno?: number }).errno;
  }
  return undefined;
}

describe('vfio-user codec round trips', () => {
  it('header fields and size include the header', () => {
    const m = encodeDmaMap(0x1234, { flags: 3, offset: 0, addr: 0x1000, size: 0x2000 });
    expect(readHeader(m)).toEqual({ id: 0x1234, command: Cmd.DMA_MAP, size: 48, flags: 0, error: 0 });
    const e = errorReply(7, Cmd.REGION_READ, Errno.EINVAL);
    expect(readHeader(e)).toEqual({ id: 7, command: Cmd.REGION_READ, size: 16, flags: FLAG_TYPE_REPLY | FLAG_ERROR, error: Errno.EINVAL });
  });

  it('VERSION: capabilities survive, defaults fill in, QEMU-sized request decodes', () => {
    const m = encodeVersion(0, false, 0, 0, { maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: 4096, maxDmaMaps: 65535 });
    const v = decodeVersion(payload(m));
    expect(v.caps).toEqual({ maxMsgFds: 16, maxDataXferSize: 1 << 20, pgsizes: 4096, maxDmaMaps: 65535 });
    const qemu = new TextEncoder().encode('{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}');
    const p = new Uint8Array(4 + qemu.length + 1);
    p.set(qemu, 4);
    expect(HEADER_SIZE + p.length).toBe(214); // reference §5: QEMU's request is 214 bytes
    expect(decodeVersion(p).caps.maxMsgFds).toBe(16);
    const empty = decodeVersion(new Uint8Array([0, 0, 0, 0, 0]));
    expect(empty.caps.maxMsgFds).toBe(1);
  });

  it('DMA_MAP / DMA_UNMAP (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 3 }), (addr, size, offset, flags) => {
        const m = decodeDmaMap(payload(encodeDmaMap(1, { flags, offset, addr, size })));
        expect(m).toEqual({ argsz: 32, flags, offset, addr, size });
        const u = decodeDmaUnmap(payload(encodeDmaUnmap(1, { flags: 0, addr, size })));
        expect(u).toEqual({ argsz: 24, flags: 0, addr, size });
      }),
    );
  });

  it('region info with and without the sparse mmap capability', () => {
    const withCap = encodeRegionInfoReply(3, { flags: 7, index: 4, size: 0x400000, offset: 0, sparse: [{ offset: 0x1000, size: 0x3000 }] }, 256);
    const r = decodeRegionInfoReply(payload(withCap));
    expect(r.sparse).toEqual([{ offset: 0x1000, size: 0x3000 }]);
    expect(r.flags & 8).toBe(8);
    const noRoom = decodeRegionInfoReply(payload(encodeRegionInfoReply(3, { flags: 7, index: 4, size: 0x400000, offset: 0, sparse: [{ offset: 0x1000, size: 0x3000 }] }, 32)));
    expect(noRoom.sparse).toBeUndefined();
    expect(noRoom.argsz).toBe(32 + 16 + 16); // tells the client how much room it needs
    expect(decodeRegionInfoRequest(payload(encodeRegionInfoRequest(1, 7)))).toEqual({ argsz: 32, index: 7 });
  });

  it('IRQ info, SET_IRQS, region and DMA accesses', () => {
    expect(decodeIrqInfo(payload(encodeIrqInfo(1, true, { flags: 9, index: 2, count: 4 })))).toEqual({ argsz: 16, flags: 9, index: 2, count: 4 });
    const s = decodeSetIrqs(payload(encodeSetIrqs(1, { flags: IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, index: 2, start: 1, count: 2, bools: new Uint8Array([1, 0]) })));
    expect([s.index, s.start, s.count, [...s.bools!]]).toEqual([2, 1, 2, [1, 0]]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (off, data) => {
        const w = decodeRegionAccess(payload(encodeRegionAccess(1, Cmd.REGION_WRITE, off, 0, data.length, data)), true, 1 << 20, 'w');
        expect([w.offset, w.count, [...w.data]]).toEqual([off, data.length, [...data]]);
        const d = decodeDmaAccess(payload(encodeDmaAccess(1, Cmd.DMA_WRITE, off, data.length, data)), true, 1 << 20, 'd');
        expect([d.addr, d.count, [...d.data]]).toEqual([off, data.length, [...data]]);
      }),
    );
    // DMA_READ request (no data) is 32 bytes, as QEMU 11.1.3 expects (reference §9).
    expect(encodeDmaAccess(1, Cmd.DMA_READ, 0x1000, 16).length).toBe(32);
  });
});

describe('vfio-user codec rejects malformed payloads with an errno', () => {
  it('VERSION without NUL, bad JSON, bad capability types', () => {
    expect(errnoOf(() => decodeVersion(new Uint8Array([0, 0, 0]))))
      .toBe(Errno.EINVAL);
    expect(errnoOf(() => decodeVersion(new Uint8Array([0, 0, 0, 0, 0x7b])))).toBe(Errno.EINVAL);
    const bad = (json: string): number | undefined => {
      const t = new TextEncoder().encode(json);
      const p = new Uint8Array(4 + t.length + 1);
      p.set(t, 4);
      return errnoOf(() => decodeVersion(p));
    };
    expect(bad('{not json')).toBe(Errno.EINVAL);
    expect(bad('[1,2]')).toBe(Errno.EINVAL);
    expect(bad('{"capabilities": {"max_msg_fds": "many"}}')).toBe(Errno.EINVAL);
    expect(bad('{"capabilities": {"pgsizes": 512}}')).toBe(Errno.EINVAL);
  });

  it('short structs, argsz out of range, 64-bit values beyond 2^53', () => {
    const m = payload(encodeDmaMap(1, { flags: 3, offset: 0, addr: 0x1000, size: 0x1000 }));
    expect(errnoOf(() => decodeDmaMap(m.subarray(0, 20)))).toBe(Errno.EINVAL);
    const small = m.slice();
    new DataView(small.buffer).setUint32(0, 8, true);
    expect(errnoOf(() => decodeDmaMap(small))).toBe(Errno.EINVAL);
    const big = m.slice();
    new DataView(big.buffer).setUint32(0, 4096, true);
    expect(errnoOf(() => decodeDmaMap(big))).toBe(Errno.EINVAL);
    const far = m.slice();
    new DataView(far.buffer).setUint32(20, 0xffffffff, true); // addr high word
    expect(errnoOf(() => decodeDmaMap(far))).toBe(Errno.EINVAL);
    const zero = payload(encodeDmaMap(1, { flags: 3, offset: 0, addr: 0x1000, size: 0 }));
    expect(errnoOf(() => decodeDmaMap(zero))).toBe(Errno.EINVAL);
    const flags = payload(encodeDmaMap(1, { flags: 0x40, offset: 0, addr: 0x1000, size: 0x1000 }));
    expect(errnoOf(() => decodeDmaMap(flags))).toBe(Errno.EINVAL);
    const dirty = payload(encodeDmaUnmap(1, { flags: 1, addr: 0, size: 0x1000 }));
    expect(errnoOf(() => decodeDmaUnmap(dirty))).toBe(Errno.ENOTSUP);
  });

  it('SET_IRQS needs exactly one data type and one action; BOOL needs its bytes', () => {
    const mk = (flags: number, count = 1): Uint8Array => payload(encodeSetIrqs(1, { flags, index: 0, start: 0, count }));
    expect(errnoOf(() => decodeSetIrqs(mk(IRQ_SET_DATA_EVENTFD)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => decodeSetIrqs(mk(IRQ_SET_DATA_EVENTFD | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => decodeSetIrqs(mk(0x100 | IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => decodeSetIrqs(mk(IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER, 4)))).toBe(Errno.EINVAL);
  });

  it('region / DMA accesses: data length must match count, count bounded by max_data_xfer_size', () => {
    const r = payload(encodeRegionAccess(1, Cmd.REGION_WRITE, 0, 0, 4, new Uint8Array(2)));
    expect(errnoOf(() => decodeRegionAccess(r, true, 1 << 20, 'w'))).toBe(Errno.EINVAL);
    const rd = payload(encodeRegionAccess(1, Cmd.REGION_READ, 0, 0, 2 << 20));
    expect(errnoOf(() => decodeRegionAccess(rd, false, 1 << 20, 'r'))).toBe(Errno.E2BIG);
    const dr = payload(encodeDmaAccess(1, Cmd.DMA_READ, 0, 16, new Uint8Array(3)));
    expect(errnoOf(() => decodeDmaAccess(dr, false, 1 << 20, 'd'))).toBe(Errno.EINVAL);
    expect(errnoOf(() => decodeRegionAccess(new Uint8Array(8), false, 1 << 20, 'r'))).toBe(Errno.EINVAL);
  });

  it('random payloads never throw anything but errno-carrying errors (property)', () => {
    const decoders = [decodeDmaMap, decodeDmaUnmap, decodeIrqInfo, decodeSetIrqs, decodeVersion, decodeRegionInfoRequest, decodeRegionInfoReply, (p: Uint8Array) => decodeRegionAccess(p, true, 4096, 'x'), (p: Uint8Array) => decodeDmaAccess(p, false, 4096, 'x')];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.integer({ min: 0, max: decoders.length - 1 }), (p, k) => {
        try {
          decoders[k]!(p);
        } catch (e) {
          expect(typeof (e as { errno?: number }).errno).toBe('number');
        }
      }),
    );
  });
});
