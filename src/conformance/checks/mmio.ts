/** virtio-mmio checks (virtio 1.4 §4.2): identification, interrupt status, ready gating, config generation. */
import { VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { MR } from '../../driver/mmio/regs.js';
import { defineCheck, type Check } from '../check.js';
import { RawDriver, settle, waitFor } from '../raw.js';
import { fail, pass, skip } from '../verdict.js';
import { acceptWith, buildWork, rawInit, withRaw, workOk } from './util.js';

const MMIO: readonly ('pci' | 'mmio')[] = ['mmio'];

export const mmioChecks: readonly Check[] = [
  defineCheck({
    id: 'mmio.magic-version',
    title: 'MagicValue reads "virt", Version 2',
    clauses: ['mmio.regs.device.1', 'mmio.regs.device.2'],
    role: 'device',
    transports: MMIO,
    async run(ctx) {
      const a = ctx.dut.mmio!.access;
      const magic = a.read(MR.MAGIC_VALUE, 4) >>> 0;
      const ver = a.read(MR.VERSION, 4) >>> 0;
      if (magic !== 0x74726976) return fail(`MagicValue 0x${magic.toString(16)}`);
      if (ver !== 2) return fail(`Version ${ver}`);
      return pass('MagicValue 0x74726976, Version 2');
    },
  }),
  defineCheck({
    id: 'mmio.interrupt-status',
    title: 'InterruptStatus: only occurred events set, held until acknowledged, cleared by InterruptACK',
    clauses: ['mmio.regs.device.3', 'mmio.regs.device.4'],
    role: 'device',
    transports: MMIO,
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        raw.ackInterrupts = false;
        const r = raw.mmioRegs!;
        if (r.r(MR.INTERRUPT_STATUS) !== 0) return fail(`InterruptStatus 0x${r.r(MR.INTERRUPT_STATUS).toString(16)} before any event`);
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(p);
        await waitFor(() => (r.r(MR.INTERRUPT_STATUS) & 1) !== 0, ctx.waitMs, ctx.signal);
        const s1 = r.r(MR.INTERRUPT_STATUS);
        if ((s1 & 1) === 0) return fail('used buffer notified but InterruptStatus bit 0 is clear');
        if ((s1 & 2) !== 0) return fail('InterruptStatus bit 1 set without a configuration change');
        await settle(2);
        if ((r.r(MR.INTERRUPT_STATUS) & 1) === 0) return fail('InterruptStatus bit 0 cleared without an acknowledgement');
        r.w(MR.INTERRUPT_ACK, 1);
        if ((r.r(MR.INTERRUPT_STATUS) & 1) !== 0) return fail('InterruptStatus bit 0 still set after InterruptACK');
        return pass('bit 0 set for the used buffer, held until InterruptACK, bit 1 clear');
      });
    },
  }),
  defineCheck({
    id: 'mmio.not-ready-untouched',
    title: "a queue whose QueueReady is 0 is not touched, even after DRIVER_OK and kicks",
    clauses: ['mmio.regs.device.7'],
    role: 'device',
    transports: MMIO,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        if (!raw.negotiate(acceptWith({ drop: [VIRTIO_F_RING_PACKED] }))) return fail('FEATURES_OK refused');
        const n = raw.queueCount();
        const w0 = buildWork(raw, ctx.dut.kind);
        for (let q = 0; q < n; q++) raw.setupQueue(q, 16, { enable: q !== w0.q });
        raw.driverOk();
        const rq = raw.queue(w0.q);
        const snapshot = (): Uint8Array => raw.mem.read(rq.deviceArea, 6 + 8 * rq.size);
        const before = snapshot();
        rq.post(w0.bufs);
        rq.kick();
        await settle(6);
        const after = snapshot();
        if (!after.every((b, i) => b === before[i])) return fail('the device wrote the used ring of a queue that is not ready');
        for (const wb of w0.writable) if (!raw.mem.read(wb.addr, wb.len).every((b) => b === 0xa5)) return fail('the device wrote a buffer of a queue that is not ready');
        return pass('no write to the rings or buffers of the not-ready queue');
      });
    },
  }),
  defineCheck({
    id: 'config.generation',
    title: 'config_generation / ConfigGeneration changes when the device configuration changes',
    clauses: ['pci.common-cfg.device.6', 'mmio.regs.device.6'],
    role: 'device',
    async run(ctx) {
      const cc = ctx.dut.io.configChange;
      if (cc === undefined) return skip('this device type / target cannot be made to change its configuration');
      return withRaw(rawInit(ctx), async (raw) => {
        const g0 = raw.regs.generation();
        const before = raw.irq.config;
        cc();
        await waitFor(() => raw.irq.config > before, ctx.waitMs, ctx.signal);
        const g1 = raw.regs.generation();
        if (g1 === g0) return fail(`generation still ${g0} after a configuration change`);
        const other = ctx.dut.transport === 'pci' ? 'mmio.regs.device.6' : 'pci.common-cfg.device.6';
        return pass(`generation ${g0} → ${g1}`, { [other]: { verdict: 'SKIP', detail: `transport is ${ctx.dut.transport}` } });
      });
    },
  }),
];
