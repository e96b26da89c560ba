/**
 * Start a sibling module of the benchmark in a worker thread or a fresh Node process, from
 * TypeScript sources (vitest, tsx: the module is a `.ts` file and needs the tsx loader) or from
 * compiled `dist/` (plain `.js`).
 */
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** URL of sibling module `name` (without extension) next to the module at `base`. */
export function siblingModule(name: string, base: string): URL {
  return new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}

/**
 * Start module `url` in a worker thread. A `.ts` module gets a small evaluated trampoline that
 * registers the tsx loader inside the worker first (Node 20 ignores `--import` in a worker's execArgv).
 */
export function startWorker(url: URL, options: WorkerOptions): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/** Node flags that let a child process load `url` (the tsx loader for `.ts`). */
export function execArgvFor(url: URL): string[] {
  if (!url.pathname.endsWith('.ts')) return [];
  return ['--import', import.meta.resolve('tsx')];
}

/** argv (after the node executable) to run `url` as a script in a fresh process. */
export function nodeArgsFor(url: URL, args: readonly string[]): string[] {
  return [...execArgvFor(url), fileURLToPath(url), ...args];
}
