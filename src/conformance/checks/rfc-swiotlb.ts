/** SWIOTLB RFC checks (2025 VIRTIO_F_SWIOTLB): the device stays inside its bounce window. */
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_RING_PACKED } from '../../features/bits.js';
import { VIRTQ_DESC_F_WRITE } from '../../queue/types.js';
import { defineCheck, type Check } from '../check.js';
import { RawSplitQueue } from '../raw.js';
import { acceptWith, judgeMalformed, workQueue } from './util.js';

export const swiotlbChecks: readonly Check[] = [
  defineCheck({
    id: 'swiotlb.outside-window-refused',
    title: 'with SWIOTLB negotiated, a buffer in guest RAM outside the window is not touched',
    clauses: ['basic.dev-status-field.device.3', 'basic.dev-reset.device.1'],
    role: 'device',
    swiotlb: true,
    needs: [DEFAULT_SWIOTLB_BIT],
    run: (ctx) =>
      judgeMalformed(
        ctx,
        (raw, q) => {
          const rq = raw.queue(q);
          if (!(rq instanceof RawSplitQueue)) return;
          const a = raw.ramMem.alloc(256, 16);
          raw.ramMem.write(a, new Uint8Array(256).fill(0x3c));
          rq.writeDesc(0, a, 256, VIRTQ_DESC_F_WRITE, 0);
          rq.pushAvail(0);
          rq.publish();
          rq.kick();
          void workQueue;
          return { guard: [{ addr: a, len: 256, inRam: true }] };
        },
        { accept: acceptWith({ add: [DEFAULT_SWIOTLB_BIT], drop: [VIRTIO_F_RING_PACKED] }) },
      ),
  }),
];
