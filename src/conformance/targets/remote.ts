/**
 * Devices in another process: `vfio-user:SOCKET` (a vfio-user server such as `virtiokit serve`,
 * reached with the vfio-user client in src/vfio-user/) and `vhost-user:SOCKET[,device=K][,disk=F]`
 * (a vhost-user back-end, driven through the front-end adapter in `vhost-user.ts`).
 *
 * One fixed configuration per socket: variants are not built (checks that need other features
 * SKIP), the device type is read from the PCI device id, and a fresh connection is opened for
 * every check (the raw driver resets the device first, so no state carries over that matters).
 */
import { VirtioError } from '../../errors.js';
import { createGuestRam, type GuestRam } from '../../memory/ram.js';
import { DEVICE_IDS, type DeviceKind, type Dut } from '../check.js';
import type { DutRequest, Target } from './target.js';

const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 2 << 20;

/** A target served over vfio-user. */
export class VfioUserTarget implements Target {
  readonly name: string;
  readonly buildsVariants = false;
  readonly transports = ['pci'] as const;
  readonly swiotlbModes: readonly boolean[];
  devices: readonly DeviceKind[];

  private constructor(readonly socketPath: string, kind: DeviceKind, swiotlb: boolean) {
    this.name = `vfio-user:${socketPath}`;
    this.devices = [kind];
    this.swiotlbModes = [swiotlb];
  }

  /** Connect once to learn the device type (and whether it has a SWIOTLB window), then disconnect. */
  static async create(socketPath: string): Promise<VfioUserTarget> {
    const { client, ram } = await VfioUserTarget.connect(socketPath);
    try {
      const dev = client.configRead(2, 2) & 0xffff;
      const id = dev >= 0x1040 ? dev - 0x1040 : client.configRead(0x2e, 2) & 0xffff;
      const kind = (Object.keys(DEVICE_IDS) as DeviceKind[]).find((k) => DEVICE_IDS[k] === id);
      if (kind === undefined) throw new VirtioError('INVALID_ARGUMENT', `vfio-user device at ${socketPath} has virtio id ${id}; the suite knows blk, net, rng, console`);
      let sw = false;
      for (let ptr = client.configRead(0x34, 1) & 0xfc, n = 0; ptr !== 0 && n < 48; ptr = client.configRead(ptr + 1, 1) & 0xfc, n++) {
        if ((client.configRead(ptr, 1) & 0xff) === 0x09 && (client.configRead(ptr + 3, 1) & 0xff) === 10) sw = true;
      }
      return new VfioUserTarget(socketPath, kind, sw);
    } finally {
      await client.close();
      ram.close();
    }
  }

  private static async connect(socketPath: string): Promise<{ client: import('../../vfio-user/client.js').VfioUserClient; ram: GuestRam }> {
    let mod: typeof import('../../vfio-user/client.js');
    try {
      mod = await import('../../vfio-user/client.js');
    } catch (e) {
      throw new VirtioError('INVALID_ARGUMENT', `the vfio-user client is not available in this build: ${e instanceof Error ? e.message : String(e)}`);
    }
    const ram = createGuestRam([{ name: 'ram', base: RAM_BASE, size: RAM_SIZE }], { backing: 'auto' });
    try {
      const client = await mod.VfioUserClient.connect({ socketPath, guestRam: ram, dma: 'direct', timeoutMs: 5000 });
      return { client, ram };
    } catch (e) {
      ram.close();
      throw e;
    }
  }

  async open(req: DutRequest): Promise<Dut> {
    if (req.device !== this.devices[0]) throw new VirtioError('INVALID_ARGUMENT', `this socket serves ${this.devices[0]}, not ${req.device}`);
    const { client, ram } = await VfioUserTarget.connect(this.socketPath);
    return {
      kind: req.device,
      transport: 'pci',
      swiotlb: req.swiotlb,
      ram: ram.space,
      pci: client,
      io: {},
      close: async () => {
        await client.close();
        ram.close();
      },
    };
  }
}

/** Parse a --target value into a target. */
export async function openTarget(spec: string): Promise<Target> {
  if (spec === 'inproc') {
    const { InprocTarget } = await import('./inproc.js');
    return new InprocTarget();
  }
  if (spec.startsWith('vfio-user:')) return VfioUserTarget.create(spec.slice('vfio-user:'.length));
  if (spec.startsWith('vhost-user:')) {
    const { VhostUserTarget, parseVhostUserSpec } = await import('./vhost-user.js');
    const { socketPath, opts } = parseVhostUserSpec(spec.slice('vhost-user:'.length));
    return VhostUserTarget.create(socketPath, opts);
  }
  throw new VirtioError('INVALID_ARGUMENT', `unknown target '${spec}': use inproc, vfio-user:SOCKET or vhost-user:SOCKET`);
}
