/** virtio-console checks (virtio 1.4 §5.3). */
import { VIRTIO_CONSOLE_F_EMERG_WRITE, VIRTIO_CONSOLE_F_MULTIPORT } from '../../device/console/index.js';
import { defineCheck, type Check } from '../check.js';
import { RawDriver, settle, waitFor } from '../raw.js';
import { fail, pass, skip } from '../verdict.js';
import { acceptWith, withRaw } from './util.js';

export const consoleChecks: readonly Check[] = [
  defineCheck({
    id: 'console.emergency-write',
    title: 'emerg_wr works at any time, even before the driver configured anything',
    clauses: ['console.dev-init.device.1'],
    role: 'device',
    devices: ['console'],
    needs: [VIRTIO_CONSOLE_F_EMERG_WRITE],
    async run(ctx) {
      const out = ctx.dut.io.consoleOutput;
      return withRaw(RawDriver.open(ctx), async (raw) => {
        raw.reset();
        raw.regs.writeConfig(8, 4, 0x41); // 'A' with status 0
        raw.init();
        raw.regs.writeConfig(8, 4, 0x42); // 'B' after DRIVER_OK
        await settle(2);
        if (out === undefined) return pass('emerg_wr writes accepted (no view of the port output)');
        const s = String.fromCharCode(...out);
        if (!s.includes('A')) return fail(`emergency write before initialization lost (port 0 output ${JSON.stringify(s)})`);
        if (!s.includes('B')) return fail('emergency write after DRIVER_OK lost');
        return pass('bytes written to emerg_wr before and after initialization reached port 0');
      });
    },
  }),
  defineCheck({
    id: 'console.multiport-control',
    title: 'DEVICE_ADD names new ports below max_nr_ports; DEVICE_REMOVE only added ports',
    clauses: ['console.multiport-dev-op.device.1', 'console.multiport-dev-op.device.2'],
    role: 'device',
    devices: ['console'],
    variant: { console: { multiport: true, maxNrPorts: 4 } },
    needs: [VIRTIO_CONSOLE_F_MULTIPORT],
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        raw.init({ accept: acceptWith({ add: [VIRTIO_CONSOLE_F_MULTIPORT] }), queues: [0, 1, 2, 3] });
        const max = raw.regs.readConfig(4, 4);
        // Control receiveq 2: post buffers; control transmitq 3: DEVICE_READY.
        const rx = raw.queue(2);
        const bufs: number[] = [];
        for (let i = 0; i < 8; i++) {
          const a = raw.mem.alloc(64, 16);
          bufs.push(a);
          rx.post([{ addr: a, len: 64, write: true }]);
        }
        rx.kick();
        const ready = new Uint8Array(8);
        new DataView(ready.buffer).setUint16(4, 0, true); // event DEVICE_READY
        new DataView(ready.buffer).setUint16(6, 1, true); // value 1
        await raw.transact(3, [ready], [], ctx.waitMs, { signal: ctx.signal });
        const msgs: Array<{ id: number; event: number }> = [];
        await waitFor(() => {
          for (const u of rx.collect()) {
            const a = bufs[u.id] ?? 0;
            const m = raw.mem.read(a, 8);
            const dv = new DataView(m.buffer);
            msgs.push({ id: dv.getUint32(0, true), event: dv.getUint16(4, true) });
          }
          return msgs.some((m) => m.event === 1);
        }, ctx.waitMs, ctx.signal);
        const adds = msgs.filter((m) => m.event === 1);
        if (adds.length === 0) return skip('the device announced no port after DEVICE_READY');
        const seen = new Set<number>();
        for (const m of msgs) {
          if (m.event === 1) {
            if (m.id >= max) return fail(`DEVICE_ADD for port ${m.id} ≥ max_nr_ports ${max}`);
            if (seen.has(m.id)) return fail(`DEVICE_ADD for port ${m.id} twice`);
            seen.add(m.id);
          } else if (m.event === 2 && !seen.has(m.id)) return fail(`DEVICE_REMOVE for port ${m.id}, never added`);
        }
        return pass(`DEVICE_ADD for ports ${[...seen].join(', ')} (max_nr_ports ${max}); no stray DEVICE_REMOVE`);
      });
    },
  }),
];
