/**
 * A minimal in-process "VMM": a virtio-rng device behind virtio-pci (embedding API) and the
 * simulated guest driver talking to it through config-space and BAR accesses only.
 *
 * The device offers VIRTIO_F_SWIOTLB with policy 'required' and is given NO guest RAM: once the
 * driver accepts the bit, the SWIOTLB window in BAR 4 is the only memory the device can touch.
 *
 *   npx tsx examples/mini-vmm.ts
 */
import { pathToFileURL } from 'node:url';
import { createGuestRam } from '../src/memory/ram.js';
import { AddressSpace } from '../src/memory/space.js';
import { RngDevice } from '../src/device/rng/index.js';
import { createPciDevice } from '../src/embed/index.js';
import { VirtioPciDriver } from '../src/driver/index.js';

/** What the example did (returned for the test that runs it). */
export interface MiniVmmResult {
  swiotlb: boolean;
  interrupts: string | undefined;
  windowBar: { bar: number; address: number; size: number; fd: number | undefined };
  samples: Uint8Array[];
  guestErrors: number;
  bounced: { maps: number; bytesFromDevice: number };
}

export async function main(print: (line: string) => void = console.log): Promise<MiniVmmResult> {
  const ram = createGuestRam([{ base: 0x10_0000, size: 16 << 20, name: 'ram0' }]);
  // 1. The VMM builds the device; it may DMA only into what it is given: nothing but its window.
  const dev = await createPciDevice({
    model: new RngDevice(),
    guestRam: new AddressSpace([], 'no-guest-ram'),
    swiotlb: { policy: 'required', size: 1 << 20 },
    queue: { packed: true },
  });
  try {
    // 2. The guest probes the function (BARs, capabilities, MSI-X) and initializes it.
    const drv = VirtioPciDriver.open(dev, { guestRam: ram.space });
    const win = drv.probe.swiotlb!;
    const m = dev.barMapping(win.bar)!;
    const bar = dev.bars.find((b) => b.index === win.bar)!;
    print(`virtio-rng at ${drv.probe.vendorId.toString(16)}:${drv.probe.deviceId.toString(16)}, features ${drv.negotiated!.toString()}`);
    print(`SWIOTLB window: BAR ${win.bar} @ 0x${bar.address.toString(16)}, ${m.size} bytes${m.fd !== undefined ? `, mappable from fd ${m.fd} at offset ${m.fdOffset}` : ''}`);
    print(`interrupts: ${drv.interruptMode}, ring: ${drv.queue(0).kind}`);

    // 3. Some requests: every buffer is bounced through the window.
    const samples: Uint8Array[] = [];
    for (const n of [16, 32, 64]) {
      const res = await drv.queue(0).submit([], [n]);
      samples.push(res.data[0]!);
      print(`got ${res.len} random bytes: ${Buffer.from(res.data[0]!).toString('hex')}`);
    }
    const st = drv.pool!.stats();
    print(`bounce pool: ${st.totalMappings} mappings, ${st.bytesFromDevice} bytes copied back; guest errors: ${dev.core.choke.count}`);
    const result: MiniVmmResult = {
      swiotlb: drv.swiotlb,
      interrupts: drv.interruptMode,
      windowBar: { bar: win.bar, address: bar.address, size: m.size, fd: m.fd },
      samples,
      guestErrors: dev.core.choke.count,
      bounced: { maps: st.totalMappings, bytesFromDevice: st.bytesFromDevice },
    };
    drv.close();
    return result;
  } finally {
    dev.close();
    ram.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
