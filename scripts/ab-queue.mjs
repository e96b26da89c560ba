#!/usr/bin/env node
// Paired A/B of two builds of the queue benchmark's JS side, in ONE process:
//
//   cp -r dist .ab/base            # before a change (.ab/ is git-ignored; inside the package so
//   # ...edit, npm run build...    #  node_modules resolves)
//   node scripts/ab-queue.mjs 20 split 3 2 .ab/base dist
//
// Arguments: pairs, ring (split|packed), descriptors (1|3), agents (1|2), build A, build B (each a
// directory holding a compiled dist tree). Each pair runs A and B back to back (order alternating),
// each with a fresh device worker, warm-up and 2 timed repetitions; it prints every pair and the
// median of B/A over all pairs and over the pairs in which both ran in the same machine mode.
//
// Why: on this 2-vCPU machine both the JS and the C two-agent rates switch between modes that last
// seconds (e.g. 12-16 vs 4-5 M chains/s for split 3-descriptor chains); separate runs, or even
// separate processes, mix modes and hide 10 % effects. Adjacent repetitions in one process mostly
// share a mode (an A/A run of 20 pairs gave 1.016). Needs both cores free: anything else running
// (a test suite, a build) time-slices the two agents and every rate collapses.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const usage = 'usage: node scripts/ab-queue.mjs PAIRS split|packed 1|3 1|2 BUILD_A BUILD_B';
const [pairsArg, ring, descsArg, agentsArg, dirA, dirB] = process.argv.slice(2);
const pairs = Number(pairsArg);
const descs = Number(descsArg);
const agents = Number(agentsArg);
if (!(Number.isInteger(pairs) && pairs >= 1 && pairs <= 1000) || (ring !== 'split' && ring !== 'packed') || (descs !== 1 && descs !== 3) || (agents !== 1 && agents !== 2) || !dirA || !dirB) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}

/** Load one build's cell runner. */
async function load(dir) {
  const url = pathToFileURL(resolve(dir, 'bench/queue-cell.js')).href;
  try {
    return await import(url);
  } catch (e) {
    process.stderr.write(`ab-queue: cannot load ${url}: ${e instanceof Error ? e.message : String(e)}\n(build it with npm run build; a copy must live inside the package so its imports resolve)\n`);
    process.exit(2);
  }
}

const a = await load(dirA);
const b = await load(dirB);
const cell = { ring, descs, agents };
const opts = { ms: 100, reps: 2, warmupMs: 150, timeoutMs: 10_000 };
const once = async (m) => Math.max(...(await m.runJsCell(cell, opts, 'visit')).mchainsPerS);
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const res = [];
for (let i = 0; i < pairs; i++) {
  let ra;
  let rb;
  if (i % 2 === 0) {
    ra = await once(a);
    rb = await once(b);
  } else {
    rb = await once(b);
    ra = await once(a);
  }
  res.push([ra, rb]);
  process.stdout.write(`pair ${i + 1}: A ${ra.toFixed(2)}  B ${rb.toFixed(2)} M chains/s  B/A ${(rb / ra).toFixed(3)}\n`);
}
// Same mode: neither side below 60 % of the other (a mode switch moves a side 2.5-3x).
const same = res.filter(([x, y]) => Math.min(x, y) > 0.6 * Math.max(x, y));
process.stdout.write(
  `${ring}, ${descs} desc, ${agents} agent(s): B/A median ${median(res.map(([x, y]) => y / x)).toFixed(3)} over ${res.length} pairs; ` +
    `${same.length} same-mode pairs: ${median(same.map(([x, y]) => y / x)).toFixed(3)}; ` +
    `A median ${median(res.map((r) => r[0])).toFixed(2)}, B median ${median(res.map((r) => r[1])).toFixed(2)} M chains/s\n`,
);
