/**
 * Choosing MSI-X vectors, the way Linux `vp_find_vqs` falls back:
 * 1. `per-queue`: vector 0 for configuration changes, vector 1 + i for the i-th queue set up
 *    (needs table size ≥ queues + 1);
 * 2. `shared`: vector 0 for configuration changes, vector 1 for every queue (table size ≥ 2);
 * 3. `single`: vector 0 for everything — the handler then services every queue and detects
 *    configuration changes through config_generation (pci.notif-dev-cfg-changes.driver.1);
 * 4. `intx`: MSI-X off, INTx + ISR (pci.msix.driver.2 allows this for a one-vector table).
 * A plan never names a vector beyond the table (pci.msix.driver.4); a mapping the device refuses
 * (reads back NO_VECTOR, pci.msix.driver.5) moves on to the next plan (pci.msix.driver.6).
 */

/** How interrupts are delivered. */
export type InterruptMode = 'per-queue' | 'shared' | 'single' | 'intx';

/** MSI-X "no vector". */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** A vector assignment. */
export interface VectorPlan {
  readonly mode: InterruptMode;
  /** Vector of configuration-change interrupts (NO_VECTOR for intx). */
  readonly configVector: number;
  /** Vector of each queue set up, in the order given (NO_VECTOR for intx). */
  readonly queueVectors: readonly number[];
  /** Vectors used (0..n-1). */
  readonly vectorsUsed: number;
}

/** Plans to try, best first, for `tableSize` table entries (0 = no MSI-X) and `nQueues` queues. */
export function vectorPlans(tableSize: number, nQueues: number, allowMsix = true, allowSingle = true): VectorPlan[] {
  const out: VectorPlan[] = [];
  if (allowMsix && tableSize >= nQueues + 1) {
    out.push({ mode: 'per-queue', configVector: 0, queueVectors: Array.from({ length: nQueues }, (_, i) => 1 + i), vectorsUsed: nQueues + 1 });
  }
  if (allowMsix && tableSize >= 2 && nQueues > 1) out.push({ mode: 'shared', configVector: 0, queueVectors: new Array<number>(nQueues).fill(1), vectorsUsed: 2 });
  if (allowMsix && allowSingle && tableSize >= 1) out.push({ mode: 'single', configVector: 0, queueVectors: new Array<number>(nQueues).fill(0), vectorsUsed: 1 });
  out.push({ mode: 'intx', configVector: VIRTIO_MSI_NO_VECTOR, queueVectors: new Array<number>(nQueues).fill(VIRTIO_MSI_NO_VECTOR), vectorsUsed: 0 });
  return out;
}
