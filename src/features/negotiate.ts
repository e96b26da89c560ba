/**
 * Feature negotiation: validate the set a driver accepted against the set a device offered.
 *
 * A failed negotiation is the driver's fault, but it is **not** a guest error that breaks the
 * device: the device simply does not set FEATURES_OK (`basic.feature-bits.device.2`), the driver
 * re-reads the status, sees the bit clear and may retry with another set or give up (FAILED).
 * Nothing goes to the choke point and NEEDS_RESET is not set.
 *
 * Checks, in order (the first failure is reported):
 *  1. every accepted bit was offered — FEATURE_NOT_OFFERED (`basic.feature-bits.driver.1`);
 *  2. a modern device refuses a driver that did not accept VERSION_1 — FEATURE_REQUIRED
 *     (`reserved.reserved-feature-bits.driver.1`; the device MAY fail, `…device.2`);
 *  3. every accepted bit's dependencies were accepted — FEATURE_DEPENDENCY (`basic.feature-bits.driver.1`);
 *  4. device policy: every bit in `required` was accepted — FEATURE_REQUIRED (SWIOTLB:
 *     `rfc-swiotlb.feature.device.1`; ACCESS_PLATFORM: `reserved.reserved-feature-bits.device.4`);
 *  5. extra device rules (e.g. blk zoned host-managed) — their own code and clause.
 *
 * {@link checkOffer} validates the *offered* set when a device is built (host configuration errors).
 */
import type { VirtioErrorCode } from '../errors.js';
import {
  DEFAULT_SWIOTLB_BIT,
  DEVICE_INDEPENDENT_FEATURES,
  DeviceType,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_VERSION_1,
  deviceFeatureTable,
  featureDependencies,
  featureName,
  isDeviceSpecificBit,
  requireFeatureBit,
  type DeviceTypeId,
  type FeatureTransport,
} from './bits.js';
import { FeatureSet } from './set.js';

/** Outcome of a negotiation. */
export interface NegotiationResult {
  readonly ok: boolean;
  /** Why it failed (absent when ok). */
  readonly code?: VirtioErrorCode;
  /** Clause id the driver broke, or the device policy clause that allows the refusal. */
  readonly clause?: string;
  /** For a human: which bit, and what to do. */
  readonly message?: string;
  /** The offending bit, when one. */
  readonly bit?: number;
}

/** An extra device-specific acceptance rule. Return a failure, or undefined when satisfied. */
export interface NegotiationRule {
  /** Short id for logs. */
  readonly id: string;
  check(accepted: FeatureSet, offered: FeatureSet): NegotiationResult | undefined;
}

/** Options for {@link negotiate}. */
export interface NegotiateOptions {
  /** Virtio device ID (selects the device-specific dependency table). */
  deviceType?: DeviceTypeId;
  /** Modern interface (default true): VERSION_1 must be accepted when offered. */
  modern?: boolean;
  /** Bits the device refuses to run without (device policy). */
  required?: FeatureSet;
  /** Extra rules (device-specific). */
  rules?: readonly NegotiationRule[];
  /** Bit number of VIRTIO_F_SWIOTLB (for names and the clause of a required SWIOTLB; default 27). */
  swiotlbBit?: number | null;
}

const OK: NegotiationResult = Object.freeze({ ok: true });

function nameOf(bit: number, o: NegotiateOptions): string {
  return featureName(bit, o.deviceType, { swiotlbBit: o.swiotlbBit === undefined ? DEFAULT_SWIOTLB_BIT : o.swiotlbBit }) ?? `bit ${bit}`;
}

/** Clause that lets a device refuse FEATURES_OK when `bit` was not accepted. */
export function requiredClause(bit: number, swiotlbBit: number | null = DEFAULT_SWIOTLB_BIT): string {
  if (swiotlbBit !== null && bit === swiotlbBit) return 'rfc-swiotlb.feature.device.1';
  if (bit === VIRTIO_F_VERSION_1) return 'reserved.reserved-feature-bits.device.2';
  if (bit === VIRTIO_F_ACCESS_PLATFORM) return 'reserved.reserved-feature-bits.device.4';
  if (bit === VIRTIO_F_ORDER_PLATFORM) return 'reserved.reserved-feature-bits.device.6';
  return 'basic.feature-bits.device.2';
}

/** Validate a driver's accepted features against the offered ones. Never throws. */
export function negotiate(accepted: FeatureSet, offered: FeatureSet, opts: NegotiateOptions = {}): NegotiationResult {
  // basic.feature-bits.driver.1: the driver MUST NOT accept a feature the device did not offer.
  const extra = accepted.minus(offered);
  if (!extra.isEmpty()) {
    const bits = extra.toBits();
    return {
      ok: false,
      code: 'FEATURE_NOT_OFFERED',
      clause: 'basic.feature-bits.driver.1',
      bit: bits[0]!,
      message: `driver accepted feature${bits.length > 1 ? 's' : ''} the device did not offer: ${bits.map((b) => nameOf(b, opts)).join(', ')} (offered ${offered.toString()}, accepted ${accepted.toString()})`,
    };
  }
  // reserved.reserved-feature-bits.driver.1: a driver MUST accept VERSION_1 if offered;
  // reserved.reserved-feature-bits.device.2: the device MAY fail to operate further → refuse.
  if ((opts.modern ?? true) && offered.has(VIRTIO_F_VERSION_1) && !accepted.has(VIRTIO_F_VERSION_1)) {
    return {
      ok: false,
      code: 'FEATURE_REQUIRED',
      clause: 'reserved.reserved-feature-bits.driver.1',
      bit: VIRTIO_F_VERSION_1,
      message: 'driver did not accept VIRTIO_F_VERSION_1: this device has no legacy interface, so a modern driver must accept it',
    };
  }
  // basic.feature-bits.driver.1: ... and MUST NOT accept a feature which requires another feature which was not accepted.
  for (const d of featureDependencies(opts.deviceType)) {
    if (!accepted.has(d.bit)) continue;
    const missingAll = d.all.filter((b) => !accepted.has(b));
    const anyOk = d.any.length === 0 || d.any.some((b) => accepted.has(b));
    if (missingAll.length > 0 || !anyOk) {
      const needs: string[] = missingAll.map((b) => nameOf(b, opts));
      if (!anyOk) needs.push(`one of ${d.any.map((b) => nameOf(b, opts)).join(' or ')}`);
      return {
        ok: false,
        code: 'FEATURE_DEPENDENCY',
        clause: 'basic.feature-bits.driver.1',
        bit: d.bit,
        message: `driver accepted ${d.name} without ${needs.join(' and ')}, which it requires`,
      };
    }
  }
  // Device policy: refuse FEATURES_OK when a required bit was not accepted.
  if (opts.required !== undefined) {
    const missing = opts.required.intersect(offered).minus(accepted);
    if (!missing.isEmpty()) {
      const bits = missing.toBits();
      const sw = opts.swiotlbBit === undefined ? DEFAULT_SWIOTLB_BIT : opts.swiotlbBit;
      return {
        ok: false,
        code: 'FEATURE_REQUIRED',
        clause: requiredClause(bits[0]!, sw),
        bit: bits[0]!,
        message: `device requires ${bits.map((b) => nameOf(b, opts)).join(', ')} but the driver did not accept ${bits.length > 1 ? 'them' : 'it'}; the device leaves FEATURES_OK clear`,
      };
    }
  }
  for (const r of opts.rules ?? []) {
    const res = r.check(accepted, offered);
    if (res !== undefined && !res.ok) return res;
  }
  return OK;
}

// ----------------------------------------------------------------------------------------------
// Device-specific rules that need more than the dependency table

/** Zone model of a virtio-blk device (config `zoned.model`). */
export type BlkZonedModel = 'none' | 'host-managed' | 'host-aware';

/**
 * Block-device negotiation rules for a zoned device:
 *  - host-managed model offering ZONED: the device MUST fail FEATURES_OK when the driver did not
 *    accept ZONED (`blk.dev-init.device.6`);
 *  - host-managed model: the driver MUST NOT accept DISCARD together with ZONED
 *    (`blk.dev-init.driver.6`).
 */
export function blkFeatureRules(opts: { zonedModel?: BlkZonedModel } = {}): NegotiationRule[] {
  if (opts.zonedModel !== 'host-managed') return [];
  const ZONED = requireFeatureBit('VIRTIO_BLK_F_ZONED', DeviceType.BLOCK);
  const DISCARD = requireFeatureBit('VIRTIO_BLK_F_DISCARD', DeviceType.BLOCK);
  return [
    {
      id: 'blk-zoned-hm-required',
      check: (acc, off) =>
        off.has(ZONED) && !acc.has(ZONED)
          ? { ok: false, code: 'FEATURE_REQUIRED', clause: 'blk.dev-init.device.6', bit: ZONED, message: 'host-managed zoned block device: the driver must accept VIRTIO_BLK_F_ZONED' }
          : undefined,
    },
    {
      id: 'blk-zoned-hm-no-discard',
      check: (acc, off) =>
        off.has(ZONED) && acc.has(ZONED) && acc.has(DISCARD)
          ? { ok: false, code: 'FEATURE_DEPENDENCY', clause: 'blk.dev-init.driver.6', bit: DISCARD, message: 'host-managed zoned block device: the driver must not accept VIRTIO_BLK_F_DISCARD with VIRTIO_BLK_F_ZONED' }
          : undefined,
    },
  ];
}

// ----------------------------------------------------------------------------------------------
// Offer validation (host side: a device misconfiguration, reported when the device is built)

/** One problem with an offered set. */
export interface OfferProblem {
  readonly bit: number;
  readonly clause: string;
  readonly message: string;
}

/** Options for {@link checkOffer}. */
export interface CheckOfferOptions {
  deviceType?: DeviceTypeId;
  /** The device has a legacy interface (transitional). Default false. */
  transitional?: boolean;
  /** Transport the device sits on; bits restricted to other transports are problems. Undefined = not checked. */
  transport?: FeatureTransport;
  /** Bit carrying VIRTIO_F_SWIOTLB when offered (null = not offered). */
  swiotlbBit?: number | null;
}

/**
 * Problems with an offered feature set (empty when fine):
 *  - VERSION_1 missing (`reserved.reserved-feature-bits.device.1`);
 *  - a bit virtiokit's tables do not define for this device (`basic.feature-bits.device.3`);
 *  - a legacy-only bit on a modern-only device, a transport-restricted bit on another transport;
 *  - a bit whose dependencies are not offered (`basic.feature-bits.device.1`);
 *  - SWIOTLB on bit 27 on a transitional device (collides with legacy ANY_LAYOUT,
 *    `reserved.legacy-reserved-feature-bits.device.2`).
 */
export function checkOffer(offered: FeatureSet, opts: CheckOfferOptions = {}): OfferProblem[] {
  const out: OfferProblem[] = [];
  const sw = opts.swiotlbBit ?? null;
  const table = opts.deviceType === undefined ? undefined : deviceFeatureTable(opts.deviceType);
  const name = (b: number): string => featureName(b, opts.deviceType, { swiotlbBit: sw }) ?? `bit ${b}`;
  if (!offered.has(VIRTIO_F_VERSION_1)) {
    out.push({ bit: VIRTIO_F_VERSION_1, clause: 'reserved.reserved-feature-bits.device.1', message: 'a device must offer VIRTIO_F_VERSION_1' });
  }
  if (sw !== null && offered.has(sw) && sw === VIRTIO_F_ANY_LAYOUT && opts.transitional === true) {
    out.push({
      bit: sw,
      clause: 'reserved.legacy-reserved-feature-bits.device.2',
      message: 'VIRTIO_F_SWIOTLB on bit 27 collides with legacy VIRTIO_F_ANY_LAYOUT, which a transitional device must offer: make the device modern-only or choose another swiotlbBit (25, 26, 31, 44-49 are free)',
    });
  }
  for (const b of offered.toBits()) {
    if (sw !== null && b === sw) continue;
    const ind = DEVICE_INDEPENDENT_FEATURES.find((d) => d.bit === b);
    const dev = table?.find((d) => d.bit === b);
    const def = dev !== undefined && (ind === undefined || ind.legacyOnly === true || !(dev.legacyOnly ?? false)) ? dev : ind;
    if (def === undefined) {
      if (table !== undefined || !isDeviceSpecificBit(b)) {
        out.push({ bit: b, clause: 'basic.feature-bits.device.3', message: `${name(b)} is not defined for this device type` });
      }
      continue;
    }
    if ((def.legacyOnly ?? false) && opts.transitional !== true) {
      out.push({ bit: b, clause: 'basic.feature-bits.device.3', message: `${def.name} is legacy-only; a modern-only device must not offer it` });
    }
    if (def.transports !== undefined && opts.transport !== undefined && !def.transports.includes(opts.transport)) {
      out.push({ bit: b, clause: 'basic.feature-bits.device.3', message: `${def.name} is not defined for the ${opts.transport} transport` });
    }
  }
  for (const d of featureDependencies(opts.deviceType)) {
    if (!offered.has(d.bit)) continue;
    const missing = d.all.filter((b) => !offered.has(b));
    const anyOk = d.any.length === 0 || d.any.some((b) => offered.has(b));
    if (missing.length > 0 || !anyOk) {
      out.push({ bit: d.bit, clause: 'basic.feature-bits.device.1', message: `${d.name} is offered without ${[...missing.map(name), ...(anyOk ? [] : [`one of ${d.any.map(name).join('/')}`])].join(' and ')}` });
    }
  }
  if (opts.deviceType === DeviceType.BLOCK) {
    const wce = requireFeatureBit('VIRTIO_BLK_F_CONFIG_WCE', DeviceType.BLOCK);
    const flush = requireFeatureBit('VIRTIO_BLK_F_FLUSH', DeviceType.BLOCK);
    if (offered.has(wce) && !offered.has(flush)) out.push({ bit: wce, clause: 'blk.dev-init.device.1', message: 'VIRTIO_BLK_F_CONFIG_WCE is offered without VIRTIO_BLK_F_FLUSH' });
  }
  return out;
}
