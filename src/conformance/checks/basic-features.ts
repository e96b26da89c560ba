/** Feature-bit checks (virtio 1.4 §2.2, §6): what the device offers and how it treats the ack. */
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_ADMIN_VQ, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_F_SR_IOV, VIRTIO_F_VERSION_1, featureDefs, featureDependencies, featureName } from '../../features/bits.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER } from '../../features/status.js';
import { ANY_TRANSPORT, DEVICE_IDS, defineCheck, type Check } from '../check.js';
import { RawDriver, waitFor, type UsedElem } from '../raw.js';
import { fail, pass, type CheckResult, type ClauseOutcome } from '../verdict.js';
import { acceptWith, buildWork, rawInit, settleTransport, withRaw } from './util.js';

export const featureChecks: readonly Check[] = [
  defineCheck({
    id: 'features.version-1',
    title: 'VIRTIO_F_VERSION_1 is offered',
    clauses: ['reserved.reserved-feature-bits.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        return raw.readOffered().has(VIRTIO_F_VERSION_1) ? pass('bit 32 offered') : fail('VIRTIO_F_VERSION_1 (bit 32) is not offered');
      });
    },
  }),
  defineCheck({
    id: 'features.offer-consistent',
    title: 'offered bits are defined for this device/transport, with their dependencies; SWIOTLB only with a region',
    clauses: ['basic.feature-bits.device.1', 'basic.feature-bits.device.3', 'reserved.reserved-feature-bits.device.9', 'rfc-swiotlb.feature.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      const raw = RawDriver.open(ctx);
      try {
        const offered = raw.readOffered();
        const dev = DEVICE_IDS[ctx.dut.kind];
        const hasRegion = ctx.dut.transport === 'pci' ? raw.probe?.swiotlb !== undefined : ctx.dut.mmio?.platform.pool !== undefined;
        const swBit = offered.has(DEFAULT_SWIOTLB_BIT) ? DEFAULT_SWIOTLB_BIT : null;
        const per: Record<string, ClauseOutcome> = {};
        // The SWIOTLB clause holds on its own when the bit is not offered, whatever else fails.
        if (swBit === null) per['rfc-swiotlb.feature.device.2'] = { verdict: 'PASS', detail: `VIRTIO_F_SWIOTLB not offered${hasRegion ? ' (a region exists)' : ' and no region'}` };
        const fail = (detail: string): CheckResult => ({ verdict: 'FAIL', detail, perClause: per });
        for (const b of offered.toBits()) {
          if (b === swBit) continue;
          const defs = featureDefs(b, dev, { swiotlbBit: null }).filter((d) => d.legacyOnly !== true);
          if (defs.length === 0) return fail(`offered bit ${b} is not defined for device type ${dev} (or legacy-only)`);
        }
        if (ctx.dut.transport === 'mmio') for (const b of [VIRTIO_F_ADMIN_VQ, VIRTIO_F_NOTIF_CONFIG_DATA]) if (offered.has(b)) return fail(`bit ${b} (${featureName(b)}) is offered on virtio-mmio, which does not define it`);
        if (offered.has(VIRTIO_F_SR_IOV)) {
          if (ctx.dut.transport !== 'pci') return fail('SR_IOV offered on a non-PCI transport');
          return fail('SR_IOV offered but the function has no SR-IOV extended capability (not probed)');
        }
        for (const d of featureDependencies(dev)) {
          if (!offered.has(d.bit)) continue;
          const missAll = d.all.filter((x) => !offered.has(x));
          if (missAll.length > 0) return fail(`${d.name} offered without ${missAll.map((x) => featureName(x, dev) ?? x).join(', ')}`);
          if (d.any.length > 0 && !d.any.some((x) => offered.has(x))) return fail(`${d.name} offered without any of ${d.any.join(', ')}`);
        }
        if (swBit !== null && !hasRegion) return fail('VIRTIO_F_SWIOTLB offered but the transport presents no bounce region');
        return pass(`${offered.toBits().length} bits offered, all defined, dependencies present${swBit !== null ? ', SWIOTLB with a region' : ''}`, per);
      } finally {
        raw.close();
      }
    },
  }),
  defineCheck({
    id: 'features.config-readable-early',
    title: 'device config is readable before FEATURES_OK and matches what is read after DRIVER_OK',
    clauses: ['basic.dev-cfg-space.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: ['blk', 'net', 'console'],
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        raw.reset();
        raw.regs.setStatus(STATUS_ACKNOWLEDGE);
        raw.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        const fields: Record<string, Array<[number, 1 | 2 | 4]>> = { blk: [[0, 4], [4, 4], [12, 4], [20, 4]], net: [[0, 4], [4, 2], [6, 2]], console: [[0, 2], [2, 2], [4, 4]] };
        const f = fields[ctx.dut.kind]!;
        const early = f.map(([o, w]) => raw.regs.readConfig(o, w));
        if (early.every((v) => v === 0)) return fail('every device config field read 0 before FEATURES_OK');
        raw.init();
        await settleTransport(ctx);
        const late = f.map(([o, w]) => raw.regs.readConfig(o, w));
        const diff = f.findIndex((_, i) => early[i] !== late[i] && !(ctx.dut.kind === 'net' && f[i]![0] === 6));
        if (diff >= 0) return fail(`config at ${f[diff]![0]} read 0x${early[diff]!.toString(16)} before FEATURES_OK, 0x${late[diff]!.toString(16)} after DRIVER_OK`);
        return pass(`${f.length} fields readable before FEATURES_OK with the same values`);
      });
    },
  }),
  defineCheck({
    id: 'features.in-order',
    title: 'IN_ORDER: buffers are used in the order they were made available',
    clauses: ['reserved.reserved-feature-bits.device.5'],
    role: 'device',
    transports: ANY_TRANSPORT,
    variant: { inOrder: true },
    needs: [VIRTIO_F_IN_ORDER],
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: acceptWith({ add: [VIRTIO_F_IN_ORDER] }) }), async (raw) => {
        if (!raw.features.has(VIRTIO_F_IN_ORDER)) return fail('IN_ORDER offered but not negotiated');
        const q = buildWork(raw, ctx.dut.kind).q;
        const rq = raw.queue(q);
        const ids: number[] = [];
        for (let i = 0; i < 4; i++) ids.push(rq.post(buildWork(raw, ctx.dut.kind, { seed: 30 + i }).bufs));
        rq.kick();
        const used: UsedElem[] = [];
        await waitFor(() => (used.push(...rq.collect()), used.length >= 4 || (used.length > 0 && used[used.length - 1]!.id === ids[3])), ctx.waitMs, ctx.signal);
        if (used.length === 0) return fail('no buffer used');
        // Batched form allowed: each used id must be later in the avail order than the previous one.
        let pos = -1;
        for (const u of used) {
          const p = ids.indexOf(u.id);
          if (p <= pos) return fail(`used ids ${used.map((x) => x.id).join(',')} are not in avail order ${ids.join(',')}`);
          pos = p;
        }
        if (pos !== 3) return fail(`only ${used.length} of 4 buffers used`);
        return pass(`4 buffers used in avail order (${used.map((x) => x.id).join(',')})`);
      });
    },
  }),
];
