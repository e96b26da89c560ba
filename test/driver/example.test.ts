import { describe, expect, it } from 'vitest';
import { main } from '../../examples/mini-vmm.js';

describe('examples/mini-vmm.ts', () => {
  it('[rfc-swiotlb.feature.driver.1] runs: rng behind virtio-pci, SWIOTLB negotiated, random bytes out, no guest errors', async () => {
    const lines: string[] = [];
    const r = await main((l) => lines.push(l));
    expect(r.swiotlb).toBe(true);
    expect(r.interrupts).toBe('per-queue');
    expect(r.samples.map((s) => s.length)).toEqual([16, 32, 64]);
    expect(r.samples.some((s) => s.some((b) => b !== 0))).toBe(true);
    expect(r.guestErrors).toBe(0);
    expect(r.bounced.maps).toBe(3);
    expect(r.bounced.bytesFromDevice).toBe(16 + 32 + 64);
    expect(r.windowBar.address).toBeGreaterThanOrEqual(0x8_0000_0000);
    expect(lines.join('\n')).toMatch(/SWIOTLB window: BAR 4/);
  });
});
