import { describe, it, expect } from 'vitest';
import { DirectBackend } from '../../../src/device/net/backend.js';
import { NET_F } from '../../../src/device/net/features.js';
import { STATUS_NEEDS_RESET } from '../../../src/features/status.js';
import { netGuest } from './harness.js';
import { ETH_P_IP, eth, mac } from './frames.js';

const ME = '52:54:00:00:00:01';
const PEER = mac('52:54:00:00:00:02');

function frameOf(len: number, seed = 1): Uint8Array {
  const payload = Uint8Array.from({ length: len - 14 }, (_, i) => (i * 7 + seed) & 0xff);
  return eth(mac(ME), PEER, ETH_P_IP, payload);
}

describe('receive path', () => {
  it('[net.processing-incoming-packets.device.2] [net.processing-incoming-packets.device.3] [net.processing-incoming-packets.device.4] a frame larger than one buffer spans several with num_buffers set', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be });
    expect(g.rig.features.has(NET_F.MRG_RXBUF)).toBe(true);
    g.drv.postRx(0, 8, 1024);
    const irqs = g.rig.hooks.queueIrqs[0] ?? 0;
    const f = frameOf(5000);
    be.inject(f);
    const got = g.drv.recv();
    expect(got).toHaveLength(1);
    const r = got[0]!;
    expect(r.hdr.numBuffers).toBe(Math.ceil((12 + 5000) / 1024));
    expect(r.buffers).toBe(5);
    // every buffer but the last is filled completely; used len = bytes written
    expect(r.lens).toEqual([1024, 1024, 1024, 1024, 12 + 5000 - 4 * 1024]);
    expect(r.frame).toEqual(f);
    expect(g.dev.stats.rxBuffers).toBe(5);
    // one interrupt for the whole frame (used idx published once)
    expect((g.rig.hooks.queueIrqs[0] ?? 0) - irqs).toBe(1);
    // the 3 remaining buffers still take a small frame
    be.inject(frameOf(100, 2));
    const small = g.drv.recv();
    expect(small.map((x) => [x.buffers, x.lens[0]])).toEqual([[1, 112]]);
  });

  it('[net.processing-incoming-packets.device.2] a frame waits when the ring runs dry part-way, then completes without partial writes', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be });
    g.drv.postRx(0, 2, 1024);
    const f = frameOf(3000);
    be.inject(f);
    expect(g.drv.recv()).toHaveLength(0);
    expect(g.dev.backlogged).toBe(1);
    expect(g.dev.rxQueueState(0)?.held).toBe(2);
    g.drv.postRx(0, 2, 1024);
    const got = g.drv.recv();
    expect(got).toHaveLength(1);
    expect(got[0]!.buffers).toBe(3);
    expect(got[0]!.frame).toEqual(f);
    expect(g.dev.rxQueueState(0)?.held).toBe(0); // only the 3 needed were popped; the 4th stays in the ring
  });

  it('[net.setting-up-receive-buffers.device.2] [net.processing-incoming-packets.device.1] without MRG_RXBUF one buffer per frame, num_buffers 1; too big → dropped, buffer kept', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be }, { decline: [NET_F.MRG_RXBUF] });
    expect(g.drv.mergeable).toBe(false);
    g.drv.postRx(0, 1, 1526);
    be.inject(frameOf(1600)); // 12 + 1600 > 1526
    expect(g.dev.stats.rxTooBig).toBe(1);
    expect(g.drv.recv()).toHaveLength(0);
    const f = frameOf(1514);
    be.inject(f);
    const got = g.drv.recv();
    expect(got).toHaveLength(1);
    expect(got[0]!.hdr.numBuffers).toBe(1);
    expect(got[0]!.lens).toEqual([12 + 1514]);
    expect(got[0]!.frame).toEqual(f);
  });

  it('[net.automatic-receive-steering-in-multiqueue-mode.device.4] no receive buffers: frames are backlogged, delivered in order when buffers arrive; overflow drops and counts without throwing', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be, backlogFrames: 4 });
    const frames = Array.from({ length: 6 }, (_, i) => frameOf(60 + i, i));
    for (const f of frames) expect(() => be.inject(f)).not.toThrow();
    expect(g.dev.stats.rxBacklogged).toBe(4);
    expect(g.dev.stats.rxNoBuffer).toBe(2);
    expect(g.dev.backlogged).toBe(4);
    expect(g.rig.core.choke.count).toBe(0);
    g.drv.postRx(0, 2, 2048); // only 2 buffers: 2 delivered, 2 still waiting
    expect(g.drv.recv().map((r) => r.frame.length)).toEqual([60, 61]);
    expect(g.dev.backlogged).toBe(2);
    // a new frame queues behind the backlog (order kept)
    be.inject(frameOf(99, 9));
    g.drv.postRx(0, 8, 2048);
    const rest = g.drv.recv();
    expect(rest.map((r) => r.frame.length)).toEqual([62, 63, 99]);
    expect(rest[0]!.frame).toEqual(frames[2]);
    expect(g.dev.backlogged).toBe(0);
  });

  it('[net.setting-up-receive-buffers.driver.1] a mergeable buffer smaller than the header is a guest error (queue parked, NEEDS_RESET)', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be });
    g.drv.postRx(0, 1, 8);
    be.inject(frameOf(60));
    expect(g.rig.core.choke.last?.clause).toBe('net.setting-up-receive-buffers.driver.1');
    expect(g.rig.core.status & STATUS_NEEDS_RESET).not.toBe(0);
    expect(() => be.inject(frameOf(60))).not.toThrow();
    expect(g.dev.stats.rxNotReady).toBeGreaterThan(0);
  });

  it('frames before DRIVER_OK, while the link is down, or shorter than an Ethernet header are dropped and counted', () => {
    const be = new DirectBackend();
    const g = netGuest({ mac: ME, backend: be });
    g.drv.postRx(0, 4, 2048);
    be.inject(new Uint8Array(10));
    expect(g.dev.stats.rxRunt).toBe(1);
    g.dev.setLink(false);
    be.inject(frameOf(60));
    expect(g.dev.stats.rxLinkDown).toBe(1);
    g.rig.core.writeStatus(0);
    be.inject(frameOf(60));
    expect(g.dev.stats.rxNotReady).toBe(1);
  });
});
