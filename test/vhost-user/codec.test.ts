/** vhost-user wire format: header and payload validation, round trips, no crash on random bytes. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isVirtioError } from '../../src/errors.js';
import {
  decodeConfig,
  decodeHeader,
  decodeMemTable,
  decodeVringAddr,
  decodeVringFile,
  encodeConfig,
  encodeMemTable,
  encodeMessage,
  encodeU64,
  encodeVringAddr,
  type MemRegionDesc,
} from '../../src/vhost-user/codec.js';
import { Req, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_VERSION } from '../../src/vhost-user/protocol.js';

describe('vhost-user codec', () => {
  it('header: version 1 required, unknown flags and oversize payloads refused, REPLY only from the back-end', () => {
    const ok = encodeMessage(Req.SET_OWNER, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK);
    expect(decodeHeader(ok, 0, false)).toEqual({ request: Req.SET_OWNER, flags: 9, size: 0 });
    expect(() => decodeHeader(encodeMessage(1, 0x2), 0, false)).toThrow(/version 2/);
    expect(() => decodeHeader(encodeMessage(1, 0x11), 0, false)).toThrow(/unknown header flag/);
    expect(() => decodeHeader(encodeMessage(1, 0x5), 0, false)).toThrow(/REPLY flag/);
    expect(decodeHeader(encodeMessage(1, 0x5), 0, true).flags).toBe(5);
    const big = encodeMessage(1, 1, new Uint8Array(0));
    new DataView(big.buffer).setUint32(8, 1 << 20, true);
    expect(() => decodeHeader(big, 0, false)).toThrow(/exceeds/);
  });

  it('memory table: count, exact or full size, overlaps, zero sizes', () => {
    const r: MemRegionDesc[] = [
      { gpa: 0, size: 0xa0000, uaddr: 0x7f0000000000, mmapOffset: 0 },
      { gpa: 0x100000, size: 0x1ff00000, uaddr: 0x7f0000100000, mmapOffset: 0x100000 },
    ];
    expect(decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable(r))).toEqual(r);
    const full = new Uint8Array(8 + 8 * 32);
    full.set(encodeMemTable(r));
    expect(decodeMemTable(Req.SET_MEM_TABLE, full)).toEqual(r);
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable(r).subarray(0, 40))).toThrow(/payload of 40 bytes/);
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable([]))).toThrow(/0 regions/);
    const nine = Array.from({ length: 9 }, (_, i) => ({ gpa: i << 20, size: 1 << 20, uaddr: i << 20, mmapOffset: 0 }));
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable(nine))).toThrow(/9 regions/);
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable([r[0]!, { ...r[1]!, gpa: 0x9f000 }]))).toThrow(/overlap in guest-physical/);
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable([r[0]!, { ...r[1]!, uaddr: 0x7f0000000100 }]))).toThrow(/overlap in user/);
    expect(() => decodeMemTable(Req.SET_MEM_TABLE, encodeMemTable([{ ...r[0]!, size: 0 }]))).toThrow(/size 0/);
  });

  it('vring address round trip; addresses at or above 2^53 refused', () => {
    const a = { index: 1, flags: 0, desc: 0x7f0000001000, used: 0x7f0000002000, avail: 0x7f0000001800, log: 0 };
    expect(decodeVringAddr(Req.SET_VRING_ADDR, encodeVringAddr(a))).toEqual(a);
    const bad = encodeVringAddr(a);
    new DataView(bad.buffer).setUint32(12, 0xffffffff, true);
    expect(() => decodeVringAddr(Req.SET_VRING_ADDR, bad)).toThrow(/does not fit in 53 bits/);
    expect(() => decodeVringAddr(Req.SET_VRING_ADDR, bad.subarray(0, 32))).toThrow(/expected 40/);
  });

  it('vring file: index bits 0-7, no-fd bit 8, nothing else', () => {
    expect(decodeVringFile(Req.SET_VRING_KICK, encodeU64(0x103))).toEqual({ index: 3, noFd: true });
    expect(() => decodeVringFile(Req.SET_VRING_KICK, encodeU64(0x200))).toThrow(/bits beyond/);
  });

  it('config: size and offset within 256 bytes, payload length matches', () => {
    const c = encodeConfig(4, 0, new Uint8Array([1, 2, 3]));
    expect(decodeConfig(Req.GET_CONFIG, c)).toMatchObject({ offset: 4, size: 3, flags: 0 });
    expect(() => decodeConfig(Req.GET_CONFIG, encodeConfig(250, 0, new Uint8Array(10)))).toThrow(/beyond 256/);
    expect(() => decodeConfig(Req.GET_CONFIG, c.subarray(0, 14))).toThrow(/expected 15/);
    expect(() => decodeConfig(Req.GET_CONFIG, encodeConfig(0, 2, new Uint8Array(1)))).toThrow(/flags 2/);
  });

  it('random payloads never throw anything but a VirtioError', () => {
    const decoders = [decodeMemTable, decodeVringAddr, decodeConfig, decodeVringFile];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: decoders.length - 1 }), (bytes, k) => {
        try {
          decoders[k]!(Req.SET_MEM_TABLE, bytes);
        } catch (e) {
          return isVirtioError(e) && e.code === 'PROTOCOL';
        }
        return true;
      }),
    );
  });
});
