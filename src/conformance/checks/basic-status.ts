/** Device status, reset and queue-reset checks (virtio 1.4 §2.1, §2.4, §2.6.1). */
import { VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET } from '../../features/bits.js';
import { STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK } from '../../features/status.js';
import { CC } from '../../driver/pci-regs.js';
import { MR } from '../../driver/mmio/regs.js';
import { VIRTQ_DESC_F_NEXT } from '../../queue/types.js';
import { ANY_TRANSPORT, defineCheck, type Check } from '../check.js';
import { RawDriver, RawSplitQueue, settle, waitFor } from '../raw.js';
import { fail, pass, type ClauseOutcome } from '../verdict.js';
import { acceptWith, buildWork, rawInit, settleTransport, withRaw, workOk, workQueue } from './util.js';

const SPLIT_ONLY = acceptWith({ drop: [VIRTIO_F_RING_PACKED] });

export const statusChecks: readonly Check[] = [
  defineCheck({
    id: 'status.no-work-before-driver-ok',
    title: 'no buffer is processed and no used-buffer notification sent before DRIVER_OK',
    clauses: ['basic.dev-status-field.device.1'],
    role: 'device',
    async run(ctx) {
      return withRaw(rawInit(ctx, { driverOk: false }), async (raw) => {
        const w = buildWork(raw, ctx.dut.kind);
        const rq = raw.queue(w.q);
        const id = rq.post(w.bufs);
        rq.kick();
        await settle(6);
        if (rq.collect().length > 0) return fail('a buffer was used before DRIVER_OK');
        if (raw.irq.queue > 0) return fail('a used-buffer notification was sent before DRIVER_OK');
        raw.driverOk();
        rq.kick();
        let got = false;
        await waitFor(() => rq.collect().some((u) => u.id === id) || (got = false), ctx.waitMs, ctx.signal);
        got = rq.usedSeen > 0;
        return pass(`nothing used before DRIVER_OK${got ? '; the same buffer was served after DRIVER_OK' : ''}`);
      });
    },
  }),
  defineCheck({
    id: 'status.reset-clears',
    title: 'reset: status 0, queue_enable/QueueReady 0, MSI-X vectors unassigned, InterruptStatus 0',
    clauses: ['basic.dev-reset.device.1', 'pci.common-cfg.device.7', 'pci.common-cfg.device.8', 'pci.msix.device.7', 'mmio.regs.device.5'],
    role: 'device',
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        raw.ackInterrupts = false;
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(p);
        const nq = raw.queueCount();
        raw.regs.setStatus(0);
        let st = raw.regs.status();
        for (let i = 0; i < 16 && st !== 0; i++) st = raw.regs.status();
        if (st !== 0) return fail(`status reads 0x${st.toString(16)} after writing 0`);
        const per: Record<string, ClauseOutcome> = {};
        const tr = ctx.dut.transport;
        for (let q = 0; q < nq; q++) {
          raw.regs.selectQueue(q);
          if (raw.regs.queueEnable() !== 0) return fail(`queue ${q}: queue_enable/QueueReady reads ${raw.regs.queueEnable()} after reset`);
        }
        const pr = raw.pciRegs;
        if (pr !== undefined) {
          if (pr.regs.cc16(CC.CONFIG_MSIX_VECTOR) !== 0xffff) return fail(`config_msix_vector reads ${pr.regs.cc16(CC.CONFIG_MSIX_VECTOR)} after reset, not NO_VECTOR`);
          for (let q = 0; q < nq; q++) {
            pr.selectQueue(q);
            const v = pr.regs.cc16(CC.QUEUE_MSIX_VECTOR);
            if (v !== 0xffff) return fail(`queue ${q}: queue_msix_vector reads ${v} after reset, not NO_VECTOR`);
          }
          per['mmio.regs.device.5'] = { verdict: 'SKIP', detail: 'PCI transport' };
        } else {
          const mr = raw.mmioRegs!;
          const is = mr.r(MR.INTERRUPT_STATUS);
          if (is !== 0) return fail(`InterruptStatus reads 0x${is.toString(16)} after reset`);
          for (const id of ['pci.common-cfg.device.7', 'pci.common-cfg.device.8', 'pci.msix.device.7']) per[id] = { verdict: 'SKIP', detail: 'MMIO transport' };
        }
        return pass(`status 0, ${nq} queue(s) disabled${tr === 'pci' ? ', vectors NO_VECTOR' : ', InterruptStatus 0'} after reset`, per);
      });
    },
  }),
  defineCheck({
    id: 'status.silent-after-reset',
    title: 'after reset the device neither uses buffers nor notifies until re-initialized',
    clauses: ['basic.dev-reset.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        const w = buildWork(raw, ctx.dut.kind);
        const rq = raw.queue(w.q);
        if (!raw.reset()) return fail('status did not read 0 after reset');
        await settleTransport(ctx); // vhost-user: the reset's GET_VRING_BASE is answered, as a front-end waits for it
        const irq = raw.irq.queue + raw.irq.config;
        const usedBefore = raw.mem.read(rq.deviceArea, 8);
        rq.post(w.bufs);
        rq.kick();
        raw.regs.notify(w.q);
        await settle(6);
        const usedAfter = raw.mem.read(rq.deviceArea, 8);
        if (!usedAfter.every((b, i) => b === usedBefore[i])) return fail('the device wrote the (forgotten) used ring after reset');
        if (raw.irq.queue + raw.irq.config !== irq) return fail('the device sent a notification after reset');
        return pass('kicks into the old rings after reset: nothing used, no notification');
      });
    },
  }),
  defineCheck({
    id: 'status.needs-reset-notifies',
    title: 'DEVICE_NEEDS_RESET after an error comes with a configuration-change notification; reset recovers',
    clauses: ['basic.dev-status-field.device.3', 'basic.dev-reset.device.1'],
    role: 'device',
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: SPLIT_ONLY }), async (raw) => {
        const rq = raw.queue(workQueue(ctx.dut.kind));
        if (!(rq instanceof RawSplitQueue)) return fail('expected a split ring');
        const a = raw.mem.alloc(32, 16);
        rq.writeDesc(0, a, 16, VIRTQ_DESC_F_NEXT, 0); // self loop
        rq.pushAvail(0);
        rq.publish();
        rq.kick();
        await settle(6);
        await waitFor(() => raw.needsReset(), Math.min(ctx.waitMs, 300), ctx.signal);
        if (raw.needsReset()) await waitFor(() => raw.irq.config > 0, ctx.waitMs, ctx.signal);
        if (!raw.needsReset()) return pass('the device dropped the looping chain without NEEDS_RESET (allowed)', { 'basic.dev-status-field.device.3': { verdict: 'SKIP', detail: 'NEEDS_RESET not set for a looping chain' } });
        if (raw.irq.config === 0) return fail('DEVICE_NEEDS_RESET set while DRIVER_OK, but no configuration-change notification');
        if (!raw.reset()) return fail('status not 0 after reset');
        const raw2 = rawInit(ctx);
        try {
          const p = await workOk(ctx, raw2);
          if (p !== undefined) return fail(`after reset: ${p}`);
        } finally {
          raw2.close();
        }
        return pass(`NEEDS_RESET + ${raw.irq.config} config notification(s); reset brought status to 0 and the device back`);
      });
    },
  }),
  defineCheck({
    id: 'status.features-ok-refused',
    title: 'FEATURES_OK stays clear when the driver acks a bit the device did not offer',
    clauses: ['basic.feature-bits.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    async run(ctx) {
      const raw = RawDriver.open(ctx);
      try {
        raw.reset();
        raw.regs.setStatus(STATUS_ACKNOWLEDGE);
        raw.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        const offered = raw.readOffered();
        let bad = -1;
        for (const b of [63, 62, 61, 60, 59, 58, 57, 56, 20, 21, 22]) if (!offered.has(b)) { bad = b; break; }
        if (bad < 0) return pass('no unoffered bit found to ack (nothing to refuse)');
        for (let i = 0; i < 4; i++) raw.regs.setDriverFeatures(i, offered.word(i) | (Math.floor(bad / 32) === i ? 1 << (bad % 32) : 0));
        raw.regs.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        await settleTransport(ctx);
        const st = raw.regs.status();
        if ((st & STATUS_FEATURES_OK) !== 0) return fail(`FEATURES_OK reads set after acking unoffered bit ${bad}`);
        raw.reset();
        let ok = raw.negotiate();
        await settleTransport(ctx);
        ok = ok && (raw.regs.status() & STATUS_FEATURES_OK) !== 0;
        if (!ok) return fail('FEATURES_OK refused for the offered set (minus unknown bits) a driver may ack');
        return pass(`unoffered bit ${bad} → FEATURES_OK clear; a valid subset → FEATURES_OK set`);
      } finally {
        raw.close();
      }
    },
  }),
  defineCheck({
    id: 'status.queue-reset',
    title: 'RING_RESET: queue reset stops the queue, registers read 0, re-enable honours new settings',
    clauses: [
      'basic.vq-reset.device.1',
      'basic.vq-reset.device.2',
      'basic.vq-re-enable.device.1',
      'pci.common-cfg.device.9',
      'pci.common-cfg.device.10',
      'pci.common-cfg.device.11',
      'pci.common-cfg.device.12',
      'pci.common-cfg.device.13',
      'mmio.regs.device.8',
      'mmio.regs.device.9',
      'mmio.regs.device.10',
      'mmio.regs.device.11',
      'mmio.regs.device.12',
    ],
    role: 'device',
    variant: { extraFeatures: [VIRTIO_F_RING_RESET] },
    needs: [VIRTIO_F_RING_RESET],
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const per: Record<string, ClauseOutcome> = {};
        const other = ctx.dut.transport === 'pci' ? 'mmio' : 'pci';
        const q = workQueue(ctx.dut.kind);
        if (!raw.negotiate(acceptWith({ add: [VIRTIO_F_RING_RESET], drop: [VIRTIO_F_RING_PACKED] }))) return fail('FEATURES_OK refused with RING_RESET');
        raw.regs.selectQueue(q);
        if (raw.regs.queueReset() !== 0) return fail(`queue_reset reads ${raw.regs.queueReset()} after device reset`);
        raw.setupMsix();
        const nq = raw.queueCount();
        for (let i = 0; i < nq; i++) raw.setupQueue(i);
        raw.regs.selectQueue(q);
        if (raw.regs.queueReset() !== 0) return fail('queue_reset reads non-zero after queue_enable');
        raw.driverOk();
        const p = await workOk(ctx, raw);
        if (p !== undefined) return fail(p);
        raw.regs.selectQueue(q);
        raw.regs.setQueueReset(1);
        const rr = raw.regs.queueReset();
        const en = raw.regs.queueEnable();
        if (rr !== 0 || en !== 0) {
          // A reset still in progress must read 1 (…device.12); ours completes in the write.
          const done = await waitFor(() => raw.regs.queueReset() === 0, ctx.waitMs, ctx.signal);
          if (!done) return fail('queue_reset never reads 0 after writing 1');
          if (raw.regs.queueEnable() !== 0) return fail('queue_enable not 0 after the queue reset completed');
        }
        // Old ring: a kick must not be processed.
        const old = raw.queue(q);
        const w = buildWork(raw, ctx.dut.kind, { seed: 4 });
        const before = old.usedSeen;
        old.post(w.bufs);
        raw.regs.notify(q);
        await settle(6);
        if (old.collect().length > 0 || old.usedSeen !== before) return fail('the device used a buffer of a queue that was reset');
        // Re-enable with a smaller size and fresh rings.
        const rq = raw.setupQueue(q, 4);
        if (rq === undefined) return fail('queue unavailable after reset');
        for (let i = 0; i < 6; i++) {
          const p2 = await workOk(ctx, raw, 20 + i);
          if (p2 !== undefined) return fail(`after re-enable with size 4, request ${i}: ${p2}`);
        }
        if (rq instanceof RawSplitQueue) {
          // With size 4, request 5 (index 4) lands in used slot 0 again.
          const e = rq.usedElem(4);
          if (rq.usedIdx() !== 6) return fail(`used idx ${rq.usedIdx()} after 6 requests on the re-enabled queue (state not reset to 0?)`);
          void e;
        }
        for (const id of ctx.dut.transport === 'pci' ? ['mmio.regs.device.8', 'mmio.regs.device.9', 'mmio.regs.device.10', 'mmio.regs.device.11', 'mmio.regs.device.12'] : ['pci.common-cfg.device.9', 'pci.common-cfg.device.10', 'pci.common-cfg.device.11', 'pci.common-cfg.device.12', 'pci.common-cfg.device.13'])
          per[id] = { verdict: 'SKIP', detail: `${other} clause, transport is ${ctx.dut.transport}` };
        return pass('reset queue ignored kicks; registers 0; re-enabled with size 4 and served 6 requests from index 0', per);
      });
    },
  }),
];
