/**
 * The vhost-user back-end driven by the TypeScript front-end (src/vhost-user/frontend.ts) over a
 * socketpair: memfd guest RAM shared by fd, rings written by the simulated driver queues, kick and
 * call eventfds — no QEMU.
 */
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { encodeMessage, encodeU64, encodeVringState } from '../../src/vhost-user/codec.js';
import { Req, VHOST_USER_NEED_REPLY_MASK, VHOST_USER_VERSION } from '../../src/vhost-user/protocol.js';
import { blkRequest, DATA_BASE, handshake, makeRig, startRing, UADDR_OFFSET, waitReadable } from './helpers.js';

const SKIP = !native.available;

describe.skipIf(SKIP)('vhost-user back-end with the TypeScript front-end', () => {
  for (const packed of [false, true]) {
    it(`${packed ? 'packed' : 'split'} ring: write then read a sector, GET_VRING_BASE hands the position over`, async () => {
      const rig = await makeRig({ packed });
      try {
        await handshake(rig, packed);
        const dq = await startRing(rig, 64, packed);
        const sp = rig.ram.space;
        for (let i = 0; i < 512; i++) sp.writeU8(DATA_BASE + i, (i * 7 + 3) & 0xff);
        const w = await blkRequest(rig, dq, 1, 3, DATA_BASE, 512);
        expect(w.status).toBe(0);
        expect(Array.from(rig.disk.disk.subarray(3 * 512, 3 * 512 + 4))).toEqual([3, 10, 17, 24]);
        const r = await blkRequest(rig, dq, 0, 3, DATA_BASE + 0x1000, 512);
        expect(r.status).toBe(0);
        expect(r.usedLen).toBe(513);
        expect(sp.readU8(DATA_BASE + 0x1000 + 1)).toBe(10);
        const base = await rig.fe.getVringBase(0);
        // split: next avail index 2; packed: offsets count descriptor slots (3 per request), wrap bits still 1.
        expect(packed ? base & 0x7fff : base).toBe(packed ? 6 : 2);
        if (packed) {
          expect((base >>> 16) & 0x7fff).toBe(6);
          expect((base >>> 15) & 1).toBe(1);
          expect(base >>> 31).toBe(1);
        }
        expect(rig.backend.session?.queue(0)).toBeNull();
      } finally {
        await rig.close();
      }
    });
  }

  it('GET_CONFIG returns the blk config (capacity), SET_CONFIG of a read-only range beyond the space is refused', async () => {
    const rig = await makeRig();
    try {
      await handshake(rig);
      const cfg = await rig.fe.getConfig(0, 8);
      expect(new DataView(cfg.buffer, cfg.byteOffset).getUint32(0, true)).toBe((1 << 20) / 512);
      await expect(rig.fe.setConfig(250, new Uint8Array(4))).rejects.toThrow(/refused SET_CONFIG/);
      expect(await rig.fe.getQueueNum()).toBe(1);
    } finally {
      await rig.close();
    }
  });

  it('[basic.split-vq.vq-desc-table.device.1] restricted mode: a buffer outside --restrict goes to the choke point, the err fd fires', async () => {
    const rig = await makeRig({ restrict: [{ start: DATA_BASE, end: DATA_BASE + 0x10000 }] });
    try {
      await handshake(rig);
      const dq = await startRing(rig, 64);
      // The header sits inside the allowed range; this works.
      const ok = await blkRequest(rig, dq, 1, 0, DATA_BASE + 0x200, 512, DATA_BASE);
      expect(ok.status).toBe(0);
      // The space holds the allowed range plus the ring areas only.
      const space = rig.backend.session!.space!;
      expect(space.check(DATA_BASE + 0x20000, 1, false)).toBe(false);
      expect(space.check(0x80000, 1, false)).toBe(false);
      // A data buffer outside the allowed range is refused.
      const p = blkRequest(rig, dq, 1, 0, 0x80000, 512, DATA_BASE);
      await waitReadable(rig.err);
      const ge = rig.backend.events.filter((e) => e.kind === 'guest-error');
      expect(ge.length).toBe(1);
      expect(ge[0]!.guestError!.code).toBe('ADDRESS_OUT_OF_SPACE');
      expect(ge[0]!.guestError!.clause).toBe('basic.split-vq.vq-desc-table.device.1');
      p.catch(() => undefined);
    } finally {
      await rig.close();
    }
  });

  it('malformed requests are refused with a failure ack, never a crash', async () => {
    const rig = await makeRig();
    try {
      await handshake(rig);
      const fe = rig.fe;
      // Bad size: SET_VRING_NUM with 4 bytes.
      await expect(fe.request(Req.SET_VRING_NUM, new Uint8Array(4))).rejects.toThrow(/refused SET_VRING_NUM/);
      // Unknown request.
      await expect(fe.request(99, encodeU64(0))).rejects.toThrow(/refused request 99/);
      // Ring index beyond the device.
      await expect(fe.setVringNum(5, 64)).rejects.toThrow(/refused/);
      // Ring size 0.
      await expect(fe.setVringNum(0, 0)).rejects.toThrow(/refused/);
      // Ring addresses outside the memory table.
      await expect(fe.setVringAddr({ index: 0, flags: 0, desc: 0x1000, used: 0x2000, avail: 0x3000, log: 0 })).rejects.toThrow(/refused SET_VRING_ADDR/);
      await expect(fe.setVringAddr({ index: 0, flags: 0, desc: UADDR_OFFSET + (1 << 20) + 64, used: UADDR_OFFSET, avail: UADDR_OFFSET, log: 0 })).rejects.toThrow(/refused/);
      // Features never offered.
      await expect(fe.setFeatures({ lo: 0, hi: 0x80000000 })).rejects.toThrow(/refused SET_FEATURES/);
      // Kick without an fd although the no-fd flag is clear.
      await expect(fe.request(Req.SET_VRING_KICK, encodeU64(0))).rejects.toThrow(/refused/);
      // A fd on a request that takes none is closed, the request refused.
      const efd = native.eventfdCreate(0);
      await expect(fe.request(Req.SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }), [efd])).rejects.toThrow(/refused/);
      native.close(efd);
      // The back-end still works afterwards.
      expect(await fe.getQueueNum()).toBe(1);
      expect(rig.backend.stats.failedRequests).toBeGreaterThanOrEqual(9);
    } finally {
      await rig.close();
    }
  });

  it('framing errors (bad version, too many fds) close the connection; a new session starts fresh with the same disk', async () => {
    const rig = await makeRig();
    try {
      await handshake(rig);
      const fds = Array.from({ length: 9 }, () => native.eventfdCreate(0));
      rig.fe.sendRaw(encodeMessage(Req.SET_VRING_CALL, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, encodeU64(0)), fds);
      for (const fd of fds) native.close(fd);
      await rig.fe.closed;
      await rig.backend.session?.done;
      expect(rig.backend.session).toBeNull();
      // Reconnect: the same back-end serves a second front-end.
      const [a, b] = native.socketpair();
      rig.backend.serve(a);
      const { VhostUserFrontend } = await import('../../src/vhost-user/frontend.js');
      const fe2 = VhostUserFrontend.fromFd(b, { timeoutMs: 5000 });
      rig.fe = fe2;
      await handshake(rig);
      const dq = await startRing(rig, 64);
      rig.ram.space.writeU8(DATA_BASE, 0x5a);
      expect((await blkRequest(rig, dq, 1, 1, DATA_BASE, 512)).status).toBe(0);
      expect(rig.disk.disk[512]).toBe(0x5a);
      expect(rig.backend.stats.sessions).toBe(2);
      // Bad header version closes too.
      const bad = encodeMessage(Req.GET_FEATURES, 0x2);
      fe2.sendRaw(bad);
      await fe2.closed;
    } finally {
      await rig.close();
    }
  });
});
