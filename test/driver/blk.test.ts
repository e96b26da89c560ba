import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/memory/space.js';
import { BlkDevice, RamBackend, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../src/device/blk/index.js';
import { createPciDevice } from '../../src/embed/index.js';
import { VirtioPciDriver } from '../../src/driver/driver.js';
import { guestRam, pattern } from './helpers.js';

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector, true);
  return h;
}

describe('virtio-blk through the driver (a real model, asynchronous completions)', () => {
  it.each([
    ['direct', 'off', false],
    ['swiotlb', 'required', true],
  ] as const)('[rfc-swiotlb.pci.driver.2] %s: write then read back sectors', async (_n, policy, windowOnly) => {
    const ram = guestRam();
    const dev = await createPciDevice({
      model: new BlkDevice(new RamBackend(1 << 20)),
      guestRam: windowOnly ? new AddressSpace([], 'nothing') : ram,
      swiotlb: { policy, size: 1 << 20, backing: 'shared' },
      queue: { packed: true },
    });
    const drv = VirtioPciDriver.open(dev, { guestRam: ram });
    expect(drv.swiotlb).toBe(windowOnly);
    expect(drv.readConfig(0, 4)).toBe((1 << 20) / 512); // capacity in sectors (low word)
    const q = drv.queue(0);
    const data = pattern(1024, 5);
    const w = await q.submit([header(VIRTIO_BLK_T_OUT, 8), data], [1]);
    expect(w.data[0]![0]).toBe(VIRTIO_BLK_S_OK);
    const rd = await q.submit([header(VIRTIO_BLK_T_IN, 8)], [1024, 1]);
    expect(rd.data[1]![0]).toBe(VIRTIO_BLK_S_OK);
    expect(rd.data[0]).toEqual(data);
    expect(dev.core.choke.count).toBe(0);
    drv.close();
    dev.close();
  });
});
