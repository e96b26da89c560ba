/** Entry point of a DMA-benchmark child process (see child.ts). */
import { isVirtioError } from '../../errors.js';
import { runChild, type ChildReply, type ChildRequest } from './child.js';

async function main(): Promise<void> {
  let reply: ChildReply;
  try {
    const req = JSON.parse(process.argv[2] ?? '') as ChildRequest;
    const r = await runChild(req, (n) => process.stderr.write(`P ${n}\n`));
    reply = { ok: true, ...r };
  } catch (e) {
    reply = { ok: false, code: isVirtioError(e) ? e.code : 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`, () => {
    // Exit explicitly: a lingering handle (poll, worker) must not keep the round alive.
    process.exit(reply.ok ? 0 : 1);
  });
}

void main();
