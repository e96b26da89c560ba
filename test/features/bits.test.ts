import { describe, it, expect } from 'vitest';
import {
  BLK_FEATURES,
  DEFAULT_SWIOTLB_BIT,
  DEVICE_INDEPENDENT_FEATURES,
  DeviceType,
  NET_FEATURES,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  describeFeatures,
  featureBit,
  featureDependencies,
  featureName,
  isDeviceIndependentBit,
  isDeviceSpecificBit,
} from '../../src/features/bits.js';
import { FeatureSet } from '../../src/features/set.js';

describe('feature tables', () => {
  it('device-independent bits lie in the device-independent ranges; device bits in device ranges', () => {
    for (const d of DEVICE_INDEPENDENT_FEATURES) expect(isDeviceIndependentBit(d.bit), d.name).toBe(true);
    for (const d of [...NET_FEATURES, ...BLK_FEATURES]) expect(isDeviceSpecificBit(d.bit), d.name).toBe(true);
  });

  it('names and bits are unique within each table', () => {
    for (const t of [DEVICE_INDEPENDENT_FEATURES, NET_FEATURES, BLK_FEATURES]) {
      expect(new Set(t.map((d) => d.bit)).size).toBe(t.length);
      expect(new Set(t.map((d) => d.name)).size).toBe(t.length);
    }
  });

  it('has the 1.4 numbers from spec-facts §2.2 and §7.1', () => {
    expect(featureBit('VIRTIO_F_VERSION_1')).toBe(32);
    expect(featureBit('VIRTIO_F_SUSPEND')).toBe(43);
    expect(featureBit('VIRTIO_F_ADMIN_VQ')).toBe(41);
    expect(featureBit('VIRTIO_F_RING_RESET')).toBe(40);
    expect(featureBit('NOTIFY_ON_EMPTY')).toBe(24);
    expect(featureBit('VIRTIO_F_ANY_LAYOUT')).toBe(27);
    expect(featureBit('VIRTIO_NET_F_IPSEC', DeviceType.NET)).toBe(70);
    expect(featureBit('rss_context', DeviceType.NET)).toBe(64);
    expect(featureBit('GUEST_RSC6', DeviceType.NET)).toBe(42);
    expect(featureBit('VIRTIO_BLK_F_ZONED', DeviceType.BLOCK)).toBe(17);
    expect(featureBit('MULTIPORT', DeviceType.CONSOLE)).toBe(1);
    expect(featureBit('NO_IMPLIED_STREAM', DeviceType.VSOCK)).toBe(2);
    expect(featureBit('VIRTIO_NET_F_MAC')).toBeUndefined(); // device-specific needs the type
    expect(featureBit('NOPE', DeviceType.NET)).toBeUndefined();
  });

  it('name lookup is the inverse of bit lookup for every table row', () => {
    for (const d of DEVICE_INDEPENDENT_FEATURES) expect(featureBit(d.name, undefined, { swiotlbBit: null })).toBe(d.bit);
    for (const d of NET_FEATURES) expect(featureBit(d.name, DeviceType.NET)).toBe(d.bit);
    expect(featureName(VIRTIO_F_RING_PACKED)).toBe('VIRTIO_F_RING_PACKED');
    expect(featureName(41, DeviceType.NET)).toBe('VIRTIO_F_ADMIN_VQ/VIRTIO_NET_F_GUEST_RSC4');
  });

  it('SWIOTLB defaults to bit 27 (the RFC) and is configurable; without it 27 is ANY_LAYOUT', () => {
    expect(DEFAULT_SWIOTLB_BIT).toBe(VIRTIO_F_ANY_LAYOUT);
    expect(featureName(27)).toBe('VIRTIO_F_SWIOTLB');
    expect(featureName(27, undefined, { swiotlbBit: null })).toBe('VIRTIO_F_ANY_LAYOUT');
    expect(featureName(45, undefined, { swiotlbBit: 45 })).toBe('VIRTIO_F_SWIOTLB');
    expect(featureName(27, undefined, { swiotlbBit: 45 })).toBe('VIRTIO_F_ANY_LAYOUT');
    expect(featureBit('VIRTIO_F_SWIOTLB', undefined, { swiotlbBit: 45 })).toBe(45);
    expect(featureBit('swiotlb')).toBe(27);
  });

  it('describeFeatures names every bit, unknown ones as "bit N"', () => {
    const s = FeatureSet.fromBits([5, VIRTIO_F_VERSION_1, 64, 100]);
    expect(describeFeatures(s, DeviceType.NET)).toEqual(['VIRTIO_NET_F_MAC', 'VIRTIO_F_VERSION_1', 'VIRTIO_NET_F_RSS_CONTEXT', 'bit 100']);
    expect(describeFeatures([29, 28])).toEqual(['VIRTIO_F_INDIRECT_DESC', 'VIRTIO_F_EVENT_IDX']);
  });

  it('net dependencies resolve (spec-facts §7.1), e.g. HASH_TUNNEL needs CTRL_VQ and RSS or HASH_REPORT', () => {
    const deps = featureDependencies(DeviceType.NET);
    const ht = deps.find((d) => d.name === 'VIRTIO_NET_F_HASH_TUNNEL');
    expect(ht?.all).toEqual([17]);
    expect(ht?.any).toEqual([60, 57]);
    expect(deps.find((d) => d.name === 'VIRTIO_NET_F_GUEST_ECN')?.any).toEqual([7, 8]);
    expect(deps.length).toBeGreaterThanOrEqual(25);
  });
});
