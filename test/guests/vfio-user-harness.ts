/**
 * Real-guest harness for vfio-user: prepares QEMU 11 (Debian sid root, run through its own ld.so),
 * the guest kernel and an initramfs (scripts/vfio-user-setup.sh, which reuses scripts/guest-setup.sh
 * for the kernel), starts `virtiokit serve <kind> --vfio-user SOCK` as a device process
 * ({@link spawnDeviceProcess}) and boots QEMU against it with a hard timeout.
 */
import { spawn, execFile } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Outcome of preparing QEMU 11 + guest. */
export interface VfuEnv {
  ready: boolean;
  /** Why the tests are skipped (when not ready). */
  reason: string;
  /** Directory with `qemu-system-x86_64` (wrapper), `vmlinuz`, `initramfs.cpio`. */
  dir: string;
  /** The setup script's output (what it skipped, timings). */
  setupLog: string;
  setupSeconds: number;
}

/** Run scripts/vfio-user-setup.sh (installs/caches when it can); never throws. */
export async function prepareVfioUserGuests(): Promise<VfuEnv> {
  const cache = process.env['VIRTIOKIT_GUEST_CACHE'] ?? '/var/cache/virtiokit-guests';
  const dir = join(cache, 'vfio-user');
  const no = (reason: string): VfuEnv => ({ ready: false, reason, dir, setupLog: '', setupSeconds: 0 });
  if (process.env['VIRTIOKIT_SKIP_GUESTS'] === '1') return no('VIRTIOKIT_SKIP_GUESTS=1');
  if (process.platform !== 'linux' || process.arch !== 'x64') return no(`needs Linux on x86-64 (this is ${process.platform}/${process.arch})`);
  if (!native.available) return no(`native addon not loaded (${native.unavailableReason ?? '?'})`);
  const t0 = Date.now();
  const out = await new Promise<{ code: number; text: string }>((res) => {
    // debootstrap + QEMU download on a cold cache: ~1-3 min; allow 20.
    execFile('bash', [join(ROOT, 'scripts/vfio-user-setup.sh')], { timeout: 1_200_000, env: { ...process.env, VIRTIOKIT_GUEST_CACHE: cache } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
      res({ code, text: `${stdout}${stderr}` });
    });
  });
  const setupSeconds = (Date.now() - t0) / 1000;
  const ready = /^READY (.*)$/m.exec(out.text);
  if (out.code === 0 && ready !== null) return { ready: true, reason: '', dir: ready[1]!.trim(), setupLog: out.text, setupSeconds };
  const un = /^UNAVAILABLE (.*)$/m.exec(out.text);
  const skipped = out.text.split('\n').filter((l) => l.startsWith('SKIPPED ')).join('; ');
  const reason = un !== null ? un[1]! : `vfio-user-setup.sh failed (exit ${out.code}): ${out.text.trim().split('\n').slice(-3).join(' | ')}`;
  return { ready: false, reason: skipped !== '' ? `${reason} (${skipped})` : reason, dir, setupLog: out.text, setupSeconds };
}

/** A scratch directory with a zeroed disk image and a socket path. */
export function vfuScratch(diskMiB = 64): { dir: string; disk: string; sock: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'vk-vfu-'));
  const disk = join(dir, 'disk.raw');
  writeFileSync(disk, '');
  const fd = openSync(disk, 'r+');
  ftruncateSync(fd, diskMiB * 1024 * 1024);
  closeSync(fd);
  return { dir, disk, sock: join(dir, 'vfu.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Guest RAM backends: memfd shared (QEMU passes the fd → mmap DMA) or anonymous (no fd → message DMA). */
export type RamKind = 'memfd-shared' | 'anonymous';

import { acquireQemuLock } from './qemu-lock.js';
export { QEMU_LOCK, acquireQemuLock } from './qemu-lock.js';

/** Options of one QEMU 11 boot. */
export interface VfuBootOptions {
  env: VfuEnv;
  sock: string;
  ram: RamKind;
  /** Kernel parameters for /init (`vtest=blk`). */
  append: string;
  /** `-boot strict=on`: SeaBIOS leaves the device alone (default true). */
  strictBoot?: boolean;
  /** Hard limit for the QEMU process (default 90 s). */
  timeoutMs?: number;
}

/** Result of one boot. */
export interface VfuBootResult {
  serial: string;
  code: number | null;
  seconds: number;
  timedOut: boolean;
  /** `GUEST: ...` lines without the prefix. */
  lines: string[];
  args: string[];
}

/** The `-device` JSON for a vfio-user-pci device on `sock` (QEMU 11 only accepts the JSON form). */
export function vfioUserDeviceJson(sock: string): string {
  return JSON.stringify({ driver: 'vfio-user-pci', id: 'vfu0', socket: { type: 'unix', path: sock } });
}

/** Boot the test guest against the vfio-user socket with QEMU 11 (TCG). */
export async function bootVfuGuest(o: VfuBootOptions): Promise<VfuBootResult> {
  const ram =
    o.ram === 'memfd-shared'
      ? ['-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-machine', 'q35,memory-backend=mem']
      : ['-object', 'memory-backend-ram,id=mem,size=512M', '-machine', 'q35,memory-backend=mem'];
  const args = [
    '-accel', 'tcg', '-m', '512M', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    ...ram,
    '-device', vfioUserDeviceJson(o.sock),
    ...(o.strictBoot !== false ? ['-boot', 'strict=on'] : []),
    '-kernel', join(o.env.dir, 'vmlinuz'), '-initrd', join(o.env.dir, 'initramfs.cpio'),
    '-append', `console=ttyS0 panic=-1 loglevel=4 ${o.append}`.trim(),
  ];
  const release = await acquireQemuLock();
  const t0 = Date.now();
  const proc = spawn(join(o.env.dir, 'qemu-system-x86_64'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  proc.stdout.on('data', (b: Buffer) => (serial += b.toString()));
  proc.stderr.on('data', (b: Buffer) => (serial += b.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, o.timeoutMs ?? 90_000);
  const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  clearTimeout(timer);
  release();
  const lines = serial.split('\n').filter((l) => l.startsWith('GUEST:')).map((l) => l.slice(7).trim());
  return { serial, code, seconds: (Date.now() - t0) / 1000, timedOut, lines, args };
}

/** Value of `key=value` on the first GUEST line starting with `prefix`. */
export function guestFact(r: VfuBootResult, prefix: string, key: string): string | undefined {
  for (const l of r.lines) {
    if (!l.startsWith(prefix)) continue;
    const m = new RegExp(`(?:^|\\s)${key}=(\\S*)`).exec(l);
    if (m !== null) return m[1];
  }
  return undefined;
}

/** Serial log + device-process stderr, for failure messages. */
export function vfuDiag(r: VfuBootResult | undefined, deviceLog: string): string {
  return (
    `\n--- QEMU 11 serial (${r?.seconds.toFixed(1) ?? '?'} s, exit ${r?.code}, timedOut ${r?.timedOut}) ---\n${r?.serial ?? '(no boot)'}` +
    `\n--- device process stderr ---\n${deviceLog}\n`
  );
}
