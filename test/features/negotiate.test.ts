import { describe, it, expect } from 'vitest';
import { DeviceType, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, requireFeatureBit } from '../../src/features/bits.js';
import { FeatureSet } from '../../src/features/set.js';
import { blkFeatureRules, checkOffer, negotiate } from '../../src/features/negotiate.js';

const NET = DeviceType.NET;
const nb = (n: string): number => requireFeatureBit(n, NET);

describe('negotiate', () => {
  const offered = FeatureSet.fromBits([VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, nb('CSUM'), nb('HOST_TSO4'), nb('CTRL_VQ'), nb('MQ'), nb('RSS'), nb('RSS_CONTEXT')]);

  it('accepts a valid subset', () => {
    const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('CSUM'), nb('HOST_TSO4')]), offered, { deviceType: NET });
    expect(r.ok).toBe(true);
  });

  it('[basic.feature-bits.driver.1] refuses a bit that was not offered (FEATURE_NOT_OFFERED)', () => {
    const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('MAC')]), offered, { deviceType: NET });
    expect(r.ok).toBe(false);
    expect(r.code).toBe('FEATURE_NOT_OFFERED');
    expect(r.clause).toBe('basic.feature-bits.driver.1');
    expect(r.bit).toBe(nb('MAC'));
    expect(r.message).toContain('VIRTIO_NET_F_MAC');
  });

  it('[basic.feature-bits.driver.1] refuses an unoffered bit >= 64', () => {
    const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, 66]), offered, { deviceType: NET });
    expect(r.code).toBe('FEATURE_NOT_OFFERED');
    expect(r.bit).toBe(66);
  });

  it('[reserved.reserved-feature-bits.driver.1] a modern device refuses a driver that did not accept VERSION_1', () => {
    const r = negotiate(FeatureSet.fromBits([nb('CSUM')]), offered, { deviceType: NET });
    expect(r.ok).toBe(false);
    expect(r.code).toBe('FEATURE_REQUIRED');
    expect(r.clause).toBe('reserved.reserved-feature-bits.driver.1');
    // not enforced for a legacy-capable negotiation
    expect(negotiate(FeatureSet.fromBits([nb('CSUM')]), offered, { deviceType: NET, modern: false }).ok).toBe(true);
  });

  it('[basic.feature-bits.driver.1] refuses a missing dependency (HOST_TSO4 without CSUM)', () => {
    const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('HOST_TSO4')]), offered, { deviceType: NET });
    expect(r.code).toBe('FEATURE_DEPENDENCY');
    expect(r.bit).toBe(nb('HOST_TSO4'));
    expect(r.message).toContain('VIRTIO_NET_F_CSUM');
  });

  it('[basic.feature-bits.driver.1] RSS_CONTEXT (bit 64) requires CTRL_VQ and RSS', () => {
    const base = [VIRTIO_F_VERSION_1, nb('CTRL_VQ'), nb('RSS_CONTEXT')];
    expect(negotiate(FeatureSet.fromBits(base), offered, { deviceType: NET }).code).toBe('FEATURE_DEPENDENCY');
    expect(negotiate(FeatureSet.fromBits([...base, nb('RSS')]), offered, { deviceType: NET }).ok).toBe(true);
  });

  it('[basic.feature-bits.driver.1] "one of" dependencies: GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6', () => {
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('GUEST_CSUM'), nb('GUEST_TSO6'), nb('GUEST_ECN')]);
    expect(negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('GUEST_CSUM'), nb('GUEST_ECN')]), off, { deviceType: NET }).code).toBe('FEATURE_DEPENDENCY');
    expect(negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('GUEST_CSUM'), nb('GUEST_TSO6'), nb('GUEST_ECN')]), off, { deviceType: NET }).ok).toBe(true);
  });

  it('[reserved.reserved-feature-bits.device.4] required ACCESS_PLATFORM not accepted → FEATURE_REQUIRED', () => {
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM]);
    const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1]), off, { required: FeatureSet.fromBits([VIRTIO_F_ACCESS_PLATFORM]) });
    expect(r.code).toBe('FEATURE_REQUIRED');
    expect(r.clause).toBe('reserved.reserved-feature-bits.device.4');
  });

  describe('SWIOTLB policy × driver choice', () => {
    const SW = 27;
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, SW]);
    const cases: Array<{ policy: 'off' | 'preferred' | 'required'; accepts: boolean; ok: boolean }> = [
      { policy: 'required', accepts: true, ok: true },
      { policy: 'required', accepts: false, ok: false },
      { policy: 'preferred', accepts: true, ok: true },
      { policy: 'preferred', accepts: false, ok: true },
    ];
    for (const c of cases) {
      it(`[rfc-swiotlb.feature.device.1] policy ${c.policy}, driver ${c.accepts ? 'accepts' : 'declines'} → ${c.ok ? 'FEATURES_OK' : 'refused'}`, () => {
        const acc = FeatureSet.fromBits(c.accepts ? [VIRTIO_F_VERSION_1, SW] : [VIRTIO_F_VERSION_1]);
        const r = negotiate(acc, off, { required: c.policy === 'required' ? FeatureSet.fromBits([SW]) : new FeatureSet(), swiotlbBit: SW });
        expect(r.ok).toBe(c.ok);
        if (!c.ok) {
          expect(r.code).toBe('FEATURE_REQUIRED');
          expect(r.clause).toBe('rfc-swiotlb.feature.device.1');
          expect(r.message).toContain('VIRTIO_F_SWIOTLB');
        }
      });
    }
    it('[basic.feature-bits.driver.1] policy off (not offered): a driver accepting the bit is refused', () => {
      const r = negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, SW]), FeatureSet.fromBits([VIRTIO_F_VERSION_1]), { swiotlbBit: null });
      expect(r.code).toBe('FEATURE_NOT_OFFERED');
    });
  });

  it('[blk.dev-init.device.6] host-managed zoned device refuses a driver without ZONED; [blk.dev-init.driver.6] and ZONED+DISCARD', () => {
    const Z = requireFeatureBit('ZONED', DeviceType.BLOCK);
    const D = requireFeatureBit('DISCARD', DeviceType.BLOCK);
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, Z, D]);
    const rules = blkFeatureRules({ zonedModel: 'host-managed' });
    const opts = { deviceType: DeviceType.BLOCK, rules };
    expect(negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1]), off, opts).clause).toBe('blk.dev-init.device.6');
    expect(negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, Z, D]), off, opts).clause).toBe('blk.dev-init.driver.6');
    expect(negotiate(FeatureSet.fromBits([VIRTIO_F_VERSION_1, Z]), off, opts).ok).toBe(true);
    expect(blkFeatureRules({ zonedModel: 'host-aware' })).toEqual([]);
  });
});

describe('checkOffer', () => {
  it('[reserved.reserved-feature-bits.device.1] VERSION_1 must be offered', () => {
    expect(checkOffer(new FeatureSet()).map((p) => p.clause)).toContain('reserved.reserved-feature-bits.device.1');
  });
  it('[basic.feature-bits.device.1] a bit offered without its dependency is a problem', () => {
    const p = checkOffer(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('MQ')]), { deviceType: NET });
    expect(p.map((x) => x.clause)).toEqual(['basic.feature-bits.device.1']);
  });
  it('[basic.feature-bits.device.3] legacy-only and undefined bits are problems on a modern device', () => {
    const p = checkOffer(FeatureSet.fromBits([VIRTIO_F_VERSION_1, nb('GSO'), 4, 30]), { deviceType: NET, swiotlbBit: null });
    expect(p.map((x) => x.bit).sort((a, b) => a - b)).toEqual([4, 6, 30]);
  });
  it('[reserved.legacy-reserved-feature-bits.device.2] SWIOTLB on bit 27 is refused for a transitional device', () => {
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, 27]);
    expect(checkOffer(off, { swiotlbBit: 27 })).toEqual([]);
    expect(checkOffer(off, { swiotlbBit: 27, transitional: true }).map((p) => p.clause)).toContain('reserved.legacy-reserved-feature-bits.device.2');
  });
  it('transport-restricted bits: SR_IOV is PCI only', () => {
    const off = FeatureSet.fromBits([VIRTIO_F_VERSION_1, 37]);
    expect(checkOffer(off, { transport: 'pci' })).toEqual([]);
    expect(checkOffer(off, { transport: 'mmio' })).toHaveLength(1);
  });
  it('[blk.dev-init.device.1] CONFIG_WCE requires FLUSH to be offered', () => {
    const w = requireFeatureBit('CONFIG_WCE', DeviceType.BLOCK);
    const f = requireFeatureBit('FLUSH', DeviceType.BLOCK);
    expect(checkOffer(FeatureSet.fromBits([VIRTIO_F_VERSION_1, w]), { deviceType: DeviceType.BLOCK }).map((p) => p.clause)).toEqual(['blk.dev-init.device.1']);
    expect(checkOffer(FeatureSet.fromBits([VIRTIO_F_VERSION_1, w, f]), { deviceType: DeviceType.BLOCK })).toEqual([]);
  });
});
