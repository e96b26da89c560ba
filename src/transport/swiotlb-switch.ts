/**
 * The SWIOTLB DMA-space switch both transports share (2025 RFC, `reference/swiotlb.md`). Where the
 * window lives is transport business — a BAR range named by a capability on PCI
 * (`pci/swiotlb-bar.ts`), a device-tree `restricted-dma-pool` at a fixed system address on MMIO
 * (`mmio/dt.ts`) — but what happens on status writes is the same, and depends only on the core and
 * the window:
 *  - at FEATURES_OK with VIRTIO_F_SWIOTLB negotiated, the core's DMA space becomes
 *    `window.asAddressSpace()` (`core.setAddressSpace`), so every ring and buffer address must be
 *    inside the window from then on (rfc-swiotlb.feature.driver.1; rfc-swiotlb.pci.driver.2,
 *    rfc-swiotlb.mmio.driver.2); anything else fails to resolve and goes to the choke point;
 *  - on reset the previous space comes back;
 *  - at DRIVER_OK a core built with another `swiotlb.space` is flagged ({@link SwiotlbSpaceSwitch.spaceMismatch}).
 */
import { logger, type Logger } from '../log.js';
import type { VirtioDeviceCore } from '../device/core.js';
import type { StatusWriteResult } from '../features/status.js';
import type { AddressSpace } from '../memory/space.js';
import type { SwiotlbWindow } from '../swiotlb/window.js';

/** Switches a core's DMA space to the window while VIRTIO_F_SWIOTLB is negotiated. */
export class SwiotlbSpaceSwitch {
  readonly window: SwiotlbWindow;
  private readonly core: VirtioDeviceCore;
  /** Set when, at DRIVER_OK, the core used another SWIOTLB space than this window's (a wiring mistake). */
  spaceMismatch = false;
  /** DMA space to restore on reset after the switch. */
  private savedSpace: AddressSpace | undefined;
  private readonly log: Logger;

  /** @param logArea debug area of the transport: `mmio:swiotlb` (default) or `pci:swiotlb` */
  constructor(core: VirtioDeviceCore, window: SwiotlbWindow, logArea = 'mmio:swiotlb') {
    this.core = core;
    this.window = window;
    this.log = logger(logArea);
  }

  /** True while the core's DMA space is the window because of this switch. */
  get active(): boolean {
    return this.savedSpace !== undefined;
  }

  /** Call after every status write with the core's result: switch at FEATURES_OK, restore on reset. */
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
      // The core was built with a different swiotlb.space: window moves would not reach its queues.
      this.spaceMismatch = true;
      this.log('%s: the core DMA space is not window.asAddressSpace(); build the core with swiotlb.space = window.asAddressSpace() (or hasRegion: true)', this.core.model.name);
      return;
    }
    if (res.kind === 'features-ok' && res.accepted && this.core.swiotlbNegotiated) {
      const ws = this.window.asAddressSpace();
      if (this.core.space !== ws && this.savedSpace === undefined) {
        this.savedSpace = this.core.space;
        this.core.setAddressSpace(ws); // rfc-swiotlb.feature.driver.1: only the window from now on
        this.log('%s: VIRTIO_F_SWIOTLB negotiated; DMA space is the window %s', this.core.model.name, this.window.name);
      }
    }
  }
}
