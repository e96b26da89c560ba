import { describe, expect, it } from 'vitest';
import { blkRead, blkRig, blkWrite, pattern, POOL_BASE, POOL_SIZE, spy } from './helpers.js';
import { VirtioMmioDriver } from '../../../src/driver/mmio/driver.js';
import { MR } from '../../../src/driver/mmio/regs.js';
import { DEFAULT_SWIOTLB_BIT } from '../../../src/features/bits.js';
import { STATUS_FAILED, STATUS_FEATURES_OK } from '../../../src/features/status.js';
import { SgList } from '../../../src/queue/types.js';
import { isVirtioError } from '../../../src/errors.js';

const inPool = (a: number, len = 1): boolean => a >= POOL_BASE && a + len <= POOL_BASE + POOL_SIZE;

describe('virtio-mmio driver with a restricted-dma-pool (SWIOTLB)', () => {
  it('[rfc-swiotlb.mmio.driver.2] negotiated: the device sees ONLY the window; rings and buffers live there; traffic works; nothing reaches the choke point', async () => {
    const r = blkRig({ swiotlb: 'preferred' });
    const s = spy(r.dev);
    const drv = VirtioMmioDriver.open(s.access, { guestRam: r.guestRam, platform: r.dev.platformInfo() })!;
    expect(drv.swiotlb).toBe(true);
    expect(r.core.swiotlbNegotiated).toBe(true);
    // The device's DMA space: the window and nothing else.
    const space = r.core.space;
    expect(space).toBe(r.window!.asAddressSpace());
    expect(space.regions.map((x) => [x.base, x.size])).toEqual([[POOL_BASE, POOL_SIZE]]);
    expect(space.check(0x4000_0000, 16, false)).toBe(false);
    // Ring addresses programmed into the device.
    const regs = r.core.queueRegs(0)!;
    for (const area of ['desc', 'driver', 'device'] as const) expect(inPool(regs.addr(area))).toBe(true);
    // Traffic.
    const vq = drv.queue(0);
    const data = pattern(8192, 11);
    expect(await blkWrite(vq, 16, data)).toBe(0);
    expect(r.backend.disk.subarray(16 * 512, 16 * 512 + 8192)).toEqual(data);
    const [st, back] = await blkRead(vq, 16, 8192);
    expect(st).toBe(0);
    expect(back).toEqual(data);
    const many = await Promise.all(Array.from({ length: 32 }, (_, i) => blkWrite(vq, 200 + i, pattern(1024, 50 + i))));
    expect(many.every((x) => x === 0)).toBe(true);
    expect(r.core.trace.ofKind('guest-error')).toEqual([]);
    expect(r.core.status & 0x40).toBe(0);
    expect(drv.pool!.stats().liveMappings).toBe(0); // everything unmapped
    // The driver allocator never handed out pool memory for plain buffers.
    expect(drv.ram.sizeOf(POOL_BASE)).toBe(-1);
  });

  it('[rfc-swiotlb.mmio.driver.2] the window-only space catches a driver that passes a guest-RAM address (the check can fail)', () => {
    const r = blkRig({ swiotlb: 'preferred' });
    const drv = VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam, platform: r.dev.platformInfo() })!;
    // Bypass the bounce layer: put a RAM address straight on the ring.
    const ramBuf = drv.ram.alloc(64, 16);
    const sg = new SgList(2);
    sg.out(ramBuf, 16);
    sg.in(ramBuf + 16, 1);
    const ring = drv.queue(0).ring;
    expect(ring.add(sg, 0)).toBeGreaterThanOrEqual(0);
    ring.publish();
    r.dev.write(MR.QUEUE_NOTIFY, 4, 0);
    const errs = r.core.trace.ofKind('guest-error');
    expect(errs.length).toBe(1);
    expect(errs[0]!.code).toBe('ADDRESS_OUT_OF_SPACE');
    expect(r.core.status & 0x40).toBe(0x40); // DEVICE_NEEDS_RESET
  });

  it('[rfc-swiotlb.feature.device.1] policy required and the driver declines: FEATURES_OK refused, FAILED set, the error says why', () => {
    const r = blkRig({ swiotlb: 'required' });
    let err: unknown;
    try {
      VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam, platform: r.dev.platformInfo(), features: { acceptSwiotlb: false } });
    } catch (e) {
      err = e;
    }
    expect(isVirtioError(err, 'FEATURE_REQUIRED')).toBe(true);
    expect((err as Error).message).toMatch(/declined VIRTIO_F_SWIOTLB \(bit 27\) — acceptSwiotlb is false/);
    expect(r.core.status & STATUS_FAILED).toBe(STATUS_FAILED);
    expect(r.core.status & STATUS_FEATURES_OK).toBe(0);
    expect(r.core.trace.ofKind('negotiation-refused').length).toBe(1);
  });

  it('[rfc-swiotlb.feature.driver.1] policy required and the driver has no pool description: it declines and says the DT lacks the pool', () => {
    const r = blkRig({ swiotlb: 'required' });
    expect(() => VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam })).toThrow(/no restricted-dma-pool/);
    // A pool outside guest RAM is unusable too.
    const q = blkRig({ swiotlb: 'required' });
    expect(() => VirtioMmioDriver.open(q.dev, { guestRam: q.guestRam, platform: { pool: { base: 0x9000_0000, size: 0x10000 } } })).toThrow(/not one writable range of guest RAM/);
  });

  it('[rfc-swiotlb.mmio.driver.1] bit declined with policy preferred: the driver still bounces through the pool (Linux restricted DMA); preferPool false goes direct', async () => {
    const r = blkRig({ swiotlb: 'preferred' });
    const drv = VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam, platform: r.dev.platformInfo(), features: { acceptSwiotlb: false } })!;
    expect(drv.swiotlb).toBe(false);
    expect(drv.dma!.mode).toBe('swiotlb');
    expect(r.core.space).toBe(r.guestRam);
    expect(inPool(r.core.queueRegs(0)!.addr('desc'))).toBe(true);
    expect(await blkWrite(drv.queue(0), 1, pattern(512, 4))).toBe(0);
    expect(drv.pool!.stats().highWaterSlots).toBeGreaterThan(0);

    const d = blkRig({ swiotlb: 'preferred' });
    const direct = VirtioMmioDriver.open(d.dev, { guestRam: d.guestRam, platform: d.dev.platformInfo(), features: { acceptSwiotlb: false }, preferPool: false })!;
    expect(direct.dma!.mode).toBe('direct');
    expect(inPool(d.core.queueRegs(0)!.addr('desc'))).toBe(false);
    expect(await blkWrite(direct.queue(0), 1, pattern(512, 4))).toBe(0);
  });

  it('[rfc-swiotlb.mmio.driver.2] a driver forced to accept the bit without a pool fails instead of passing RAM addresses', () => {
    const r = blkRig({ swiotlb: 'preferred' });
    expect(() =>
      VirtioMmioDriver.open(r.dev, {
        guestRam: r.guestRam,
        features: { select: (_o, p) => p.set(DEFAULT_SWIOTLB_BIT) },
      }),
    ).toThrow(/chosen \(features.select\) but .*could not pass only pool addresses/);
    expect(r.core.status & STATUS_FEATURES_OK).toBe(0); // refused before FEATURES_OK
    expect(r.core.status & STATUS_FAILED).toBe(STATUS_FAILED);
  });

  it('[rfc-swiotlb.mmio.driver.2] reset restores the device space; a new session negotiates again', async () => {
    const r = blkRig({ swiotlb: 'preferred' });
    const drv = VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam, platform: r.dev.platformInfo() })!;
    drv.close();
    expect(r.core.space).toBe(r.guestRam);
    const again = VirtioMmioDriver.open(r.dev, { guestRam: r.guestRam, platform: r.dev.platformInfo() })!;
    expect(r.core.space).toBe(r.window!.asAddressSpace());
    expect(await blkWrite(again.queue(0), 2, pattern(512, 8))).toBe(0);
  });
});
