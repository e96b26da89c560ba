/**
 * The real Linux virtio_pci + virtio_blk drivers (QEMU 11, `-device vfio-user-pci`) judged by the
 * device: `virtiokit serve blk --vfio-user SOCK --check-driver REPORT.json` records every register
 * access the driver makes through QEMU, the status sequence, features, queue setup and buffer
 * addresses, and writes a report against the driver-side clauses on reset, disconnect and SIGTERM.
 *
 * The test asserts that the report was produced with driver-side verdicts; what Linux gets is a
 * finding, printed (a FAIL from Linux is not a test failure). The report is copied to
 * `.ci-out/conformance/linux-driver-report.json`. Uses the vfio-user guest harness
 * (vfio-user-harness.ts); skipped with the reason when QEMU 11 / the sid root are not available.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { judgedClauses } from '../../src/conformance/driver-judge.js';
import type { DriverCheckReport } from '../../src/conformance/driver-watch.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';
import { bootVfuGuest, guestFact, prepareVfioUserGuests, type VfuBootResult, vfuDiag, vfuScratch } from './vfio-user-harness.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = join(ROOT, '.ci-out', 'conformance');

const env = await prepareVfioUserGuests();
if (!env.ready) console.log(`SKIP Linux driver report (QEMU 11 vfio-user guest): ${env.reason}`);

describe.runIf(env.ready)('Linux virtio-pci driver judged by serve --check-driver (QEMU 11, vfio-user)', () => {
  it('[init.dev-init.driver.1][basic.feature-bits.driver.1][init.dev-init.driver.4][pci.common-cfg.driver.4] the report holds driver-side verdicts for the Linux driver', { timeout: 150_000 }, async () => {
    const s = vfuScratch();
    const report = join(s.dir, 'linux-driver.json');
    let dev: DeviceProcess | undefined;
    let r: VfuBootResult | undefined;
    let devLog = '';
    try {
      dev = await spawnDeviceProcess(s.sock, ['blk', '--disk', s.disk, '--check-driver', report], { timeoutMs: 30_000 });
      r = await bootVfuGuest({ env, sock: s.sock, ram: 'memfd-shared', append: 'vtest=blk vsize=4' });
      const until = Date.now() + 5000;
      while (!dev.stderr().includes('--check-driver (disconnect)') && Date.now() < until && dev.child.exitCode === null) await new Promise((res) => setTimeout(res, 50));
      await dev.stop(); // SIGTERM: the report is written once more
      devLog = dev.stderr();
    } catch (e) {
      await dev?.stop();
      s.cleanup();
      throw new Error(`${e instanceof Error ? e.message : String(e)}${vfuDiag(r, dev?.stderr() ?? '')}`);
    }
    const diag = vfuDiag(r, devLog);
    try {
      expect(r.timedOut, `QEMU timed out${diag}`).toBe(false);
      expect(existsSync(report), `no --check-driver report was written${diag}`).toBe(true);
      const rep = JSON.parse(readFileSync(report, 'utf8')) as DriverCheckReport;
      mkdirSync(OUT, { recursive: true });
      copyFileSync(report, join(OUT, 'linux-driver-report.json'));
      expect(rep.kind).toBe('virtiokit-driver-check');
      expect(rep.clauses.map((c) => c.clause).sort()).toEqual(judgedClauses('pci').sort());
      // The Linux driver really drove the device: a session reached DRIVER_OK and notified queue 0.
      const ran = rep.sessions.find((x) => x.statusSequence.includes('DRIVER_OK'));
      expect(ran, `no session reached DRIVER_OK: ${JSON.stringify(rep.sessions)}${diag}`).toBeDefined();
      expect(ran!.notifies, `the Linux driver never notified${diag}`).toBeGreaterThan(0);
      expect(rep.summary.PASS + rep.summary.FAIL, 'no observed driver-side verdict').toBeGreaterThan(0);
      const lines = [
        `Linux driver report (${rep.reason}, ${rep.device}; guest ${r.lines.find((l) => l.startsWith('BLK-TEST')) ?? 'BLK-TEST line missing'}, Linux virtio features ${guestFact(r, 'virtio-dev', 'INDIRECT') !== undefined ? `INDIRECT=${guestFact(r, 'virtio-dev', 'INDIRECT')} EVENT_IDX=${guestFact(r, 'virtio-dev', 'EVENT_IDX')}` : '?'}): ${rep.summary.PASS} PASS, ${rep.summary.FAIL} FAIL, ${rep.summary.SKIP} SKIP`,
        ...rep.clauses.map((c) => `  ${c.verdict.padEnd(5)} ${c.clause}: ${c.detail}`),
        `  sessions: ${rep.sessions.map((x) => `#${x.index} ${x.statusSequence} features ${x.featuresAccepted || '?'} queues ${x.queues.map((q) => `${q.index}:size ${q.size} notifies ${q.notifies}${q.usedIdx !== undefined ? ` used ${q.usedIdx}` : ''}`).join(',')}`).join(' | ')}`,
        `  features offered ${rep.featuresOffered}; buffer addresses sampled ${rep.swiotlb.bufferAddressesSampled}; guest errors ${rep.guestErrors.length}${rep.guestErrors.length > 0 ? `: ${rep.guestErrors.slice(0, 3).join('; ')}` : ''}`,
      ];
      console.log(lines.join('\n'));
    } finally {
      s.cleanup();
    }
  });
});
