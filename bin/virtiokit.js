#!/usr/bin/env node
// virtiokit CLI launcher: runs the compiled CLI in dist/ (built by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(`virtiokit: ${fileURLToPath(entry)} is missing; run "npm run build" (tsc -p tsconfig.build.json) in the package first\n`);
  process.exit(1);
}
const { run } = await import(entry.href);
process.exitCode = await run(process.argv.slice(2));
