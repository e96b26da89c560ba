/**
 * In-process models: the virtio-blk device behind the embedding API (`src/embed`) in the
 * benchmark's own thread. `inproc` — the device DMAs straight into guest RAM (the baseline
 * without a process boundary); `inproc-swiotlb` — SWIOTLB required and the device given an empty
 * address space besides its window, so every buffer is bounced by the driver.
 */
import { openBlkDevice } from '../../device/blk/open.js';
import { createPciDevice } from '../../embed/index.js';
import { createGuestRam } from '../../memory/ram.js';
import { AddressSpace } from '../../memory/space.js';
import { native } from '../../native/index.js';
import { DEVICE_QUEUES, QUEUE_SIZE, RAM_BASE, type DmaModel, type ModelSession, type SessionSizing } from './models.js';
import type { ModelName } from './scenario.js';

function inprocModel(name: Extract<ModelName, 'inproc' | 'inproc-swiotlb'>): DmaModel {
  const bounce = name === 'inproc-swiotlb';
  return {
    name,
    unavailable: () => Promise.resolve(undefined),
    async open(sizing: SessionSizing): Promise<ModelSession> {
      // memfd backing when the addon loads, as for the vfio-user models: only the boundary differs.
      const ram = createGuestRam([{ base: RAM_BASE, size: sizing.ramSize, name: 'guest-ram' }], { backing: native.available ? 'memfd' : 'shared' });
      try {
        const model = await openBlkDevice({ backend: 'ram', size: sizing.diskSize, queues: DEVICE_QUEUES, queueSize: QUEUE_SIZE, durableFlush: false });
        const dev = await createPciDevice({
          model,
          guestRam: bounce ? new AddressSpace([], 'nothing') : ram.space,
          swiotlb: bounce ? { policy: 'required', size: sizing.windowSize, backing: 'auto' } : { policy: 'off' },
          queue: { packed: true, eventIdx: true, indirect: true },
        });
        return {
          model: name,
          access: dev,
          guestRam: ram.space,
          synchronous: true,
          devicePid: undefined,
          info: { ramBacking: ram.backing, ramSize: sizing.ramSize, diskSize: sizing.diskSize, ...(bounce ? { windowSize: sizing.windowSize } : {}) },
          messageStats: () => undefined,
          close: async () => {
            dev.close();
            await model.backend.close();
            ram.close();
          },
        };
      } catch (e) {
        ram.close();
        throw e;
      }
    },
  };
}

export const INPROC_MODEL: DmaModel = inprocModel('inproc');
export const INPROC_SWIOTLB_MODEL: DmaModel = inprocModel('inproc-swiotlb');
