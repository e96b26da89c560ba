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
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuestRam } from '../../memory/ram.js';
import { native } from '../../native/index.js';
import { VirtioError } from '../../errors.js';
import { nodeArgsFor } from '../launch.js';
import { DEVICE_QUEUES, QUEUE_SIZE, RAM_BASE, type DmaModel, type ModelSession, type OpenOptions, type SessionSizing } from './models.js';
import type { ModelName } from './scenario.js';

type VfioName = Extract<ModelName, 'direct' | 'swiotlb' | 'message'>;

async function loadVfio(): Promise<{ client: typeof import('../../vfio-user/client.js'); launch: typeof import('../../vfio-user/launch.js') }> {
  const client = await import('../../vfio-user/client.js');
  const launch = await import('../../vfio-user/launch.js');
  return { client, launch };
}

/** The part of a device process handle the models use. */
interface DeviceProc {
  readonly pid: number;
  stderr(): string;
  stop(): Promise<unknown>;
  kill(): Promise<unknown>;
}

/**
 * Start the device process with `--cpu-prof` (V8 refuses --cpu-prof in NODE_OPTIONS, so
 * `spawnDeviceProcess` cannot be used for this): same entry point and readiness line.
 */
async function spawnProfiledDevice(socketPath: string, args: readonly string[], profileDir: string): Promise<DeviceProc> {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const url = new URL(`../../vfio-user/device-main${ext}`, import.meta.url);
  const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profileDir, ...nodeArgsFor(url, [...args, '--vfio-user', socketPath])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new VirtioError('TIMEOUT', `profiled device process did not start listening: ${err}`)), 20000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes(' on vfio-user ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new VirtioError('INTERNAL', `profiled device process exited (${code}) before listening: ${err}`));
    });
  });
  const stopWith = async (sig: NodeJS.Signals): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill(sig);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return { pid: child.pid!, stderr: () => err, stop: () => stopWith('SIGTERM'), kill: () => stopWith('SIGKILL') };
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
      if (opts.queueWorkers === true) args.push('--queue-workers');
      let proc: DeviceProc | undefined;
      const ram = createGuestRam([{ base: RAM_BASE, size: sizing.ramSize, name: 'guest-ram' }], { backing: 'memfd' });
      try {
        proc = opts.deviceProfileDir !== undefined ? await spawnProfiledDevice(socketPath, args, opts.deviceProfileDir) : await L.spawnDeviceProcess(socketPath, args);
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
