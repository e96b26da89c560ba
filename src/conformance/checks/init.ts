/** Initialization and suspend checks (virtio 1.4 §3), and the legacy-interface clauses. */
import { VIRTIO_F_ANY_LAYOUT, VIRTIO_F_RING_PACKED, VIRTIO_F_SUSPEND } from '../../features/bits.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK, STATUS_SUSPEND } from '../../features/status.js';
import { MR } from '../../driver/mmio/regs.js';
import { defineCheck, type Check } from '../check.js';
import { RawDriver, settle, waitFor } from '../raw.js';
import { fail, pass, skip, type ClauseOutcome } from '../verdict.js';
import { acceptWith, buildWork, withRaw, workOk } from './util.js';

const ADF = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;

/** Every legacy-interface clause the device side has (judged by observing there is no legacy interface). */
export const LEGACY_DEVICE_CLAUSES = [
  'basic.legacy-note-feature-bits.device.1',
  'basic.legacy-note-feature-bits.device.3',
  'basic.split-vq.legacy-note-vq-layout.device.1',
  'basic.split-vq.legacy-note-vq-layout.device.2',
  'basic.split-vq.legacy-note-vq-endianness.device.1',
  'init.legacy-dev-init.device.1',
  'pci.legacy-note-pci-dev-discovery.device.1',
  'pci.legacy-note-pci-dev-discovery.device.2',
  'pci.legacy-note-pci-dev-discovery.device.3',
  'pci.legacy-note-pci-dev-layout.device.1',
  'pci.legacy-note-pci-dev-layout.device.2',
  'pci.legacy-note-pci-dev-layout.device.3',
  'pci.legacy-note-pci-dev-layout.device.4',
  'pci.legacy-note-dev-layout-detection.device.1',
  'reserved.legacy-reserved-feature-bits.device.1',
  'reserved.legacy-reserved-feature-bits.device.2',
  'console.legacy-dev-cfg-layout.device.1',
  'console.legacy-dev-op.device.1',
  'blk.legacy-dev-cfg-layout.device.1',
  'blk.legacy-dev-init.device.1',
  'blk.legacy-dev-op.device.1',
  'blk.legacy-dev-op.device.3',
  'blk.dev-init.device.5',
  'net.legacy-dev-cfg-layout.device.1',
  'net.legacy-dev-op.device.1',
  'net.legacy-setting-mac-address-filtering.device.1',
  'net.legacy-vlan-filtering.device.1',
  'net.legacy-automatic-receive-steering-in-multiqueue.device.1',
  'net.legacy-setting-offloads-state.device.1',
];

export const initChecks: readonly Check[] = [
  defineCheck({
    id: 'init.no-legacy-interface',
    title: 'legacy-interface clauses: the device must have no legacy interface (else these are not judged)',
    clauses: LEGACY_DEVICE_CLAUSES,
    role: 'device',
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        if (ctx.dut.transport === 'pci') {
          const p = raw.probe!;
          const ioBar = (ctx.dut.pci!.configRead(0x10, 4) & 1) === 1;
          if (p.transitional || ioBar) {
            const offered = raw.readOffered();
            if (!offered.has(VIRTIO_F_ANY_LAYOUT)) return fail(`transitional device (id 0x${p.deviceId.toString(16)}) does not offer ANY_LAYOUT`);
            return skip(`transitional device (id 0x${p.deviceId.toString(16)}): legacy interface present, its clauses are not judged by this suite`);
          }
          return skip(`no legacy interface: device id 0x${p.deviceId.toString(16)} (modern range), revision ${p.revisionId}, BAR0 is a memory BAR`);
        }
        const v = raw.mmioRegs!.r(MR.VERSION);
        return skip(v === 2 ? 'no legacy interface: virtio-mmio Version 2' : `virtio-mmio Version ${v}: legacy interface, its clauses are not judged by this suite`);
      });
    },
  }),
  defineCheck({
    id: 'init.suspend',
    title: 'SUSPEND: ignored before DRIVER_OK; suspended device is quiet; config notifications held until resume',
    clauses: ['init.dev-suspend.device.1', 'init.dev-suspend.device.3', 'init.dev-suspend.device.4', 'init.dev-suspend.device.5', 'init.dev-suspend.device.6', 'init.dev-suspend.device.7'],
    role: 'device',
    variant: { extraFeatures: [VIRTIO_F_SUSPEND] },
    needs: [VIRTIO_F_SUSPEND],
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        if (!raw.negotiate(acceptWith({ add: [VIRTIO_F_SUSPEND], drop: [VIRTIO_F_RING_PACKED] }))) return fail('FEATURES_OK refused with SUSPEND');
        raw.setupMsix();
        for (let q = 0; q < raw.queueCount(); q++) raw.setupQueue(q);
        raw.regs.setStatus(ADF | STATUS_SUSPEND);
        if ((raw.regs.status() & STATUS_SUSPEND) !== 0) return fail('SUSPEND accepted before DRIVER_OK');
        raw.driverOk();
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(p);
        raw.regs.setStatus(ADF | STATUS_DRIVER_OK | STATUS_SUSPEND);
        const suspended = await waitFor(() => (raw.regs.status() & STATUS_SUSPEND) !== 0 || raw.needsReset(), ctx.waitMs, ctx.signal);
        if (!suspended) return fail('status never shows SUSPEND (nor NEEDS_RESET) after the driver set it');
        if (raw.needsReset()) return pass('the device could not suspend and set NEEDS_RESET (allowed)');
        const w = buildWork(raw, ctx.dut.kind, { seed: 7 });
        const rq = raw.queue(w.q);
        const id = rq.post(w.bufs);
        rq.kick();
        const irqBefore = raw.irq.queue + raw.irq.config;
        const per: Record<string, ClauseOutcome> = {};
        const cc = ctx.dut.io.configChange;
        if (cc !== undefined) cc();
        await settle(6);
        if (rq.collect().length > 0) return fail('a suspended device used a buffer');
        if (raw.irq.queue + raw.irq.config !== irqBefore) return fail('a suspended device sent a notification');
        const cfgBefore = raw.irq.config;
        let s = ADF | STATUS_DRIVER_OK;
        raw.regs.setStatus(s);
        if ((raw.regs.status() & STATUS_SUSPEND) !== 0) {
          s |= STATUS_SUSPEND;
          raw.regs.setStatus(s);
        }
        const resumed = await waitFor(() => (raw.regs.status() & STATUS_SUSPEND) === 0, ctx.waitMs, ctx.signal);
        if (!resumed) return fail('the device stays suspended after the driver resumed it');
        rq.kick();
        let got = false;
        await waitFor(() => (got = got || rq.collect().some((u) => u.id === id)), ctx.waitMs, ctx.signal);
        if (!got && !raw.needsReset()) return fail('the buffer posted while suspended was not used after resume');
        if (cc === undefined) {
          per['init.dev-suspend.device.4'] = { verdict: 'SKIP', detail: 'no way to make this device change its config' };
          per['init.dev-suspend.device.5'] = { verdict: 'SKIP', detail: 'no way to make this device change its config' };
        } else if (raw.irq.config === cfgBefore) return fail('the configuration change made while suspended was never notified after resume');
        return pass('SUSPEND ignored before DRIVER_OK; quiet while suspended; work and held notification delivered after resume', per);
      });
    },
  }),
];
