/**
 * `virtiokit serve <blk|net|rng|console> --vfio-user SOCKET`: host one device in this process and
 * serve it to a VMM over vfio-user (src/vfio-user/). Runs until SIGINT / SIGTERM, then flushes and
 * closes the device.
 */
import { UsageError, type FlagSpec } from './args.js';
import type { Command } from './command.js';
import { runServeVhostUser, SERVE_VHOST_USER_FLAGS } from './serve-vhost-user.js';
import { DEVICE_KINDS, createDeviceHost, type DeviceKind } from '../vfio-user/device-host.js';
import { VfioUserServer } from '../vfio-user/server.js';
import type { SwiotlbPolicy } from '../device/types.js';
import type { DeviceHost } from '../vfio-user/device-host.js';
import { DriverWatch } from '../conformance/driver-watch.js';

const VFIO_FLAGS: readonly FlagSpec[] = [
  { name: 'vfio-user', type: 'string', valueName: 'SOCKET', description: 'UNIX socket path to serve vfio-user on (required)' },
  { name: 'swiotlb', type: 'choice', choices: ['off', 'preferred', 'required'], description: 'offer a SWIOTLB bounce window in BAR 4 (default off)' },
  { name: 'swiotlb-size', type: 'int', valueName: 'BYTES', min: 4096, max: 0xfffff000, description: 'bounce window size (default 4194304)' },
  { name: 'queues', type: 'int', valueName: 'N', min: 1, max: 64, description: 'request queues (blk) / queue pairs (net) (default 1)' },
  { name: 'queue-size', type: 'int', valueName: 'N', min: 2, max: 32768, description: 'largest queue size, a power of two (default 256)' },
  { name: 'disk', type: 'string', valueName: 'FILE', description: 'blk: disk image file (default: a RAM disk)' },
  { name: 'disk-size', type: 'int', valueName: 'BYTES', min: 512, description: 'blk: RAM disk size, or the size of a disk file to create (default 16 MiB)' },
  { name: 'read-only', type: 'boolean', description: 'blk: present the disk read-only' },
  { name: 'no-durable-flush', type: 'boolean', description: 'blk: acknowledge FLUSH without fdatasync' },
  { name: 'console-socket', type: 'string', valueName: 'PATH', description: 'console: UNIX socket for port 0 (default: output discarded)' },
  { name: 'net-listen', type: 'string', valueName: 'PATH', description: 'net: listen on a UNIX socket for one peer; frames carry a 4-byte big-endian length prefix (QEMU -netdev stream)' },
  { name: 'net-connect', type: 'string', valueName: 'PATH', description: 'net: connect to a peer listening on a UNIX socket (retried for up to 10 s)' },
  { name: 'mac', type: 'string', valueName: 'XX:XX:XX:XX:XX:XX', description: 'net: MAC address (default a locally administered 02:76:6b:xx:xx:xx)' },
  { name: 'queue-workers', type: 'boolean', description: 'blk: serve each request queue on its own worker thread (direct DMA and SWIOTLB; message DMA stays on the main thread)' },
  { name: 'max-xfer', type: 'int', valueName: 'BYTES', min: 4096, max: 64 * 1024 * 1024, description: 'max_data_xfer_size to advertise (default 1048576)' },
  { name: 'check-driver', type: 'string', valueName: 'REPORT.json', description: "judge the client's driver against the driver-side clauses; report written on driver reset, disconnect and SIGTERM" },
];

/** vfio-user flags plus the vhost-user ones (`--vhost-user` dispatches to serve-vhost-user.ts). */
const FLAGS: readonly FlagSpec[] = [...VFIO_FLAGS, ...SERVE_VHOST_USER_FLAGS.filter((v) => !VFIO_FLAGS.some((f) => f.name === v.name))];

/** The command table entry. */
export const serveCommand: Command = {
  path: ['serve'],
  summary: 'host one device in this process and serve it over vfio-user (--vfio-user) or vhost-user (--vhost-user)',
  positionalUsage: '<blk|net|rng|console>',
  description: [
    'Runs one virtio device (virtio-pci function) in this process and serves it to a VMM on a',
    'vfio-user socket (QEMU: -device \'{"driver":"vfio-user-pci","socket":{"type":"unix","path":"SOCKET"}}\').',
    'DMA follows what the client maps: DMA_MAP with the guest-RAM fd = direct access; without an fd =',
    'DMA_READ/DMA_WRITE messages; no mapping and --swiotlb required = the device sees only its bounce window.',
    'Stops on SIGINT/SIGTERM (the disk is flushed and closed first).',
    'With --vhost-user SOCKET instead, the device runs as a vhost-user back-end (blk, rng, net; see serve-vhost-user.ts).',
  ].join('\n'),
  flags: FLAGS,
  async run(args, io) {
    if (args.flags['vhost-user'] !== undefined) {
      if (args.flags['vfio-user'] !== undefined) throw new UsageError('give either --vfio-user or --vhost-user, not both');
      return runServeVhostUser(args, io);
    }
    if (args.flags['responder'] !== undefined) throw new UsageError('--responder applies to serve net --vhost-user only');
    const kind = args.positionals[0];
    if (kind === undefined || !(DEVICE_KINDS as readonly string[]).includes(kind)) throw new UsageError(`say which device to serve: ${DEVICE_KINDS.join(', ')}`);
    if (args.positionals.length > 1) throw new UsageError(`unexpected argument '${args.positionals[1]}'`);
    const f = args.flags;
    const socket = f['vfio-user'];
    if (typeof socket !== 'string') throw new UsageError('--vfio-user SOCKET (or --vhost-user SOCKET) is required');
    const num = (k: string): number | undefined => (typeof f[k] === 'number' ? (f[k] as number) : undefined);
    const str = (k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
    const qs = num('queue-size');
    if (qs !== undefined && (qs & (qs - 1)) !== 0) throw new UsageError(`--queue-size must be a power of two (got ${qs})`);
    if (str('net-listen') !== undefined && str('net-connect') !== undefined) throw new UsageError('give either --net-listen or --net-connect, not both');
    for (const k of ['net-listen', 'net-connect', 'mac']) if (str(k) !== undefined && kind !== 'net') throw new UsageError(`--${k} applies to net only`);
    const host = await createDeviceHost({
      kind: kind as DeviceKind,
      swiotlb: (str('swiotlb') ?? 'off') as SwiotlbPolicy,
      ...(num('swiotlb-size') !== undefined ? { swiotlbSize: num('swiotlb-size')! } : {}),
      ...(num('queues') !== undefined ? { queues: num('queues')! } : {}),
      ...(qs !== undefined ? { queueSize: qs } : {}),
      ...(str('disk') !== undefined ? { disk: str('disk')! } : {}),
      ...(num('disk-size') !== undefined ? { diskSize: num('disk-size')! } : {}),
      readOnly: f['read-only'] === true,
      durableFlush: f['no-durable-flush'] !== true,
      ...(str('console-socket') !== undefined ? { consoleSocket: str('console-socket')! } : {}),
      ...(str('net-listen') !== undefined ? { netListen: str('net-listen')! } : {}),
      ...(str('net-connect') !== undefined ? { netConnect: str('net-connect')! } : {}),
      ...(str('mac') !== undefined ? { mac: str('mac')! } : {}),
      ...(f['queue-workers'] === true ? { queueWorkers: true } : {}),
    });
    const watch = str('check-driver') !== undefined ? new DriverWatch(host, str('check-driver')!, io.err) : undefined;
    let server: VfioUserServer;
    try {
      server = VfioUserServer.listen({ socketPath: socket, device: watch?.host ?? host, ...(num('max-xfer') !== undefined ? { maxDataXferSize: num('max-xfer')! } : {}) });
    } catch (e) {
      await host.close();
      throw e;
    }
    reportDeviceEvents(host, server, io.err);
    if (watch !== undefined) server.onClientGone(() => watch.writeReport('disconnect'));
    io.err(`virtiokit serve: ${host.model.name} on vfio-user ${socket} (pid ${process.pid})`);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    watch?.writeReport('sigterm');
    watch?.close();
    server.close();
    await host.close();
    io.err('virtiokit serve: stopped');
    return 0;
  },
};

/**
 * One stderr line per negotiation outcome, guest error and client disconnect, so whoever runs the
 * device process (and the real-guest tests) can see why a guest's driver did not bind — e.g.
 * `FEATURES_OK refused: device requires VIRTIO_F_SWIOTLB(27) but the driver did not accept it`.
 */
function reportDeviceEvents(host: DeviceHost, server: VfioUserServer, err: (line: string) => void): void {
  host.core.trace.onEvent((e) => {
    if (e.kind === 'negotiation-refused') err(`virtiokit serve: FEATURES_OK refused: ${e.detail}`);
    else if (e.kind === 'features-ok') err(`virtiokit serve: features negotiated: ${e.detail}`);
    else if (e.kind === 'guest-error') err(`guest-error: ${e.detail}${e.clause !== undefined ? ` [${e.clause}]` : ''}`);
  });
  host.queueWorkers?.onEvent((line) => err(`virtiokit serve: ${line}`));
  server.onClientGone(() => {
    const qw = host.queueWorkers?.stats();
    if (qw !== undefined) err(`virtiokit serve: queue workers: ${qw.map((w) => `queue ${w.id}: ${w.requests} requests, ${w.wakeups} wake-ups, ${w.kickWrites}/${w.kicks} kicks signalled, ${w.irqs} + ${w.irqsViaMain} (via main) interrupts`).join('; ')}`);
    const nb = host.netBackend?.stats;
    if (nb !== undefined) err(`virtiokit serve: net socket: ${nb.txFrames} frames out (${nb.txDropped} dropped full, ${nb.txNoPeer} without a peer), ${nb.rxFrames} in (${nb.rxBadLength} bad length prefixes), ${nb.connections} connections`);
    const t = host.table.stats;
    const m = host.engine.stats;
    err(
      `virtiokit serve: client gone (DMA_MAP ${t.maps}, ${t.mapsWithFd} with an fd; DMA_READ ${m.reads} / ${m.bytesRead} B, DMA_WRITE ${m.writes} / ${m.bytesWritten} B; ` +
        `${server.stats.requests} requests, ${server.stats.errorReplies} error replies); waiting for the next client`,
    );
  });
}
