import { describe, expect, it } from 'vitest';
import { negotiate, refusals, regs, rig, setupQueue, V1 } from './helpers.js';
import { MMIO, VIRTIO_MMIO_CONFIG, VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING } from '../../../src/transport/mmio/registers.js';
import { MmioInterruptState } from '../../../src/transport/mmio/interrupt.js';

function running() {
  const r = rig();
  negotiate(r.dev, V1);
  setupQueue(r.dev, 0);
  setupQueue(r.dev, 1);
  regs(r.dev).w(MMIO.STATUS, 0xf);
  return r;
}

describe('InterruptStatus / InterruptACK', () => {
  it('[mmio.regs.device.3] a used-buffer event sets bit 0 and raises the line until the driver acknowledges it', () => {
    const r = running();
    const { r: rd, w } = regs(r.dev);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(0);
    r.model.ctx!.interrupt(1);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
    expect(r.dev.irqLevel).toBe(true);
    // Still set after reads.
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
    w(MMIO.INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(0);
    expect(r.levels).toEqual([true, false]);
  });

  it('[mmio.regs.device.3] [mmio.notif-dev.driver.3] ACK clears only the acknowledged bits; the line stays high while any is set', () => {
    const r = running();
    const { r: rd, w } = regs(r.dev);
    r.model.ctx!.interrupt(0);
    r.model.bump(); // config change
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
    expect(r.levels).toEqual([true]); // level-triggered: no second edge
    w(MMIO.INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_VRING);
    expect(r.dev.irqLevel).toBe(true);
    w(MMIO.INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    expect(r.dev.irqLevel).toBe(false);
    expect(r.levels).toEqual([true, false]);
  });

  it('[mmio.regs.device.4] bits for events that did not happen read 0; undefined ACK bits are ignored', () => {
    const r = running();
    const { r: rd, w } = regs(r.dev);
    r.model.bump();
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_CONFIG);
    w(MMIO.INTERRUPT_ACK, 0xfffffffc);
    expect(rd(MMIO.INTERRUPT_STATUS)).toBe(VIRTIO_MMIO_INT_CONFIG);
    const s = new MmioInterruptState();
    s.raise(0xff);
    expect(s.status).toBe(3);
  });

  it('[basic.dev-status-field.device.1] no used-buffer interrupt before DRIVER_OK; an event raised again after ACK re-asserts the line', () => {
    const r = rig();
    negotiate(r.dev, V1);
    setupQueue(r.dev, 0);
    r.core.interrupt(0); // before DRIVER_OK: nothing
    expect(r.dev.read(MMIO.INTERRUPT_STATUS, 4)).toBe(0);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    const q = r.queues[0]!;
    q.wantInterrupt = false;
    r.model.ctx!.interrupt(0); // suppressed by the queue
    expect(r.dev.read(MMIO.INTERRUPT_STATUS, 4)).toBe(0);
    q.wantInterrupt = true;
    r.model.ctx!.interrupt(0);
    regs(r.dev).w(MMIO.INTERRUPT_ACK, 1);
    r.model.ctx!.interrupt(0);
    expect(r.levels).toEqual([true, false, true]);
    expect(r.dev.irqStats.asserts).toBe(2);
  });

  it('[basic.dev-status-field.device.3] a guest error sets NEEDS_RESET and raises the config-change bit', () => {
    const r = running();
    r.core.choke.guestError({ code: 'DESC_INDEX_OUT_OF_RANGE', clause: 'basic.split-vq.vq-desc-table.driver.1', message: 'test', queue: 0 });
    expect(r.dev.read(MMIO.STATUS, 4) & 0x40).toBe(0x40);
    expect(r.dev.read(MMIO.INTERRUPT_STATUS, 4)).toBe(VIRTIO_MMIO_INT_CONFIG);
  });
});

describe('configuration space and ConfigGeneration', () => {
  it('[mmio.regs.driver.3] 8-, aligned 16- and aligned 32-bit config accesses at 0x100+', () => {
    const r = running();
    const C = VIRTIO_MMIO_CONFIG;
    r.dev.write(C + 4, 4, 0xa1b2c3d4);
    expect(r.dev.read(C + 4, 4)).toBe(0xa1b2c3d4);
    expect(r.dev.read(C + 4, 1)).toBe(0xd4);
    expect(r.dev.read(C + 5, 1)).toBe(0xc3);
    expect(r.dev.read(C + 6, 2)).toBe(0xa1b2);
    expect(r.dev.read(C + 4, 2)).toBe(0xc3d4);
  });

  it('[mmio.regs.driver.3] misaligned or odd-width config accesses read 0 / are ignored and traced, never throw', () => {
    const r = running();
    const C = VIRTIO_MMIO_CONFIG;
    r.dev.write(C + 4, 4, 0x11223344);
    expect(r.dev.read(C + 5, 2)).toBe(0);
    expect(r.dev.read(C + 6, 4)).toBe(0);
    expect(r.dev.read(C + 4, 8)).toBe(0);
    expect(r.dev.read(C + 4, 3)).toBe(0);
    r.dev.write(C + 5, 2, 0xffff);
    r.dev.write(C + 4, 8, 0);
    expect(r.dev.read(C + 4, 4)).toBe(0x11223344);
    expect(refusals(r.core).filter((x) => x.clause === 'mmio.regs.driver.3').length).toBe(6);
    // Beyond the model's 8 bytes but inside the window: the core reads 0 and traces.
    expect(r.dev.read(C + 0x40, 4)).toBe(0);
    // Beyond the window.
    expect(r.dev.read(0x1fe, 4)).toBe(0);
    expect(r.dev.read(0x400, 4)).toBe(0);
  });

  it('[mmio.regs.driver.3] a 64-bit field reads as two 32-bit halves', () => {
    // FakeModel: counter (u32) at 0, scratch (u32) at 4 → one 64-bit quantity.
    const r = running();
    const C = VIRTIO_MMIO_CONFIG;
    r.dev.write(C + 4, 4, 0x0000_0012);
    r.model.bump();
    r.model.bump();
    const v = r.dev.read(C + 4, 4) * 2 ** 32 + r.dev.read(C, 4);
    expect(v).toBe(0x12 * 2 ** 32 + 2);
  });

  it('[mmio.regs.device.6] ConfigGeneration changes when the config changes; a driver loop sees a consistent snapshot', () => {
    const r = running();
    const g0 = r.dev.read(MMIO.CONFIG_GENERATION, 4);
    expect(r.dev.read(MMIO.CONFIG_GENERATION, 4)).toBe(g0);
    r.model.bump();
    const g1 = r.dev.read(MMIO.CONFIG_GENERATION, 4);
    expect(g1).not.toBe(g0);
    // The device changes the config between the two reads once: the loop retries.
    let tries = 0;
    let snapshot: number;
    let before: number;
    do {
      tries++;
      before = r.dev.read(MMIO.CONFIG_GENERATION, 4);
      snapshot = r.dev.read(VIRTIO_MMIO_CONFIG, 4);
      if (tries === 1) r.model.bump();
    } while (r.dev.read(MMIO.CONFIG_GENERATION, 4) !== before);
    expect(tries).toBe(2);
    expect(snapshot).toBe(2);
  });
});
