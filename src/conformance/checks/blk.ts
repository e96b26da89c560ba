/** virtio-blk checks (virtio 1.4 §5.2). */
import {
  VIRTIO_BLK_F_CONFIG_WCE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_LIFETIME,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_F_ZONED,
} from '../../device/blk/constants.js';
import { ANY_TRANSPORT, defineCheck, type Check, type CheckContext } from '../check.js';
import { RawDriver, type RawDriver as RD } from '../raw.js';
import { fail, pass, skip, type ClauseOutcome } from '../verdict.js';
import { acceptWith, blkHeader, pattern, rawInit, settleTransport, withRaw } from './util.js';

const BLK: readonly ('blk' | 'net' | 'rng' | 'console')[] = ['blk'];

/** Send a blk request; returns the status byte (or undefined on timeout) and the data read. */
export async function blkRequest(ctx: CheckContext, raw: RD, type: number, sector: number, out: Uint8Array | undefined, inLen = 0): Promise<{ status: number; data: Uint8Array; len: number } | undefined> {
  const outs = [blkHeader(type, sector)];
  if (out !== undefined) outs.push(out);
  const ins = inLen > 0 ? [inLen, 1] : [1];
  const r = await raw.transact(0, outs, ins, ctx.waitMs, { signal: ctx.signal });
  if (r === undefined) return undefined;
  const st = r.data[r.data.length - 1]![0]!;
  return { status: st, data: inLen > 0 ? r.data[0]! : new Uint8Array(0), len: r.len };
}

/** A discard / write-zeroes segment. */
function dwz(sector: number, sectors: number, flags: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, sector, true);
  dv.setUint32(8, sectors, true);
  dv.setUint32(12, flags, true);
  return b;
}

const ZONED_CLAUSES = [
  'blk.dev-init.device.6',
  'blk.dev-init.device.7',
  'blk.dev-init.device.8',
  ...[17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37].map((n) => `blk.dev-op.device.${n}`),
];

export const blkChecks: readonly Check[] = [
  defineCheck({
    id: 'blk.config-layout',
    title: 'FLUSH offered with CONFIG_WCE; config padding bytes are zero',
    clauses: ['blk.dev-init.device.1', 'blk.dev-init.device.3'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    variant: { blk: { configWce: true } },
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const o = raw.readOffered();
        if (o.has(VIRTIO_BLK_F_CONFIG_WCE) && !o.has(VIRTIO_BLK_F_FLUSH)) return fail('CONFIG_WCE offered without FLUSH');
        for (const off of [33, 57, 58, 59]) {
          const v = raw.regs.readConfig(off, 1);
          if (v !== 0) return fail(`config byte ${off} (padding) reads ${v}`);
        }
        return pass(`FLUSH ${o.has(VIRTIO_BLK_F_FLUSH) ? 'offered' : 'not offered'}${o.has(VIRTIO_BLK_F_CONFIG_WCE) ? ' with CONFIG_WCE' : ''}; unused0/unused1 are 0`);
      });
    },
  }),
  defineCheck({
    id: 'blk.wce-without-flush',
    title: 'CONFIG_WCE negotiated without FLUSH: writeback reads 0',
    clauses: ['blk.dev-init.device.2'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    variant: { blk: { configWce: true, writeback: true } },
    needs: [VIRTIO_BLK_F_CONFIG_WCE],
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        const ok = raw.negotiate(acceptWith({ drop: [VIRTIO_BLK_F_FLUSH] }));
        await settleTransport(ctx);
        if (!ok || (raw.regs.status() & 8) === 0) return pass('FEATURES_OK refused for CONFIG_WCE without FLUSH (the device cannot run so; allowed)');
        const wb = raw.regs.readConfig(32, 1);
        return wb === 0 ? pass('writeback reads 0') : fail(`writeback reads ${wb} with CONFIG_WCE but not FLUSH negotiated`);
      });
    },
  }),
  defineCheck({
    id: 'blk.zone-commands-unsupported',
    title: 'without ZONED every zone command completes with UNSUPP',
    clauses: ['blk.dev-op.device.16'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    async run(ctx) {
      return withRaw(rawInit(ctx, { accept: acceptWith({ drop: [VIRTIO_BLK_F_ZONED] }) }), async (raw) => {
        for (const t of [15, 16, 18, 20, 22, 24, 26]) {
          const r = await blkRequest(ctx, raw, t, 0, undefined, t === 16 ? 64 : 0);
          if (r === undefined) return fail(`zone request type ${t} not completed${raw.needsReset() ? ' (NEEDS_RESET)' : ''}`);
          if (r.status !== 2) return fail(`zone request type ${t} completed with status ${r.status}, not UNSUPP (2)`);
        }
        return pass('7 zone request types answered UNSUPP');
      });
    },
  }),
  defineCheck({
    id: 'blk.zoned',
    title: 'zoned block device clauses (need VIRTIO_BLK_F_ZONED)',
    clauses: ZONED_CLAUSES,
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    needs: [VIRTIO_BLK_F_ZONED],
    async run() {
      return skip('zoned operation is not judged by this suite yet');
    },
  }),
  defineCheck({
    id: 'blk.read-only',
    title: 'RO: writes fail with IOERR and change nothing',
    clauses: ['blk.dev-op.device.3'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    variant: { blk: { readOnly: true } },
    needs: [VIRTIO_BLK_F_RO],
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        const before = await blkRequest(ctx, raw, 0, 2, undefined, 512);
        const r = await blkRequest(ctx, raw, 1, 2, pattern(512, 5));
        if (r === undefined || before === undefined) return fail('request not completed');
        if (r.status !== 1) return fail(`write on a read-only disk completed with status ${r.status}, not IOERR (1)`);
        const after = await blkRequest(ctx, raw, 0, 2, undefined, 512);
        if (after === undefined || !after.data.every((b, i) => b === before.data[i])) return fail('the refused write changed the sector');
        return pass('write answered IOERR, sector unchanged');
      });
    },
  }),
  defineCheck({
    id: 'blk.discard-write-zeroes',
    title: 'unknown/unmap flags on discard → UNSUPP; write-zeroes reads back zeroes',
    clauses: ['blk.dev-op.device.4', 'blk.dev-op.device.5', 'blk.dev-op.device.8'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        const per: Record<string, ClauseOutcome> = {};
        const f = raw.features;
        if (f.has(VIRTIO_BLK_F_DISCARD)) {
          const a = await blkRequest(ctx, raw, 11, 0, dwz(8, 1, 2));
          if (a?.status !== 2) return fail(`discard with unknown flag bit 1 → status ${a?.status}`);
          const b = await blkRequest(ctx, raw, 11, 0, dwz(8, 1, 1));
          if (b?.status !== 2) return fail(`discard with the unmap flag → status ${b?.status}`);
        } else {
          per['blk.dev-op.device.5'] = { verdict: 'SKIP', detail: 'DISCARD not offered' };
        }
        if (f.has(VIRTIO_BLK_F_WRITE_ZEROES)) {
          const c = await blkRequest(ctx, raw, 13, 0, dwz(8, 1, 4));
          if (c?.status !== 2) return fail(`write-zeroes with unknown flag bit 2 → status ${c?.status}`);
          for (const unmap of [0, 1]) {
            const w = await blkRequest(ctx, raw, 1, 16, pattern(1024, 9));
            if (w?.status !== 0) return fail(`write before write-zeroes → status ${w?.status}`);
            const z = await blkRequest(ctx, raw, 13, 0, dwz(16, 2, unmap));
            if (z?.status !== 0) return fail(`write-zeroes (unmap ${unmap}) → status ${z?.status}`);
            const rd = await blkRequest(ctx, raw, 0, 16, undefined, 1024);
            if (rd === undefined || !rd.data.every((x) => x === 0)) return fail(`sectors not zero after write-zeroes (unmap ${unmap})`);
          }
        } else {
          per['blk.dev-op.device.8'] = { verdict: 'SKIP', detail: 'WRITE_ZEROES not offered' };
        }
        return pass('unknown and unmap flags refused with UNSUPP; write-zeroes ranges read back 0', per);
      });
    },
  }),
  defineCheck({
    id: 'blk.stable-writes',
    title: 'a persistent backend commits stable writes before completion',
    clauses: ['blk.dev-op.device.11'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    async run(ctx) {
      if (ctx.dut.io.readDisk === undefined) return skip('no view of the backend');
      return withRaw(rawInit(ctx, { accept: acceptWith({ drop: [VIRTIO_BLK_F_CONFIG_WCE] }) }), async (raw) => {
        const w = await blkRequest(ctx, raw, 1, 4, pattern(512, 11));
        if (w?.status !== 0) return fail(`write → status ${w?.status}`);
        const f = await blkRequest(ctx, raw, 4, 0, undefined);
        if (f?.status !== 0) return fail(`flush → status ${f?.status}`);
        const disk = ctx.dut.io.readDisk!(4 * 512, 512);
        const want = pattern(512, 11);
        if (!disk.every((b, i) => b === want[i])) return fail('data not in the backend when write + flush completed');
        return pass(`written and flushed data is in the backend at completion (${ctx.dut.transport === 'vhost-user' ? 'read back from the disk image' : 'RAM backend: volatile by nature'})`);
      });
    },
  }),
  defineCheck({
    id: 'blk.lifetime',
    title: 'LIFETIME offered only with real wear metrics; reported values not reserved',
    clauses: ['blk.dev-op.device.14', 'blk.dev-op.device.15'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: BLK,
    async run(ctx) {
      return withRaw(RawDriver.open(ctx), async (raw) => {
        if (raw.readOffered().has(VIRTIO_BLK_F_LIFETIME)) return ctx.dut.io.readDisk !== undefined ? fail('LIFETIME offered by a RAM-backed disk, which has no wear metrics') : skip('LIFETIME offered: its metrics are not judged by this suite');
        return pass('LIFETIME not offered (the backend has no wear metrics)', { 'blk.dev-op.device.15': { verdict: 'SKIP', detail: 'LIFETIME not offered' } });
      });
    },
  }),
];
