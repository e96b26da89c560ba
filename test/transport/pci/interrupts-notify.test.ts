import { describe, expect, it } from 'vitest';
import { cc, enable, negotiate, rig, setupQueue, V1 } from './helpers.js';
import { COMMON_CFG as C } from '../../../src/transport/pci/common-cfg.js';
import { VIRTIO_F_NOTIFICATION_DATA } from '../../../src/features/bits.js';

function running(extra: number[] = [], words = V1, pci = {}) {
  const r = rig({ extra, pci });
  enable(r.dev);
  expect(negotiate(r.dev, words)).toBe(0xb);
  setupQueue(r.dev, 0);
  setupQueue(r.dev, 1);
  cc(r.dev).w(C.DEVICE_STATUS, 1, 0xf);
  return r;
}

function notifyAddr(r: ReturnType<typeof rig>, q: number): number {
  const c = cc(r.dev);
  c.w(C.QUEUE_SELECT, 2, q);
  return r.dev.layout.notify.offset + c.r(C.QUEUE_NOTIFY_OFF, 2) * r.dev.notifyRegion.multiplier;
}

describe('notify region', () => {
  it('[pci.available-buffer-notif.driver.1] [pci.available-buffer-notif.driver.3] a 16-bit vq index at the queue notify address reaches the model', () => {
    const r = running();
    const bar = r.dev.layout.notify.bar;
    r.dev.barWrite(bar, notifyAddr(r, 1), 2, 1);
    r.dev.barWrite(bar, notifyAddr(r, 0), 2, 0);
    expect(r.model.notified).toEqual([1, 0]);
    expect(r.dev.notifyRegion.stats.delivered).toBe(2);
  });

  it('[pci.available-buffer-notif.driver.2] with NOTIFICATION_DATA a 32-bit write carries next_off/next_wrap', () => {
    const r = running([VIRTIO_F_NOTIFICATION_DATA], [0, 1 | (1 << (VIRTIO_F_NOTIFICATION_DATA - 32))]);
    const bar = r.dev.layout.notify.bar;
    const data = (0x8000 | 17) << 16; // next_wrap=1, next_off=17
    r.dev.barWrite(bar, notifyAddr(r, 1), 4, (data | 1) >>> 0);
    expect(r.model.notified).toEqual([1]);
    expect(r.dev.notifyRegion.lastNotificationData).toBe(0x8011);
    expect(r.dev.notifyRegion.stats.widthMismatch).toBe(0);
    r.dev.barWrite(bar, notifyAddr(r, 0), 2, 0); // 16-bit although NOTIFICATION_DATA: accepted, counted
    expect(r.model.notified).toEqual([1, 0]);
    expect(r.dev.notifyRegion.stats.widthMismatch).toBe(1);
  });

  it('[pci.notify.device.5] notifies to a bad queue index are ignored and recorded', () => {
    const r = running();
    const bar = r.dev.layout.notify.bar;
    r.dev.barWrite(bar, r.dev.layout.notify.offset + 7 * 4, 2, 7); // no queue has notify_off 7
    r.dev.barWrite(bar, r.dev.layout.notify.offset + 1, 2, 0); // not on a slot boundary
    r.dev.barWrite(bar, notifyAddr(r, 0), 1, 0); // byte-wide
    expect(r.model.notified).toEqual([]);
    expect(r.dev.notifyRegion.stats.ignored).toBe(3);
    // queue 2 exists but is unavailable: notify goes to the core, which ignores it
    r.dev.barWrite(bar, r.dev.layout.notify.offset + 2 * r.dev.notifyRegion.multiplier, 2, 2);
    expect(r.core.stats.ignoredNotifies).toBe(1);
    expect(r.model.notified).toEqual([]);
  });

  it('[pci.notify.device.3] multiplier 0: one address, the value names the queue; unknown index recorded by the core', () => {
    const r = running([], V1, { notifyMultiplier: 0 });
    const { bar, offset } = r.dev.layout.notify;
    r.dev.barWrite(bar, offset, 2, 1);
    r.dev.barWrite(bar, offset, 2, 0x1234);
    expect(r.model.notified).toEqual([1]);
    expect(r.core.stats.badNotifies).toBe(1);
  });

  it('[pci.available-buffer-notif.driver.3] a value disagreeing with the address is counted; the address wins', () => {
    const r = running();
    r.dev.barWrite(r.dev.layout.notify.bar, notifyAddr(r, 1), 2, 0);
    expect(r.model.notified).toEqual([1]);
    expect(r.dev.notifyRegion.stats.valueMismatch).toBe(1);
  });

  it('[pci.general.device.1] with bus mastering off, notifications are not processed (no DMA)', () => {
    const r = running();
    r.dev.configWrite(0x04, 2, 0x0002);
    expect(r.dev.busMaster).toBe(false);
    r.dev.barWrite(r.dev.layout.notify.bar, notifyAddr(r, 0), 2, 0);
    expect(r.model.notified).toEqual([]);
    expect(r.dev.notifyRegion.stats.noBusMaster).toBe(1);
  });
});

describe('interrupts', () => {
  it('[pci.isr.device.3] [pci.isr.device.5] without MSI-X: ISR bit 0 + INTx; ISR read clears and de-asserts', () => {
    const r = running();
    r.model.ctx!.interrupt(0);
    expect(r.intx).toEqual([true]);
    expect(r.dev.intxLevel).toBe(true);
    const { bar, offset } = r.dev.layout.isr;
    expect(r.dev.barRead(bar, offset, 1)).toBe(1);
    expect(r.intx).toEqual([true, false]);
    expect(r.dev.barRead(bar, offset, 1)).toBe(0);
    expect(r.msis).toEqual([]);
  });

  it('[pci.isr.device.2] config change: ISR bit 1 is set before the notification; config_generation changes', () => {
    const r = running();
    const c = cc(r.dev);
    const gen = c.r(C.CONFIG_GENERATION, 1);
    const levelAtNotify: number[] = [];
    r.dev.onIntx((l) => {
      if (l) levelAtNotify.push(r.dev.isr.value);
    });
    r.model.changeConfig(0, 0x42);
    expect(levelAtNotify).toEqual([2]);
    expect(c.r(C.CONFIG_GENERATION, 1)).not.toBe(gen); // pci.common-cfg.device.6
    const d = r.dev.layout.device!;
    expect(r.dev.barRead(d.bar, d.offset, 1)).toBe(0x42);
    expect(r.dev.barRead(r.dev.layout.isr.bar, r.dev.layout.isr.offset, 1)).toBe(2);
  });

  it('[pci.msix.device.4] with MSI-X: queue and config events go to their mapped vectors', () => {
    const r = running();
    const c = cc(r.dev);
    const m = r.dev.msix!;
    const { bar, tableOffset } = r.dev.layout.msix!;
    for (let v = 0; v < m.vectors; v++) {
      r.dev.barWrite(bar, tableOffset + v * 16, 4, 0xfee00000 + v * 0x10);
      r.dev.barWrite(bar, tableOffset + v * 16 + 8, 4, 0x40 + v);
      r.dev.barWrite(bar, tableOffset + v * 16 + 12, 4, 0);
    }
    r.dev.configWrite(m.capOffset + 2, 2, 0x8000);
    c.w(C.CONFIG_MSIX_VECTOR, 2, 0);
    c.w(C.QUEUE_SELECT, 2, 1);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 2);
    r.model.ctx!.interrupt(1);
    r.model.changeConfig(1, 1);
    expect(r.msis).toEqual([
      [0xfee00020, 0x42, 2],
      [0xfee00000, 0x40, 0],
    ]);
    expect(r.intx).toEqual([]);
  });

  it('[pci.used-buffer-notif.device.1] [pci.notif-dev-cfg-changes.device.1] NO_VECTOR: no interrupt at all with MSI-X on', () => {
    const r = running();
    const m = r.dev.msix!;
    r.dev.configWrite(m.capOffset + 2, 2, 0x8000);
    r.model.ctx!.interrupt(0);
    r.model.changeConfig(0, 9);
    expect(r.msis).toEqual([]);
    expect(r.intx).toEqual([]);
    expect(r.dev.stats.noVectorInterrupts).toBe(2);
  });

  it('[pci.msix.device.4] a masked vector is pending (PBA) and fires on unmask; no MSI without bus master', () => {
    const r = running();
    const c = cc(r.dev);
    const m = r.dev.msix!;
    const { bar, tableOffset, pbaOffset } = r.dev.layout.msix!;
    r.dev.barWrite(bar, tableOffset + 16, 4, 0xfee00000);
    r.dev.barWrite(bar, tableOffset + 24, 4, 5);
    r.dev.configWrite(m.capOffset + 2, 2, 0x8000);
    c.w(C.QUEUE_SELECT, 2, 0);
    c.w(C.QUEUE_MSIX_VECTOR, 2, 1);
    r.model.ctx!.interrupt(0);
    expect(r.msis).toEqual([]);
    expect(r.dev.barRead(bar, pbaOffset, 4)).toBe(2);
    r.dev.barWrite(bar, pbaOffset, 4, 0); // PBA is read-only
    expect(r.dev.barRead(bar, pbaOffset, 4)).toBe(2);
    r.dev.barWrite(bar, tableOffset + 28, 4, 0);
    expect(r.msis).toEqual([[0xfee00000, 5, 1]]);
    r.dev.configWrite(0x04, 2, 0x0002); // bus master off
    r.model.ctx!.interrupt(0);
    expect(r.msis).toHaveLength(1);
    expect(r.dev.stats.msiDroppedNoBusMaster).toBe(1);
  });
});
