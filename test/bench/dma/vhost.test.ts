/**
 * The vhost-user models of the DMA benchmark: the bench driver (VhostUserFrontend + split rings
 * over memfd guest RAM, kick / call eventfds) moves data correctly against virtiokit's back-end,
 * the ours / qemu-storage-daemon ratio is a same-round ratio then the median, and a tiny run of
 * `vhost-ours` (and of `vhost-qsd` when qemu-storage-daemon is installed) yields well-formed rows.
 * No timing thresholds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRows, type RoundPoint } from '../../../src/bench/dma/aggregate.js';
import { findQsd, VHOST_QSD_MODEL } from '../../../src/bench/dma/model-vhost.js';
import { RAM_BASE } from '../../../src/bench/dma/models.js';
import type { DmaBenchReport } from '../../../src/bench/dma/report-types.js';
import { evaluateTargets, runDmaBench, vhostVsQsd } from '../../../src/bench/dma/runner.js';
import { BASE_DRIVER, BASE_POINT, planSession, tinyPreset, type ModelName } from '../../../src/bench/dma/scenario.js';
import { VhostBenchDriver } from '../../../src/bench/dma/vhost-driver.js';
import type { PointRaw } from '../../../src/bench/dma/workload.js';
import { BlkDevice } from '../../../src/device/blk/blk-device.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../../../src/device/blk/constants.js';
import { RamBackend } from '../../../src/device/blk/ram-backend.js';
import { createGuestRam } from '../../../src/memory/ram.js';
import { native } from '../../../src/native/index.js';
import { SgList } from '../../../src/queue/types.js';
import { VhostUserBackend } from '../../../src/vhost-user/backend.js';
import { VhostUserServer } from '../../../src/vhost-user/server.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const QSD = await findQsd();
const QSD_WHY = QSD === undefined ? await VHOST_QSD_MODEL.unavailable() : undefined;
if (QSD_WHY !== undefined) console.warn(`vhost-qsd tests skipped: ${QSD_WHY}`);

function raw(iops: number): PointRaw {
  return {
    requests: iops,
    wallMs: 1000,
    p50Us: 1e6 / iops,
    p99Us: 2e6 / iops,
    meanUs: 1e6 / iops,
    cpuVmmUs: 10,
    cpuDeviceUs: 20,
    bounceBytes: 0,
    messageBytes: 0,
    messages: 0,
    kicksPerReq: 0.1,
    interruptsPerReq: 0.1,
    peakRssVmm: 1 << 20,
    peakRssDevice: 1 << 20,
    peakRssReset: true,
    poolHighWaterBytes: 0,
  };
}
const NEG = { mask: '0x100000000', names: ['VIRTIO_F_VERSION_1'], dma: 'direct' as const, interrupts: 'vhost-user call eventfd', queueSize: 256, bounceCopier: null };
function rp(round: number, model: ModelName, iops: number): RoundPoint {
  return { round, model, driver: { ...BASE_DRIVER }, point: { ...BASE_POINT }, negotiated: NEG, raw: raw(iops) };
}

describe('bench dma vhost: ratio and target (pure)', () => {
  it('ours / qsd is the same-round ratio, then the median; null without both models', () => {
    // Round ratios 0.5, 2.0, 0.9 → median 0.9 (a ratio of medians would give 100/100 = 1).
    const pts = [rp(1, 'vhost-qsd', 200), rp(1, 'vhost-ours', 100), rp(2, 'vhost-qsd', 50), rp(2, 'vhost-ours', 100), rp(3, 'vhost-qsd', 100), rp(3, 'vhost-ours', 90)];
    const rows = buildRows(pts);
    expect(vhostVsQsd(rows)).toBeCloseTo(0.9, 9);
    const t = evaluateTargets(rows, []).find((x) => x.id === 'vhost-user-vs-qsd-4k-qd32');
    expect(t).toMatchObject({ measured: 0.9, met: false, target: 1 });
    expect(t!.note).toMatch(/per-round ratios 0\.50, 2\.00, 0\.90/);
    expect(rows.find((r) => r.model === 'vhost-qsd')!.ratio_vs_direct).toBe(1);

    const onlyOurs = buildRows([rp(1, 'vhost-ours', 100)]);
    expect(vhostVsQsd(onlyOurs)).toBeNull();
    expect(evaluateTargets(onlyOurs, []).find((x) => x.id === 'vhost-user-vs-qsd-4k-qd32')).toMatchObject({ measured: null, met: false });
    // Runs without vhost-user models keep their three targets.
    expect(evaluateTargets(buildRows([rp(1, 'direct', 100)]), []).map((x) => x.id)).not.toContain('vhost-user-vs-qsd-4k-qd32');
  });

  it('vhost-user models plan split rings only (no packed variant: qemu-storage-daemon has none)', () => {
    for (const m of ['vhost-qsd', 'vhost-ours'] as const) {
      const plan = planSession(m, { ...tinyPreset([4096]), variantModels: 'all' });
      expect(plan.steps.every((s) => s.driver.ring === 'split')).toBe(true);
      expect(plan.steps.some((s) => s.driver.queues === 2)).toBe(true);
    }
  });
});

describe.skipIf(!native.available)('bench dma vhost: the bench driver against an in-process back-end', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vk-vhost-drv-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    { indirect: false, eventIdx: true, queues: 1 },
    { indirect: true, eventIdx: false, queues: 2 },
  ])('writes then reads back a pattern on every queue (%o)', async (c) => {
    const disk = new RamBackend(1 << 20);
    const blk = new BlkDevice(disk, { queues: 2, queueSize: 256 });
    const backend = new VhostUserBackend({ model: blk });
    const sock = join(dir, `s${c.queues}.sock`);
    const server = VhostUserServer.listen(sock, backend);
    const ram = createGuestRam([{ base: RAM_BASE, size: 4 << 20, name: 'guest-ram' }], { backing: 'memfd' });
    const drv = await VhostBenchDriver.open({ socketPath: sock, ram, cfg: { ring: 'split', ...c }, queueSize: 64 });
    try {
      expect(drv.negotiated.names).toContain('VIRTIO_F_VERSION_1');
      expect(drv.negotiated.names.includes('VIRTIO_F_EVENT_IDX')).toBe(c.eventIdx);
      expect(drv.negotiated.names.some((n) => /UNUSED|PROTOCOL/.test(n))).toBe(false); // bit 30 is vhost-user's, not the device's
      const space = ram.space;
      const ctl = drv.ram.alloc(64, 64);
      const data = drv.ram.alloc(4096, 4096);
      const sg = new SgList(3);
      const doReq = async (q: number, type: number, sector: number): Promise<number> => {
        space.writeU32(ctl, type);
        space.writeU32(ctl + 4, 0);
        space.writeU64(ctl + 8, sector);
        space.writeU8(ctl + 16, 0xff);
        sg.clear().out(ctl, 16);
        if (type === VIRTIO_BLK_T_OUT) sg.out(data, 4096);
        else sg.in(data, 4096);
        sg.in(ctl + 16, 1);
        const vq = drv.queue(q);
        expect(vq.add(sg, 5)).toBe(true);
        vq.kick();
        for (;;) {
          if (vq.poll()) break;
          vq.enableInterrupts();
          if (vq.poll()) break;
          await drv.waitInterrupt(5000);
        }
        expect(vq.lastToken).toBe(5);
        return space.readU8(ctl + 16);
      };
      for (let q = 0; q < c.queues; q++) {
        const pat = new Uint8Array(4096).map((_, i) => (i * 7 + q * 13 + 1) & 0xff);
        space.write(data, pat);
        expect(await doReq(q, VIRTIO_BLK_T_OUT, 8 + q * 8)).toBe(0);
        space.write(data, new Uint8Array(4096));
        expect(await doReq(q, VIRTIO_BLK_T_IN, 8 + q * 8)).toBe(0);
        const back = new Uint8Array(4096);
        space.read(data, back);
        expect(back).toEqual(pat);
      }
      expect(drv.sink.errors).toEqual([]);
      expect(drv.stats.msi).toBeGreaterThan(0);
    } finally {
      await drv.close();
      await server.close();
      ram.close();
    }
  });

  it('refuses a packed ring and more queues than the back-end has, with FEATURE_REQUIRED', async () => {
    const blk = new BlkDevice(new RamBackend(1 << 20), { queues: 1, queueSize: 256 });
    const backend = new VhostUserBackend({ model: blk });
    const sock = join(dir, 'r.sock');
    const server = VhostUserServer.listen(sock, backend);
    const ram = createGuestRam([{ base: RAM_BASE, size: 1 << 20 }], { backing: 'memfd' });
    try {
      await expect(VhostBenchDriver.open({ socketPath: sock, ram, cfg: { ring: 'packed', indirect: false, eventIdx: true, queues: 1 }, queueSize: 64 })).rejects.toMatchObject({ code: 'FEATURE_REQUIRED' });
      await expect(VhostBenchDriver.open({ socketPath: sock, ram, cfg: { ring: 'split', indirect: false, eventIdx: true, queues: 2 }, queueSize: 64 })).rejects.toMatchObject({ code: 'FEATURE_REQUIRED', message: expect.stringMatching(/2 queues requested but the back-end has 1/) });
    } finally {
      await server.close();
      ram.close();
    }
  });
});

describe.skipIf(!native.available)('bench dma vhost: tiny run', () => {
  const SIZES = [512, 4096];
  let rep: DmaBenchReport;

  beforeAll(async () => {
    rep = await runDmaBench({ preset: tinyPreset(SIZES), models: ['vhost-qsd', 'vhost-ours'], profile: false, skipCopy: true });
  }, 120_000);

  it('vhost-ours: one well-formed row per size, measured through a back-end process', () => {
    expect(rep.failures).toEqual([]);
    const info = rep.models.find((m) => m.model === 'vhost-ours')!;
    expect(info).toMatchObject({ measured: true });
    expect(String(info.info?.['deviceArgs'])).toMatch(/serve blk --vhost-user .* --disk /);
    const rows = rep.rows.filter((r) => r.model === 'vhost-ours');
    expect(rows.map((r) => r.size).sort((a, b) => a - b)).toEqual(SIZES);
    for (const r of rows) {
      expect(r).toMatchObject({ depth: 32, queues: 1, op: 'read', ring: 'split', batch: true, rounds: 1 });
      for (const v of [r.iops, r.mbps, r.p50_us, r.p99_us, r.cpu_us_per_req_vmm, r.requests_per_round]) expect(v).toBeGreaterThan(0);
      expect(r.cpu_us_per_req_device).not.toBeNull();
      expect(r.peak_rss_device_bytes).toBeGreaterThan(0);
      expect(r.bytes_copied_per_req).toBe(0);
      expect(r.negotiated).toMatchObject({ dma: 'direct', interrupts: 'vhost-user call eventfd', queueSize: 256 });
      expect(r.negotiated.names).toEqual(expect.arrayContaining(['VIRTIO_F_VERSION_1', 'VIRTIO_F_EVENT_IDX']));
    }
  });

  it.skipIf(QSD === undefined)('vhost-qsd: measured behind the same front-end; vhost_user_vs_qsd is the 4 KiB ratio', () => {
    const info = rep.models.find((m) => m.model === 'vhost-qsd')!;
    expect(info).toMatchObject({ measured: true });
    expect(String(info.info?.['backendVersion'])).toMatch(/qemu-storage-daemon|unknown/);
    const rows = rep.rows.filter((r) => r.model === 'vhost-qsd');
    expect(rows.map((r) => r.size).sort((a, b) => a - b)).toEqual(SIZES);
    for (const r of rows) {
      expect(r.iops).toBeGreaterThan(0);
      expect(r.ratio_vs_direct).toBe(1);
    }
    const ours4k = rep.rows.find((r) => r.model === 'vhost-ours' && r.size === 4096)!;
    const qsd4k = rows.find((r) => r.size === 4096)!;
    expect(rep.vhost_user_vs_qsd).toBeCloseTo(ours4k.per_round[0]!.iops / qsd4k.per_round[0]!.iops, 2);
    expect(rep.targets.find((t) => t.id === 'vhost-user-vs-qsd-4k-qd32')?.measured).toBe(rep.vhost_user_vs_qsd);
  });

  it.skipIf(QSD !== undefined)('vhost-qsd without qemu-storage-daemon: reported unavailable with the reason, ratio null', () => {
    const info = rep.models.find((m) => m.model === 'vhost-qsd')!;
    expect(info.measured).toBe(false);
    expect(info.reason).toMatch(/qemu-storage-daemon/);
    expect(rep.vhost_user_vs_qsd).toBeNull();
  });
});
