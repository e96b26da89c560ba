/**
 * The README's embedding example: one split virtqueue, device side and driver side, over 1 MiB of
 * "guest RAM" that the device may touch entirely (direct DMA). Run: npx tsx examples/embed-queue.ts
 */
import { pathToFileURL } from 'node:url';
import { AddressSpace, SgList, DescChain, RecordingSink, readFromChain, writeToChain } from '../src/index.js';
import { createSplitDeviceQueue, SplitDriverQueue, layoutSplitRings } from '../src/index.js';

export function main(print: (line: string) => void = console.log): { reply: string; errors: number } {
  const ram = new AddressSpace([{ base: 0, size: 1 << 20, buffer: new SharedArrayBuffer(1 << 20), name: 'ram' }]);
  const rings = layoutSplitRings(0x10000, 256);
  const cfg = { index: 0, size: 256, maxSize: 256, ...rings, eventIdx: true, indirect: true, inOrder: false };
  const errors = new RecordingSink(); // the guest-error choke point
  const device = createSplitDeviceQueue(ram, cfg, errors)!;
  const driver = new SplitDriverQueue(ram, cfg, errors);

  ram.write(0x20000, new TextEncoder().encode('hello'));
  driver.add(new SgList(2).out(0x20000, 5).in(0x30000, 64), /* token */ 7);
  driver.publish(); // true: the driver would notify the device now

  const chain = new DescChain(256);
  const buf = new Uint8Array(64);
  while (device.pop(chain)) {
    const n = readFromChain(ram, chain, buf); // device reads what the driver wrote ...
    const reply = new TextEncoder().encode(new TextDecoder().decode(buf.subarray(0, n)).toUpperCase());
    device.pushUsed(chain.head, writeToChain(ram, chain, reply)); // ... and answers
  }
  if (device.needsInterrupt()) print('device: interrupt the driver');
  let reply = '';
  while (driver.getUsed()) {
    const out = new Uint8Array(driver.lastLen);
    ram.read(0x30000, out);
    reply = new TextDecoder().decode(out);
    print(`driver: token ${driver.lastToken} → "${reply}"`);
  }
  print(`guest errors: ${errors.errors.length}`);
  return { reply, errors: errors.errors.length };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main();
