/**
 * virtio-rng served by a device process over vfio-user with message DMA: entropy crosses the
 * boundary, and what the device may touch is exactly what the client DMA_MAP'ed.
 * (blk.test.ts covers all three DMA models.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { SgList } from '../../src/queue/types.js';
import { STATUS_NEEDS_RESET } from '../../src/features/status.js';
import { VirtioPciDriver } from '../../src/driver/driver.js';
import { RAM_BASE, startRig, tempDir, type Rig } from './helpers.js';

const tmp = tempDir();
let rig: Rig | undefined;

describe.runIf(native.available)('vfio-user rng (message DMA)', () => {
  beforeAll(async () => {
    rig = await startRig(tmp.dir, ['rng', '--queue-size', '64'], 'message');
  });
  afterAll(async () => {
    await rig?.close();
    tmp.cleanup();
  });

  it('[basic.split-vq.vq-used-ring.device.2] entropy crosses the process boundary, one DMA_READ/WRITE exchange per ring part', async () => {
    const q = rig!.driver.queue(0);
    const before = rig!.client.snapshot();
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await q.submit([], [64]);
      expect(r.len).toBe(64);
      seen.add(Buffer.from(r.data[0]!).toString('hex'));
    }
    expect(seen.size).toBe(4);
    const after = rig!.client.snapshot();
    expect(after.dmaWrites - before.dmaWrites).toBeGreaterThanOrEqual(4 * 3); // buffer, used element, used idx
    expect(after.dmaBytesWritten - before.dmaBytesWritten).toBeGreaterThanOrEqual(4 * 64);
    expect(after.dmaRefused).toBe(0);
  });

  it('[basic.dev-status-field.device.2] a buffer outside the DMA_MAP table goes to the choke point, never to a DMA request', async () => {
    const q = rig!.driver.queue(0);
    const before = rig!.client.snapshot();
    // Guest-physical 0x8000_0000 is far outside the 8 MiB mapped at RAM_BASE.
    expect(RAM_BASE + 8 * 1024 * 1024).toBeLessThan(0x8000_0000);
    const sg = new SgList(1).in(0x8000_0000, 64);
    expect(q.add(sg, 7)).toBe(true);
    q.kick();
    let st = 0;
    for (let i = 0; i < 300 && (st & STATUS_NEEDS_RESET) === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      st = rig!.driver.status;
    }
    expect(st & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    const after = rig!.client.snapshot();
    expect(after.dmaRefused).toBe(0); // the device never even asked for it
    expect(after.dmaBytesWritten - before.dmaBytesWritten).toBeLessThan(64); // no buffer write-back
  });

  it('[pci.isr.device.5] INTx over an eventfd: automasked, the ISR read clears it, the client unmasks', async () => {
    rig!.driver.close(); // reset (also clears NEEDS_RESET from the test above)
    const d = new VirtioPciDriver(rig!.client, { guestRam: rig!.ram.space, queueSize: 64, interrupts: 'intx' }).init();
    rig!.driver = d;
    expect(d.interruptMode).toBe('intx');
    const before = rig!.client.snapshot();
    for (let i = 0; i < 3; i++) expect((await d.queue(0).submit([], [16])).len).toBe(16);
    const after = rig!.client.snapshot();
    expect(after.intx - before.intx).toBeGreaterThanOrEqual(3);
    expect(after.msi - before.msi).toBe(0);
    expect(d.stats.isrReads).toBeGreaterThanOrEqual(3);
  });
});
