/**
 * `virtiokit serve … --vfio-user SOCK --check-driver REPORT.json`: the device process judges the
 * driver that drives it. Driven here by virtiokit's simulated driver over vfio-user
 * (VfioUserClient + VirtioPciDriver) — well behaved, and with SWIOTLB required — and by raw
 * register writes that break the initialization order on purpose.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { judgedClauses } from '../../src/conformance/driver-judge.js';
import type { DriverCheckReport } from '../../src/conformance/driver-watch.js';
import { probeVirtioPci } from '../../src/driver/probe.js';
import { createGuestRam } from '../../src/memory/ram.js';
import { native } from '../../src/native/index.js';
import { VfioUserClient } from '../../src/vfio-user/client.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';
import { attach, RAM_BASE, tempDir } from '../vfio-user/helpers.js';

const tmp = tempDir();
afterAll(() => tmp.cleanup());

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(8, sector, true);
  return h;
}

/** Wait until the device process said it wrote the report (reason) or `ms` passed. */
async function waitReport(proc: DeviceProcess, reason: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!proc.stderr().includes(`--check-driver (${reason})`) && Date.now() < end && proc.child.exitCode === null) await new Promise((r) => setTimeout(r, 25));
}

function readReport(path: string): DriverCheckReport {
  expect(existsSync(path), `no report at ${path}`).toBe(true);
  return JSON.parse(readFileSync(path, 'utf8')) as DriverCheckReport;
}

const verdict = (r: DriverCheckReport, clause: string): string | undefined => r.clauses.find((c) => c.clause === clause)?.verdict;

describe.runIf(native.available)('serve --check-driver (vfio-user)', () => {
  it('[init.dev-init.driver.1][basic.feature-bits.driver.1][init.dev-init.driver.4][pci.common-cfg.driver.5] the simulated driver: report with driver-side verdicts, all PASS', { timeout: 30_000 }, async () => {
    const report = join(tmp.dir, 'good.json');
    const sock = join(tmp.dir, 'good.sock');
    const proc = await spawnDeviceProcess(sock, ['blk', '--disk-size', String(1 << 20), '--queue-size', '64', '--check-driver', report]);
    try {
      const a = await attach(proc, 'direct');
      for (let i = 0; i < 8; i++) {
        const w = await a.driver.queue(0).submit([header(1, i), new Uint8Array(512).fill(i)], [1]);
        expect(w.data[0]![0]).toBe(0);
      }
      // Let the device sample the descriptor tables once while the driver runs.
      await new Promise((r) => setTimeout(r, 300));
      await a.close(); // driver reset (status 0), then the client disconnects
      await waitReport(proc, 'disconnect');
    } finally {
      await proc.stop();
    }
    const r = readReport(report);
    expect(r.kind).toBe('virtiokit-driver-check');
    expect(r.clauses.map((c) => c.clause).sort()).toEqual(judgedClauses('pci').sort());
    const bad = r.clauses.filter((c) => c.verdict === 'FAIL');
    expect(bad, JSON.stringify(bad)).toEqual([]);
    for (const id of ['init.dev-init.driver.1', 'basic.dev-status-field.driver.2', 'basic.feature-bits.driver.1', 'init.dev-init.driver.4', 'pci.common-cfg.driver.5']) expect(verdict(r, id), id).toBe('PASS');
    const used = r.sessions.find((s) => s.statusSequence.includes('DRIVER_OK'));
    expect(used, JSON.stringify(r.sessions)).toBeDefined();
    expect(used!.queues.find((q) => q.index === 0)?.notifies).toBeGreaterThanOrEqual(8);
    expect(r.swiotlb.bufferAddressesSampled, JSON.stringify({ rec: r.recording, sessions: r.sessions })).toBeGreaterThan(0);
    expect(proc.stderr()).toMatch(/--check-driver \((reset|disconnect)\): \d+ PASS, 0 FAIL/);
  });

  it('[rfc-swiotlb.pci.driver.2][rfc-swiotlb.feature.driver.1] SWIOTLB required: rings and sampled buffers all inside the window', { timeout: 30_000 }, async () => {
    const report = join(tmp.dir, 'swiotlb.json');
    const sock = join(tmp.dir, 'swiotlb.sock');
    const proc = await spawnDeviceProcess(sock, ['blk', '--disk-size', String(1 << 20), '--queue-size', '64', '--swiotlb', 'required', '--swiotlb-size', '1048576', '--check-driver', report]);
    try {
      const a = await attach(proc, 'swiotlb');
      expect(a.driver.swiotlb).toBe(true);
      for (let i = 0; i < 4; i++) await a.driver.queue(0).submit([header(0, i)], [4096, 1]);
      await new Promise((r) => setTimeout(r, 300));
      await a.close();
      await waitReport(proc, 'disconnect');
    } finally {
      await proc.stop();
    }
    const r = readReport(report);
    expect(r.swiotlb.window).not.toBeNull();
    expect(r.swiotlb.negotiatedInLastSession || r.sessions.length > 0).toBe(true);
    expect(verdict(r, 'rfc-swiotlb.pci.driver.2'), JSON.stringify(r.clauses)).toBe('PASS');
    expect(verdict(r, 'rfc-swiotlb.feature.driver.1')).toBe('PASS');
    expect(r.swiotlb.bufferAddressesSampled).toBeGreaterThan(0);
    expect(r.swiotlb.outsideWindow).toEqual([]);
  });

  it('[init.dev-init.driver.1] a driver that sets DRIVER_OK before FEATURES_OK gets a FAIL (written on disconnect and again on SIGTERM)', { timeout: 30_000 }, async () => {
    const report = join(tmp.dir, 'bad.json');
    const sock = join(tmp.dir, 'bad.sock');
    const proc = await spawnDeviceProcess(sock, ['blk', '--disk-size', String(1 << 20), '--check-driver', report]);
    const ram = createGuestRam([{ base: RAM_BASE, size: 1 << 20, name: 'guest-ram' }], { backing: 'memfd' });
    try {
      const client = await VfioUserClient.connect({ socketPath: sock, guestRam: ram, dma: 'direct' });
      try {
        const p = probeVirtioPci(client);
        const common = p.bars.find((b) => b.index === p.common.bar)!.address + p.common.offset;
        const STATUS = common + 20;
        client.mmioWrite(STATUS, 1, 0);
        expect(client.mmioRead(STATUS, 1) & 0xff).toBe(0);
        client.mmioWrite(STATUS, 1, 1); // ACKNOWLEDGE
        client.mmioWrite(STATUS, 1, 3); // DRIVER
        client.mmioWrite(STATUS, 1, 7); // DRIVER_OK without FEATURES_OK
        client.mmioRead(STATUS, 1);
      } finally {
        await client.close();
      }
      await waitReport(proc, 'disconnect');
      const r1 = readReport(report);
      expect(r1.reason).toBe('disconnect');
      const c = r1.clauses.find((x) => x.clause === 'init.dev-init.driver.1');
      expect(c?.verdict, JSON.stringify(r1.clauses)).toBe('FAIL');
      expect(c?.detail).toMatch(/DRIVER_OK set without FEATURES_OK/);
      expect(r1.summary.FAIL).toBeGreaterThan(0);
    } finally {
      await proc.stop();
      ram.close();
    }
    const r2 = readReport(report);
    expect(r2.reason).toBe('sigterm');
    expect(verdict(r2, 'init.dev-init.driver.1')).toBe('FAIL');
    expect(proc.stderr()).toMatch(/--check-driver \(sigterm\): \d+ PASS, [1-9]\d* FAIL/);
  });
});
