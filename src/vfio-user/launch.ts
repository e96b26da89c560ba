/**
 * Start a vfio-user device process: `node <device-main> <kind> --vfio-user SOCKET ...` from the
 * compiled `dist/` or, under vitest / tsx, from the TypeScript sources (with the tsx loader).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { VirtioError } from '../errors.js';
import { nodeArgsFor, siblingModule } from '../bench/launch.js';

/** A running device process. */
export interface DeviceProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly socketPath: string;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM (the device flushes and closes), then wait for exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL: a crash, for durability tests. */
  kill(): Promise<number | null>;
}

/**
 * Spawn `virtiokit serve <args>` with `--vfio-user socketPath` and wait until it listens.
 * @param args device kind and options, e.g. `['blk', '--disk', file]`
 */
export async function spawnDeviceProcess(socketPath: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<DeviceProcess> {
  const url = siblingModule('device-main', import.meta.url);
  const child = spawn(process.execPath, nodeArgsFor(url, [...args, '--vfio-user', socketPath]), { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new VirtioError('TIMEOUT', `device process did not start listening within ${opts.timeoutMs ?? 20000} ms: ${err}`)), opts.timeoutMs ?? 20000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes(' on vfio-user ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new VirtioError('INTERNAL', `device process exited (${code}) before listening: ${err}`));
    });
  });
  const stopWith = async (sig: NodeJS.Signals, graceMs: number): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill(sig);
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  };
  return {
    child,
    pid: child.pid!,
    socketPath,
    stderr: () => err,
    exited,
    stop: (graceMs = 5000) => stopWith('SIGTERM', graceMs),
    kill: () => stopWith('SIGKILL', 0),
  };
}
