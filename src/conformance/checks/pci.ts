/** virtio-pci checks (virtio 1.4 §4.1): ids, capabilities, common cfg, ISR, MSI-X, PCI_CFG window. */
import { VIRTIO_F_NOTIFICATION_DATA, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { CC, PciConfigIo } from '../../driver/pci-regs.js';
import { VIRTQ_DESC_F_NEXT } from '../../queue/types.js';
import { DEVICE_IDS, defineCheck, type Check, type CheckContext } from '../check.js';
import { RawDriver, RawSplitQueue, settle, waitFor } from '../raw.js';
import { fail, pass, skip, type CheckResult, type ClauseOutcome } from '../verdict.js';
import { acceptWith, withRaw, workOk, workQueue } from './util.js';

/** One vendor-specific capability as found in config space. */
export interface RawVirtioCap {
  off: number;
  capLen: number;
  cfgType: number;
  bar: number;
  id: number;
  offset: number;
  length: number;
}

/** Walk the capability list (loop-guarded) and return the vendor (0x09) capabilities. */
export function walkVirtioCaps(cfg: PciConfigIo): { caps: RawVirtioCap[]; msix: number | undefined; problems: string[] } {
  const caps: RawVirtioCap[] = [];
  const problems: string[] = [];
  let msix: number | undefined;
  if ((cfg.r16(0x06) & 0x10) === 0) return { caps, msix, problems: ['status register has no capability list bit'] };
  let ptr = cfg.r8(0x34);
  const seen = new Set<number>();
  while (ptr !== 0) {
    if ((ptr & 3) !== 0 || ptr < 0x40 || ptr > 0xfc) {
      problems.push(`capability pointer 0x${ptr.toString(16)} is not a dword-aligned offset in 0x40..0xfc`);
      break;
    }
    if (seen.has(ptr)) {
      problems.push(`capability list loops at 0x${ptr.toString(16)}`);
      break;
    }
    seen.add(ptr);
    const id = cfg.r8(ptr);
    if (id === 0x09) caps.push({ off: ptr, capLen: cfg.r8(ptr + 2), cfgType: cfg.r8(ptr + 3), bar: cfg.r8(ptr + 4), id: cfg.r8(ptr + 5), offset: cfg.r32(ptr + 8), length: cfg.r32(ptr + 12) });
    if (id === 0x11) msix = ptr;
    ptr = cfg.r8(ptr + 1);
  }
  return { caps, msix, problems };
}

/**
 * A device check over the vendor capabilities of `cfgType`: SKIP with `none` when there are none,
 * else `body` runs with a raw driver opened (not yet initialized) and closed afterwards.
 */
function capCheck(
  c: Omit<Check, 'role' | 'transports' | 'run'> & {
    cfgType: number;
    none: string;
    body(ctx: CheckContext, cfg: PciConfigIo, caps: RawVirtioCap[], raw: RawDriver): Promise<CheckResult>;
  },
): Check {
  const { cfgType, none, body, ...rest } = c;
  return defineCheck({
    ...rest,
    role: 'device',
    transports: PCI,
    async run(ctx) {
      const cfg = new PciConfigIo(ctx.dut.pci!);
      const caps = walkVirtioCaps(cfg).caps.filter((x) => x.cfgType === cfgType);
      if (caps.length === 0) return skip(none);
      return withRaw(RawDriver.open(ctx), async (raw) => {
        return await body(ctx, cfg, caps, raw);
      });
    },
  });
}

function barSizes(raw: RawDriver): Map<number, number> {
  return new Map(raw.probe!.bars.map((b) => [b.index, b.size]));
}

const PCI: readonly ('pci' | 'mmio')[] = ['pci'];

async function isrCheck(ctx: CheckContext): Promise<ReturnType<typeof pass>> {
  return withRaw(RawDriver.open(ctx, { interrupts: 'intx' }), async (raw) => {
    raw.init({ accept: acceptWith({ drop: [VIRTIO_F_RING_PACKED] }) });
    const pr = raw.pciRegs!;
    const cfg = new PciConfigIo(ctx.dut.pci!);
    // Queue interrupt: handler reads ISR (clears it).
    const p = await workOk(ctx, raw);
    if (p !== undefined) return fail(p);
    await waitFor(() => raw.irq.statusReads.length > 0, ctx.waitMs, ctx.signal);
    if (raw.irq.statusReads.length === 0) return fail('no INTx assertion for a used buffer with MSI-X disabled');
    if ((raw.irq.statusReads[0]! & 1) === 0) return fail(`ISR read 0x${raw.irq.statusReads[0]!.toString(16)} in the interrupt handler: queue bit not set before signalling`);
    const after = pr.regs.readIsr();
    if (after !== 0) return fail(`ISR reads 0x${after.toString(16)} right after a read (must clear to 0)`);
    if ((cfg.r16(0x06) & 0x08) !== 0) return fail('PCI Status interrupt bit still set with ISR 0');
    // Config change: via the backend, else via NEEDS_RESET.
    const per: Record<string, ClauseOutcome> = {};
    const before = raw.irq.statusReads.length;
    if (ctx.dut.io.configChange !== undefined) ctx.dut.io.configChange();
    else {
      const rq = raw.queue(workQueue(ctx.dut.kind));
      if (rq instanceof RawSplitQueue) {
        const a = raw.mem.alloc(16, 16);
        rq.writeDesc(0, a, 16, VIRTQ_DESC_F_NEXT, 0);
        rq.pushAvail(0);
        rq.publish();
        rq.kick();
      }
    }
    await settle(4);
    await waitFor(() => raw.irq.statusReads.length > before, Math.min(ctx.waitMs, 300), ctx.signal);
    const reads = raw.irq.statusReads.slice(before);
    if (reads.length === 0) per['pci.isr.device.2'] = { verdict: 'SKIP', detail: 'no configuration change could be triggered' };
    else if (!reads.some((r) => (r & 2) !== 0)) return fail(`configuration change signalled with ISR ${reads.map((r) => `0x${r.toString(16)}`).join(',')}: bit 1 not set`);
    return pass('INTx: ISR bit 0 for used buffers, bit 1 for config changes, read clears ISR and the PCI interrupt status', per);
  });
}

export const pciChecks: readonly Check[] = [
  defineCheck({
    id: 'pci.ids-and-header',
    title: 'vendor 0x1AF4, device id 0x1040 + virtio id, type-0 header with a capability list, naturally aligned BARs',
    clauses: ['pci.discovery.device.1', 'pci.discovery.device.2', 'pci.general.device.1'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      const cfg = new PciConfigIo(ctx.dut.pci!);
      const vendor = cfg.r16(0);
      const dev = cfg.r16(2);
      if (vendor !== 0x1af4) return fail(`vendor id 0x${vendor.toString(16)}`);
      const want = 0x1040 + DEVICE_IDS[ctx.dut.kind];
      if (dev !== want && !(dev >= 0x1000 && dev <= 0x103f)) return fail(`device id 0x${dev.toString(16)}, expected 0x${want.toString(16)}`);
      if ((cfg.r8(0x0e) & 0x7f) !== 0) return fail(`header type ${cfg.r8(0x0e) & 0x7f}, not 0`);
      const w = walkVirtioCaps(cfg);
      if (w.problems.length > 0) return fail(w.problems.join('; '));
      return withRaw(RawDriver.open(ctx), async (raw) => {
        for (const b of raw.probe!.bars) if (b.address % b.size !== 0) return fail(`BAR ${b.index} at 0x${b.address.toString(16)} is not aligned to its size 0x${b.size.toString(16)}`);
        return pass(`0x1af4:0x${dev.toString(16)}, header type 0, ${w.caps.length} vendor capabilities, ${raw.probe!.bars.length} memory BARs sized as powers of 2 (PCI compliance checked only for these basics)`);
      });
    },
  }),
  defineCheck({
    id: 'pci.capabilities',
    title: 'common/notify/ISR/device/PCI_CFG capabilities present, aligned, long enough, inside their BARs',
    clauses: [
      'pci.caps.device.1',
      'pci.common-cfg.device.1',
      'pci.common-cfg.device.2',
      'pci.notify.device.1',
      'pci.notify.device.2',
      'pci.notify.device.3',
      'pci.notify.device.4',
      'pci.notify.device.5',
      'pci.isr.device.1',
      'pci.dev-cfg.device.1',
      'pci.pci-cfg-access.device.1',
    ],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      const raw = RawDriver.open(ctx);
      try {
        const { caps } = walkVirtioCaps(new PciConfigIo(ctx.dut.pci!));
        const sizes = barSizes(raw);
        const minLen: Record<number, number> = { 1: 16, 2: 20, 3: 16, 4: 16, 5: 20, 8: 24, 9: 8 };
        for (const c of caps) {
          const need = minLen[c.cfgType] ?? 16;
          if (c.capLen < need) return fail(`cfg_type ${c.cfgType} capability at 0x${c.off.toString(16)}: cap_len ${c.capLen} < ${need}`);
          if ([1, 2, 3, 4].includes(c.cfgType) && c.offset + c.length > (sizes.get(c.bar) ?? 0)) return fail(`cfg_type ${c.cfgType}: BAR ${c.bar} + 0x${c.offset.toString(16)} length 0x${c.length.toString(16)} exceeds the BAR`);
        }
        const first = (t: number): RawVirtioCap | undefined => caps.find((c) => c.cfgType === t);
        const common = first(1);
        const notify = first(2);
        if (common === undefined) return fail('no common configuration capability');
        if (common.offset % 4 !== 0) return fail(`common cfg offset 0x${common.offset.toString(16)} not a multiple of 4`);
        if (notify === undefined) return fail('no notification capability');
        if (first(3) === undefined) return fail('no ISR capability');
        if (first(5) === undefined) return fail('no PCI configuration access capability');
        const dev = first(4);
        if (dev !== undefined && dev.offset % 4 !== 0) return fail(`device cfg offset 0x${dev.offset.toString(16)} not a multiple of 4`);
        const mult = ctx.dut.pci!.configRead(notify.off + 16, 4) >>> 0;
        const per: Record<string, ClauseOutcome> = {};
        const nd = raw.readOffered().has(VIRTIO_F_NOTIFICATION_DATA);
        if (!nd) {
          if (notify.offset % 2 !== 0) return fail(`notify offset 0x${notify.offset.toString(16)} not 2-byte aligned`);
          if (mult !== 0 && (mult & (mult - 1)) !== 0) return fail(`notify_off_multiplier ${mult} is neither 0 nor a power of 2`);
          if (mult !== 0 && mult % 2 !== 0) return fail(`notify_off_multiplier ${mult} is odd`);
          if (notify.length < 2) return fail(`notify length ${notify.length} < 2`);
          const nq = raw.regs.numQueues() ?? 0;
          for (let q = 0; q < nq; q++) {
            raw.regs.selectQueue(q);
            if (raw.regs.queueMax() === 0) continue;
            const off = raw.pciRegs!.regs.cc16(CC.QUEUE_NOTIFY_OFF);
            if (off * mult + 2 > notify.length) return fail(`queue ${q}: queue_notify_off ${off} × ${mult} + 2 exceeds the notify length ${notify.length}`);
          }
        } else {
          for (const id of ['pci.notify.device.2', 'pci.notify.device.3', 'pci.notify.device.4', 'pci.notify.device.5']) per[id] = { verdict: 'SKIP', detail: 'NOTIFICATION_DATA offered: see the 4-byte rules' };
        }
        if (dev === undefined) per['pci.dev-cfg.device.1'] = { verdict: 'SKIP', detail: 'no device-specific configuration capability' };
        return pass(`${caps.length} vendor capabilities: common @0x${common.offset.toString(16)}, notify @0x${notify.offset.toString(16)} ×${mult}, ISR, ${dev ? 'device cfg, ' : ''}PCI_CFG`, per);
      } finally {
        raw.close();
      }
    },
  }),
  defineCheck({
    id: 'pci.notify-data-layout',
    title: 'with NOTIFICATION_DATA: notify offset 4-aligned, multiplier multiple of 4, room for 32-bit writes',
    clauses: ['pci.notify.device.6', 'pci.notify.device.7', 'pci.notify.device.8', 'pci.notify.device.9'],
    role: 'device',
    transports: PCI,
    variant: { notificationData: true },
    needs: [VIRTIO_F_NOTIFICATION_DATA],
    async run(ctx) {
      const raw = RawDriver.open(ctx);
      try {
        const notify = walkVirtioCaps(new PciConfigIo(ctx.dut.pci!)).caps.find((c) => c.cfgType === 2);
        if (notify === undefined) return fail('no notification capability');
        const mult = ctx.dut.pci!.configRead(notify.off + 16, 4) >>> 0;
        if (notify.offset % 4 !== 0) return fail(`notify offset 0x${notify.offset.toString(16)} not 4-byte aligned`);
        if (mult !== 0 && ((mult & (mult - 1)) !== 0 || mult % 4 !== 0)) return fail(`notify_off_multiplier ${mult} is not 0 or a power of 2 multiple of 4`);
        if (notify.length < 4) return fail(`notify length ${notify.length} < 4`);
        const nq = raw.regs.numQueues() ?? 0;
        for (let q = 0; q < nq; q++) {
          raw.regs.selectQueue(q);
          if (raw.regs.queueMax() === 0) continue;
          const off = raw.pciRegs!.regs.cc16(CC.QUEUE_NOTIFY_OFF);
          if (off * mult + 4 > notify.length) return fail(`queue ${q}: queue_notify_off ${off} × ${mult} + 4 exceeds the notify length ${notify.length}`);
        }
        const r2 = RawDriver.open(ctx);
        try {
          r2.init({ accept: acceptWith({ add: [VIRTIO_F_NOTIFICATION_DATA] }) });
          const p = await workOk(ctx, r2);
          if (p !== undefined) return fail(`with 32-bit notifications: ${p}`);
        } finally {
          r2.close();
        }
        return pass(`notify @0x${notify.offset.toString(16)} ×${mult}, length ${notify.length}; 32-bit notifications served`);
      } finally {
        raw.close();
      }
    },
  }),
  defineCheck({
    id: 'pci.64bit-halves',
    title: 'the two halves of queue_desc/driver/device are written and read independently',
    clauses: ['pci.layout.device.1'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        if (!raw.negotiate()) return fail('FEATURES_OK refused');
        const r = raw.pciRegs!.regs;
        raw.regs.selectQueue(0);
        r.ccW32(CC.QUEUE_DESC + 4, 0x12);
        r.ccW32(CC.QUEUE_DESC, 0x3450_0000);
        r.ccW32(CC.QUEUE_DRIVER, 0x1000);
        r.ccW32(CC.QUEUE_DRIVER + 4, 0x7);
        const got = [r.cc32(CC.QUEUE_DESC), r.cc32(CC.QUEUE_DESC + 4), r.cc32(CC.QUEUE_DRIVER), r.cc32(CC.QUEUE_DRIVER + 4)];
        const want = [0x3450_0000, 0x12, 0x1000, 0x7];
        if (!got.every((v, i) => v === want[i])) return fail(`halves read back ${got.map((v) => `0x${v.toString(16)}`).join(' ')}, wrote ${want.map((v) => `0x${v.toString(16)}`).join(' ')}`);
        return pass('high-then-low and low-then-high 32-bit writes read back per half');
      });
    },
  }),
  defineCheck({
    id: 'pci.queue-select',
    title: 'queue_size reads 0 for queues that do not exist; a power of 2 (or 0) for split-ring devices',
    clauses: ['pci.common-cfg.device.14', 'pci.common-cfg.device.15', 'pci.common-cfg.device.16'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        raw.reset();
        const nq = raw.regs.numQueues()!;
        for (const q of [nq, nq + 1, nq + 100, 0xffff]) {
          raw.regs.selectQueue(q);
          const s = raw.regs.queueMax();
          if (s !== 0) return fail(`queue_select ${q} (num_queues ${nq}) reads queue_size ${s}`);
        }
        const packed = raw.readOffered().has(VIRTIO_F_RING_PACKED);
        for (let q = 0; q < nq; q++) {
          raw.regs.selectQueue(q);
          const s = raw.regs.queueMax();
          if (!packed && s !== 0 && (s & (s - 1)) !== 0) return fail(`queue ${q}: queue_size ${s} is not a power of 2`);
        }
        return pass(`${nq} queues; out-of-range selects read size 0; sizes are powers of 2`, {
          'pci.common-cfg.device.16': { verdict: 'SKIP', detail: 'VIRTIO_F_ADMIN_VQ not offered (no admin queues)' },
          ...(packed ? { 'pci.common-cfg.device.15': { verdict: 'SKIP' as const, detail: 'RING_PACKED offered' } } : {}),
        });
      });
    },
  }),
  defineCheck({
    id: 'pci.feature-windows',
    title: 'device_feature shows each 32-bit window; driver_feature reads back what was written',
    clauses: ['pci.common-cfg.device.3', 'pci.common-cfg.device.4'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        raw.reset();
        raw.regs.setStatus(1);
        raw.regs.setStatus(3);
        const w = [0, 1, 2, 3].map((i) => raw.regs.deviceFeatures(i));
        const again = [3, 2, 1, 0].map((i) => raw.regs.deviceFeatures(i)).reverse();
        if (!w.every((v, i) => v === again[i])) return fail('device_feature windows change between reads / depend on read order');
        if (w[0] === w[1] && w[0] !== 0) return fail('device_feature does not follow device_feature_select');
        const offered = raw.readOffered();
        for (let i = 0; i < 2; i++) raw.regs.setDriverFeatures(i, offered.word(i));
        for (let i = 0; i < 2; i++) {
          const back = raw.pciRegs!.driverFeatures(i);
          if (back !== offered.word(i)) return fail(`driver_feature[${i}] reads 0x${back.toString(16)} after writing 0x${offered.word(i).toString(16)}`);
        }
        return pass(`windows ${w.map((v) => `0x${v.toString(16)}`).join(' ')}; driver_feature read back`);
      });
    },
  }),
  defineCheck({
    id: 'pci.isr',
    title: 'ISR bits set before INTx is raised, mirrored in PCI Status, cleared by the read',
    clauses: ['pci.isr.device.2', 'pci.isr.device.3', 'pci.isr.device.4', 'pci.isr.device.5'],
    role: 'device',
    transports: PCI,
    run: isrCheck,
  }),
  defineCheck({
    id: 'pci.msix',
    title: 'MSI-X: table size, any vector assignable/removable, refused vector reads NO_VECTOR, NO_VECTOR silences',
    clauses: ['pci.msix.device.2', 'pci.msix.device.4', 'pci.msix.device.5', 'pci.msix.device.6', 'pci.msix.device.9', 'pci.used-buffer-notif.device.1', 'pci.notif-dev-cfg-changes.device.1'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const m = raw.probe!.msix;
        if (m === undefined) return skip('no MSI-X capability');
        const cfg = new PciConfigIo(ctx.dut.pci!);
        const ctrl = cfg.r16(m.capOffset + 2);
        const n = (ctrl & 0x7ff) + 1;
        const bar = raw.probe!.bars.find((b) => b.index === m.tableBar);
        if (bar === undefined || m.tableOffset + 16 * n > bar.size) return fail(`MSI-X table of ${n} entries does not fit BAR ${m.tableBar}`);
        raw.init({ accept: acceptWith({ drop: [VIRTIO_F_RING_PACKED] }) });
        const r = raw.pciRegs!.regs;
        for (let v = 0; v < n; v++) {
          r.ccW16(CC.CONFIG_MSIX_VECTOR, v);
          if (r.cc16(CC.CONFIG_MSIX_VECTOR) !== v) return fail(`config_msix_vector ${v} (table of ${n}) read back ${r.cc16(CC.CONFIG_MSIX_VECTOR)}`);
          raw.regs.selectQueue(0);
          r.ccW16(CC.QUEUE_MSIX_VECTOR, v);
          if (r.cc16(CC.QUEUE_MSIX_VECTOR) !== v) return fail(`queue 0 vector ${v} read back ${r.cc16(CC.QUEUE_MSIX_VECTOR)}`);
        }
        r.ccW16(CC.CONFIG_MSIX_VECTOR, n);
        if (r.cc16(CC.CONFIG_MSIX_VECTOR) !== 0xffff) return fail(`config vector ${n} (outside a table of ${n}) reads ${r.cc16(CC.CONFIG_MSIX_VECTOR)}, not NO_VECTOR`);
        // Remove assignments: NO_VECTOR for the work queue and config → no messages.
        const q = workQueue(ctx.dut.kind);
        r.ccW16(CC.CONFIG_MSIX_VECTOR, 0xffff);
        raw.regs.selectQueue(q);
        r.ccW16(CC.QUEUE_MSIX_VECTOR, 0xffff);
        if (r.cc16(CC.QUEUE_MSIX_VECTOR) !== 0xffff || r.cc16(CC.CONFIG_MSIX_VECTOR) !== 0xffff) return fail('NO_VECTOR written but a vector reads back');
        const before = raw.irq.msi.length;
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(p);
        await settle(3);
        if (raw.irq.msi.length !== before) return fail(`an MSI-X message was sent for queue ${q} whose vector is NO_VECTOR`);
        const rq = raw.queue(q);
        if (rq instanceof RawSplitQueue) {
          const a = raw.mem.alloc(16, 16);
          rq.writeDesc(0, a, 16, VIRTQ_DESC_F_NEXT, 0);
          rq.pushAvail(0);
          rq.publish();
          rq.kick();
          await waitFor(() => raw.needsReset(), 50, ctx.signal);
          if (raw.irq.msi.length !== before) return fail('a configuration-change MSI-X message was sent with config vector NO_VECTOR');
        }
        return pass(`${n} vectors assignable to config and queue events, NO_VECTOR removes them and silences notifications, out-of-table vector refused`);
      });
    },
  }),
  defineCheck({
    id: 'pci.cfg-access-window',
    title: 'the PCI_CFG capability window forwards reads and writes to the named BAR',
    clauses: ['pci.pci-cfg-access.device.2', 'pci.pci-cfg-access.device.3'],
    role: 'device',
    transports: PCI,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const cfg = new PciConfigIo(ctx.dut.pci!);
        const w = walkVirtioCaps(cfg).caps.find((c) => c.cfgType === 5);
        if (w === undefined) return fail('no PCI_CFG capability');
        const common = raw.probe!.common;
        raw.reset();
        raw.regs.setStatus(1);
        raw.regs.setStatus(3);
        // Read num_queues (16 bits) through the window.
        cfg.w8(w.off + 4, common.bar);
        cfg.w32(w.off + 8, common.offset + CC.NUM_QUEUES);
        cfg.w32(w.off + 12, 2);
        const viaWin = cfg.r16(w.off + 16);
        const direct = raw.regs.numQueues()!;
        if (viaWin !== direct) return fail(`num_queues read through the window: ${viaWin}, directly: ${direct}`);
        // Write device_feature_select = 1 through the window, read device_feature directly.
        cfg.w32(w.off + 8, common.offset + CC.DEVICE_FEATURE_SELECT);
        cfg.w32(w.off + 12, 4);
        cfg.w32(w.off + 16, 1);
        const sel = raw.pciRegs!.regs.cc32(CC.DEVICE_FEATURE_SELECT);
        if (sel !== 1) return fail(`device_feature_select written 1 through the window reads ${sel}`);
        return pass('read of num_queues and write of device_feature_select through pci_cfg_data reached the common cfg');
      });
    },
  }),
  capCheck({
    id: 'pci.vendor-data',
    title: 'vendor data capabilities: vendor_id not 0x1AF4, size a multiple of 4, reads without side effects',
    clauses: ['pci.vendor-data.device.1', 'pci.vendor-data.device.2', 'pci.vendor-data.device.3'],
    variant: { pci: { vendorCaps: true } },
    cfgType: 9,
    none: 'no vendor data capability',
    async body(ctx, cfg, caps, raw) {
      raw.init();
      for (const c of caps) {
        const vid = cfg.r16(c.off + 4);
        if (vid === 0x1af4) return fail(`vendor data capability at 0x${c.off.toString(16)} has vendor_id 0x1AF4`);
        if (c.capLen % 4 !== 0) return fail(`vendor data capability at 0x${c.off.toString(16)}: cap_len ${c.capLen} not a multiple of 4`);
        const st = raw.regs.status();
        const a = Array.from({ length: c.capLen }, (_, i) => cfg.r8(c.off + i));
        const b = Array.from({ length: c.capLen }, (_, i) => cfg.r8(c.off + i));
        if (!a.every((x, i) => x === b[i]) || raw.regs.status() !== st) return fail('reading the vendor data capability changed it or the device status');
      }
      const p = await workOk(ctx, raw);
      if (p !== undefined) return fail(`after reading vendor data: ${p}`);
      return pass(`${caps.length} vendor data capabilit${caps.length === 1 ? 'y' : 'ies'} well formed, side-effect free`);
    },
  }),
  capCheck({
    id: 'pci.shared-memory',
    title: 'shared memory capabilities lie inside their BAR and have unique ids',
    clauses: ['pci.shm-cap.device.1', 'pci.shm-cap.device.2', 'basic.shared-memory-regions.device.1'],
    variant: { pci: { sharedMemory: true } },
    cfgType: 8,
    none: 'no shared memory capability',
    async body(ctx, cfg, caps, raw) {
      const sizes = barSizes(raw);
      const ids = new Set<number>();
      for (const c of caps) {
        const off = cfg.r32(c.off + 16) * 4294967296 + c.offset;
        const len = cfg.r32(c.off + 20) * 4294967296 + c.length;
        if (off + len > (sizes.get(c.bar) ?? 0)) return fail(`shm id ${c.id}: BAR ${c.bar} + 0x${off.toString(16)} length 0x${len.toString(16)} exceeds the BAR`);
        if (ids.has(c.id)) return fail(`shm id ${c.id} appears twice`);
        ids.add(c.id);
      }
      // basic.shared-memory-regions.device.1: the region carries no control or data stream —
      // scribbling over it while the device works must change nothing the driver sees.
      raw.init();
      const shmBar = raw.probe!.bars.find((b) => b.index === caps[0]!.bar);
      const st = raw.regs.status();
      if (shmBar !== undefined) for (let o = 0; o < 256; o += 4) ctx.dut.pci!.mmioWrite(shmBar.address + caps[0]!.offset + o, 4, 0xdeadbeef);
      if (raw.regs.status() !== st) return fail('writing the shared memory region changed the device status');
      const p = await workOk(ctx, raw);
      if (p !== undefined) return fail(`after writing the shared memory region: ${p}`);
      return pass(`${caps.length} shared memory region(s) inside their BARs, ids unique; writes into the region do not control the device`);
    },
  }),
];
