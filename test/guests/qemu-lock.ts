/** One machine-wide lock so guest test files never boot two TCG guests at once on a 2-core machine. */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Hold a machine-wide lock (flock(1) on {@link QEMU_LOCK}) while a QEMU runs, so guest test files
 * running in parallel vitest workers do not boot TCG guests at the same time on a small machine.
 * Resolves with a release function; without flock(1) it resolves at once (no lock).
 */
export const QEMU_LOCK = join(tmpdir(), 'virtiokit-qemu.lock');
export function acquireQemuLock(waitMs = 600_000): Promise<() => void> {
  return new Promise((res) => {
    let held = false;
    const p = spawn('flock', ['-w', String(Math.ceil(waitMs / 1000)), QEMU_LOCK, 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const release = (): void => {
      p.stdin?.end();
    };
    p.stdout!.on('data', (b: Buffer) => {
      if (!held && b.toString().includes('held')) {
        held = true;
        res(release);
      }
    });
    p.on('error', () => res(() => undefined)); // no flock(1): run without the lock
    p.on('exit', () => {
      if (!held) res(() => undefined); // timed out waiting: run anyway
    });
  });
}

