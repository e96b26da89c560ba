import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import {
  CONSOLE_CFG,
  ConsoleDevice,
  StreamBackend,
  VIRTIO_CONSOLE_CONSOLE_PORT as CONSOLE_PORT,
  VIRTIO_CONSOLE_DEVICE_ADD as DEVICE_ADD,
  VIRTIO_CONSOLE_DEVICE_READY as DEVICE_READY,
  VIRTIO_CONSOLE_DEVICE_REMOVE as DEVICE_REMOVE,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_PORT_NAME as PORT_NAME,
  VIRTIO_CONSOLE_PORT_OPEN as PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY as PORT_READY,
  VIRTIO_CONSOLE_RESIZE as RESIZE,
  type ConsoleDeviceOptions,
} from '../../../src/device/console/index.js';
import { isVirtioError } from '../../../src/errors.js';
import { ConsoleDriver, cat, until, type CtrlMsg } from './console-driver.js';

const brief = (ms: CtrlMsg[]): Array<[number, number, number]> => ms.map((m) => [m.id, m.event, m.value]);

interface Two {
  d: ConsoleDriver;
  dev: ConsoleDevice;
  in0: PassThrough;
  in1: PassThrough;
}

function twoPorts(extra: ConsoleDeviceOptions = {}): Two {
  const in0 = new PassThrough();
  const in1 = new PassThrough();
  const dev = new ConsoleDevice({
    ports: [{ backend: new StreamBackend(in0, new PassThrough()) }, { backend: new StreamBackend(in1, new PassThrough()), name: 'org.virtiokit.test' }],
    maxNrPorts: 3,
    ...extra,
  });
  const d = new ConsoleDriver(dev);
  return { d, dev, in0, in1 };
}

/** Run the bring-up up to PORT_READY for every added port. */
function bringUp(t: Two): CtrlMsg[] {
  t.d.postCtrlRx(16);
  t.d.sendCtrl(0, DEVICE_READY, 1);
  const adds = t.d.readCtrl();
  for (const m of adds) t.d.sendCtrl(m.id, PORT_READY, 1);
  return t.d.readCtrl();
}

describe('virtio-console multiport', () => {
  it('[console.multiport-dev-op.driver.1] offers MULTIPORT with max_nr_ports; sends nothing on the control queue before DEVICE_READY', () => {
    const t = twoPorts();
    expect(t.d.rig.features.has(VIRTIO_CONSOLE_F_MULTIPORT)).toBe(true);
    expect(t.d.cfg(CONSOLE_CFG.MAX_NR_PORTS, 4)).toBe(3);
    expect(t.dev.numQueues).toBe(8);
    t.d.postCtrlRx(8);
    t.dev.resize(100, 40);
    t.in0.write('early');
    t.dev.addPort(2); // hot-plug before DEVICE_READY: announced only once the driver is ready
    expect(t.d.readCtrl()).toEqual([]);
    expect(t.dev.deviceReady).toBe(false);
    t.d.sendCtrl(0, DEVICE_READY, 1);
    expect(brief(t.d.readCtrl())).toEqual([
      [0, DEVICE_ADD, 1],
      [1, DEVICE_ADD, 1],
      [2, DEVICE_ADD, 1],
    ]);
  });

  it('[console.multiport-dev-op.device.1] [console.multiport-dev-op.driver.2] bring-up: DEVICE_READY → DEVICE_ADD per port → PORT_READY → CONSOLE_PORT / PORT_NAME / PORT_OPEN', async () => {
    const t = twoPorts();
    const { d } = t;
    d.postCtrlRx(16);
    d.sendCtrl(0, DEVICE_READY, 1);
    expect(t.dev.deviceReady).toBe(true);
    expect(brief(d.readCtrl())).toEqual([
      [0, DEVICE_ADD, 1],
      [1, DEVICE_ADD, 1],
    ]);
    d.sendCtrl(0, PORT_READY, 1);
    const m0 = d.readCtrl();
    expect(brief(m0)).toEqual([
      [0, CONSOLE_PORT, 1],
      [0, PORT_OPEN, 1], // the host side (a stream) is connected
    ]);
    d.sendCtrl(1, PORT_READY, 1);
    const m1 = d.readCtrl();
    expect(brief(m1)).toEqual([
      [1, PORT_NAME, 1],
      [1, PORT_OPEN, 1],
    ]);
    expect(Buffer.from(m1[0]!.payload).toString()).toBe('org.virtiokit.test');

    // Input waits until the guest has the port open; the driver answers CONSOLE_PORT with PORT_OPEN 1.
    d.postRx(d.rxq(0), 2, 32);
    d.postRx(d.rxq(1), 2, 32);
    t.in0.write('to-console');
    t.in1.write('to-port1');
    await until(() => t.dev.port(0)!.inputBuffered > 0 && t.dev.port(1)!.inputBuffered > 0, 'input buffered');
    expect(d.collectRx(d.rxq(0))).toEqual([]);
    d.sendCtrl(0, PORT_OPEN, 1);
    expect(cat(d.collectRx(d.rxq(0))).toString()).toBe('to-console');
    expect(d.collectRx(d.rxq(1))).toEqual([]);
    d.sendCtrl(1, PORT_OPEN, 1);
    expect(cat(d.collectRx(d.rxq(1))).toString()).toBe('to-port1');
    expect(d.rxq(1)).toBe(4);
    expect(d.txq(1)).toBe(5);
  });

  it('[console.multiport-dev-op.device.1] a repeated DEVICE_READY does not add ports again; addPort refuses an existing id or one ≥ max_nr_ports', () => {
    const t = twoPorts();
    bringUp(t);
    t.d.sendCtrl(0, DEVICE_READY, 1);
    expect(t.d.readCtrl()).toEqual([]);
    const refuse = (f: () => unknown): void => {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(isVirtioError(err) && err.code === 'INVALID_ARGUMENT').toBe(true);
    };
    refuse(() => t.dev.addPort(1));
    refuse(() => t.dev.addPort(3));
    // Hot-plug port 2: announced at once.
    const extra = new PassThrough();
    t.dev.addPort(2, { backend: new StreamBackend(extra, null), name: 'late' });
    expect(brief(t.d.readCtrl())).toEqual([[2, DEVICE_ADD, 1]]);
    t.d.sendCtrl(2, PORT_READY, 1);
    expect(brief(t.d.readCtrl())).toEqual([
      [2, PORT_NAME, 1],
      [2, PORT_OPEN, 1],
    ]);
  });

  it('[console.multiport-dev-op.device.2] DEVICE_REMOVE only for an added port; removing a missing port is refused', () => {
    const t = twoPorts();
    bringUp(t);
    t.dev.removePort(1);
    expect(brief(t.d.readCtrl())).toEqual([[1, DEVICE_REMOVE, 1]]);
    expect(t.dev.port(1)).toBeNull();
    expect(() => t.dev.removePort(1)).toThrow(/does not exist/);
    expect(t.d.readCtrl()).toEqual([]);
  });

  it('[console.multiport-dev-op.device.2] a port removed before DEVICE_READY is never announced nor removed on the wire', () => {
    const t = twoPorts();
    t.dev.removePort(1);
    t.d.postCtrlRx(8);
    t.d.sendCtrl(0, DEVICE_READY, 1);
    expect(brief(t.d.readCtrl())).toEqual([[0, DEVICE_ADD, 1]]);
  });

  it('resize with multiport: a RESIZE control message with cols, rows for the console port; no config interrupt', () => {
    const t = twoPorts({ size: { cols: 80, rows: 24 } });
    bringUp(t);
    const irqs = t.d.rig.hooks.configIrqs;
    t.dev.resize(200, 50);
    const [m] = t.d.readCtrl();
    expect([m!.id, m!.event]).toEqual([0, RESIZE]);
    const dv = new DataView(m!.payload.buffer, m!.payload.byteOffset, 4);
    expect([dv.getUint16(0, true), dv.getUint16(2, true)]).toEqual([200, 50]);
    expect(t.d.rig.hooks.configIrqs).toBe(irqs);
  });

  it("resizeOrder 'rows-cols' swaps the RESIZE payload for older Linux drivers; a size set before PORT_READY follows CONSOLE_PORT", () => {
    const t = twoPorts({ size: { cols: 80, rows: 24 }, resizeOrder: 'rows-cols' });
    t.d.postCtrlRx(16);
    t.d.sendCtrl(0, DEVICE_READY, 1);
    t.d.readCtrl();
    t.dev.resize(120, 30);
    t.d.sendCtrl(0, PORT_READY, 1);
    const ms = t.d.readCtrl();
    expect(brief(ms).slice(0, 2)).toEqual([
      [0, CONSOLE_PORT, 1],
      [0, RESIZE, 0],
    ]);
    const p = ms[1]!.payload;
    const dv = new DataView(p.buffer, p.byteOffset, 4);
    expect([dv.getUint16(0, true), dv.getUint16(2, true)]).toEqual([30, 120]);
  });

  it('control messages waiting for control receive buffers go out in order once the driver posts them', () => {
    const t = twoPorts();
    t.d.postCtrlRx(1);
    t.d.sendCtrl(0, DEVICE_READY, 1);
    expect(brief(t.d.readCtrl())).toEqual([[0, DEVICE_ADD, 1]]);
    t.d.postCtrlRx(4);
    expect(brief(t.d.readCtrl())).toEqual([[1, DEVICE_ADD, 1]]);
  });

  it('malformed, unknown-port and wrong-direction control messages are ignored and counted, not guest errors', () => {
    const t = twoPorts();
    bringUp(t);
    t.d.sendCtrl(0, PORT_OPEN, 1, 5); // short
    t.d.sendCtrl(7, PORT_OPEN, 1); // no such port
    t.d.sendCtrl(0, DEVICE_ADD, 1); // device → driver event
    t.d.sendCtrl(0, 99, 1); // unknown event
    expect(t.dev.stats.controlMalformed).toBe(1);
    expect(t.dev.stats.controlIgnored).toBe(3);
    expect(t.d.rig.core.choke.count).toBe(0);
    expect(t.dev.port(0)!.guestOpen).toBe(false);
  });

  it('host connect / disconnect of a ready port sends PORT_OPEN 1 / 0', async () => {
    const out = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{}, { backend: new StreamBackend(null, out) }], maxNrPorts: 2 });
    const d = new ConsoleDriver(dev);
    d.postCtrlRx(16);
    d.sendCtrl(0, DEVICE_READY, 1);
    d.readCtrl();
    d.sendCtrl(1, PORT_READY, 1);
    expect(brief(d.readCtrl())).toEqual([[1, PORT_OPEN, 1]]);
    out.destroy();
    await until(() => !dev.port(1)!.backend.connected, 'backend closed');
    expect(brief(d.readCtrl())).toEqual([[1, PORT_OPEN, 0]]);
  });

  it('[basic.dev-reset.device.1] after a device reset the control protocol starts over: silence until DEVICE_READY, then every port is added again', () => {
    const t = twoPorts();
    bringUp(t);
    t.d.rig.core.writeStatus(0);
    expect(t.dev.deviceReady).toBe(false);
    expect(t.dev.port(0)!.added).toBe(false);
    const d2 = new ConsoleDriver(t.dev);
    d2.postCtrlRx(8);
    t.dev.resize(90, 30);
    expect(d2.readCtrl()).toEqual([]);
    d2.sendCtrl(0, DEVICE_READY, 1);
    expect(brief(d2.readCtrl())).toEqual([
      [0, DEVICE_ADD, 1],
      [1, DEVICE_ADD, 1],
    ]);
  });

  it('without MULTIPORT negotiated port 0 carries data at once (no control protocol)', async () => {
    const in0 = new PassThrough();
    const dev = new ConsoleDevice({ ports: [{ backend: new StreamBackend(in0, null) }, {}], maxNrPorts: 2 });
    const d = new ConsoleDriver(dev, { decline: [VIRTIO_CONSOLE_F_MULTIPORT], queues: [0, 1] });
    d.postRx(0, 1, 16);
    in0.write('single');
    let got: Uint8Array[] = [];
    await until(() => (got = d.collectRx(0)).length > 0, 'rx');
    expect(Buffer.from(got[0]!).toString()).toBe('single');
    expect(dev.multiportActive).toBe(false);
  });
});
