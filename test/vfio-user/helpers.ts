/** Shared rig for the vfio-user device-process tests: spawn a device, connect a client, bring the driver up. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestRam, type GuestRam } from '../../src/memory/ram.js';
import { VirtioPciDriver, type VirtioPciDriverOptions } from '../../src/driver/driver.js';
import { VfioUserClient, type ClientDmaModel } from '../../src/vfio-user/client.js';
import { spawnDeviceProcess, type DeviceProcess } from '../../src/vfio-user/launch.js';

/** Guest RAM base (page aligned, above 0). */
export const RAM_BASE = 0x10_0000;
/** memfd name createGuestRam gives region 'guest-ram'. */
export const GUEST_RAM_MEMFD = 'virtiokit-guest-ram';

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'vku-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Rig {
  proc: DeviceProcess;
  ram: GuestRam;
  client: VfioUserClient;
  driver: VirtioPciDriver;
  /** Close the driver, client, process (SIGTERM) and RAM. */
  close(): Promise<void>;
}

/** Connect a client + driver to an already running device process. */
export async function attach(proc: DeviceProcess, dma: ClientDmaModel, ramSize = 8 * 1024 * 1024, driverOpts: Partial<VirtioPciDriverOptions> = {}, ram?: GuestRam): Promise<Omit<Rig, 'proc'> & { detach(): Promise<void> }> {
  const r = ram ?? createGuestRam([{ base: RAM_BASE, size: ramSize, name: 'guest-ram' }], { backing: 'memfd' });
  const client = await VfioUserClient.connect({ socketPath: proc.socketPath, guestRam: r, dma });
  let driver: VirtioPciDriver;
  try {
    driver = new VirtioPciDriver(client, { guestRam: r.space, queueSize: 64, ...driverOpts }).init();
  } catch (e) {
    await client.close();
    throw e;
  }
  const detach = async (): Promise<void> => {
    try {
      driver.close();
    } catch {
      /* device may be gone */
    }
    await client.close();
  };
  return {
    ram: r,
    client,
    driver,
    detach,
    close: async () => {
      await detach();
      r.close();
    },
  };
}

/** Spawn `serve` for `args` on a fresh socket and bring a driver up on it. */
export async function startRig(dir: string, args: string[], dma: ClientDmaModel, driverOpts: Partial<VirtioPciDriverOptions> = {}): Promise<Rig> {
  const sock = join(dir, `dev-${Math.random().toString(36).slice(2, 8)}.sock`);
  const proc = await spawnDeviceProcess(sock, args);
  try {
    const a = await attach(proc, dma, 8 * 1024 * 1024, driverOpts);
    return {
      proc,
      ram: a.ram,
      client: a.client,
      driver: a.driver,
      close: async () => {
        await a.close();
        await proc.stop();
      },
    };
  } catch (e) {
    await proc.kill();
    throw e;
  }
}
