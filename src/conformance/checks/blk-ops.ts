/**
 * virtio-blk request types (virtio 1.4 §5.2.6): OUT then IN round trip, FLUSH, GET_ID, a sector
 * past the capacity, an unknown type. The spec describes the expected status bytes (OK, IOERR,
 * UNSUPP) in its descriptive text, without a normative statement of its own; the normative
 * clause judged here is the used-ring one (the device wrote the bytes `len` claims before moving
 * used idx). Status deviations are listed in the detail and the notes, not turned into a verdict
 * on a clause that does not say them.
 */
import { VIRTIO_BLK_F_FLUSH } from '../../device/blk/constants.js';
import { VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { ANY_TRANSPORT, defineCheck, type Check } from '../check.js';
import { fail, pass } from '../verdict.js';
import { blkRequest } from './blk.js';
import { acceptWith, pattern, rawInit } from './util.js';

const T_IN = 0;
const T_OUT = 1;
const T_FLUSH = 4;
const T_GET_ID = 8;
const T_UNKNOWN = 0x7f;
const S_OK = 0;
const S_IOERR = 1;
const S_UNSUPP = 2;
const NAMES = ['OK', 'IOERR', 'UNSUPP'];
const sname = (s: number): string => `${s} (${NAMES[s] ?? 'not a status'})`;

export const blkOpsChecks: readonly Check[] = [
  defineCheck({
    id: 'blk.request-types',
    title: 'blk: OUT/IN round trip with len covering data + status; FLUSH, GET_ID, past-the-end sector, unknown type answered',
    clauses: ['basic.split-vq.vq-used-ring.device.2'],
    role: 'device',
    devices: ['blk'],
    transports: ANY_TRANSPORT,
    async run(ctx) {
      const raw = rawInit(ctx, { accept: acceptWith({ drop: [VIRTIO_F_RING_PACKED] }) });
      try {
        const capacity = raw.regs.readConfig(0, 4) + raw.regs.readConfig(4, 4) * 4294967296;
        const data = pattern(1024, 17);
        const w = await blkRequest(ctx, raw, T_OUT, 3, data);
        if (w === undefined) return fail('a 1024-byte OUT request was not completed');
        if (w.status !== S_OK) return fail(`a 1024-byte OUT at sector 3 completed with status ${sname(w.status)}`);
        const r = await blkRequest(ctx, raw, T_IN, 3, undefined, 1024);
        if (r === undefined) return fail('a 1024-byte IN request was not completed');
        if (r.status !== S_OK) return fail(`IN of the sectors just written completed with status ${sname(r.status)}`);
        if (r.len > 1025) return fail(`IN used len ${r.len} exceeds the 1025 writable bytes`);
        const covered = Math.min(r.len, 1024);
        for (let i = 0; i < covered; i++) if (r.data[i] !== data[i]) return fail(`IN used len ${r.len}, but byte ${i} of the data read differs from what was written`);
        const seen: string[] = [`OUT/IN round trip ok, IN len ${r.len}`];
        const dev: string[] = [];
        const expect = async (what: string, type: number, sector: number, want: readonly number[], out?: Uint8Array, inLen = 0): Promise<boolean> => {
          const x = await blkRequest(ctx, raw, type, sector, out, inLen);
          if (x === undefined) {
            dev.push(`${what}: not completed within ${ctx.waitMs} ms`);
            return false;
          }
          const ok = want.includes(x.status);
          (ok ? seen : dev).push(`${what} → ${sname(x.status)}${ok ? '' : ` (expected ${want.map(sname).join(' or ')})`}`);
          return true;
        };
        if (raw.features.has(VIRTIO_BLK_F_FLUSH)) await expect('FLUSH', T_FLUSH, 0, [S_OK]);
        if (await expect('GET_ID (20 bytes)', T_GET_ID, 0, [S_OK, S_UNSUPP], undefined, 20)) {
          // continue even when GET_ID is unsupported
        }
        if (capacity > 0) {
          await expect(`IN at sector ${capacity} (capacity)`, T_IN, capacity, [S_IOERR], undefined, 512);
          await expect(`OUT at sector ${capacity} (capacity)`, T_OUT, capacity, [S_IOERR], pattern(512, 3));
        } else dev.push('capacity reads 0: past-the-end requests not tried');
        await expect(`unknown type 0x${T_UNKNOWN.toString(16)}`, T_UNKNOWN, 0, [S_UNSUPP], undefined, 16);
        for (const s of seen) ctx.note(s);
        for (const d of dev) ctx.note(`DEVIATION: ${d}`);
        if (raw.needsReset()) dev.push(`the device entered an error state${ctx.dut.vhostUser?.errorReason !== undefined ? ` (${ctx.dut.vhostUser.errorReason})` : ''}`);
        return pass(`${seen.join('; ')}${dev.length > 0 ? `; DEVIATIONS from §5.2.6 (descriptive text, no normative clause): ${dev.join('; ')}` : ''}`);
      } finally {
        raw.close();
      }
    },
  }),
];
