import { describe, expect, it } from 'vitest';
import { rig, pattern } from './helpers.js';

describe('smoke', () => {
  it('echo through direct DMA', async () => {
    const r = await rig();
    r.drv.init();
    const res = await r.drv.queue(0).submit([pattern(100)], [64, 64]);
    expect(res.len).toBe(100);
    expect(Buffer.concat(res.data)).toEqual(Buffer.from(pattern(100)));
  });
  it('echo through swiotlb', async () => {
    const r = await rig({ policy: 'required', deviceSpace: 'none' });
    r.drv.init();
    const res = await r.drv.queue(1).submit([pattern(100)], [64, 64]);
    expect(res.len).toBe(100);
    expect(r.dev.core.choke.count).toBe(0);
  });
});
