/**
 * Real QEMU 11 (Debian sid, `-device vfio-user-pci`) + a real Linux guest against virtiokit's
 * vfio-user device process (`virtiokit serve <kind> --vfio-user SOCK`, spawned with
 * spawnDeviceProcess). The guest is unmodified: Debian's virtio_pci / virtio_blk / virtio_rng.
 *
 * - blk with mmap DMA: guest RAM is `memory-backend-memfd,share=on`, QEMU passes the memfd in
 *   DMA_MAP and the device works on guest memory directly;
 * - blk with message DMA: guest RAM is `memory-backend-ram` (no fd), every ring and buffer access
 *   is a DMA_READ / DMA_WRITE message to QEMU;
 * - rng through /dev/hwrng;
 * - SWIOTLB policies with a guest that does not know VIRTIO_F_SWIOTLB (bit 27): `preferred` → the
 *   driver declines the bit and works with direct DMA; `required` → FEATURES_OK is refused, the
 *   driver's probe fails cleanly, the device process stays up and says which feature was refused.
 *
 * Skipped (with the reason printed) when scripts/vfio-user-setup.sh cannot prepare QEMU 11 and the
 * kernel (it needs root + Debian + the mirror once; afterwards the cache is enough). Each QEMU run
 * is capped at 90 s; a failure prints the serial log and the device process's stderr.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { fileSha } from './harness.js';
import { bootVfuGuest, guestFact, prepareVfioUserGuests, type RamKind, type VfuBootResult, vfuDiag, vfuScratch } from './vfio-user-harness.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';
import { native } from '../../src/native/index.js';

const env = await prepareVfioUserGuests();
if (!env.ready) console.log(`SKIP real-guest vfio-user tests (QEMU 11): ${env.reason}`);
else if (env.setupSeconds > 10) console.log(`vfio-user guest setup took ${env.setupSeconds.toFixed(1)} s:\n${env.setupLog.trim()}`);

const timings: string[] = [];
const PATTERN_MIB = 4;

interface Run {
  r: VfuBootResult;
  dev: DeviceProcess;
  /** Device stderr after QEMU exited (the process is still running). */
  devLog: string;
  /** Exit state of the device process when QEMU had exited: null = still running. */
  devAliveAfterGuest: boolean;
  /** The device's socket accepted a new connection after QEMU exited. */
  stillListening: boolean;
  disk: string;
  /** sha256 of the first PATTERN_MIB of the disk file, taken before the scratch dir is removed. */
  diskSha: string | undefined;
  why: string;
}

/** Start a device process, boot one guest against it, stop the device; returns everything. */
async function runGuest(name: string, serveArgs: string[], ram: RamKind, append: string, strictBoot = true): Promise<Run> {
  const s = vfuScratch();
  let dev: DeviceProcess | undefined;
  let r: VfuBootResult | undefined;
  try {
    dev = await spawnDeviceProcess(s.sock, [...serveArgs.map((a) => (a === '$DISK' ? s.disk : a))], { timeoutMs: 30_000 });
    r = await bootVfuGuest({ env, sock: s.sock, ram, append, strictBoot });
    // Let the device process log the disconnect before we look.
    const gone = Date.now();
    while (!dev.stderr().includes('client gone') && Date.now() - gone < 3000 && dev.child.exitCode === null) await new Promise((res) => setTimeout(res, 50));
    const devAliveAfterGuest = dev.child.exitCode === null && dev.child.signalCode === null;
    let stillListening = false;
    try {
      native.close(native.connectUnix(s.sock));
      stillListening = true;
    } catch {
      /* not listening */
    }
    const devLog = dev.stderr();
    await dev.stop();
    const at = guestFact(r, 'init', 'at') ?? '?';
    timings.push(`${name}: ${r.seconds.toFixed(1)} s QEMU start to exit, guest /init at ${at} s`);
    let diskSha: string | undefined;
    try {
      diskSha = fileSha(s.disk, PATTERN_MIB * 1024 * 1024);
    } catch {
      diskSha = undefined; // no disk for this device kind
    }
    return { r, dev, devLog, devAliveAfterGuest, stillListening, disk: s.disk, diskSha, why: vfuDiag(r, devLog) };
  } catch (e) {
    await dev?.stop();
    throw new Error(`${name}: ${e instanceof Error ? e.message : String(e)}${vfuDiag(r, dev?.stderr() ?? '')}`);
  } finally {
    s.cleanup(); // QEMU and the device process have exited
  }
}

function expectCleanExit(name: string, run: Run): void {
  expect(run.r.timedOut, `${name}: QEMU timed out${run.why}`).toBe(false);
  expect(run.r.code, `${name}: QEMU exit code${run.why}`).toBe(0);
  expect(run.r.lines.some((l) => l.startsWith('done at=')), `${name}: guest /init did not finish${run.why}`).toBe(true);
  expect(run.devAliveAfterGuest, `${name}: device process died${run.why}`).toBe(true);
  expect(run.devLog, `${name}: guest errors${run.why}`).not.toMatch(/guest-error:/);
}

function expectBlkPass(name: string, run: Run): void {
  expectCleanExit(name, run);
  expect(run.r.lines, `${name}: no BLK-TEST PASS${run.why}`).toContain('BLK-TEST PASS');
  expect(guestFact(run.r, 'pci', 'driver'), `${name}: virtio-pci did not bind${run.why}`).toBe('virtio-pci');
  expect(guestFact(run.r, 'virtio-dev', 'driver'), `${name}: virtio_blk did not bind${run.why}`).toBe('virtio_blk');
  const pattern = /pattern sha256=([0-9a-f]{64})/.exec(run.r.serial)?.[1];
  expect(pattern, `${name}: no pattern checksum${run.why}`).toBeDefined();
  // The disk file holds exactly what the guest wrote.
  expect(run.diskSha, `${name}: host disk checksum${run.why}`).toBe(pattern);
}

/** `DMA_READ n / b B` counters from the device's disconnect line. */
function dmaCounters(log: string): { maps: number; withFd: number; reads: number; writes: number } {
  const m = /DMA_MAP (\d+), (\d+) with an fd; DMA_READ (\d+) \/ \d+ B, DMA_WRITE (\d+)/.exec(log);
  if (m === null) return { maps: -1, withFd: -1, reads: -1, writes: -1 };
  return { maps: Number(m[1]), withFd: Number(m[2]), reads: Number(m[3]), writes: Number(m[4]) };
}

describe.skipIf(!env.ready)('real guests over vfio-user (QEMU 11, Linux, TCG)', () => {
  afterAll(() => {
    if (timings.length > 0) console.log(`vfio-user guest boot times:\n  ${timings.join('\n  ')}`);
  });

  it('[init.dev-init.driver.1] virtio-blk over virtio-pci with mmap DMA (memfd guest RAM, share=on): SeaBIOS drives the disk, then Linux writes and reads a pattern', { timeout: 150_000 }, async () => {
    const run = await runGuest('blk mmap DMA (+SeaBIOS)', ['blk', '--disk', '$DISK'], 'memfd-shared', `vtest=blk vsize=${PATTERN_MIB}`, false);
    expectBlkPass('blk mmap', run);
    // Two drivers negotiated: SeaBIOS (ACKNOWLEDGE|DRIVER in one write, then DMA_MAP churn under its
    // running queue) and Linux after resetting the device.
    expect(run.devLog.match(/features negotiated: /g)?.length, `SeaBIOS + Linux negotiations${run.why}`).toBe(2);
    expect(guestFact(run.r, 'virtio-dev', 'VERSION_1')).toBe('1');
    const c = dmaCounters(run.devLog);
    expect(c.withFd, `guest RAM should arrive with an fd${run.why}`).toBeGreaterThan(0);
    // Direct DMA: no ring or buffer access went through messages.
    expect(c.reads + c.writes, `mmap DMA used DMA_READ/WRITE messages${run.why}`).toBe(0);
  });

  it('virtio-blk with message DMA (anonymous guest RAM, no fd): SeaBIOS then Linux, DMA_READ / DMA_WRITE carry the rings and the data', { timeout: 150_000 }, async () => {
    const run = await runGuest('blk message DMA (+SeaBIOS)', ['blk', '--disk', '$DISK'], 'anonymous', `vtest=blk vsize=${PATTERN_MIB}`, false);
    expectBlkPass('blk message DMA', run);
    expect(run.devLog.match(/features negotiated: /g)?.length, `SeaBIOS + Linux negotiations${run.why}`).toBe(2);
    const c = dmaCounters(run.devLog);
    expect(c.withFd, `anonymous RAM must not come with an fd${run.why}`).toBe(0);
    expect(c.reads, `no DMA_READ messages${run.why}`).toBeGreaterThan(0);
    expect(c.writes, `no DMA_WRITE messages${run.why}`).toBeGreaterThan(0);
  });

  it('virtio-rng: the guest reads varying, non-zero bytes from /dev/hwrng', { timeout: 150_000 }, async () => {
    const run = await runGuest('rng', ['rng'], 'memfd-shared', 'vtest=rng');
    expectCleanExit('rng', run);
    expect(guestFact(run.r, 'virtio-dev', 'driver'), `virtio_rng did not bind${run.why}`).toBe('virtio_rng');
    expect(guestFact(run.r, 'rng current', 'current') ?? '', `hwrng is not virtio_rng${run.why}`).toMatch(/^virtio_rng/);
    const a = guestFact(run.r, 'rng a', 'a') ?? '';
    const b = guestFact(run.r, 'rng b', 'b') ?? '';
    expect(a, `first read${run.why}`).toMatch(/^[0-9a-f]{64}$/);
    expect(b, `second read${run.why}`).toMatch(/^[0-9a-f]{64}$/);
    expect(a, `all-zero bytes${run.why}`).not.toMatch(/^0+$/);
    expect(a, `two reads returned the same bytes${run.why}`).not.toBe(b);
    expect(guestFact(run.r, 'rng bulk', 'bulk'), `bulk read${run.why}`).toBe('4096');
  });

  it('[rfc-swiotlb.pci.device.1] --swiotlb preferred: an unmodified guest declines bit 27 and works with direct DMA', { timeout: 150_000 }, async () => {
    const run = await runGuest('blk swiotlb=preferred', ['blk', '--disk', '$DISK', '--swiotlb', 'preferred'], 'memfd-shared', `vtest=blk vsize=${PATTERN_MIB}`);
    expectBlkPass('swiotlb preferred', run);
    expect(guestFact(run.r, 'virtio-dev', 'SWIOTLB'), `the guest accepted bit 27${run.why}`).toBe('0');
    expect(run.devLog, `FEATURES_OK refused${run.why}`).not.toMatch(/FEATURES_OK refused/);
    expect(run.devLog, `no negotiation line${run.why}`).toMatch(/features negotiated: /);
    expect(dmaCounters(run.devLog).withFd).toBeGreaterThan(0);
  });

  it('[rfc-swiotlb.feature.device.1] [basic.feature-bits.device.2] --swiotlb required: FEATURES_OK is refused, the guest probe fails cleanly, the device process stays up and names the feature', { timeout: 150_000 }, async () => {
    const run = await runGuest('blk swiotlb=required', ['blk', '--disk', '$DISK', '--swiotlb', 'required'], 'memfd-shared', 'vtest=boot');
    expectCleanExit('swiotlb required', run);
    // virtio-pci binds the PCI function; the virtio_blk driver's probe fails at FEATURES_OK.
    expect(guestFact(run.r, 'pci', 'driver'), `virtio-pci did not bind${run.why}`).toBe('virtio-pci');
    expect(guestFact(run.r, 'virtio-dev', 'driver'), `virtio_blk bound although FEATURES_OK was refused${run.why}`).toBe('none');
    expect(run.r.serial, `no probe failure in the guest log${run.why}`).toMatch(/refuses features|probe.*failed|failed.*probe/i);
    expect(run.r.serial, `the guest got a disk${run.why}`).not.toMatch(/virtio_blk virtio\d+: \[vda\]/);
    expect(run.devLog, `device did not say why${run.why}`).toMatch(/FEATURES_OK refused: .*SWIOTLB/);
    expect(run.stillListening, `device process no longer accepts clients${run.why}`).toBe(true);
    expect(run.devLog).not.toMatch(/features negotiated: /);
  });
});
