/** virtio-rng served by a device process over vfio-user, in each DMA model. */
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { startRig, tempDir } from './helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

describe.runIf(native.available)('vfio-user rng', () => {
  for (const dma of ['direct', 'message', 'swiotlb'] as const) {
    it(`[rfc-swiotlb.feature.driver.1] entropy crosses the process boundary (${dma} DMA)`, async () => {
      const args = ['rng', '--queue-size', '64', ...(dma === 'swiotlb' ? ['--swiotlb', 'required', '--swiotlb-size', '1048576'] : [])];
      const rig = await startRig(tmp.dir, args, dma);
      try {
        expect(rig.driver.swiotlb).toBe(dma === 'swiotlb');
        const q = rig.driver.queue(0);
        const seen = new Set<string>();
        for (let i = 0; i < 4; i++) {
          const r = await q.submit([], [64]);
          expect(r.len).toBe(64);
          expect(r.data[0]!.some((b) => b !== 0)).toBe(true);
          seen.add(Buffer.from(r.data[0]!).toString('hex'));
        }
        expect(seen.size).toBe(4);
        const st = rig.client.snapshot();
        if (dma === 'message') expect(st.dmaReads + st.dmaWrites).toBeGreaterThan(0);
        else expect(st.dmaReads + st.dmaWrites).toBe(0);
      } finally {
        await rig.close();
      }
    });
  }
});
