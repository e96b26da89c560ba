/**
 * Process entry of a vfio-user device process started by {@link spawnDeviceProcess}: runs
 * `virtiokit serve <args>` (the same command as the CLI) and exits with its code.
 */
import { run } from '../cli/main.js';

const code = await run(['serve', ...process.argv.slice(2)]);
process.exit(code);
