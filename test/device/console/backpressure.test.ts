import { describe, expect, it } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { ConsoleDevice, StreamBackend, TX_PIECE_BYTES } from '../../../src/device/console/index.js';
import { ConsoleDriver, cat, until } from './console-driver.js';

/** A Writable with a tiny highWaterMark whose writes complete only when the test says so. */
function heldWritable(hwm = 16): { w: Writable; got: Buffer[]; release(): void; pending(): number } {
  const got: Buffer[] = [];
  const cbs: Array<() => void> = [];
  const w = new Writable({
    highWaterMark: hwm,
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      cbs.push(cb);
    },
  });
  return {
    w,
    got,
    release: () => {
      // Only the writes pending now: completing one may start the next synchronously.
      for (const cb of cbs.splice(0, cbs.length)) cb();
    },
    pending: () => cbs.length,
  };
}

function pattern(n: number, seed = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

describe('virtio-console backpressure', () => {
  it('input beyond the bound pauses the source (nothing dropped); draining by the guest resumes it; data arrives complete and in order', async () => {
    const src = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(src, null) }], inputBufferBytes: 1024 });
    const d = new ConsoleDriver(dev);
    const port = dev.port(0)!;
    const data = pattern(4096);
    for (let i = 0; i < 16; i++) src.write(data.subarray(i * 256, (i + 1) * 256));
    await until(() => port.inputPaused, 'source paused');
    expect(src.isPaused()).toBe(true);
    expect(port.stats.pauses).toBe(1);
    expect(port.inputBuffered).toBeGreaterThanOrEqual(1024);
    expect(port.inputBuffered).toBeLessThanOrEqual(2048);
    expect(port.stats.inputDropped).toBe(0);
    // Give the event loop a few turns: a paused source delivers nothing more.
    const held = port.inputBuffered;
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(port.inputBuffered).toBe(held);

    const got: Uint8Array[] = [];
    d.postRx(0, 16, 512);
    await until(() => {
      got.push(...d.collectRx(0));
      return cat(got).length >= 4096;
    }, 'all input delivered');
    expect(cat(got).equals(data)).toBe(true);
    expect(port.inputPaused).toBe(false);
    expect(port.stats.inputDropped).toBe(0);
  });

  it('a source that ignores pause is cut at twice the bound and the loss is counted', () => {
    const src = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(src, null) }], inputBufferBytes: 100 });
    new ConsoleDriver(dev);
    // Push 'data' events by hand, as a misbehaving stream would, ignoring pause().
    for (let i = 0; i < 5; i++) src.emit('data', Buffer.alloc(60, i));
    const port = dev.port(0)!;
    expect(port.inputBuffered).toBe(180);
    expect(port.stats.inputDropped).toBe(120);
  });

  it('output: when the stream write returns false further transmit chains wait (not used) until drain', async () => {
    const h = heldWritable(16);
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(null, h.w) }] });
    const d = new ConsoleDriver(dev);
    const a = d.send(1, pattern(32, 1), { kick: false });
    const b = d.send(1, pattern(32, 2), { kick: false });
    const c = d.send(1, pattern(32, 3));
    // The first chain went into the stream (which is now above its mark): used; the others wait.
    expect(d.collectTx(1).map(([t]) => t)).toEqual([a]);
    expect(dev.port(0)!.transmitBlocked).toBe(true);
    d.rig.core.notify(1); // kicks while blocked change nothing
    d.rig.core.notify(1);
    expect(d.collectTx(1)).toEqual([]);
    h.release();
    await until(() => h.pending() > 0, 'second write');
    expect(d.collectTx(1).map(([t]) => t)).toEqual([b]);
    h.release();
    await until(() => h.pending() > 0, 'third write');
    expect(d.collectTx(1).map(([t]) => t)).toEqual([c]);
    h.release();
    expect(Buffer.concat(h.got).equals(Buffer.concat([pattern(32, 1), pattern(32, 2), pattern(32, 3)]))).toBe(true);
    expect(dev.port(0)!.stats.txBlocked).toBe(3);
  });

  it('a chain larger than one write piece is held part-written: its used element waits for the last piece', async () => {
    const h = heldWritable(16);
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(null, h.w) }] });
    const d = new ConsoleDriver(dev, { ramBytes: 8 << 20 });
    const big = pattern(2 * TX_PIECE_BYTES + 100, 9);
    const t = d.send(1, big, { segs: 3 });
    expect(h.got.length).toBe(1);
    expect(d.collectTx(1)).toEqual([]);
    h.release();
    await until(() => h.got.length === 2, 'second piece');
    expect(d.collectTx(1)).toEqual([]);
    h.release();
    await until(() => h.got.length === 3, 'third piece');
    expect(d.collectTx(1)).toEqual([[t, 0]]);
    expect(Buffer.concat(h.got).equals(big)).toBe(true);
  });
});
