/**
 * vfio-user models: the virtio-blk device in its own process (`virtiokit serve blk --vfio-user`),
 * this process as the VMM (`VfioUserClient`) with the simulated guest driver on top.
 *  - `direct`: DMA_MAP with the guest-RAM memfd — the device maps all of guest RAM;
 *  - `swiotlb`: no DMA_MAP; the device runs with `--swiotlb required` and sees only its bounce
 *    window (BAR 4), which the VMM maps from the region fd; the driver bounces every buffer;
 *  - `message`: DMA_MAP without an fd — the device reads and writes every byte (rings included)
 *    with DMA_READ / DMA_WRITE messages (reference/vfio-user.md §9).
 * The vfio-user modules are loaded lazily, so a broken or missing transport makes these models
 * "unavailable" (with the reason) instead of breaking the whole benchmark.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestRam } from '../../memory/ram.js';
import { native } from '../../native/index.js';
import { DEVICE_QUEUES, QUEUE_SIZE, RAM_BASE, type DmaModel, type ModelSession, type OpenOptions, type SessionSizing } from './models.js';
import type { ModelName } from './scenario.js';

type VfioName = Extract<ModelName, 'direct' | 'swiotlb' | 'message'>;

async function loadVfio(): Promise<{ client: typeof import('../../vfio-user/client.js'); launch: typeof import('../../vfio-user/launch.js') }> {
  const client = await import('../../vfio-user/client.js');
  const launch = await import('../../vfio-user/launch.js');
  return { client, launch };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function vfioModel(name: VfioName): DmaModel {
  return {
    name,
    async unavailable(): Promise<string | undefined> {
      if (!native.available) return `the native addon is not loaded (${native.unavailableReason ?? 'unknown reason'}); vfio-user needs memfd, fd passing and eventfds`;
      try {
        await loadVfio();
      } catch (e) {
        return `the vfio-user transport does not load: ${errText(e)}`;
      }
      return undefined;
    },
    async open(sizing: SessionSizing, opts: OpenOptions = {}): Promise<ModelSession> {
      const { client: C, launch: L } = await loadVfio();
      const dir = await mkdtemp(join(tmpdir(), 'virtiokit-bench-'));
      const socketPath = join(dir, 'blk.sock');
      const args = ['blk', '--disk-size', String(sizing.diskSize), '--queues', String(DEVICE_QUEUES), '--queue-size', String(QUEUE_SIZE), '--no-durable-flush'];
      if (name === 'swiotlb') args.push('--swiotlb', 'required', '--swiotlb-size', String(sizing.windowSize));
      const env: NodeJS.ProcessEnv = { ...process.env };
      if (opts.deviceProfileDir !== undefined) env['NODE_OPTIONS'] = `${env['NODE_OPTIONS'] ?? ''} --cpu-prof --cpu-prof-dir=${opts.deviceProfileDir}`.trim();
      let proc: Awaited<ReturnType<typeof L.spawnDeviceProcess>> | undefined;
      const ram = createGuestRam([{ base: RAM_BASE, size: sizing.ramSize, name: 'guest-ram' }], { backing: 'memfd' });
      try {
        proc = await L.spawnDeviceProcess(socketPath, args, { env });
        const client = await C.VfioUserClient.connect({ socketPath, guestRam: ram, dma: name });
        const p = proc;
        return {
          model: name,
          access: client,
          guestRam: ram.space,
          synchronous: false,
          devicePid: p.pid,
          info: { ramBacking: ram.backing, ramSize: sizing.ramSize, diskSize: sizing.diskSize, deviceArgs: args.join(' '), ...(name === 'swiotlb' ? { windowSize: sizing.windowSize } : {}) },
          messageStats: () => {
            if (name !== 'message') return undefined;
            const s = client.snapshot();
            return { messages: s.dmaReads + s.dmaWrites, bytes: s.dmaBytesRead + s.dmaBytesWritten };
          },
          close: async () => {
            try {
              await client.close();
            } finally {
              await p.stop();
              ram.close();
              await rm(dir, { recursive: true, force: true });
            }
          },
        };
      } catch (e) {
        if (proc !== undefined) await proc.kill();
        ram.close();
        await rm(dir, { recursive: true, force: true });
        const why = proc !== undefined ? ` (device stderr: ${proc.stderr().trim().slice(-500)})` : '';
        throw Object.assign(e instanceof Error ? e : new Error(String(e)), { message: `${name}: ${errText(e)}${why}` });
      }
    },
  };
}

export const DIRECT_MODEL: DmaModel = vfioModel('direct');
export const SWIOTLB_MODEL: DmaModel = vfioModel('swiotlb');
export const MESSAGE_MODEL: DmaModel = vfioModel('message');
