import { afterEach, describe, expect, it } from 'vitest';
import { createConnection, type Socket } from 'node:net';
import { existsSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConsoleDevice,
  UnixSocketBackend,
  VIRTIO_CONSOLE_DEVICE_READY as DEVICE_READY,
  VIRTIO_CONSOLE_PORT_OPEN as PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY as PORT_READY,
} from '../../../src/device/console/index.js';
import { isVirtioError } from '../../../src/errors.js';
import { ConsoleDriver, cat, until } from './console-driver.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

let n = 0;
function sockPath(): string {
  return join(tmpdir(), `virtiokit-console-${process.pid}-${n++}.sock`);
}

async function connect(path: string): Promise<{ s: Socket; got: Buffer[]; closed: () => boolean }> {
  const s = createConnection(path);
  const got: Buffer[] = [];
  let isClosed = false;
  s.on('data', (c: Buffer) => got.push(c));
  s.on('close', () => (isClosed = true));
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.once('connect', () => r()));
  cleanup.push(() => {
    s.destroy();
  });
  return { s, got, closed: () => isClosed };
}

describe('virtio-console UNIX socket backend', () => {
  it('round trip: client → guest receiveq, guest transmitq → client; output without a client is dropped and counted', async () => {
    const path = sockPath();
    const be = await UnixSocketBackend.listen(path);
    cleanup.push(() => be.close());
    const dev = new ConsoleDevice({ ports: [{ backend: be }] });
    const d = new ConsoleDriver(dev);
    d.send(1, 'nobody');
    expect(be.stats.droppedNoPeer).toBe(6);

    const c = await connect(path);
    await until(() => be.connected, 'client accepted');
    d.postRx(0, 4, 64);
    c.s.write('from-host');
    const rx: Uint8Array[] = [];
    await until(() => {
      rx.push(...d.collectRx(0));
      return cat(rx).length >= 9;
    }, 'host → guest');
    expect(cat(rx).toString()).toBe('from-host');

    d.send(1, 'from-guest');
    await until(() => Buffer.concat(c.got).length >= 10, 'guest → host');
    expect(Buffer.concat(c.got).toString()).toBe('from-guest');
    expect(d.collectTx(1).map(([, len]) => len)).toEqual([0, 0]);
  });

  it('serves one client at a time: a second one is refused; after the first leaves a new one is accepted', async () => {
    const path = sockPath();
    const be = await UnixSocketBackend.listen(path);
    cleanup.push(() => be.close());
    const dev = new ConsoleDevice({ ports: [{ backend: be }] });
    new ConsoleDriver(dev);
    const c1 = await connect(path);
    await until(() => be.connected, 'first client');
    const c2 = await connect(path);
    await until(() => c2.closed(), 'second client refused');
    expect(be.stats.refused).toBe(1);
    c1.s.destroy();
    await until(() => !be.connected, 'first client gone');
    await connect(path);
    await until(() => be.connected, 'third client');
    expect(be.stats.accepted).toBe(2);
  });

  it('multiport: a client connecting / leaving a ready port sends PORT_OPEN 1 / 0', async () => {
    const path = sockPath();
    const be = await UnixSocketBackend.listen(path);
    cleanup.push(() => be.close());
    const dev = new ConsoleDevice({ ports: [{}, { backend: be }], maxNrPorts: 2 });
    const d = new ConsoleDriver(dev);
    d.postCtrlRx(16);
    d.sendCtrl(0, DEVICE_READY, 1);
    d.readCtrl();
    d.sendCtrl(1, PORT_READY, 1);
    expect(d.readCtrl()).toEqual([]); // no client yet: the port is not open on the host side
    const c = await connect(path);
    await until(() => be.connected, 'client');
    expect(d.readCtrl().map((m) => [m.id, m.event, m.value])).toEqual([[1, PORT_OPEN, 1]]);
    c.s.destroy();
    await until(() => !be.connected, 'client gone');
    expect(d.readCtrl().map((m) => [m.id, m.event, m.value])).toEqual([[1, PORT_OPEN, 0]]);
  });

  it('close() removes the socket file; listen refuses a path that is not a socket', async () => {
    const path = sockPath();
    const be = await UnixSocketBackend.listen(path);
    expect(existsSync(path)).toBe(true);
    await be.close();
    expect(existsSync(path)).toBe(false);
    const file = sockPath() + '.txt';
    writeFileSync(file, 'x');
    cleanup.push(() => unlinkSync(file));
    let err: unknown;
    try {
      await UnixSocketBackend.listen(file);
    } catch (e) {
      err = e;
    }
    expect(isVirtioError(err) && err.code === 'INVALID_ARGUMENT').toBe(true);
  });
});
