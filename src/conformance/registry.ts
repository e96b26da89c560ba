/**
 * Every conformance check, in run order, and the clause → checks map the coverage tooling reads.
 */
import type { Check } from './check.js';
import { featureChecks } from './checks/basic-features.js';
import { packedChecks } from './checks/basic-packed.js';
import { splitChecks } from './checks/basic-split.js';
import { statusChecks } from './checks/basic-status.js';
import { blkChecks } from './checks/blk.js';
import { blkOpsChecks } from './checks/blk-ops.js';
import { consoleChecks } from './checks/console.js';
import { driverChecks } from './checks/driver.js';
import { initChecks } from './checks/init.js';
import { mmioChecks } from './checks/mmio.js';
import { netChecks } from './checks/net.js';
import { pciChecks } from './checks/pci.js';
import { rngChecks } from './checks/rng.js';
import { swiotlbChecks } from './checks/rfc-swiotlb.js';

/** All checks. */
export const CHECKS: readonly Check[] = [
  ...statusChecks,
  ...featureChecks,
  ...splitChecks,
  ...packedChecks,
  ...initChecks,
  ...pciChecks,
  ...mmioChecks,
  ...swiotlbChecks,
  ...blkChecks,
  ...blkOpsChecks,
  ...netChecks,
  ...consoleChecks,
  ...rngChecks,
  ...driverChecks,
];

/** Clause id → ids of the checks that cover it. */
export function checksByClause(checks: readonly Check[] = CHECKS): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const c of checks)
    for (const id of c.clauses) {
      const l = m.get(id);
      if (l) l.push(c.id);
      else m.set(id, [c.id]);
    }
  return m;
}

/** A check by id. */
export function findCheck(id: string, checks: readonly Check[] = CHECKS): Check | undefined {
  return checks.find((c) => c.id === id);
}
