/**
 * Real-guest harness: prepares QEMU + a Debian kernel + the busybox initramfs (scripts/guest-setup.sh),
 * runs `virtiokit serve blk --vhost-user` as a child process, boots QEMU (TCG) against it with a hard
 * timeout, and returns the serial log and the back-end's log.
 */
import { acquireQemuLock } from './qemu-lock.js';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Outcome of preparing the guest environment. */
export interface GuestEnv {
  ready: boolean;
  /** Why the guest tests are skipped (when not ready). */
  reason: string;
  cache: string;
}

/** Run scripts/guest-setup.sh (installs/caches when it can); never throws. */
export async function prepareGuests(): Promise<GuestEnv> {
  const cache = process.env['VIRTIOKIT_GUEST_CACHE'] ?? '/var/cache/virtiokit-guests';
  if (process.env['VIRTIOKIT_SKIP_GUESTS'] === '1') return { ready: false, reason: 'VIRTIOKIT_SKIP_GUESTS=1', cache };
  if (process.platform !== 'linux') return { ready: false, reason: `vhost-user needs Linux (this is ${process.platform})`, cache };
  if (!native.available) return { ready: false, reason: `native addon not loaded (${native.unavailableReason ?? '?'})`, cache };
  const out = await new Promise<{ code: number; text: string }>((res) => {
    execFile('bash', [join(ROOT, 'scripts/guest-setup.sh')], { timeout: 600_000, env: { ...process.env, VIRTIOKIT_GUEST_CACHE: cache } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      res({ code, text: `${stdout}${stderr}` });
    });
  });
  const ready = /^READY /m.exec(out.text);
  if (out.code === 0 && ready !== null) return { ready: true, reason: '', cache };
  const un = /^UNAVAILABLE (.*)$/m.exec(out.text);
  return { ready: false, reason: un !== null ? un[1]! : `guest-setup.sh failed (exit ${out.code}): ${out.text.trim().split('\n').slice(-3).join(' | ')}`, cache };
}

/** A scratch directory with a zeroed disk image. */
export function scratch(diskMiB = 64): { dir: string; disk: string; sock: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'vk-guest-'));
  const disk = join(dir, 'disk.raw');
  writeFileSync(disk, '');
  const fd = openSync(disk, 'r+');
  ftruncateSync(fd, diskMiB * 1024 * 1024);
  closeSync(fd);
  return { dir, disk, sock: join(dir, 'vub.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** sha256 of the first `bytes` of a file. */
export function fileSha(path: string, bytes: number): string {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(bytes);
  let got = 0;
  while (got < bytes) {
    const n = readSync(fd, buf, got, bytes - got, got);
    if (n <= 0) break;
    got += n;
  }
  closeSync(fd);
  return createHash('sha256').update(buf.subarray(0, got)).digest('hex');
}

/** A running `virtiokit serve ... --vhost-user` process. */
export interface Server {
  proc: ChildProcess;
  /** Everything it printed so far. */
  log(): string;
  /** Resolves when its log matches `re` (or rejects after `ms`). */
  waitFor(re: RegExp, ms: number): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 5 s). */
  stop(): Promise<number | null>;
}

/** Start the back-end with CLI arguments (after `serve`), wait until it listens. */
export async function startServer(args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/guests/serve-entry.ts'), 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const watchers: Array<() => void> = [];
  const onData = (b: Buffer): void => {
    text += b.toString();
    for (const w of watchers.slice()) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  let exited = false;
  let exitCode: number | null = null;
  const exitP = new Promise<number | null>((r) =>
    proc.on('exit', (c) => {
      exited = true;
      exitCode = c;
      for (const w of watchers.slice()) w();
      r(c);
    }),
  );
  const waitFor = (re: RegExp, ms: number): Promise<void> =>
    new Promise((res, rej) => {
      const check = (): void => {
        if (re.test(text)) {
          done();
          res();
        } else if (exited) {
          done();
          rej(new Error(`back-end exited (${exitCode}) before printing ${re}:\n${text}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        rej(new Error(`back-end did not print ${re} within ${ms} ms:\n${text}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        const i = watchers.indexOf(check);
        if (i >= 0) watchers.splice(i, 1);
      };
      watchers.push(check);
      check();
    });
  await waitFor(/listening on/, 30_000);
  return {
    proc,
    log: () => text,
    waitFor,
    stop: async () => {
      if (!exited) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const c = await exitP;
      clearTimeout(t);
      return c;
    },
  };
}

/** Options of one QEMU boot. */
export interface BootOptions {
  env: GuestEnv;
  sock: string;
  /** Extra `-device vhost-user-blk-pci` properties (",packed=on"). */
  device?: string;
  /** Replace the whole `-device` value (e.g. `vhost-user-rng-pci,chardev=vub0`). */
  deviceSpec?: string;
  /** Extra kernel parameters. */
  append?: string;
  /** Extra QEMU arguments placed before `-device` (e.g. `-netdev vhost-user,id=n0,chardev=vub0`). */
  extraArgs?: string[];
  smp?: number;
  /** Keep SeaBIOS off the disk (`-boot strict=on`: only bootindex'd devices are initialised). */
  strictBoot?: boolean;
  /** Hard limit for the QEMU process (default 90 s). */
  timeoutMs?: number;
  /** Kill QEMU early when this resolves (e.g. the back-end reported a guest error). */
  abort?: Promise<unknown>;
}

/** Result of one boot. */
export interface BootResult {
  serial: string;
  code: number | null;
  seconds: number;
  timedOut: boolean;
  /** `GUEST: key=value` style facts. */
  lines: string[];
}

/** Boot the test guest against the vhost-user socket. */
export async function bootGuest(o: BootOptions): Promise<BootResult> {
  const smp = o.smp ?? 1;
  const args = [
    '-accel', 'tcg,thread=single', '-M', 'q35', '-m', '512', '-smp', String(smp),
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-numa', 'node,memdev=mem',
    '-chardev', `socket,id=vub0,path=${o.sock}`,
    ...(o.extraArgs ?? []),
    '-device', o.deviceSpec ?? `vhost-user-blk-pci,chardev=vub0${o.device ?? ''}`,
    ...(o.strictBoot === true ? ['-boot', 'strict=on'] : []),
    '-kernel', join(o.env.cache, 'vmlinuz'), '-initrd', join(o.env.cache, 'initramfs.cpio'),
    '-append', `console=ttyS0 panic=-1 loglevel=4 gtest=blk gsize=4 ${o.append ?? ''}`.trim(),
  ];
  const release = await acquireQemuLock();
  try {
    return await runQemu(o, args);
  } finally {
    release();
  }
}

async function runQemu(o: BootOptions, args: string[]): Promise<BootResult> {
  const t0 = Date.now();
  const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  proc.stdout.on('data', (b: Buffer) => (serial += b.toString()));
  proc.stderr.on('data', (b: Buffer) => (serial += b.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, o.timeoutMs ?? 90_000);
  void o.abort?.then(
    () => proc.kill('SIGKILL'),
    () => undefined,
  );
  const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  clearTimeout(timer);
  const lines = serial.split('\n').filter((l) => l.startsWith('GUEST:')).map((l) => l.slice(7).trim());
  return { serial, code, seconds: (Date.now() - t0) / 1000, timedOut, lines };
}

/** Value of `KEY=value` on the first GUEST line containing `prefix`. */
export function fact(r: BootResult, prefix: string, key: string): string | undefined {
  for (const l of r.lines) {
    if (!l.startsWith(prefix)) continue;
    const m = new RegExp(`(?:^|\\s)${key}=(\\S+)`).exec(l);
    if (m !== null) return m[1];
  }
  return undefined;
}

/** The swiotlb pool the guest printed: [start, end) (Linux 6.1 prints `mem->end`, which is exclusive). */
export function swiotlbPool(r: BootResult): { start: number; end: number } | undefined {
  const m = /software IO TLB: mapped \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]/.exec(r.serial);
  if (m === null) return undefined;
  return { start: Number.parseInt(m[1]!, 16), end: Number.parseInt(m[2]!, 16) };
}

/** Formatted serial + back-end log for a failing test. */
export function diag(r: BootResult | undefined, server: Server | undefined): string {
  return `\n--- serial (${r?.seconds.toFixed(1) ?? '?'} s, exit ${r?.code}, timedOut ${r?.timedOut}) ---\n${r?.serial ?? '(no boot)'}\n--- back-end ---\n${server?.log() ?? '(none)'}\n`;
}

export { existsSync };
