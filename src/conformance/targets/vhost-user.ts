/**
 * `vhost-user:SOCKET[,device=KIND][,disk=FILE]`: a vhost-user back-end (virtiokit's
 * `serve blk --vhost-user`, qemu-storage-daemon's vhost-user-blk export, ...) as a conformance
 * target. virtiokit plays the front-end (src/vhost-user/frontend.ts) through the register adapter
 * of `vhost-user-regs.ts`, so the checks that only need rings, buffers, notifications and device
 * config run unchanged; checks that need PCI/MMIO registers SKIP ("not observable over
 * vhost-user").
 *
 * vhost-user does not say which device type a back-end is: `device=` tells it (default blk).
 * `disk=FILE` names the back-end's disk image so blk checks can verify written data in it.
 * Every check gets a FRESH connection (the back-end must accept reconnects; one client at a time
 * is enough: the previous connection is closed before the next is opened).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { VirtioError } from '../../errors.js';
import { createGuestRam } from '../../memory/ram.js';
import { DEVICE_IDS, type DeviceKind, type Dut, type DutBackendIo } from '../check.js';
import type { DutRequest, Target } from './target.js';
import { probeVhostUser, VhostUserRegs, type VhostUserBackendInfo, type VhostUserRegsOptions } from './vhost-user-regs.js';

/** Guest RAM of each connection. */
const RAM_BASE = 0x4000_0000;
const RAM_SIZE = 2 << 20;
/** Front-end user address = guest-physical + this. */
const UADDR_OFFSET = 0x7f00_0000_0000;

/** Options of {@link VhostUserTarget.create}. */
export interface VhostUserTargetOptions extends VhostUserRegsOptions {
  /** Device type the back-end serves (default blk). */
  device?: DeviceKind;
  /** blk: the back-end's disk image, read to verify writes. */
  disk?: string;
}

/** Parse `SOCKET[,device=KIND][,disk=FILE]`. */
export function parseVhostUserSpec(spec: string): { socketPath: string; opts: VhostUserTargetOptions } {
  const parts = spec.split(',');
  const socketPath = parts[0]!;
  if (socketPath === '') throw new VirtioError('INVALID_ARGUMENT', 'vhost-user target: give the socket path (vhost-user:SOCKET[,device=blk][,disk=FILE])');
  const opts: VhostUserTargetOptions = {};
  for (const p of parts.slice(1)) {
    const [k, v] = [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)];
    if (k === 'device') {
      if (!(Object.keys(DEVICE_IDS) as string[]).includes(v)) throw new VirtioError('INVALID_ARGUMENT', `vhost-user target: device=${v}: use blk, net, rng or console`);
      opts.device = v as DeviceKind;
    } else if (k === 'disk') opts.disk = v;
    else throw new VirtioError('INVALID_ARGUMENT', `vhost-user target: unknown option '${p}' (device=KIND, disk=FILE)`);
  }
  return { socketPath, opts };
}

function diskReader(path: string): (offset: number, length: number) => Uint8Array {
  return (offset, length) => {
    const out = new Uint8Array(length);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, out, 0, length, offset);
    } finally {
      closeSync(fd);
    }
    return out;
  };
}

/** A vhost-user back-end as a target. */
export class VhostUserTarget implements Target {
  readonly name: string;
  readonly buildsVariants = false;
  readonly transports = ['vhost-user'] as const;
  readonly swiotlbModes = [false] as const;
  readonly devices: readonly DeviceKind[];
  /** Connections opened over all checks (probe excluded). */
  connections = 0;

  private constructor(
    readonly info: VhostUserBackendInfo,
    private readonly opts: VhostUserTargetOptions,
  ) {
    this.name = `vhost-user:${info.socketPath}`;
    this.devices = [opts.device ?? 'blk'];
  }

  /** Probe the back-end once (features, protocol features, queues, config), then disconnect. */
  static async create(socketPath: string, opts: VhostUserTargetOptions = {}): Promise<VhostUserTarget> {
    return new VhostUserTarget(await probeVhostUser(socketPath, opts), opts);
  }

  async open(req: DutRequest): Promise<Dut> {
    if (req.device !== this.devices[0]) throw new VirtioError('INVALID_ARGUMENT', `this socket serves ${this.devices[0]}, not ${req.device}`);
    if (req.transport !== 'vhost-user') throw new VirtioError('INVALID_ARGUMENT', `a vhost-user back-end has no ${req.transport} transport`);
    if (req.swiotlb) throw new VirtioError('INVALID_ARGUMENT', 'vhost-user has no SWIOTLB window');
    const ram = createGuestRam([{ name: 'ram', base: RAM_BASE, size: RAM_SIZE }], { backing: 'memfd' });
    let regs: VhostUserRegs;
    try {
      regs = new VhostUserRegs(this.info, ram, UADDR_OFFSET, this.opts);
    } catch (e) {
      ram.close();
      throw e;
    }
    // Let the preamble (GET_FEATURES, protocol features, SET_OWNER) be answered before the check.
    await regs.sync(this.opts.timeoutMs ?? 3000);
    const io: DutBackendIo = this.opts.disk !== undefined && req.device === 'blk' ? { readDisk: diskReader(this.opts.disk) } : {};
    return {
      kind: req.device,
      transport: 'vhost-user',
      swiotlb: false,
      ram: ram.space,
      vhostUser: regs,
      io,
      close: () => {
        this.connections += regs.connections;
        regs.close();
        ram.close();
      },
    };
  }
}
