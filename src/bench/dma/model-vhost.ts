/**
 * vhost-user models: the same TypeScript front-end (`vhost-driver.ts`: VhostUserFrontend +
 * SplitDriverQueue over memfd guest RAM, kick eventfd writes, call eventfd polled) drives a
 * vhost-user-blk back-end process, either
 *  - `vhost-qsd`: qemu-storage-daemon (QEMU's libvhost-user export), or
 *  - `vhost-ours`: virtiokit's own back-end, `virtiokit serve blk --vhost-user SOCK --disk FILE`.
 *
 * Both serve the same kind of RAM disk: a raw file of the session's disk size on tmpfs
 * (/dev/shm when present), read and written through the page cache — qemu-storage-daemon with
 * `driver=file,cache.direct=off` (its default aio=threads pool), ours with its file backend
 * (Node's libuv pool). `driver=null-co` would not move any data, so it is not used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { constants, statSync } from 'node:fs';
import { access, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { VirtioError } from '../../errors.js';
import { createGuestRam } from '../../memory/ram.js';
import { native } from '../../native/index.js';
import { nodeArgsFor } from '../launch.js';
import { DEVICE_QUEUES, QUEUE_SIZE, RAM_BASE, type DmaModel, type ModelSession, type OpenOptions, type OwnDriver, type SessionSizing } from './models.js';
import type { DriverConfig, ModelName } from './scenario.js';
import { VhostBenchDriver } from './vhost-driver.js';

type VhostName = Extract<ModelName, 'vhost-qsd' | 'vhost-ours'>;

/** The qemu-storage-daemon executable name looked up in PATH (override: $VIRTIOKIT_QSD). */
export const QSD_BINARY = 'qemu-storage-daemon';

/** Absolute path of qemu-storage-daemon, or undefined when not installed. */
export async function findQsd(): Promise<string | undefined> {
  const env = process.env['VIRTIOKIT_QSD'];
  const cands = env !== undefined && env !== '' ? [env] : (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, QSD_BINARY));
  for (const c of cands) {
    try {
      await access(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

let qsdVersionCache: string | undefined;
function qsdVersion(bin: string): string {
  if (qsdVersionCache === undefined) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 });
    qsdVersionCache = (r.stdout ?? '').split('\n')[0]?.trim() || 'unknown';
  }
  return qsdVersionCache;
}

/** Directory for the disk files: tmpfs (/dev/shm) when writable, else the temp dir. */
async function diskDir(): Promise<string> {
  try {
    await access('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** A back-end process. */
interface BackendProc {
  readonly pid: number;
  stderr(): string;
  stop(): Promise<number | null>;
}

function watchProc(child: ChildProcess, what: string, ready: (err: string) => boolean, timeoutMs = 20_000): Promise<BackendProc> {
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 64 * 1024) err = err.slice(-32 * 1024);
  });
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  const handle: BackendProc = { pid: child.pid!, stderr: () => err, stop };
  return new Promise<BackendProc>((resolve, reject) => {
    let done = false;
    const finish = (e?: Error): void => {
      if (done) return;
      done = true;
      clearInterval(tick);
      clearTimeout(timer);
      if (e === undefined) resolve(handle);
      else void stop().then(() => reject(e));
    };
    const timer = setTimeout(() => finish(new VirtioError('TIMEOUT', `${what} did not become ready within ${timeoutMs} ms: ${err.trim().slice(-500)}`)), timeoutMs);
    const tick = setInterval(() => {
      if (ready(err)) finish();
    }, 10);
    child.once('error', (e) => finish(new VirtioError('INTERNAL', `could not start ${what}: ${e.message}`, { cause: e })));
    void exited.then((code) => finish(new VirtioError('INTERNAL', `${what} exited (${code}) before it was ready: ${err.trim().slice(-500)}`)));
  });
}

function isSocket(p: string): boolean {
  try {
    return statSync(p).isSocket();
  } catch {
    return false;
  }
}

/** Spawn qemu-storage-daemon exporting `disk` as vhost-user-blk on `sock`. */
function spawnQsd(bin: string, disk: string, sock: string): { args: string[]; proc: Promise<BackendProc> } {
  const args = [
    '--blockdev',
    `driver=file,node-name=disk0,filename=${disk},cache.direct=off`,
    '--export',
    `type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=${sock},writable=on,num-queues=${DEVICE_QUEUES}`,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  // Ready once the listening socket exists (qemu-storage-daemon prints nothing).
  return { args, proc: watchProc(child, 'qemu-storage-daemon', () => isSocket(sock)) };
}

/** Spawn `virtiokit serve blk --vhost-user sock --disk disk` (tsx from sources, or dist). */
function spawnOurs(disk: string, sock: string, profileDir: string | undefined): { args: string[]; proc: Promise<BackendProc> } {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const url = new URL(`../../vfio-user/device-main${ext}`, import.meta.url); // runs `virtiokit serve <args>`
  const args = ['blk', '--vhost-user', sock, '--disk', disk, '--queues', String(DEVICE_QUEUES), '--queue-size', String(QUEUE_SIZE)];
  // V8 refuses --cpu-prof in NODE_OPTIONS: it goes on the command line.
  const prof = profileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const child = spawn(process.execPath, [...prof, ...nodeArgsFor(url, args)], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { args: ['serve', ...args], proc: watchProc(child, 'the virtiokit vhost-user back-end', (err) => err.includes(' listening on ')) };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function vhostModel(name: VhostName): DmaModel {
  return {
    name,
    async unavailable(): Promise<string | undefined> {
      if (!native.available) return `the native addon is not loaded (${native.unavailableReason ?? 'unknown reason'}); vhost-user needs memfd, fd passing and eventfds`;
      if (name === 'vhost-qsd' && (await findQsd()) === undefined) {
        return `${QSD_BINARY} is not installed (not in PATH; Debian/Ubuntu: apt install qemu-system-common, Fedora: qemu-storage-daemon; or set VIRTIOKIT_QSD to its path)`;
      }
      return undefined;
    },
    async open(sizing: SessionSizing, opts: OpenOptions = {}): Promise<ModelSession> {
      const dir = await mkdtemp(join(tmpdir(), 'virtiokit-vhost-'));
      const sock = join(dir, 'blk.sock');
      const disk = join(await diskDir(), `virtiokit-bench-${process.pid}-${name}.raw`);
      let proc: BackendProc | undefined;
      const ram = createGuestRam([{ base: RAM_BASE, size: sizing.ramSize, name: 'guest-ram' }], { backing: 'memfd' });
      const cleanup = async (): Promise<void> => {
        ram.close();
        await rm(dir, { recursive: true, force: true });
        await rm(disk, { force: true });
      };
      try {
        await writeFile(disk, new Uint8Array(0));
        await truncate(disk, sizing.diskSize);
        let spawned: { args: string[]; proc: Promise<BackendProc> };
        let extra: Record<string, string> = {};
        if (name === 'vhost-qsd') {
          const bin = await findQsd();
          if (bin === undefined) throw new VirtioError('NATIVE_UNAVAILABLE', `${QSD_BINARY} is not installed`);
          spawned = spawnQsd(bin, disk, sock);
          extra = { backend: bin, backendVersion: qsdVersion(bin) };
        } else {
          spawned = spawnOurs(disk, sock, opts.deviceProfileDir);
          extra = { backend: 'virtiokit serve --vhost-user' };
        }
        proc = await spawned.proc;
        const p = proc;
        let current: VhostBenchDriver | undefined;
        return {
          model: name,
          access: undefined,
          guestRam: ram.space,
          synchronous: false,
          devicePid: p.pid,
          info: { ramBacking: ram.backing, ramSize: sizing.ramSize, diskSize: sizing.diskSize, disk, diskOnTmpfs: disk.startsWith('/dev/shm/'), deviceArgs: spawned.args.join(' '), ...extra },
          messageStats: () => undefined,
          openOwnDriver: async (cfg: DriverConfig): Promise<OwnDriver> => {
            current = await VhostBenchDriver.open({ socketPath: sock, ram, cfg, queueSize: QUEUE_SIZE });
            return current;
          },
          close: async () => {
            try {
              await current?.close();
            } finally {
              await p.stop();
              await cleanup();
            }
          },
        };
      } catch (e) {
        if (proc !== undefined) await proc.stop();
        await cleanup();
        throw Object.assign(e instanceof Error ? e : new Error(String(e)), { message: `${name}: ${errText(e)}` });
      }
    },
  };
}

/** qemu-storage-daemon behind the vhost-user front-end. */
export const VHOST_QSD_MODEL: DmaModel = vhostModel('vhost-qsd');
/** virtiokit's own vhost-user back-end behind the same front-end. */
export const VHOST_OURS_MODEL: DmaModel = vhostModel('vhost-ours');
