/**
 * The SWIOTLB bounce window of a virtio-mmio device (2025 RFC patch 2/3, `reference/swiotlb.md`
 * §4.2): on MMIO the region is not a register but a device-tree `restricted-dma-pool`
 * reserved-memory node that the `virtio,mmio` node references with `memory-region` (emitted by
 * `dt.ts`). The window therefore sits at a fixed system address chosen by whoever builds the
 * machine; nothing moves it.
 *
 * The DMA-space switch is the same as on PCI (`src/transport/pci/swiotlb-bar.ts`), kept here
 * transport-neutral (it depends only on the core and the window):
 *  - at FEATURES_OK with VIRTIO_F_SWIOTLB negotiated, the core's DMA space becomes
 *    `window.asAddressSpace()` (`core.setAddressSpace`), so every ring and buffer address must be
 *    inside the window from then on (rfc-swiotlb.feature.driver.1, rfc-swiotlb.mmio.driver.2);
 *    anything else fails to resolve and goes to the choke point;
 *  - on reset the previous space comes back;
 *  - at DRIVER_OK a core built with another `swiotlb.space` is flagged ({@link spaceMismatch}).
 */
import { logger } from '../../log.js';
import type { VirtioDeviceCore } from '../../device/core.js';
import type { StatusWriteResult } from '../../features/status.js';
import type { AddressSpace } from '../../memory/space.js';
import type { SwiotlbWindow } from '../../swiotlb/window.js';

const log = logger('mmio:swiotlb');

/** Switches a core's DMA space to the window while VIRTIO_F_SWIOTLB is negotiated. */
export class SwiotlbSpaceSwitch {
  readonly window: SwiotlbWindow;
  private readonly core: VirtioDeviceCore;
  /** Set when, at DRIVER_OK, the core used another SWIOTLB space than this window's (a wiring mistake). */
  spaceMismatch = false;
  private savedSpace: AddressSpace | undefined;

  constructor(core: VirtioDeviceCore, window: SwiotlbWindow) {
    this.core = core;
    this.window = window;
  }

  /** True while the core's DMA space is the window because of this switch. */
  get active(): boolean {
    return this.savedSpace !== undefined;
  }

  /** Call after every Status write with the core's result. */
  afterStatusWrite(res: StatusWriteResult): void {
    if (res.kind === 'reset') {
      const s = this.savedSpace;
      if (s !== undefined) {
        this.savedSpace = undefined;
        this.core.setAddressSpace(s);
      }
      return;
    }
    if (res.kind === 'driver-ok' && this.core.swiotlbNegotiated && this.core.space !== this.window.asAddressSpace()) {
      this.spaceMismatch = true;
      log('%s: the core DMA space is not window.asAddressSpace(); build the core with swiotlb.space = window.asAddressSpace() (or hasRegion: true)', this.core.model.name);
      return;
    }
    if (res.kind === 'features-ok' && res.accepted && this.core.swiotlbNegotiated) {
      const ws = this.window.asAddressSpace();
      if (this.core.space !== ws && this.savedSpace === undefined) {
        this.savedSpace = this.core.space;
        this.core.setAddressSpace(ws); // rfc-swiotlb.mmio.driver.2: only the window from now on
        log('%s: VIRTIO_F_SWIOTLB negotiated; DMA space is the window %s', this.core.model.name, this.window.name);
      }
    }
  }
}
