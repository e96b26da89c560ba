import { describe, expect, it } from 'vitest';
import { blkRead, blkRig, blkWrite, pattern, spy } from './helpers.js';
import type { MmioDeviceAccess } from '../../../src/driver/mmio/access.js';
import { VirtioMmioDriver } from '../../../src/driver/mmio/driver.js';
import { MR } from '../../../src/driver/mmio/regs.js';
import { MMIO_REGISTERS, VIRTIO_MMIO_CONFIG } from '../../../src/transport/mmio/registers.js';
import { BLK_CFG } from '../../../src/device/blk/config.js';
import { VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1 } from '../../../src/features/bits.js';
import { STATUS_DRIVER_OK, STATUS_FEATURES_OK } from '../../../src/features/status.js';

function up(o: Parameters<typeof blkRig>[0] = {}, dopts: Partial<ConstructorParameters<typeof VirtioMmioDriver>[1]> = {}) {
  const r = blkRig(o);
  const s = spy(r.dev);
  const drv = VirtioMmioDriver.open(s.access, { guestRam: r.guestRam, platform: r.dev.platformInfo(), ...dopts })!;
  return { ...r, drv, log: s.log };
}

describe('virtio-mmio driver: initialization', () => {
  it('[mmio.dev-init.driver.4] [init.dev-init.driver.1] brings virtio-blk up: DRIVER_OK, VERSION_1, queue 0 ready with the chosen size', () => {
    const t = up({}, { queueSize: 64 });
    expect(t.drv.status & (STATUS_FEATURES_OK | STATUS_DRIVER_OK)).toBe(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    expect(t.core.status).toBe(0xf);
    expect(t.drv.negotiated!.has(VIRTIO_F_VERSION_1)).toBe(true);
    expect(t.drv.queues.length).toBe(1); // scan stopped at QueueSizeMax 0 for queue 1
    expect(t.core.queue(0)).not.toBeNull();
    expect(t.core.queueRegs(0)!.size).toBe(64);
    expect(t.drv.dma!.mode).toBe('direct');
  });

  it('[mmio.regs.driver.1] [mmio.regs.driver.2] every control access is 32-bit aligned, never reads a W register nor writes an R register', () => {
    const t = up();
    const dir = new Map(MMIO_REGISTERS.map((r) => [r.offset, r.dir]));
    const control = t.log.filter((a) => a.off < VIRTIO_MMIO_CONFIG);
    expect(control.length).toBeGreaterThan(20);
    for (const a of control) {
      expect(a.size).toBe(4);
      expect(a.off % 4).toBe(0);
      const d = dir.get(a.off);
      expect(d).toBeDefined();
      if (a.op === 'r') expect(d).not.toBe('W');
      else expect(d).not.toBe('R');
    }
    expect(t.dev.stats.refusedAccesses).toBe(0);
    expect(t.core.trace.ofKind('refused')).toEqual([]);
  });

  it('[mmio.regs.driver.7] [mmio.regs.driver.8] feature windows: each select is written before its DeviceFeatures read / DriverFeatures write', () => {
    const t = up();
    for (let i = 0; i < t.log.length; i++) {
      const a = t.log[i]!;
      if (a.op === 'r' && a.off === MR.DEVICE_FEATURES) expect(t.log[i - 1]).toMatchObject({ op: 'w', off: MR.DEVICE_FEATURES_SEL });
      if (a.op === 'w' && a.off === MR.DRIVER_FEATURES) expect(t.log[i - 1]).toMatchObject({ op: 'w', off: MR.DRIVER_FEATURES_SEL });
    }
    const sels = t.log.filter((a) => a.op === 'w' && a.off === MR.DRIVER_FEATURES_SEL).map((a) => a.value);
    expect(sels).toEqual([0, 1, 2, 3]);
  });

  it('[mmio.regs.driver.9] [mmio.regs.driver.10] queue setup: QueueSize ≤ QueueSizeMax, addresses before QueueReady, nothing touched while ready', () => {
    const t = up({}, { queueSize: 1000 });
    const idx = (pred: (a: (typeof t.log)[number]) => boolean) => t.log.findIndex(pred);
    const ready = idx((a) => a.op === 'w' && a.off === MR.QUEUE_READY && a.value === 1);
    const max = t.log.find((a) => a.op === 'r' && a.off === MR.QUEUE_SIZE_MAX)!.value;
    const size = t.log.find((a) => a.op === 'w' && a.off === MR.QUEUE_SIZE)!.value;
    expect(size).toBeLessThanOrEqual(max);
    expect(size).toBe(128);
    for (const off of [MR.QUEUE_SIZE, MR.QUEUE_DESC, MR.QUEUE_DESC + 4, MR.QUEUE_DRIVER, MR.QUEUE_DRIVER + 4, MR.QUEUE_DEVICE, MR.QUEUE_DEVICE + 4]) {
      const w = t.log.map((a, i) => (a.op === 'w' && a.off === off ? i : -1)).filter((i) => i >= 0);
      expect(w.length).toBe(1);
      expect(w[0]!).toBeLessThan(ready);
    }
  });

  it('[mmio.regs.driver.9] more queues (virtio-blk MQ): the scan sets up each queue until QueueSizeMax reads 0', () => {
    const t = up({ queues: 3 }, { features: { device: [12] } });
    expect(t.drv.queues.map((q) => q?.index)).toEqual([0, 1, 2]);
    const explicit = up({ queues: 3 }, { queues: 2, features: { device: [12] } });
    expect(explicit.drv.queues.length).toBe(2);
  });
});

describe('virtio-mmio driver: traffic', () => {
  it('[basic.split-vq.vq.driver.1] virtio-blk writes and reads through split queues over MMIO (aligned ring parts); data lands on the disk', async () => {
    const t = up();
    const vq = t.drv.queue(0);
    expect(vq.kind).toBe('split');
    const qr = t.core.queueRegs(0)!;
    expect([qr.addr('desc') % 16, qr.addr('driver') % 2, qr.addr('device') % 4]).toEqual([0, 0, 0]);
    const data = pattern(4096, 7);
    expect(await blkWrite(vq, 8, data)).toBe(0);
    expect(t.backend.disk.subarray(8 * 512, 8 * 512 + 4096)).toEqual(data);
    const [st, back] = await blkRead(vq, 8, 4096);
    expect(st).toBe(0);
    expect(back).toEqual(data);
    // many in flight
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => blkWrite(vq, 100 + i, pattern(512, i + 1))));
    expect(all.every((s) => s === 0)).toBe(true);
    for (let i = 0; i < 40; i++) expect(t.backend.disk.subarray((100 + i) * 512, (101 + i) * 512)).toEqual(pattern(512, i + 1));
    expect(t.core.trace.ofKind('guest-error')).toEqual([]);
  });

  it('[mmio.notif-dev.driver.1] [mmio.notif-dev.driver.3] [mmio.regs.driver.13] interrupts: InterruptStatus read, exactly the set bits acknowledged, line low afterwards', async () => {
    const t = up();
    await blkWrite(t.drv.queue(0), 0, pattern(512, 3));
    expect(t.drv.stats.irqs).toBeGreaterThan(0);
    const acks = t.log.filter((a) => a.op === 'w' && a.off === MR.INTERRUPT_ACK);
    expect(acks.length).toBeGreaterThan(0);
    for (const a of acks) {
      expect(a.value & ~3).toBe(0);
      expect(a.value).not.toBe(0);
      // The ACK follows a read of InterruptStatus that returned these bits.
      const i = t.log.indexOf(a);
      expect(t.log[i - 1]).toMatchObject({ op: 'r', off: MR.INTERRUPT_STATUS, value: a.value });
    }
    expect(t.dev.irqLevel).toBe(false);
    expect(t.dev.read(MR.INTERRUPT_STATUS, 4)).toBe(0);
  });

  it('[mmio.notif-dev.driver.2] a configuration change interrupt calls onConfigChange; capacity reads as a 64-bit field in two halves', () => {
    const t = up();
    let changes = 0;
    t.drv.onConfigChange = () => changes++;
    t.core.configChanged();
    expect(changes).toBe(1);
    expect(t.drv.stats.configChanges).toBe(1);
    expect(t.drv.readConfig64(BLK_CFG.capacity)).toBe((1 << 20) / 512);
    const cap = t.log.filter((a) => a.op === 'r' && a.off >= VIRTIO_MMIO_CONFIG);
    expect(cap.map((a) => [a.off - VIRTIO_MMIO_CONFIG, a.size])).toEqual([
      [0, 4],
      [4, 4],
    ]);
  });

  it('[pci.available-buffer-notif.driver.2] VIRTIO_F_NOTIFICATION_DATA: QueueNotify carries next_off in bits 16..30; traffic works', async () => {
    const t = up({ extra: [VIRTIO_F_NOTIFICATION_DATA] });
    expect(t.drv.negotiated!.has(VIRTIO_F_NOTIFICATION_DATA)).toBe(true);
    const vq = t.drv.queue(0);
    for (let i = 0; i < 3; i++) expect(await blkWrite(vq, i, pattern(512, 20 + i))).toBe(0);
    const notes = t.log.filter((a) => a.op === 'w' && a.off === MR.QUEUE_NOTIFY).map((a) => a.value);
    expect(notes.length).toBeGreaterThan(0);
    expect(notes.every((v) => (v & 0xffff) === 0)).toBe(true);
    expect(notes.some((v) => v >>> 16 !== 0)).toBe(true);
    expect(t.core.stats.notifies).toBe(notes.length);
  });

  it('[mmio.regs.driver.2] without NOTIFICATION_DATA QueueNotify is a 32-bit write of the queue index', async () => {
    const t = up({ queues: 2 }, { features: { device: [12] } });
    await blkWrite(t.drv.queue(1), 0, pattern(512, 9));
    const notes = t.log.filter((a) => a.off === MR.QUEUE_NOTIFY);
    expect(notes.map((a) => [a.op, a.size, a.value])).toEqual([['w', 4, 1]]);
  });

  it('[reserved.reserved-feature-bits.driver.5] packed rings work over MMIO too', async () => {
    const t = up({ extra: [VIRTIO_F_RING_PACKED] });
    expect(t.drv.queue(0).kind).toBe('packed');
    expect(await blkWrite(t.drv.queue(0), 3, pattern(1024, 5))).toBe(0);
    const [st, back] = await blkRead(t.drv.queue(0), 3, 1024);
    expect(st).toBe(0);
    expect(back).toEqual(pattern(1024, 5));
  });

  it('[basic.dev-reset.device.1] close resets the device: Status 0, queues not ready; a new session on the device works', async () => {
    const t = up();
    await blkWrite(t.drv.queue(0), 0, pattern(512, 1));
    t.drv.close();
    expect(t.core.status).toBe(0);
    t.dev.write(MR.QUEUE_SEL, 4, 0);
    expect(t.dev.read(MR.QUEUE_READY, 4)).toBe(0);
    // A new session on the same device works.
    const again = VirtioMmioDriver.open(t.dev, { guestRam: t.guestRam })!;
    expect(await blkWrite(again.queue(0), 1, pattern(512, 2))).toBe(0);
  });

  it('[mmio.regs.driver.12] undefined InterruptStatus bits are ignored and never acknowledged', async () => {
    const r = blkRig();
    const log: Array<[number, number]> = [];
    const noisy: MmioDeviceAccess = {
      read: (off, size) => {
        const v = r.dev.read(off, size);
        return off === MR.INTERRUPT_STATUS && v !== 0 ? (v | 0xf0) >>> 0 : v;
      },
      write: (off, size, value) => {
        log.push([off, value]);
        r.dev.write(off, size, value);
      },
      onIrq: (fn) => r.dev.onIrq(fn),
    };
    const drv = VirtioMmioDriver.open(noisy, { guestRam: r.guestRam })!;
    expect(await blkWrite(drv.queue(0), 0, pattern(512, 6))).toBe(0);
    const acks = log.filter(([off]) => off === MR.INTERRUPT_ACK).map(([, v]) => v);
    expect(acks.length).toBeGreaterThan(0);
    expect(acks.every((v) => (v & ~3) === 0)).toBe(true);
  });

  it('[mmio.regs.driver.14] [mmio.regs.driver.16] resetQueue (RING_RESET): QueueReset written, read back until 0, the queue set up again with another size', async () => {
    const t = up({ extra: [VIRTIO_F_RING_RESET] }, { features: { select: (_o, p) => p.set(VIRTIO_F_RING_RESET) } });
    expect(t.drv.negotiated!.has(VIRTIO_F_RING_RESET)).toBe(true);
    expect(await blkWrite(t.drv.queue(0), 0, pattern(512, 1))).toBe(0);
    const old = t.drv.queue(0);
    const from = t.log.length;
    const vq = t.drv.resetQueue(0, 32);
    const after = t.log.slice(from);
    const w = after.findIndex((a) => a.op === 'w' && a.off === MR.QUEUE_RESET && a.value === 1);
    expect(w).toBeGreaterThanOrEqual(0);
    expect(after[w + 1]).toMatchObject({ op: 'r', off: MR.QUEUE_RESET, value: 0 });
    expect(vq).not.toBe(old);
    expect(t.core.queueRegs(0)!.size).toBe(32);
    expect(await blkWrite(vq, 1, pattern(512, 2))).toBe(0);
    const [st, back] = await blkRead(vq, 1, 512);
    expect(st).toBe(0);
    expect(back).toEqual(pattern(512, 2));
    await expect(old.submit([new Uint8Array(16)], [1])).rejects.toThrow(/reset/);
    const plain = up();
    expect(() => plain.drv.resetQueue(0)).toThrow(/RING_RESET was not negotiated/);
  });

  it('[mmio.dev-init.driver.3] shared memory: absent regions are reported as undefined', () => {
    const t = up();
    expect(t.drv.sharedMemory(0)).toBeUndefined();
  });
});
