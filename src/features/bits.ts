/**
 * Feature bits of virtio 1.4 as data.
 *
 * One table for the device-independent bits (content.tex "Reserved Feature Bits", including the
 * legacy-only ones) and one per device type (net, blk, console, rng, vsock). Every entry carries
 * its number, its spec name, a one-line meaning (paraphrased), and where relevant: legacy-only,
 * the transports that define it, and the bits it depends on ("requires", `basic.feature-bits.driver.1`).
 *
 * Name ↔ bit lookups and {@link describeFeatures} (names for logs and reports) are built on these
 * tables; nothing else in virtiokit hard-codes a feature name.
 *
 * Bit numbering facts: spec-facts.md §2 (allocation: 0–23, 41, 42, 50–127 device-type specific;
 * 24–40 and 43 device-independent; 44–49 and 128+ reserved).
 */
import { VirtioError } from '../errors.js';

/** Virtio device IDs of the device types virtiokit models (content.tex device ID table). */
export const DeviceType = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  RNG: 4,
  VSOCK: 19,
} as const;
export type DeviceTypeId = number;

/** Transports whose spec text restricts a feature. */
export type FeatureTransport = 'pci' | 'mmio' | 'ccw';

/** A dependency: every bit in `all` and at least one bit in `any` (when given) must be accepted too. */
export interface FeatureDependency {
  readonly all?: readonly string[];
  readonly any?: readonly string[];
}

/** One row of a feature table. */
export interface FeatureDef {
  readonly bit: number;
  /** Spec name, e.g. `VIRTIO_F_EVENT_IDX`. */
  readonly name: string;
  /** What it means, in one line (paraphrased from the spec). */
  readonly meaning: string;
  /** Only defined for the legacy interface (a modern-only device never offers it). */
  readonly legacyOnly?: boolean;
  /** Only these transports define it (absent = every transport). */
  readonly transports?: readonly FeatureTransport[];
  /** Bits (by name) this one requires (device-type tables may name device-independent bits). */
  readonly dependsOn?: FeatureDependency;
  /** Not part of virtio 1.4 (e.g. the 2025 SWIOTLB RFC). */
  readonly proposal?: string;
}

// ----------------------------------------------------------------------------------------------
// Device-independent bits (content.tex:843-946, legacy 1012-1045)

export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
export const VIRTIO_F_ANY_LAYOUT = 27;
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_UNUSED = 30;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;
export const VIRTIO_F_IN_ORDER = 35;
export const VIRTIO_F_ORDER_PLATFORM = 36;
export const VIRTIO_F_SR_IOV = 37;
export const VIRTIO_F_NOTIFICATION_DATA = 38;
export const VIRTIO_F_NOTIF_CONFIG_DATA = 39;
export const VIRTIO_F_RING_RESET = 40;
export const VIRTIO_F_ADMIN_VQ = 41;
export const VIRTIO_F_SUSPEND = 43;

/**
 * Default bit number of `VIRTIO_F_SWIOTLB` — the number the April 2025 RFC ("Add Software IOTLB
 * bounce buffer support", patch 1/3) gave it. It is **not** allocated in virtio 1.4.
 *
 * Bit 27 is legacy `VIRTIO_F_ANY_LAYOUT`: a transitional device MUST offer ANY_LAYOUT and a
 * transitional driver MUST accept it (`reserved.legacy-reserved-feature-bits.device.2`), so on a
 * device with a legacy interface bit 27 cannot mean SWIOTLB. A device offering SWIOTLB on bit 27
 * must therefore be modern-only (no legacy interface). The bit is configurable per device
 * (device option `swiotlbBit`); free device-independent bits in 1.4 are 25, 26, 31 and 44–49
 * (swiotlb.md §7).
 */
export const DEFAULT_SWIOTLB_BIT = 27;

/** Every device-independent bit of virtio 1.4 (without SWIOTLB, see {@link swiotlbFeature}). */
export const DEVICE_INDEPENDENT_FEATURES: readonly FeatureDef[] = [
  { bit: 24, name: 'VIRTIO_F_NOTIFY_ON_EMPTY', meaning: 'device notifies when it runs out of available descriptors even with notifications suppressed', legacyOnly: true },
  { bit: 27, name: 'VIRTIO_F_ANY_LAYOUT', meaning: 'device accepts arbitrary descriptor layouts (transitional devices must offer it)', legacyOnly: true },
  { bit: 28, name: 'VIRTIO_F_INDIRECT_DESC', meaning: 'driver may use indirect descriptor tables' },
  { bit: 29, name: 'VIRTIO_F_EVENT_IDX', meaning: 'used_event/avail_event (split) and descriptor event suppression (packed)' },
  { bit: 30, name: 'VIRTIO_F_UNUSED', meaning: 'legacy "bad feature" probe bit; should not be negotiated', legacyOnly: true },
  { bit: 32, name: 'VIRTIO_F_VERSION_1', meaning: 'compliant with virtio 1.x (absent means legacy)' },
  { bit: 33, name: 'VIRTIO_F_ACCESS_PLATFORM', meaning: 'device memory access is limited and/or translated by the platform (IOMMU)' },
  { bit: 34, name: 'VIRTIO_F_RING_PACKED', meaning: 'packed virtqueue layout' },
  { bit: 35, name: 'VIRTIO_F_IN_ORDER', meaning: 'device uses buffers in the order they were made available' },
  { bit: 36, name: 'VIRTIO_F_ORDER_PLATFORM', meaning: 'driver must use hardware (platform) memory barriers' },
  { bit: 37, name: 'VIRTIO_F_SR_IOV', meaning: 'device supports single root I/O virtualization', transports: ['pci'] },
  { bit: 38, name: 'VIRTIO_F_NOTIFICATION_DATA', meaning: 'driver notifications carry next_off/next_wrap' },
  { bit: 39, name: 'VIRTIO_F_NOTIF_CONFIG_DATA', meaning: 'driver writes the device-supplied queue_notif_config_data instead of the queue index', transports: ['pci'] },
  { bit: 40, name: 'VIRTIO_F_RING_RESET', meaning: 'driver may reset a single queue', transports: ['pci', 'mmio'] },
  { bit: 41, name: 'VIRTIO_F_ADMIN_VQ', meaning: 'device exposes administration virtqueues', transports: ['pci'] },
  { bit: 43, name: 'VIRTIO_F_SUSPEND', meaning: 'driver may set the SUSPEND status bit' },
];

/**
 * The `VIRTIO_F_SWIOTLB` row for a given bit number (default {@link DEFAULT_SWIOTLB_BIT}).
 * Meaning per the 2025 RFC: the transport provides a memory region to be used for bounce
 * buffering instead of direct access to system memory.
 */
export function swiotlbFeature(bit: number = DEFAULT_SWIOTLB_BIT): FeatureDef {
  return {
    bit,
    name: 'VIRTIO_F_SWIOTLB',
    meaning: 'transport provides a bounce-buffer region; the driver passes only addresses inside it',
    proposal: 'virtio-comment RFC 2025-04-02 (not in virtio 1.4)',
  };
}

// ----------------------------------------------------------------------------------------------
// Device-specific tables

const ctrlVq: FeatureDependency = { all: ['VIRTIO_NET_F_CTRL_VQ'] };
const guestCsum: FeatureDependency = { all: ['VIRTIO_NET_F_GUEST_CSUM'] };
const hostCsum: FeatureDependency = { all: ['VIRTIO_NET_F_CSUM'] };

/** Network device (device-types/net/description.tex:39-203; requirements 150-186). */
export const NET_FEATURES: readonly FeatureDef[] = [
  { bit: 0, name: 'VIRTIO_NET_F_CSUM', meaning: 'device handles packets with partial checksum' },
  { bit: 1, name: 'VIRTIO_NET_F_GUEST_CSUM', meaning: 'driver handles packets with partial checksum' },
  { bit: 2, name: 'VIRTIO_NET_F_CTRL_GUEST_OFFLOADS', meaning: 'offloads can be reconfigured through the control queue' },
  { bit: 3, name: 'VIRTIO_NET_F_MTU', meaning: 'device reports its maximum MTU' },
  { bit: 5, name: 'VIRTIO_NET_F_MAC', meaning: 'device has a MAC address in config space' },
  { bit: 6, name: 'VIRTIO_NET_F_GSO', meaning: 'device handles packets with any GSO type (legacy)', legacyOnly: true },
  { bit: 7, name: 'VIRTIO_NET_F_GUEST_TSO4', meaning: 'driver can receive TSOv4', dependsOn: guestCsum },
  { bit: 8, name: 'VIRTIO_NET_F_GUEST_TSO6', meaning: 'driver can receive TSOv6', dependsOn: guestCsum },
  { bit: 9, name: 'VIRTIO_NET_F_GUEST_ECN', meaning: 'driver can receive TSO with ECN', dependsOn: { any: ['VIRTIO_NET_F_GUEST_TSO4', 'VIRTIO_NET_F_GUEST_TSO6'] } },
  { bit: 10, name: 'VIRTIO_NET_F_GUEST_UFO', meaning: 'driver can receive UFO', dependsOn: guestCsum },
  { bit: 11, name: 'VIRTIO_NET_F_HOST_TSO4', meaning: 'device can receive TSOv4', dependsOn: hostCsum },
  { bit: 12, name: 'VIRTIO_NET_F_HOST_TSO6', meaning: 'device can receive TSOv6', dependsOn: hostCsum },
  { bit: 13, name: 'VIRTIO_NET_F_HOST_ECN', meaning: 'device can receive TSO with ECN', dependsOn: { any: ['VIRTIO_NET_F_HOST_TSO4', 'VIRTIO_NET_F_HOST_TSO6'] } },
  { bit: 14, name: 'VIRTIO_NET_F_HOST_UFO', meaning: 'device can receive UFO', dependsOn: hostCsum },
  { bit: 15, name: 'VIRTIO_NET_F_MRG_RXBUF', meaning: 'driver can merge receive buffers' },
  { bit: 16, name: 'VIRTIO_NET_F_STATUS', meaning: 'config status field is available' },
  { bit: 17, name: 'VIRTIO_NET_F_CTRL_VQ', meaning: 'control channel is available' },
  { bit: 18, name: 'VIRTIO_NET_F_CTRL_RX', meaning: 'control channel RX mode support', dependsOn: ctrlVq },
  { bit: 19, name: 'VIRTIO_NET_F_CTRL_VLAN', meaning: 'control channel VLAN filtering', dependsOn: ctrlVq },
  { bit: 20, name: 'VIRTIO_NET_F_CTRL_RX_EXTRA', meaning: 'extra RX mode control support (should come with CTRL_VQ)' },
  { bit: 21, name: 'VIRTIO_NET_F_GUEST_ANNOUNCE', meaning: 'driver can send gratuitous packets', dependsOn: ctrlVq },
  { bit: 22, name: 'VIRTIO_NET_F_MQ', meaning: 'multiqueue with automatic receive steering', dependsOn: ctrlVq },
  { bit: 23, name: 'VIRTIO_NET_F_CTRL_MAC_ADDR', meaning: 'MAC address can be set through the control channel', dependsOn: ctrlVq },
  { bit: 41, name: 'VIRTIO_NET_F_GUEST_RSC4', meaning: 'device coalesces TCP/IPv4 packets (legacy; shares its number with VIRTIO_F_ADMIN_VQ)', legacyOnly: true },
  { bit: 42, name: 'VIRTIO_NET_F_GUEST_RSC6', meaning: 'device coalesces TCP/IPv6 packets (legacy)', legacyOnly: true },
  { bit: 50, name: 'VIRTIO_NET_F_DEVICE_STATS', meaning: 'device-level statistics through the control queue' },
  { bit: 51, name: 'VIRTIO_NET_F_HASH_TUNNEL', meaning: 'inner header hash for encapsulated packets', dependsOn: { all: ['VIRTIO_NET_F_CTRL_VQ'], any: ['VIRTIO_NET_F_RSS', 'VIRTIO_NET_F_HASH_REPORT'] } },
  { bit: 52, name: 'VIRTIO_NET_F_VQ_NOTF_COAL', meaning: 'per-virtqueue notification coalescing', dependsOn: ctrlVq },
  { bit: 53, name: 'VIRTIO_NET_F_NOTF_COAL', meaning: 'notification coalescing', dependsOn: ctrlVq },
  { bit: 54, name: 'VIRTIO_NET_F_GUEST_USO4', meaning: 'driver can receive USOv4', dependsOn: guestCsum },
  { bit: 55, name: 'VIRTIO_NET_F_GUEST_USO6', meaning: 'driver can receive USOv6', dependsOn: guestCsum },
  { bit: 56, name: 'VIRTIO_NET_F_HOST_USO', meaning: 'device can receive USO', dependsOn: hostCsum },
  { bit: 57, name: 'VIRTIO_NET_F_HASH_REPORT', meaning: 'device reports a per-packet hash (should come with CTRL_VQ)' },
  { bit: 59, name: 'VIRTIO_NET_F_GUEST_HDRLEN', meaning: 'driver provides the exact hdr_len' },
  { bit: 60, name: 'VIRTIO_NET_F_RSS', meaning: 'receive-side scaling with Toeplitz hash', dependsOn: ctrlVq },
  { bit: 61, name: 'VIRTIO_NET_F_RSC_EXT', meaning: 'device reports coalesced segments and duplicated ACKs', dependsOn: { any: ['VIRTIO_NET_F_HOST_TSO4', 'VIRTIO_NET_F_HOST_TSO6'] } },
  { bit: 62, name: 'VIRTIO_NET_F_STANDBY', meaning: 'device may act as standby for a primary device with the same MAC' },
  { bit: 63, name: 'VIRTIO_NET_F_SPEED_DUPLEX', meaning: 'device reports speed and duplex' },
  { bit: 64, name: 'VIRTIO_NET_F_RSS_CONTEXT', meaning: 'multiple RSS contexts', dependsOn: { all: ['VIRTIO_NET_F_CTRL_VQ', 'VIRTIO_NET_F_RSS'] } },
  {
    bit: 65,
    name: 'VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO',
    meaning: 'driver can receive GSO packets carried in UDP tunnels',
    dependsOn: { all: ['VIRTIO_NET_F_GUEST_TSO4', 'VIRTIO_NET_F_GUEST_TSO6', 'VIRTIO_NET_F_GUEST_USO4', 'VIRTIO_NET_F_GUEST_USO6'] },
  },
  { bit: 66, name: 'VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO_CSUM', meaning: 'driver handles UDP tunnel GSO packets with outer checksum offload', dependsOn: { all: ['VIRTIO_NET_F_GUEST_UDP_TUNNEL_GSO'] } },
  { bit: 67, name: 'VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO', meaning: 'device can receive GSO packets carried in UDP tunnels', dependsOn: { all: ['VIRTIO_NET_F_HOST_TSO4', 'VIRTIO_NET_F_HOST_TSO6', 'VIRTIO_NET_F_HOST_USO'] } },
  { bit: 68, name: 'VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO_CSUM', meaning: 'device handles UDP tunnel GSO packets with outer checksum offload', dependsOn: { all: ['VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO'] } },
  { bit: 69, name: 'VIRTIO_NET_F_OUT_NET_HEADER', meaning: 'driver may supply the outer network header offset' },
  { bit: 70, name: 'VIRTIO_NET_F_IPSEC', meaning: 'IPsec offload' },
];

/** Block device (device-types/blk/description.tex). */
export const BLK_FEATURES: readonly FeatureDef[] = [
  { bit: 0, name: 'VIRTIO_BLK_F_BARRIER', meaning: 'device supports request barriers (legacy)', legacyOnly: true },
  { bit: 1, name: 'VIRTIO_BLK_F_SIZE_MAX', meaning: 'maximum segment size is in size_max' },
  { bit: 2, name: 'VIRTIO_BLK_F_SEG_MAX', meaning: 'maximum number of segments is in seg_max' },
  { bit: 4, name: 'VIRTIO_BLK_F_GEOMETRY', meaning: 'disk geometry is in geometry' },
  { bit: 5, name: 'VIRTIO_BLK_F_RO', meaning: 'device is read-only' },
  { bit: 6, name: 'VIRTIO_BLK_F_BLK_SIZE', meaning: 'block size of the disk is in blk_size' },
  { bit: 7, name: 'VIRTIO_BLK_F_SCSI', meaning: 'device supports SCSI packet commands (legacy)', legacyOnly: true },
  { bit: 9, name: 'VIRTIO_BLK_F_FLUSH', meaning: 'cache flush command support (legacy name: WCE)' },
  { bit: 10, name: 'VIRTIO_BLK_F_TOPOLOGY', meaning: 'optimal I/O alignment information is in topology' },
  { bit: 11, name: 'VIRTIO_BLK_F_CONFIG_WCE', meaning: 'writeback/writethrough cache mode is in writeback' },
  { bit: 12, name: 'VIRTIO_BLK_F_MQ', meaning: 'more than one request queue' },
  { bit: 13, name: 'VIRTIO_BLK_F_DISCARD', meaning: 'discard command support' },
  { bit: 14, name: 'VIRTIO_BLK_F_WRITE_ZEROES', meaning: 'write zeroes command support' },
  { bit: 15, name: 'VIRTIO_BLK_F_LIFETIME', meaning: 'device lifetime information command' },
  { bit: 16, name: 'VIRTIO_BLK_F_SECURE_ERASE', meaning: 'secure erase command support' },
  { bit: 17, name: 'VIRTIO_BLK_F_ZONED', meaning: 'device is a zoned block device' },
];

/** Console device (device-types/console/description.tex). */
export const CONSOLE_FEATURES: readonly FeatureDef[] = [
  { bit: 0, name: 'VIRTIO_CONSOLE_F_SIZE', meaning: 'cols and rows are valid' },
  { bit: 1, name: 'VIRTIO_CONSOLE_F_MULTIPORT', meaning: 'multiple ports and control queues' },
  { bit: 2, name: 'VIRTIO_CONSOLE_F_EMERG_WRITE', meaning: 'emergency write through emerg_wr' },
];

/** Entropy device: no feature bits. */
export const RNG_FEATURES: readonly FeatureDef[] = [];

/** Socket device (device-types/vsock/description.tex). */
export const VSOCK_FEATURES: readonly FeatureDef[] = [
  { bit: 0, name: 'VIRTIO_VSOCK_F_STREAM', meaning: 'stream socket type' },
  { bit: 1, name: 'VIRTIO_VSOCK_F_SEQPACKET', meaning: 'seqpacket socket type' },
  { bit: 2, name: 'VIRTIO_VSOCK_F_NO_IMPLIED_STREAM', meaning: 'stream is not implied when no feature is negotiated' },
];

const DEVICE_TABLES: ReadonlyMap<number, { prefix: string; table: readonly FeatureDef[] }> = new Map([
  [DeviceType.NET, { prefix: 'VIRTIO_NET_F_', table: NET_FEATURES }],
  [DeviceType.BLOCK, { prefix: 'VIRTIO_BLK_F_', table: BLK_FEATURES }],
  [DeviceType.CONSOLE, { prefix: 'VIRTIO_CONSOLE_F_', table: CONSOLE_FEATURES }],
  [DeviceType.RNG, { prefix: 'VIRTIO_RNG_F_', table: RNG_FEATURES }],
  [DeviceType.VSOCK, { prefix: 'VIRTIO_VSOCK_F_', table: VSOCK_FEATURES }],
]);

/** Device-specific table for a virtio device ID, or undefined when virtiokit has none. */
export function deviceFeatureTable(deviceType: DeviceTypeId): readonly FeatureDef[] | undefined {
  return DEVICE_TABLES.get(deviceType)?.table;
}

/** True when `bit` lies in a device-type-specific range of virtio 1.4 (0–23, 41, 42, 50–127). */
export function isDeviceSpecificBit(bit: number): boolean {
  return (bit >= 0 && bit <= 23) || bit === 41 || bit === 42 || (bit >= 50 && bit <= 127);
}

/** True when `bit` lies in the device-independent ranges (24–40, 43; 41 is ADMIN_VQ there too). */
export function isDeviceIndependentBit(bit: number): boolean {
  return (bit >= 24 && bit <= 41) || bit === 43;
}

// ----------------------------------------------------------------------------------------------
// Lookups

/** Options for name lookups and descriptions. */
export interface FeatureNameOptions {
  /** Bit carrying VIRTIO_F_SWIOTLB (default 27); `null` = no SWIOTLB (bit 27 reads as ANY_LAYOUT). */
  swiotlbBit?: number | null;
}

function swiotlbBitOf(opts: FeatureNameOptions | undefined): number | null {
  if (opts === undefined || opts.swiotlbBit === undefined) return DEFAULT_SWIOTLB_BIT;
  return opts.swiotlbBit;
}

const INDEPENDENT_BY_BIT: ReadonlyMap<number, FeatureDef> = new Map(DEVICE_INDEPENDENT_FEATURES.map((d) => [d.bit, d]));

/**
 * Every definition that applies to `bit` for a device type: the SWIOTLB row if it sits there,
 * else the device-independent row, then the device-specific row (bits 41/42 can have both).
 */
export function featureDefs(bit: number, deviceType?: DeviceTypeId, opts?: FeatureNameOptions): FeatureDef[] {
  const out: FeatureDef[] = [];
  const sw = swiotlbBitOf(opts);
  if (sw !== null && bit === sw) out.push(swiotlbFeature(sw));
  else {
    const ind = INDEPENDENT_BY_BIT.get(bit);
    if (ind !== undefined) out.push(ind);
  }
  if (deviceType !== undefined) {
    const t = DEVICE_TABLES.get(deviceType);
    const d = t?.table.find((x) => x.bit === bit);
    if (d !== undefined) out.push(d);
  }
  return out;
}

/** The spec name of `bit` for a device type (e.g. 41 on net: `VIRTIO_F_ADMIN_VQ/VIRTIO_NET_F_GUEST_RSC4`), or undefined. */
export function featureName(bit: number, deviceType?: DeviceTypeId, opts?: FeatureNameOptions): string | undefined {
  const defs = featureDefs(bit, deviceType, opts);
  return defs.length === 0 ? undefined : defs.map((d) => d.name).join('/');
}

/**
 * The bit number for a feature name. Accepts the full spec name (`VIRTIO_NET_F_MRG_RXBUF`) or the
 * short form without prefix (`MRG_RXBUF`, `EVENT_IDX`), case-insensitively. Device-specific
 * names need `deviceType`. `VIRTIO_F_SWIOTLB` resolves to `opts.swiotlbBit` (default 27).
 */
export function featureBit(name: string, deviceType?: DeviceTypeId, opts?: FeatureNameOptions): number | undefined {
  const n = name.trim().toUpperCase();
  const sw = swiotlbBitOf(opts);
  if (n === 'VIRTIO_F_SWIOTLB' || n === 'SWIOTLB') return sw ?? undefined;
  const t = deviceType === undefined ? undefined : DEVICE_TABLES.get(deviceType);
  const candidates = [n, `VIRTIO_F_${n}`];
  if (t !== undefined) candidates.push(`${t.prefix}${n}`);
  for (const c of candidates) {
    if (t !== undefined) {
      const d = t.table.find((x) => x.name === c);
      if (d !== undefined) return d.bit;
    }
    const i = DEVICE_INDEPENDENT_FEATURES.find((x) => x.name === c);
    if (i !== undefined) return i.bit;
  }
  return undefined;
}

/** Like {@link featureBit} but throws a VirtioError naming the device type when unknown. */
export function requireFeatureBit(name: string, deviceType?: DeviceTypeId, opts?: FeatureNameOptions): number {
  const b = featureBit(name, deviceType, opts);
  if (b === undefined) {
    throw new VirtioError('INVALID_ARGUMENT', `unknown feature name "${name}"${deviceType === undefined ? '' : ` for device type ${deviceType}`} (use a spec name such as VIRTIO_F_EVENT_IDX)`);
  }
  return b;
}

/** Something that can list its set bits (a FeatureSet, or any iterable of bit numbers). */
export interface BitSource {
  toBits(): number[];
}

/**
 * Names of every bit in `set`, ascending, for logs and reports; unknown bits read `bit N`.
 */
export function describeFeatures(set: BitSource | Iterable<number>, deviceType?: DeviceTypeId, opts?: FeatureNameOptions): string[] {
  const bits = isBitSource(set) ? set.toBits() : [...set].sort((a, b) => a - b);
  return bits.map((b) => featureName(b, deviceType, opts) ?? `bit ${b}`);
}

function isBitSource(x: BitSource | Iterable<number>): x is BitSource {
  return typeof (x as BitSource).toBits === 'function';
}

// ----------------------------------------------------------------------------------------------
// Resolved dependencies (name → bit) per device type, checked once at load.

/** A dependency with names resolved to bits. */
export interface ResolvedDependency {
  readonly bit: number;
  readonly name: string;
  readonly all: readonly number[];
  readonly any: readonly number[];
}

function resolveDeps(deviceType: DeviceTypeId | undefined): ResolvedDependency[] {
  const t = deviceType === undefined ? undefined : DEVICE_TABLES.get(deviceType);
  const rows = [...DEVICE_INDEPENDENT_FEATURES, ...(t?.table ?? [])];
  const out: ResolvedDependency[] = [];
  for (const d of rows) {
    if (d.dependsOn === undefined) continue;
    const res = (names: readonly string[] | undefined): number[] =>
      (names ?? []).map((n) => {
        const b = featureBit(n, deviceType, { swiotlbBit: null });
        if (b === undefined) throw new VirtioError('INTERNAL', `feature table: ${d.name} depends on unknown ${n}`);
        return b;
      });
    out.push({ bit: d.bit, name: d.name, all: res(d.dependsOn.all), any: res(d.dependsOn.any) });
  }
  return out;
}

const DEPS_CACHE = new Map<DeviceTypeId | undefined, readonly ResolvedDependency[]>();

/** Dependencies that apply to a device type (device-independent ones plus its table's). */
export function featureDependencies(deviceType?: DeviceTypeId): readonly ResolvedDependency[] {
  let d = DEPS_CACHE.get(deviceType);
  if (d === undefined) {
    d = resolveDeps(deviceType);
    DEPS_CACHE.set(deviceType, d);
  }
  return d;
}

// Validate every table's dependency names once at module load (a typo fails at import, not at negotiation).
for (const id of DEVICE_TABLES.keys()) featureDependencies(id);
