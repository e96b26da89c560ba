/**
 * Probing a virtio-pci function the way Linux `virtio_pci_modern` does it.
 *
 * 1. Match the ids: vendor 0x1AF4 and device id 0x1040–0x107F (modern; virtio id = device id −
 *    0x1040) or 0x1000–0x103F (transitional; virtio id = subsystem id), any revision
 *    (pci.discovery.driver.1/.2/.3).
 * 2. Size every memory BAR with memory decode off (write all-ones, read the mask back, restore),
 *    assign bus addresses from an {@link MmioAllocator}, program them, then enable Memory Space
 *    and Bus Master in the command register.
 * 3. Walk the capability list from 0x34 following cap_next (masked to dword alignment, with a loop
 *    guard) and keep the first usable capability of each virtio cfg_type (pci.caps.driver.2):
 *    common (1), notify (2, with notify_off_multiplier), ISR (3), device (4) and the SWIOTLB
 *    window (configurable cfg_type, default 10). Capabilities with a reserved bar (> 5) or a reserved
 *    cfg_type are ignored (pci.caps.driver.1/.4); a larger cap_len is accepted (pci.caps.driver.3);
 *    offset/length must lie inside the BAR, and a larger length than needed is fine
 *    (pci.caps.driver.6). The MSI-X capability (id 0x11) gives the table size, table and PBA.
 *
 * The probe writes nothing into capability structures (pci.caps.driver.7).
 */
import { VirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PCI_CAPABILITY_LIST,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_DEVICE_CFG,
  VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_CAP_SWIOTLB_DEFAULT,
  VIRTIO_PCI_VENDOR_ID,
} from '../transport/pci/layout-constants.js';
import type { PciFunctionAccess } from './access.js';
import { MmioAllocator } from './mmio-alloc.js';
import { PciConfigIo } from './pci-regs.js';

const log = logger('driver:probe');

/** PCI vendor id of virtio functions. */
export const PCI_VENDOR_ID_VIRTIO = VIRTIO_PCI_VENDOR_ID;
export { PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY };
const TWO32 = 4294967296;

/** virtio cfg_type values the driver uses. */
export const CAP_COMMON = VIRTIO_PCI_CAP_COMMON_CFG;
export const CAP_NOTIFY = VIRTIO_PCI_CAP_NOTIFY_CFG;
export const CAP_ISR = VIRTIO_PCI_CAP_ISR_CFG;
export const CAP_DEVICE = VIRTIO_PCI_CAP_DEVICE_CFG;
/** Default cfg_type of the SWIOTLB capability (2025 RFC). */
export const CAP_SWIOTLB_DEFAULT = VIRTIO_PCI_CAP_SWIOTLB_DEFAULT;

/** Minimum structure lengths the driver needs (pci.caps.driver.6: it MAY check this). */
const MIN_LEN: Readonly<Record<number, number>> = { [CAP_COMMON]: 56, [CAP_NOTIFY]: 2, [CAP_ISR]: 1, [CAP_DEVICE]: 0 };

/** A memory BAR as sized and programmed by the probe. */
export interface ProbedBar {
  readonly index: number;
  readonly size: number;
  readonly is64: boolean;
  readonly prefetchable: boolean;
  /** Bus address programmed (updated by {@link relocateBar}). */
  address: number;
}

/** Where a virtio structure lives. */
export interface VirtioCapLocation {
  /** Config-space offset of the capability. */
  readonly capOffset: number;
  readonly cfgType: number;
  readonly bar: number;
  /** The cap's `id` byte. */
  readonly id: number;
  /** Offset of the structure inside the BAR. */
  readonly offset: number;
  readonly length: number;
}

/** The notify structure and its multiplier. */
export interface NotifyCapLocation extends VirtioCapLocation {
  readonly multiplier: number;
}

/** What the MSI-X capability says. */
export interface MsixInfo {
  readonly capOffset: number;
  /** Number of table entries (Table Size + 1), 1..2048. */
  readonly tableSize: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** A capability the probe skipped, and why (diagnostics). */
export interface IgnoredCap {
  readonly capOffset: number;
  readonly capId: number;
  readonly cfgType: number | undefined;
  readonly reason: string;
}

/** Result of {@link probeVirtioPci}. */
export interface VirtioPciProbe {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revisionId: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** The virtio device id (1 net, 2 block, 4 rng ...). */
  readonly virtioDeviceId: number;
  /** Device id in the transitional range 0x1000–0x103F. */
  readonly transitional: boolean;
  /** Implemented memory BARs. */
  readonly bars: ProbedBar[];
  readonly common: VirtioCapLocation;
  readonly notify: NotifyCapLocation;
  readonly isr: VirtioCapLocation;
  readonly device: VirtioCapLocation | undefined;
  /** The SWIOTLB window capability, when the device presents one. */
  readonly swiotlb: VirtioCapLocation | undefined;
  readonly msix: MsixInfo | undefined;
  readonly ignoredCaps: readonly IgnoredCap[];
}

/** Options of {@link probeVirtioPci}. */
export interface ProbeOptions {
  /** Where BAR addresses come from (default: a new {@link MmioAllocator}). */
  mmio?: MmioAllocator;
  /** cfg_type of the SWIOTLB capability (default 10). */
  swiotlbCfgType?: number;
  /** Set Bus Master Enable (default true; the device may not DMA or send MSI-X without it). */
  busMaster?: boolean;
  /** Accept only these virtio device ids (default: any). */
  deviceIds?: readonly number[];
  /** Loop guard: most capabilities walked (default 48, all a 256-byte header can hold). */
  maxCaps?: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Transitional PCI device id → virtio device id (transport-pci.tex, for reference; the subsystem id is authoritative). */
const TRANSITIONAL: Readonly<Record<number, number>> = { 0x1000: 1, 0x1001: 2, 0x1002: 5, 0x1003: 3, 0x1004: 8, 0x1005: 4, 0x1009: 9 };

/** Bus address of BAR `bar` in a probe result, or undefined when not implemented. */
export function barAddress(p: { bars: readonly ProbedBar[] }, bar: number): number | undefined {
  return p.bars.find((b) => b.index === bar)?.address;
}

/**
 * Probe a virtio-pci function: match ids, size and program BARs, enable memory + bus master,
 * find the virtio capabilities and MSI-X.
 * @throws VirtioError INVALID_ARGUMENT (not a virtio function / not wanted), PROTOCOL (a required
 *   capability is missing or unusable), INVALID_ARGUMENT from the allocator (no room)
 */
export function probeVirtioPci(access: PciFunctionAccess, opts: ProbeOptions = {}): VirtioPciProbe {
  const cfg = new PciConfigIo(access);
  // --- ids (pci.discovery.driver.1/.2/.3: any revision matches)
  const vendorId = cfg.r16(0);
  const deviceId = cfg.r16(2);
  if (vendorId !== PCI_VENDOR_ID_VIRTIO) {
    throw new VirtioError('INVALID_ARGUMENT', `probe: vendor id ${hex(vendorId)} is not virtio's 0x1af4; this is not a virtio function`, { clause: 'pci.discovery.driver.1' });
  }
  const revisionId = cfg.r8(PCI_REVISION_ID);
  const subsystemVendorId = cfg.r16(PCI_SUBSYSTEM_VENDOR_ID);
  const subsystemId = cfg.r16(PCI_SUBSYSTEM_ID);
  let virtioDeviceId: number;
  let transitional = false;
  if (deviceId >= 0x1040 && deviceId <= 0x107f) {
    virtioDeviceId = deviceId - 0x1040; // pci.discovery.driver.1
  } else if (deviceId >= 0x1000 && deviceId <= 0x103f) {
    transitional = true; // pci.discovery.driver.2: the subsystem id carries the virtio id
    virtioDeviceId = subsystemId !== 0 ? subsystemId : (TRANSITIONAL[deviceId] ?? 0);
  } else {
    throw new VirtioError('INVALID_ARGUMENT', `probe: device id ${hex(deviceId)} is outside the virtio ranges 0x1040-0x107f and 0x1000-0x103f`, { clause: 'pci.discovery.driver.1' });
  }
  if (opts.deviceIds !== undefined && !opts.deviceIds.includes(virtioDeviceId)) {
    throw new VirtioError('INVALID_ARGUMENT', `probe: virtio device id ${virtioDeviceId} is not one of the wanted ids ${opts.deviceIds.join(', ')}`);
  }
  const headerType = cfg.r8(PCI_HEADER_TYPE) & 0x7f;
  if (headerType !== 0) throw new VirtioError('PROTOCOL', `probe: header type ${headerType} is not a type-0 (endpoint) header`);

  // --- BARs: size with decode off, assign, program
  const cmd = cfg.r16(PCI_COMMAND);
  cfg.w16(PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER));
  const bars = sizeBars(cfg);
  const mmio = opts.mmio ?? new MmioAllocator();
  // Largest first packs the naturally aligned BARs best.
  for (const b of [...bars].sort((x, y) => y.size - x.size)) {
    b.address = mmio.alloc(b.size, b.is64);
    writeBar(cfg, b, b.address);
  }

  // --- capabilities
  const swType = opts.swiotlbCfgType ?? CAP_SWIOTLB_DEFAULT;
  requireArg(Number.isInteger(swType) && swType >= 0 && swType <= 255, `probe: swiotlbCfgType must be 0..255 (got ${swType})`);
  const found = new Map<number, VirtioCapLocation>();
  const ignored: IgnoredCap[] = [];
  let msix: MsixInfo | undefined;
  const barSize = (i: number): number => bars.find((b) => b.index === i)?.size ?? 0;
  if ((cfg.r16(PCI_STATUS) & PCI_STATUS_CAP_LIST) !== 0) {
    const maxCaps = opts.maxCaps ?? 48;
    const seen = new Set<number>();
    let ptr = cfg.r8(PCI_CAPABILITY_LIST) & ~3;
    for (let n = 0; ptr !== 0; n++) {
      if (ptr < 0x40 || seen.has(ptr) || n >= maxCaps) {
        // A pointer into the header, a cycle or a runaway list ends the walk (loop guard).
        log('capability walk stopped at %s (%s)', hex(ptr), ptr < 0x40 ? 'pointer into the header' : seen.has(ptr) ? 'loop' : 'too many capabilities');
        break;
      }
      seen.add(ptr);
      const capId = cfg.r8(ptr);
      const next = cfg.r8(ptr + 1) & ~3;
      if (capId === PCI_CAP_ID_VNDR) {
        const r = readVirtioCap(cfg, ptr, swType, barSize, found);
        if (typeof r === 'string') ignored.push({ capOffset: ptr, capId, cfgType: cfg.r8(ptr + 3), reason: r });
        else if (r !== undefined) found.set(r.cfgType, r);
      } else if (capId === PCI_CAP_ID_MSIX && msix === undefined) {
        const ctrl = cfg.r16(ptr + 2);
        const table = cfg.r32(ptr + 4);
        const pba = cfg.r32(ptr + 8);
        const m: MsixInfo = { capOffset: ptr, tableSize: (ctrl & 0x7ff) + 1, tableBar: table & 7, tableOffset: (table & ~7) >>> 0, pbaBar: pba & 7, pbaOffset: (pba & ~7) >>> 0 };
        if (m.tableOffset + m.tableSize * 16 > barSize(m.tableBar)) ignored.push({ capOffset: ptr, capId, cfgType: undefined, reason: `MSI-X table (${m.tableSize} entries at BAR ${m.tableBar} + ${hex(m.tableOffset)}) is outside its BAR` });
        else msix = m;
      }
      ptr = next;
    }
  }
  const common = found.get(CAP_COMMON);
  const notify = found.get(CAP_NOTIFY) as NotifyCapLocation | undefined;
  const isr = found.get(CAP_ISR);
  const why = (what: string, clause: string): never => {
    const extra = ignored.length > 0 ? `; ignored capabilities: ${ignored.map((c) => `${hex(c.capOffset)} ${c.reason}`).join('; ')}` : '';
    throw new VirtioError('PROTOCOL', `probe: the device has no usable ${what} capability${extra}`, { clause });
  };
  if (common === undefined) why('common configuration (cfg_type 1)', 'pci.common-cfg.device.2');
  if (notify === undefined) why('notification (cfg_type 2)', 'pci.notify.device.1');
  if (isr === undefined) why('ISR (cfg_type 3)', 'pci.isr.device.1');

  // --- enable decode (and bus mastering: the device DMAs and sends MSI-X messages)
  cfg.w16(PCI_COMMAND, (cmd & ~PCI_COMMAND_IO) | PCI_COMMAND_MEMORY | ((opts.busMaster ?? true) ? PCI_COMMAND_MASTER : 0));
  const probe: VirtioPciProbe = {
    vendorId,
    deviceId,
    revisionId,
    subsystemVendorId,
    subsystemId,
    virtioDeviceId,
    transitional,
    bars,
    common: common!,
    notify: notify!,
    isr: isr!,
    device: found.get(CAP_DEVICE),
    swiotlb: found.get(swType),
    msix,
    ignoredCaps: ignored,
  };
  log('probed %s:%s (virtio id %d): BARs %s, msix %s, swiotlb %s', hex(vendorId), hex(deviceId), virtioDeviceId, bars.map((b) => `${b.index}@${hex(b.address)}/${hex(b.size)}`).join(' '), msix ? msix.tableSize : 'none', probe.swiotlb ? `BAR ${probe.swiotlb.bar}+${hex(probe.swiotlb.offset)}` : 'none');
  return probe;
}

/** Read one vendor capability; a string says why it is ignored, undefined = not one we use / duplicate. */
function readVirtioCap(cfg: PciConfigIo, ptr: number, swType: number, barSize: (i: number) => number, found: Map<number, VirtioCapLocation>): VirtioCapLocation | string | undefined {
  const capLen = cfg.r8(ptr + 2);
  const cfgType = cfg.r8(ptr + 3);
  const bar = cfg.r8(ptr + 4);
  if (cfgType !== CAP_COMMON && cfgType !== CAP_NOTIFY && cfgType !== CAP_ISR && cfgType !== CAP_DEVICE && cfgType !== swType) return undefined; // pci.caps.driver.1 (reserved or unused types)
  if (found.has(cfgType)) return undefined; // pci.caps.driver.2: the first one we can use wins
  if (bar > 5) return `bar ${bar} is reserved`; // pci.caps.driver.4
  if (capLen < 16 || (cfgType === CAP_NOTIFY && capLen < 20)) return `cap_len ${capLen} is too short`; // larger is fine (pci.caps.driver.3)
  const offset = cfg.r32(ptr + 8);
  const length = cfg.r32(ptr + 12);
  const size = barSize(bar);
  if (size === 0) return `names BAR ${bar}, which is not an implemented memory BAR`;
  if (offset + length > size) return `range BAR ${bar} + ${hex(offset)}, length ${hex(length)} exceeds the BAR size ${hex(size)}`;
  const min = MIN_LEN[cfgType] ?? 4096;
  if (length < min) return `length ${length} is below the ${min} bytes the driver needs`; // pci.caps.driver.6
  const loc = { capOffset: ptr, cfgType, bar, id: cfg.r8(ptr + 5), offset, length };
  if (cfgType === CAP_NOTIFY) {
    const n: NotifyCapLocation = { ...loc, multiplier: cfg.r32(ptr + 16) };
    return n;
  }
  return loc;
}

/** Size every memory BAR (decode must be off). I/O BARs are skipped (virtio modern uses memory BARs). */
function sizeBars(cfg: PciConfigIo): ProbedBar[] {
  const out: ProbedBar[] = [];
  for (let i = 0; i < 6; i++) {
    const off = PCI_BASE_ADDRESS_0 + 4 * i;
    const lo = cfg.r32(off);
    if ((lo & 1) !== 0) {
      log('BAR %d is an I/O BAR; not used', i);
      continue;
    }
    const type = (lo >>> 1) & 3;
    const is64 = type === 2 && i < 5;
    cfg.w32(off, 0xffffffff);
    const mlo = (cfg.r32(off) & ~0xf) >>> 0;
    cfg.w32(off, lo);
    let size = 0;
    if (is64) {
      const hi = cfg.r32(off + 4);
      cfg.w32(off + 4, 0xffffffff);
      const mhi = cfg.r32(off + 4);
      cfg.w32(off + 4, hi);
      if (mhi === 0xffffffff) size = (~mlo >>> 0) + 1;
      else if (mlo === 0 && mhi !== 0) size = ((~mhi >>> 0) + 1) * TWO32;
    } else if (mlo !== 0) {
      size = (~mlo >>> 0) + 1;
    }
    if (size > 0 && Number.isInteger(Math.log2(size))) out.push({ index: i, size, is64, prefetchable: (lo & 8) !== 0, address: 0 });
    if (is64) i++; // the next register is the high half
  }
  return out;
}

function writeBar(cfg: PciConfigIo, b: ProbedBar, address: number): void {
  const off = PCI_BASE_ADDRESS_0 + 4 * b.index;
  cfg.w32(off, address >>> 0);
  if (b.is64) cfg.w32(off + 4, Math.floor(address / TWO32) >>> 0);
}

/**
 * Move BAR `b` to `address` as an OS does: memory decode off, program, decode back on. The caller
 * must make sure nothing the device holds refers to the old addresses (reset the device first).
 */
export function relocateBar(access: PciFunctionAccess, b: ProbedBar, address: number): void {
  requireArg(Number.isSafeInteger(address) && address >= 0 && address % b.size === 0, `relocateBar: address ${hex(address)} must be aligned to the BAR size ${hex(b.size)}`);
  requireArg(b.is64 || address + b.size <= TWO32, `relocateBar: BAR ${b.index} is a 32-bit BAR; ${hex(address)} is above 4 GiB`);
  const cfg = new PciConfigIo(access);
  const cmd = cfg.r16(PCI_COMMAND);
  cfg.w16(PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
  writeBar(cfg, b, address);
  b.address = address;
  cfg.w16(PCI_COMMAND, cmd);
}
