/** Message DMA specifics: what the device may touch is exactly what the client DMA_MAP'ed. */
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { SgList } from '../../src/queue/types.js';
import { STATUS_NEEDS_RESET } from '../../src/features/status.js';
import { RAM_BASE, startRig, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe.runIf(native.available)('vfio-user message DMA', () => {
  it('[basic.dev-status-field.device.2] a buffer outside the DMA_MAP table goes to the choke point, never to a DMA request', async () => {
    const rig = await startRig(tmp.dir, ['rng', '--queue-size', '64'], 'message');
    try {
      const q = rig.driver.queue(0);
      // A good request first: the path works.
      expect((await q.submit([], [32])).len).toBe(32);
      const before = rig.client.snapshot();
      // Guest-physical 0x8000_0000 is far outside the 8 MiB mapped at RAM_BASE.
      const sg = new SgList(1).in(0x8000_0000, 64);
      expect(q.add(sg, 7)).toBe(true);
      q.kick();
      let st = 0;
      for (let i = 0; i < 200 && (st & STATUS_NEEDS_RESET) === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        st = rig.driver.status;
      }
      expect(st & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
      const after = rig.client.snapshot();
      expect(after.dmaRefused).toBe(0); // the device never even asked for it
      expect(after.dmaBytesWritten - before.dmaBytesWritten).toBeLessThan(64); // no 64-byte buffer write
      expect(RAM_BASE).toBeLessThan(0x8000_0000);
    } finally {
      await rig.close();
    }
  });
});
