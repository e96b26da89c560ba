/**
 * The one device a vfio-user device process hosts: a model (blk, net, rng, console) wrapped for
 * message DMA, the transport-independent core, the virtio-pci function, the DMA map table, the
 * interrupt state and — with SWIOTLB — the bounce window in BAR 4 (a memfd the client may map).
 *
 * Interrupt routing follows QEMU's split of work: the VMM emulates the MSI-X table, so when MSI-X is
 * enabled in config space a queue or config interrupt goes straight to the vector's eventfd
 * ({@link IrqState}); otherwise ISR + INTx as the PCI function computes them.
 */
import { VirtioError, requireArg } from '../errors.js';
import { logger } from '../log.js';
import { VirtioDeviceCore } from '../device/core.js';
import { NO_VECTOR } from '../device/queue-regs.js';
import type { SwiotlbPolicy, TransportHooks, VirtioDeviceModel } from '../device/types.js';
import { DEFAULT_SWIOTLB_BIT, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../features/bits.js';
import { native as defaultNative } from '../native/index.js';
import type { NativeApi } from '../native/types.js';
import { createSplitDeviceQueue } from '../queue/split/device.js';
import { SwiotlbWindow } from '../swiotlb/window.js';
import { VIRTIO_PCI_ISR_CONFIG } from '../transport/pci/isr.js';
import { createVirtioPciDevice, type VirtioPciDevice } from '../transport/pci/virtio-pci-device.js';
import { openBlkDevice } from '../device/blk/open.js';
import type { BlkDevice } from '../device/blk/blk-device.js';
import { RngDevice } from '../device/rng/rng-device.js';
import { ConsoleDevice } from '../device/console/console-device.js';
import { UnixSocketBackend } from '../device/console/backends.js';
import { VirtioNetDevice } from '../device/net/net-device.js';
import { SocketNetBackend } from '../device/net/socket-backend.js';
import { parseMac } from '../device/net/config.js';
import { DmaTable } from './dma.js';
import { IrqState } from './irqs.js';
import { MessageDmaEngine, MessageDmaModel } from './message-dma.js';
import { QueueWorkerModel, QueueWorkerPool, type WorkerDisk } from './queue-workers.js';
import { RamBackend } from '../device/blk/ram-backend.js';
import { MAX_WINDOW } from '../memory/ram.js';
import { resolve as resolvePath } from 'node:path';

const log = logger('vfio-user:device');

/** Device kinds `serve` can host. */
export type DeviceKind = 'blk' | 'net' | 'rng' | 'console';
export const DEVICE_KINDS: readonly DeviceKind[] = ['blk', 'net', 'rng', 'console'];

/** Options of {@link createDeviceHost}. */
export interface DeviceHostOptions {
  kind: DeviceKind;
  /** SWIOTLB policy (default 'off'). */
  swiotlb?: SwiotlbPolicy;
  /** Bounce window size (default 4 MiB). */
  swiotlbSize?: number;
  /** Request queues (blk) / queue pairs (net). Default 1. */
  queues?: number;
  /** Largest queue size (power of two; default 256). */
  queueSize?: number;
  /** blk: disk image file (opened read-write unless readOnly; created with `diskSize` if missing). */
  disk?: string;
  /** blk: RAM disk size, or size of a disk file to create. Default 16 MiB for a RAM disk. */
  diskSize?: number;
  /** blk: present the disk read-only. */
  readOnly?: boolean;
  /** blk: fdatasync on FLUSH (default true). */
  durableFlush?: boolean;
  /** console: UNIX socket path for port 0 (default: output discarded). */
  consoleSocket?: string;
  /** net: listen on this UNIX socket for one peer (frames with a 4-byte big-endian length prefix, as QEMU's `-netdev stream`). */
  netListen?: string;
  /** net: connect to a peer listening on this UNIX socket (retried until it exists, bounded). */
  netConnect?: string;
  /** net: MAC address ("52:54:00:12:34:56"; default a locally administered 02:76:6b:xx:xx:xx). */
  mac?: string;
  /**
   * blk: serve each request queue on its own worker thread when the queue memory is fd-backed
   * (direct DMA, SWIOTLB window); see `queue-workers.ts`. A RAM disk is then a memfd shared by all
   * workers (at most 4 GiB). Default false.
   */
  queueWorkers?: boolean;
  native?: NativeApi;
}

/** The hosted device. */
export interface DeviceHost {
  readonly kind: DeviceKind;
  readonly model: VirtioDeviceModel;
  readonly wrapped: MessageDmaModel;
  readonly core: VirtioDeviceCore;
  readonly pci: VirtioPciDevice;
  readonly table: DmaTable;
  readonly engine: MessageDmaEngine;
  readonly irqs: IrqState;
  readonly window: SwiotlbWindow | undefined;
  /** The console's socket backend, when one was configured. */
  readonly consoleBackend: UnixSocketBackend | undefined;
  /** The net device's socket backend, when one was configured. */
  readonly netBackend: SocketNetBackend | undefined;
  /** The queue workers (option `queueWorkers`), else undefined. */
  readonly queueWorkers: QueueWorkerPool | undefined;
  /** Stop the model (flush and close a disk) and release memory. */
  close(): Promise<void>;
}

/** PCI config space size presented over vfio-user (conventional PCI, as in reference §7). */
export const VFIO_CONFIG_SPACE_SIZE = 256;

/** Build the device. */
export async function createDeviceHost(o: DeviceHostOptions): Promise<DeviceHost> {
  const nat = o.native ?? defaultNative;
  requireArg((DEVICE_KINDS as readonly string[]).includes(o.kind), `device must be one of ${DEVICE_KINDS.join(', ')} (got '${String(o.kind)}')`);
  const policy = o.swiotlb ?? 'off';
  const queueSize = o.queueSize ?? 256;
  let consoleBackend: UnixSocketBackend | undefined;
  let netBackend: SocketNetBackend | undefined;
  let model: VirtioDeviceModel;
  let closeModel: () => Promise<void> = () => Promise.resolve();
  let pool: QueueWorkerPool | undefined;
  let queueModel: QueueWorkerModel | undefined;
  requireArg(o.queueWorkers !== true || o.kind === 'blk', `queue workers are only implemented for blk (got ${o.kind})`);
  switch (o.kind) {
    case 'blk': {
      const common = { queues: o.queues ?? 1, queueSize, readOnly: o.readOnly === true, durableFlush: o.durableFlush ?? true };
      if (o.queueWorkers === true) {
        const q = await openQueueWorkerBlk(o, common, nat);
        model = q.blk;
        pool = q.pool;
        queueModel = new QueueWorkerModel(q.blk, q.pool);
        closeModel = q.close;
        break;
      }
      const blk: BlkDevice =
        o.disk !== undefined
          ? await openBlkDevice({ backend: 'file', path: o.disk, ...(o.diskSize !== undefined ? { size: o.diskSize, create: true } : {}), ...common })
          : await openBlkDevice({ backend: 'ram', size: o.diskSize ?? 16 * 1024 * 1024, ...common });
      model = blk;
      closeModel = () => blk.close();
      break;
    }
    case 'rng':
      model = new RngDevice({ queueSize });
      break;
    case 'console': {
      if (o.consoleSocket !== undefined) consoleBackend = await UnixSocketBackend.listen(o.consoleSocket);
      const con = new ConsoleDevice({ queueSize, ports: [consoleBackend !== undefined ? { backend: consoleBackend } : {}] });
      model = con;
      closeModel = () => con.close();
      break;
    }
    case 'net': {
      requireArg(o.netListen === undefined || o.netConnect === undefined, 'net: give either a listen or a connect socket, not both');
      const mac = o.mac !== undefined ? parseMac(o.mac) : undefined; // before any socket is opened
      if (o.netListen !== undefined) netBackend = await SocketNetBackend.listen(o.netListen);
      else if (o.netConnect !== undefined) netBackend = await SocketNetBackend.connect(o.netConnect);
      const nb = netBackend;
      // A stream socket carries plain frames (no virtio_net_hdr): offer no offloads then, as QEMU
      // does for a peer without a vnet header, so the driver checksums and never sends GSO frames.
      model = new VirtioNetDevice({ queueSize, queuePairs: o.queues ?? 1, ...(mac !== undefined ? { mac } : {}), ...(nb !== undefined ? { backend: nb, offloads: false } : {}) });
      closeModel = () => {
        nb?.close();
        return Promise.resolve();
      };
      break;
    }
    default:
      throw new VirtioError('INVALID_ARGUMENT', `unknown device kind ${String(o.kind)}`);
  }

  let window: SwiotlbWindow | undefined;
  try {
    if (policy !== 'off') {
      // A memfd, so the client can map the window region by fd.
      window = await SwiotlbWindow.allocate(o.swiotlbSize ?? 4 * 1024 * 1024, { backing: nat.available ? 'memfd' : 'auto', name: `${model.name}-swiotlb` });
    }
    const table = new DmaTable({ native: nat, name: `${model.name}-dma` });
    const engine = new MessageDmaEngine(table);
    const wrapped = new MessageDmaModel(queueModel ?? model, engine);
    let irqs: IrqState | undefined;
    let pci: VirtioPciDevice | undefined;
    const hooks: TransportHooks = {
      queueInterrupt(q, vector) {
        if (pci === undefined) return;
        if (pci.msix?.enabled === true) {
          if (vector !== NO_VECTOR) irqs!.signalMsix(vector);
          return;
        }
        pci.queueInterrupt(q, vector);
      },
      configInterrupt(vector) {
        if (pci === undefined) return;
        if (pci.msix?.enabled === true) {
          pci.isr.raise(VIRTIO_PCI_ISR_CONFIG);
          if (vector !== NO_VECTOR) irqs!.signalMsix(vector);
          return;
        }
        pci.configInterrupt(vector);
      },
    };
    const core = new VirtioDeviceCore({
      model: wrapped,
      space: table.space(),
      hooks,
      queueFactories: { split: createSplitDeviceQueue },
      extraFeatures: [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX],
      transport: 'pci',
      ...(window !== undefined ? { swiotlb: { policy, bit: DEFAULT_SWIOTLB_BIT, space: window.asAddressSpace() } } : {}),
    });
    pci = createVirtioPciDevice(core, { configSpaceSize: VFIO_CONFIG_SPACE_SIZE, ...(window !== undefined ? { swiotlbWindow: window } : {}) });
    irqs = new IrqState(nat, pci.msix?.vectors ?? 0);
    const irqState = irqs;
    pci.onIntx((level) => irqState.setIntxLevel(level));
    table.onChange((space) => core.setAddressSpace(space));
    // Queues started on an older space are gone after a reset: their retired mappings can go too.
    core.trace.onEvent((e) => {
      if (e.kind === 'reset') table.releaseRetired();
    });
    engine.attach(core, (q, message) => core.choke.guestError({ code: 'ADDRESS_OUT_OF_SPACE', clause: undefined, message, queue: q }));
    if (pool !== undefined && queueModel !== undefined) {
      const p = pool;
      const pciDev = pci;
      queueModel.bindCore(core);
      p.attach({
        guestError: (err) => core.choke.guestError(err),
        raise: (q) => hooks.queueInterrupt(q, core.queueRegs(q)?.msixVector ?? NO_VECTOR),
        irqSource: (q) => {
          const v = core.queueRegs(q)?.msixVector ?? NO_VECTOR;
          return pciDev.msix?.enabled === true && v !== NO_VECTOR ? irqState.msixFd(v) : undefined;
        },
      });
      irqState.onChange(() => p.refreshRoutes());
      // The choke point parked a queue (or all): the worker stops popping too.
      core.choke.onError((e) => p.park(e.queue));
    }
    log('%s: hosted (swiotlb %s, queue size %d)', model.name, policy, queueSize);
    const w = window;
    let closed = false;
    return {
      kind: o.kind,
      model,
      wrapped,
      core,
      pci,
      table,
      engine,
      irqs,
      window,
      consoleBackend,
      netBackend,
      queueWorkers: pool,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await closeModel();
        } finally {
          table.clear();
          irqState.closeAll();
          w?.close();
        }
      },
    };
  } catch (e) {
    window?.close();
    await closeModel().catch(() => undefined);
    throw e;
  }
}

/**
 * blk with queue workers: the main thread's model (config space, features; it serves the queues
 * itself only when they cannot go to workers) and the pool, over one disk — a RAM disk in a memfd
 * that every worker maps, or the image file that every worker opens.
 */
async function openQueueWorkerBlk(
  o: DeviceHostOptions,
  common: { queues: number; queueSize: number; readOnly: boolean; durableFlush: boolean },
  nat: NativeApi,
): Promise<{ blk: BlkDevice; pool: QueueWorkerPool; close: () => Promise<void> }> {
  if (!nat.available) throw new VirtioError('NATIVE_UNAVAILABLE', `--queue-workers needs the native addon (${nat.unavailableReason ?? 'not loaded'}); build it with \`npm rebuild\``);
  let disk: WorkerDisk;
  let blk: BlkDevice;
  let release: () => void = () => undefined;
  if (o.disk !== undefined) {
    blk = await openBlkDevice({ backend: 'file', path: o.disk, ...(o.diskSize !== undefined ? { size: o.diskSize, create: true } : {}), ...common });
    disk = { kind: 'file', path: resolvePath(o.disk) };
  } else {
    const size = o.diskSize ?? 16 * 1024 * 1024;
    requireArg(Number.isSafeInteger(size) && size >= 512 && size <= MAX_WINDOW, `--queue-workers: a RAM disk must be 512 B .. 4 GiB (got ${size}); use a disk file (--disk) for more`);
    const fd = nat.memfdCreate('virtiokit-ramdisk', size);
    let map: ArrayBuffer;
    try {
      map = nat.mmap(fd, 0, size, true);
    } catch (e) {
      nat.close(fd);
      throw e;
    }
    release = () => {
      nat.munmap(map);
      nat.close(fd);
    };
    try {
      blk = await openBlkDevice({ backend: 'custom', instance: new RamBackend(new Uint8Array(map), { readOnly: common.readOnly }), ...common });
    } catch (e) {
      release();
      throw e;
    }
    disk = { kind: 'ram', fd, size };
  }
  let pool: QueueWorkerPool;
  try {
    pool = await QueueWorkerPool.create({ queues: blk.numQueues, disk, blk: common, native: nat });
  } catch (e) {
    await blk.close().catch(() => undefined);
    release();
    throw e;
  }
  return {
    blk,
    pool,
    close: async () => {
      try {
        await pool.close();
        await blk.close();
      } finally {
        release();
      }
    },
  };
}
