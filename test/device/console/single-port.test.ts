import { describe, expect, it } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { ConsoleDevice, CONSOLE_CFG, StreamBackend } from '../../../src/device/console/index.js';
import { VirtioDeviceCore } from '../../../src/device/core.js';
import { STATUS_ACKNOWLEDGE, STATUS_SUSPEND } from '../../../src/features/status.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_SUSPEND } from '../../../src/features/bits.js';
import { AddressSpace } from '../../../src/memory/space.js';
import { createSplitDeviceQueue } from '../../../src/queue/split/index.js';
import { CountingHooks } from '../blk/harness.js';
import { ConsoleDriver, cat, until } from './console-driver.js';

/** A Writable that records what it gets. */
function sinkStream(): { w: Writable; got: Buffer[] } {
  const got: Buffer[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      got.push(chunk);
      cb();
    },
  });
  return { w, got };
}

describe('virtio-console single port', () => {
  it('[console.dev-op.driver.2] echo through a PassThrough: guest output comes back as guest input; transmit used len is 0', async () => {
    const pt = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: StreamBackend.fromDuplex(pt) }] });
    const d = new ConsoleDriver(dev);
    d.postRx(0, 4, 64);
    d.send(1, 'hello, ', { segs: 3 });
    d.send(1, 'world');
    expect(d.collectTx(1).map(([, len]) => len)).toEqual([0, 0]);
    const got: Uint8Array[] = [];
    await until(() => {
      got.push(...d.collectRx(0));
      return cat(got).length >= 12;
    }, 'echo');
    expect(cat(got).toString()).toBe('hello, world');
    expect(dev.port(0)!.stats.txBytes).toBe(12);
    expect(dev.port(0)!.stats.rxBytes).toBe(12);
  });

  it('[console.dev-op.driver.1] input waits for receive buffers, fills each up to its size; used len = bytes written', async () => {
    const input = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(input, null) }] });
    const d = new ConsoleDriver(dev);
    input.write('0123456789abcdef');
    await until(() => dev.port(0)!.inputBuffered === 16, 'input buffered');
    expect(d.collectRx(0)).toEqual([]);
    d.postRx(0, 3, 6);
    const got = d.collectRx(0).map((b) => Buffer.from(b).toString());
    expect(got).toEqual(['012345', '6789ab', 'cdef']);
    expect(dev.port(0)!.inputBuffered).toBe(0);
  });

  it('[console.dev-op.driver.1] a device-readable segment in a receive chain is ignored (not read, not written) and counted', async () => {
    const input = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(input, null) }] });
    const d = new ConsoleDriver(dev);
    d.postRx(0, 1, 8, 4);
    input.write('xyz');
    let got: Uint8Array[] = [];
    await until(() => (got = d.collectRx(0)).length > 0, 'rx');
    expect(Buffer.from(got[0]!).toString()).toBe('xyz');
    expect(dev.port(0)!.stats.readableInRx).toBe(1);
    expect(d.rig.core.choke.count).toBe(0);
  });

  it('[console.dev-op.driver.2] a device-writable segment in a transmit chain is ignored (never written) and counted', () => {
    const { w, got } = sinkStream();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(null, w) }] });
    const d = new ConsoleDriver(dev);
    d.send(1, 'out', { writableTail: 16 });
    expect(d.collectTx(1)).toEqual([[expect.any(Number), 0]]);
    expect(Buffer.concat(got).toString()).toBe('out');
    expect(dev.port(0)!.stats.writableInTx).toBe(1);
  });

  it('[pci.common-cfg.device.6] resize without multiport: cols/rows in the configuration, generation bump and a config interrupt', () => {
    const dev = new ConsoleDevice({ size: { cols: 80, rows: 25 } });
    const d = new ConsoleDriver(dev);
    expect(d.cfg(CONSOLE_CFG.COLS, 2)).toBe(80);
    expect(d.cfg(CONSOLE_CFG.ROWS, 2)).toBe(25);
    const gen = d.rig.core.configGeneration;
    const irqs = d.rig.hooks.configIrqs;
    dev.resize(132, 43);
    expect(d.cfg(CONSOLE_CFG.COLS, 2)).toBe(132);
    expect(d.cfg(CONSOLE_CFG.ROWS, 2)).toBe(43);
    expect(d.rig.core.configGeneration).not.toBe(gen);
    expect(d.rig.hooks.configIrqs).toBe(irqs + 1);
    // Driver writes to the read-only size fields change nothing.
    d.rig.core.writeConfig(CONSOLE_CFG.COLS, 2, 7);
    expect(d.cfg(CONSOLE_CFG.COLS, 2)).toBe(132);
  });

  it('without VIRTIO_CONSOLE_F_SIZE offered a resize raises no config interrupt', () => {
    const dev = new ConsoleDevice();
    const d = new ConsoleDriver(dev);
    const irqs = d.rig.hooks.configIrqs;
    dev.resize(100, 30);
    expect(d.rig.hooks.configIrqs).toBe(irqs);
  });

  it('[console.dev-init.device.1] [console.dev-init.device.2] emerg_wr works on an unconfigured device and emits the lower byte on port 0', () => {
    const { w, got } = sinkStream();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(null, w) }] });
    const buf = new ArrayBuffer(1 << 16);
    const core = new VirtioDeviceCore({
      model: dev,
      space: new AddressSpace([{ base: 0, size: 1 << 16, buffer: buf, name: 'ram' }], 'ram'),
      hooks: new CountingHooks(),
      queueFactories: { split: createSplitDeviceQueue },
    });
    // Status 0: nothing negotiated, no queues.
    core.writeConfig(CONSOLE_CFG.EMERG_WR, 4, 0x1234_5641);
    core.writeStatus(STATUS_ACKNOWLEDGE);
    core.writeConfig(CONSOLE_CFG.EMERG_WR, 1, 0x42);
    expect(Buffer.concat(got).toString()).toBe('AB');
    expect(dev.stats.emergWrites).toBe(2);
    expect(core.readConfig(CONSOLE_CFG.EMERG_WR, 4)).toBe(0);
  });

  it('[console.dev-init.device.2] emerg_wr after DRIVER_OK goes to the same backend, interleaved with port output', () => {
    const { w, got } = sinkStream();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(null, w) }] });
    const d = new ConsoleDriver(dev);
    d.send(1, 'ab');
    d.rig.core.writeConfig(CONSOLE_CFG.EMERG_WR, 4, 0x21);
    d.send(1, 'cd');
    expect(Buffer.concat(got).toString()).toBe('ab!cd');
  });

  it('[init.dev-suspend.device.3] [init.dev-suspend.device.5] while suspended: no queue access, no config change; both happen on resume', async () => {
    const input = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(input, null) }], size: { cols: 80, rows: 25 } });
    const d = new ConsoleDriver(dev, { extraFeatures: [VIRTIO_F_EVENT_IDX, VIRTIO_F_SUSPEND] });
    d.postRx(0, 2, 32);
    const st = d.rig.core.status;
    expect(d.rig.core.writeStatus(st | STATUS_SUSPEND).kind).toBe('suspend');
    const irqs = d.rig.hooks.configIrqs;
    dev.resize(100, 50);
    input.write('held');
    await until(() => dev.port(0)!.inputBuffered === 4, 'input buffered');
    expect(d.collectRx(0)).toEqual([]);
    expect(d.cfg(CONSOLE_CFG.COLS, 2)).toBe(80);
    expect(d.rig.core.writeStatus(st | STATUS_SUSPEND).kind).toBe('resume');
    expect(d.cfg(CONSOLE_CFG.COLS, 2)).toBe(100);
    expect(d.rig.hooks.configIrqs).toBe(irqs + 1);
    expect(cat(d.collectRx(0)).toString()).toBe('held');
  });

  it('[basic.dev-reset.device.1] after a device reset and re-initialization port 0 carries data again', async () => {
    const pt = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: StreamBackend.fromDuplex(pt) }] });
    const d = new ConsoleDriver(dev);
    d.rig.core.writeStatus(0);
    const d2 = new ConsoleDriver(dev); // a second rig re-initializes the same model
    d2.postRx(0, 2, 32);
    d2.send(1, 'again');
    let got: Uint8Array[] = [];
    await until(() => (got = d2.collectRx(0)).length > 0, 'echo after reset');
    expect(Buffer.from(got[0]!).toString()).toBe('again');
  });
});
