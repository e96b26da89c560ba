import { describe, expect, it } from 'vitest';
import { cc, enable, negotiate, rig, setupQueue, V1, BAR_ADDR } from './helpers.js';
import { COMMON_CFG as C } from '../../../src/transport/pci/common-cfg.js';
import { SwiotlbWindow } from '../../../src/swiotlb/window.js';
import { DEFAULT_SWIOTLB_BIT } from '../../../src/features/bits.js';
import type { SwiotlbPolicy } from '../../../src/device/types.js';

const WSIZE = 0x10000;

function swRig(policy: SwiotlbPolicy = 'preferred', mode: 'space' | 'hasRegion' = 'space', cfgType?: number) {
  const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { name: 'test-window' });
  const swiotlb = mode === 'space' ? { policy, space: window.asAddressSpace() } : { policy, hasRegion: true };
  const r = rig({ core: { swiotlb }, pci: { swiotlbWindow: window, ...(cfgType !== undefined ? { swiotlbCfgType: cfgType } : {}) } });
  return { ...r, window };
}

const SW_WORD0 = 1 << DEFAULT_SWIOTLB_BIT;

function capOf(r: ReturnType<typeof swRig>, cfgType = 10) {
  for (let p = r.dev.configRead(0x34, 1); p !== 0; p = r.dev.configRead(p + 1, 1)) {
    if (r.dev.configRead(p, 1) === 9 && r.dev.configRead(p + 3, 1) === cfgType) {
      return { at: p, len: r.dev.configRead(p + 2, 1), bar: r.dev.configRead(p + 4, 1), offset: r.dev.configRead(p + 8, 4), length: r.dev.configRead(p + 12, 4) };
    }
  }
  return undefined;
}

describe('SWIOTLB capability and window (2025 RFC)', () => {
  it('[rfc-swiotlb.pci.device.1] the capability (cfg_type 10) names the window BAR/offset/length and the bit is offered', () => {
    const r = swRig();
    const cap = capOf(r)!;
    expect(cap).toMatchObject({ len: 16, bar: 4, offset: 0, length: WSIZE });
    const bar = r.dev.bars.find((b) => b.index === 4)!;
    expect(bar).toMatchObject({ is64: true, prefetchable: true });
    expect(bar.size).toBeGreaterThanOrEqual(WSIZE);
    expect(r.core.offered.has(DEFAULT_SWIOTLB_BIT)).toBe(true);
  });

  it('[rfc-swiotlb.pci.device.1] cfg_type is configurable', () => {
    const r = swRig('preferred', 'space', 0x80);
    expect(capOf(r, 10)).toBeUndefined();
    expect(capOf(r, 0x80)).toMatchObject({ bar: 4, length: WSIZE });
  });

  it('[rfc-swiotlb.feature.device.2] a core offering the bit without a window is refused; policy off presents no capability', () => {
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE));
    expect(() => rig({ core: { swiotlb: { policy: 'preferred', space: window.asAddressSpace() } } })).toThrow(/swiotlbWindow/);
    const r = rig({ pci: { swiotlbWindow: window } });
    expect(r.core.offered.has(DEFAULT_SWIOTLB_BIT)).toBe(false);
    expect(r.dev.bars.map((b) => b.index)).toEqual([0, 2]);
    expect(capOf({ ...r, window })).toBeUndefined();
  });

  it('[rfc-swiotlb.pci.driver.2] BAR programming places the window at BAR base + offset and reprogramming moves it (and its AddressSpace)', () => {
    const r = swRig();
    enable(r.dev);
    const space = r.window.asAddressSpace();
    expect(r.window.base).toBe(BAR_ADDR[4]);
    expect(space.regions[0]!.base).toBe(BAR_ADDR[4]);
    expect(space.check(BAR_ADDR[4]! + 0x100, 16, true)).toBe(true);
    // reprogram (memory decode off first, as an OS does)
    r.dev.configWrite(0x04, 2, 0);
    r.dev.configWrite(0x20, 4, 0x4000_0000);
    r.dev.configWrite(0x24, 4, 0);
    expect(r.window.base).toBe(0x4000_0000);
    expect(space.check(BAR_ADDR[4]! + 0x100, 16, true)).toBe(false);
    expect(space.check(0x4000_0100, 16, true)).toBe(true);
    // sizing writes all-ones: the high dword makes the address invalid, the window stays put
    r.dev.configWrite(0x24, 4, 0xffffffff);
    expect(r.window.base).toBe(0x4000_0000);
    r.dev.configWrite(0x24, 4, 0);
    expect(r.dev.stats.windowMoveFailures).toBe(0);
  });

  it('[rfc-swiotlb.feature.driver.1] negotiated at FEATURES_OK: DMA space becomes the window; queues get it; reset restores RAM', () => {
    for (const mode of ['space', 'hasRegion'] as const) {
      const r = swRig('preferred', mode);
      enable(r.dev);
      expect(negotiate(r.dev, [SW_WORD0, 1])).toBe(0xb);
      expect(r.core.swiotlbNegotiated).toBe(true);
      setupQueue(r.dev, 0, BAR_ADDR[4]!);
      cc(r.dev).w(C.DEVICE_STATUS, 1, 0xf);
      expect(r.core.space).toBe(r.window.asAddressSpace());
      expect(r.queues[0]!.space).toBe(r.window.asAddressSpace());
      cc(r.dev).w(C.DEVICE_STATUS, 1, 0);
      expect(r.core.space).toBe(r.space);
    }
  });

  it('[rfc-swiotlb.feature.device.1] declined with policy preferred: DMA stays in guest RAM; required: FEATURES_OK refused', () => {
    const r = swRig('preferred');
    enable(r.dev);
    expect(negotiate(r.dev, V1)).toBe(0xb);
    setupQueue(r.dev, 0);
    cc(r.dev).w(C.DEVICE_STATUS, 1, 0xf);
    expect(r.queues[0]!.space).toBe(r.space);
    const q = swRig('required');
    enable(q.dev);
    expect(negotiate(q.dev, V1) & 0x8).toBe(0);
  });

  it('[rfc-swiotlb.pci.device.1] the window BAR is mappable (buffer/fd) and barRead/barWrite reach the same bytes', () => {
    const r = swRig();
    enable(r.dev);
    const m = r.dev.barMapping(4)!;
    expect(m).toMatchObject({ bar: 4, barOffset: 0, size: WSIZE, bufferOffset: 0, fd: undefined });
    expect(r.dev.barMapping(0)).toBeUndefined();
    r.dev.barWrite(4, 0x100, 4, 0xdeadbeef);
    expect(new DataView(m.buffer).getUint32(0x100, true)).toBe(0xdeadbeef);
    new Uint8Array(m.buffer)[0x200] = 0x5a;
    expect(r.dev.barRead(4, 0x200, 1)).toBe(0x5a);
    expect(r.window.asAddressSpace().readU32(BAR_ADDR[4]! + 0x100)).toBe(0xdeadbeef);
  });
});

describe('SWIOTLB wiring check', () => {
  it('[rfc-swiotlb.feature.driver.1] a core built with another swiotlb space is flagged at DRIVER_OK', async () => {
    const { AddressSpace } = await import('../../../src/memory/space.js');
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE));
    const other = new AddressSpace([{ base: 0x9000_0000, size: WSIZE, buffer: new ArrayBuffer(WSIZE) }], 'other');
    const r = rig({ core: { swiotlb: { policy: 'preferred', space: other } }, pci: { swiotlbWindow: window } });
    enable(r.dev);
    negotiate(r.dev, [SW_WORD0, 1]);
    cc(r.dev).w(C.DEVICE_STATUS, 1, 0xf);
    expect(r.dev.swiotlb!.spaceMismatch).toBe(true);
    const ok = swRig();
    enable(ok.dev);
    negotiate(ok.dev, [SW_WORD0, 1]);
    cc(ok.dev).w(C.DEVICE_STATUS, 1, 0xf);
    expect(ok.dev.swiotlb!.spaceMismatch).toBe(false);
  });
});
