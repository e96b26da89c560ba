/**
 * Entry for the guest tests: `virtiokit serve ... --vhost-user` through the CLI router with only
 * the vhost-user serve command in the table (works whether or not `serve` in commands.ts already
 * dispatches `--vhost-user`).
 */
import { run, STDIO } from '../../src/cli/main.js';
import { serveVhostUserCommand } from '../../src/cli/serve-vhost-user.js';

process.exitCode = await run(process.argv.slice(2), STDIO, [serveVhostUserCommand]);
