/**
 * Real Linux guests (Debian 6.1 cloud kernel, QEMU 7.2 TCG) against `virtiokit serve blk
 * --vhost-user`: the guest writes a 4 MiB random pattern to /dev/vda with O_DIRECT, reads it back,
 * compares checksums and powers off; the test also checks the raw disk file on the host.
 *
 * Skipped (with the reason printed) when QEMU / the kernel / the initramfs cannot be prepared:
 * scripts/guest-setup.sh installs and caches them when running as root on Debian with network.
 * Variants run one after another; each QEMU run is capped (90 s) and a failure prints the serial
 * log and the back-end log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootGuest, type BootResult, diag, fact, fileSha, prepareGuests, scratch, type Server, startServer, swiotlbPool } from './harness.js';

const env = await prepareGuests();
if (!env.ready) console.log(`SKIP real-guest vhost-user tests: ${env.reason}`);

const timings: string[] = [];

interface Variant {
  serveArgs?: string[];
  device?: string;
  append?: string;
  smp?: number;
  strictBoot?: boolean;
}

/** One server + one guest; returns the boot and the server log. Stops the server. */
async function runVariant(name: string, v: Variant): Promise<{ r: BootResult; server: Server; disk: string }> {
  const s = scratch();
  const server = await startServer(['blk', '--vhost-user', s.sock, '--disk', s.disk, ...(v.serveArgs ?? [])]);
  let r: BootResult | undefined;
  try {
    r = await bootGuest({ env, sock: s.sock, device: v.device ?? '', append: v.append ?? '', smp: v.smp ?? 1, strictBoot: v.strictBoot ?? true });
    await server.stop();
    timings.push(`${name}: ${r.seconds.toFixed(1)} s (guest /init at ${fact(r, 'init', 'at') ?? /init at (\S+)/.exec(r.serial)?.[1] ?? '?'})`);
    return { r, server, disk: s.disk };
  } catch (e) {
    await server.stop();
    throw new Error(`${name}: ${e instanceof Error ? e.message : String(e)}${diag(r, server)}`);
  } finally {
    setTimeout(() => s.cleanup(), 100);
  }
}

function expectPass(name: string, res: { r: BootResult; server: Server; disk: string }): void {
  const { r, server, disk } = res;
  const why = diag(r, server);
  expect(r.timedOut, `${name}: QEMU timed out${why}`).toBe(false);
  expect(r.lines, `${name}: no BLK-TEST PASS${why}`).toContain('BLK-TEST PASS');
  const pattern = /pattern sha256=([0-9a-f]{64})/.exec(r.serial)?.[1];
  expect(pattern, `${name}: no pattern checksum${why}`).toBeDefined();
  // The host file holds exactly what the guest wrote.
  expect(fileSha(disk, 4 * 1024 * 1024), `${name}: host disk checksum${why}`).toBe(pattern);
  expect(server.log(), `${name}: guest errors${why}`).not.toMatch(/guest-error:/);
}

describe.skipIf(!env.ready)('real guests over vhost-user-blk (QEMU 7.2, Linux 6.1, TCG)', () => {
  beforeAll(() => undefined);
  afterAll(() => {
    if (timings.length > 0) console.log(`guest boot times:\n  ${timings.join('\n  ')}`);
  });

  it('default split ring; SeaBIOS drives the disk first, then Linux re-negotiates', { timeout: 180_000 }, async () => {
    const res = await runVariant('default', { strictBoot: false });
    expectPass('default', res);
    expect(fact(res.r, 'virtio-dev', 'INDIRECT')).toBe('1');
    expect(fact(res.r, 'virtio-dev', 'EVENT_IDX')).toBe('1');
    expect(fact(res.r, 'virtio-dev', 'RING_PACKED')).toBe('0');
  });

  it('packed=on with --packed negotiates RING_PACKED', { timeout: 180_000 }, async () => {
    const res = await runVariant('packed', { serveArgs: ['--packed'], device: ',packed=on' });
    expectPass('packed', res);
    expect(fact(res.r, 'virtio-dev', 'RING_PACKED')).toBe('1');
  });

  it('event_idx=off', { timeout: 180_000 }, async () => {
    const res = await runVariant('event_idx=off', { device: ',event_idx=off' });
    expectPass('event_idx=off', res);
    expect(fact(res.r, 'virtio-dev', 'EVENT_IDX')).toBe('0');
  });

  it('indirect_desc=off', { timeout: 180_000 }, async () => {
    const res = await runVariant('indirect_desc=off', { device: ',indirect_desc=off' });
    expectPass('indirect_desc=off', res);
    expect(fact(res.r, 'virtio-dev', 'INDIRECT')).toBe('0');
  });

  it('queue-size=64', { timeout: 180_000 }, async () => {
    const res = await runVariant('queue-size=64', { device: ',queue-size=64' });
    expectPass('queue-size=64', res);
    expect(fact(res.r, 'vda', 'nr_tags')).toBe('64');
  });

  it('queue-size=1024', { timeout: 180_000 }, async () => {
    const res = await runVariant('queue-size=1024', { device: ',queue-size=1024' });
    expectPass('queue-size=1024', res);
    expect(fact(res.r, 'vda', 'nr_tags')).toBe('1024');
  });

  it('two queues on two vCPUs (BLK_MQ), both queues carry requests', { timeout: 180_000 }, async () => {
    const res = await runVariant('2 queues', { serveArgs: ['--queues', '2'], device: ',num-queues=2', smp: 2, append: 'gtest=blkmq' });
    expectPass('2 queues', res);
    expect(fact(res.r, 'virtio-dev', 'BLK_MQ')).toBe('1');
    expect(fact(res.r, 'vda', 'hw_queues')).toBe('2');
    for (const q of [0, 1]) {
      const line = res.r.lines.find((l) => l.includes(`virtio0-req.${q}`));
      expect(line, `irq line of req.${q}${diag(res.r, res.server)}`).toBeDefined();
      const counts = /irq \d+: (\d+) (\d+)/.exec(line!)!;
      expect(Number(counts[1]) + Number(counts[2]), `interrupts on req.${q}`).toBeGreaterThan(0);
    }
  });

  it('the server keeps listening: a second guest gets a fresh session on the same disk', { timeout: 240_000 }, async () => {
    const s = scratch();
    const server = await startServer(['blk', '--vhost-user', s.sock, '--disk', s.disk]);
    let r: BootResult | undefined;
    try {
      for (let i = 0; i < 2; i++) {
        r = await bootGuest({ env, sock: s.sock, strictBoot: true });
        expect(r.lines, `boot ${i}${diag(r, server)}`).toContain('BLK-TEST PASS');
        const pattern = /pattern sha256=([0-9a-f]{64})/.exec(r.serial)![1];
        expect(fileSha(s.disk, 4 * 1024 * 1024)).toBe(pattern);
        await server.waitFor(new RegExp(`(session-end[^]*){${i + 1}}`), 10_000);
      }
      expect(server.log().match(/session-start/g)?.length).toBe(2);
    } finally {
      await server.stop();
      s.cleanup();
    }
  });

  it('vhost-user-rng-pci: /dev/hwrng reads come from `serve rng`', { timeout: 180_000 }, async () => {
    const s = scratch(1);
    const server = await startServer(['rng', '--vhost-user', s.sock]);
    let r: BootResult | undefined;
    try {
      r = await bootGuest({ env, sock: s.sock, deviceSpec: 'vhost-user-rng-pci,chardev=vub0', append: 'gtest=rng', strictBoot: true });
      timings.push(`rng: ${r.seconds.toFixed(1)} s`);
      expect(r.lines, diag(r, server)).toContain('RNG-TEST PASS');
      expect(fact(r, 'virtio-dev', 'id')).toBe('0x0004');
      await server.stop();
      expect(server.log()).toMatch(/[1-9]\d* kicks, [1-9]\d* calls, 0 guest errors/);
    } finally {
      await server.stop();
      s.cleanup();
    }
  });

  describe('bounce path: swiotlb=force iommu=soft + iommu_platform=on (--access-platform)', () => {
    const append = 'swiotlb=force iommu=soft nokaslr';
    const device = ',iommu_platform=on,disable-legacy=on';
    let pool: { start: number; end: number } | undefined;

    it('bounces through the pool (unrestricted back-end) and reports the pool range', { timeout: 180_000 }, async () => {
      const res = await runVariant('bounce', { serveArgs: ['--access-platform'], device, append });
      expectPass('bounce', res);
      expect(fact(res.r, 'virtio-dev', 'ACCESS_PLATFORM')).toBe('1');
      pool = swiotlbPool(res.r);
      expect(pool, `no swiotlb range in the boot log${diag(res.r, res.server)}`).toBeDefined();
    });

    it('--restrict to exactly the pool: every buffer inside, rings mapped separately, no refusal', { timeout: 180_000 }, async () => {
      expect(pool, 'needs the pool from the previous boot').toBeDefined();
      const range = `0x${pool!.start.toString(16)}-0x${pool!.end.toString(16)}`;
      const res = await runVariant('bounce restricted', { serveArgs: ['--access-platform', '--restrict', range], device, append });
      expectPass('bounce restricted', res);
      // The address space held the pool plus small ring areas, nothing else.
      const spaces = res.server.log().split('\n').filter((l) => l.startsWith('address space:'));
      expect(spaces.length).toBeGreaterThan(0);
      const last = spaces[spaces.length - 1]!;
      expect(last).toContain(`[0x${pool!.start.toString(16)}, +0x${(pool!.end - pool!.start).toString(16)})`);
      // Pool + ring areas only: total mapped is the pool plus less than 64 KiB of rings.
      let total = 0;
      for (const m of last.matchAll(/\+0x([0-9a-f]+)\)/g)) total += Number.parseInt(m[1]!, 16);
      expect(total - (pool!.end - pool!.start)).toBeLessThan(65536);
      expect(pool!.end - pool!.start).toBeLessThan(128 * 1024 * 1024);
    });

    it('--restrict without bouncing: the first buffer outside is refused through the choke point', { timeout: 180_000 }, async () => {
      const range = pool !== undefined ? `0x${pool.start.toString(16)}-0x${pool.end.toString(16)}` : '0x1b200000-0x1f200000';
      const s = scratch();
      const server = await startServer(['blk', '--vhost-user', s.sock, '--disk', s.disk, '--restrict', range]);
      let r: BootResult | undefined;
      try {
        const refused = server.waitFor(/guest-error:/, 120_000);
        r = await bootGuest({ env, sock: s.sock, strictBoot: true, abort: refused, timeoutMs: 60_000 });
        await refused;
        expect(server.log()).toMatch(/guest-error: ADDRESS_OUT_OF_SPACE \(queue 0\).*is not inside vhost-user-restricted.*\[basic\.split-vq\.vq-desc-table\.device\.1\]/);
        expect(r.lines).not.toContain('BLK-TEST PASS');
        // Nothing reached the disk.
        expect(fileSha(s.disk, 4096)).toBe(fileSha('/dev/zero', 4096));
      } catch (e) {
        throw new Error(`${e instanceof Error ? e.message : String(e)}${diag(r, server)}`);
      } finally {
        await server.stop();
        s.cleanup();
      }
    });
  });
});

describe.skipIf(env.ready)('real guests (skipped)', () => {
  it(`SKIP: ${env.reason}`, () => {
    expect(env.ready).toBe(false);
  });
});
