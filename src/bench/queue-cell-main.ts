/**
 * Entry point of a fresh benchmark process: runs one round of one cell (request as JSON in
 * argv[2]) and prints a {@link CellRoundReply} as one JSON line. Started by queue-bench.ts.
 */
import { isVirtioError } from '../errors.js';
import { type CellRoundReply, type CellRoundRequest, runCellRound } from './queue-cell.js';

async function main(): Promise<void> {
  let reply: CellRoundReply;
  try {
    const req = JSON.parse(process.argv[2] ?? '') as CellRoundRequest;
    const result = await runCellRound(req.cell, req.measure, req.cBinary, req.cFirst, req.api);
    reply = { ok: true, result };
  } catch (e) {
    reply = { ok: false, code: isVirtioError(e) ? e.code : 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
  process.exitCode = reply.ok ? 0 : 1;
}

void main();
