/**
 * `virtiokit serve DEVICE --vhost-user SOCKET ...`: run a device model as a vhost-user back-end
 * (QEMU `vhost-user-blk-pci` / `vhost-user-rng-pci` / `-netdev vhost-user` + `virtio-net-pci`). The socket keeps listening after the
 * front-end goes away; a new connection starts a fresh session with the same disk.
 *
 * Kept in its own file so `serve --vfio-user` (serve.ts) can dispatch here: when both exist, the
 * `serve` command calls {@link runServeVhostUser} for `--vhost-user` (see SERVE_VHOST_USER_FLAGS).
 */
import { openBlkDevice } from '../device/blk/open.js';
import { NullBackend, type NetBackend } from '../device/net/backend.js';
import { parseMac } from '../device/net/config.js';
import { VirtioNetDevice } from '../device/net/net-device.js';
import { NetResponder, parseIpv4 } from '../device/net/responder.js';
import { SocketNetBackend } from '../device/net/socket-backend.js';
import { RngDevice } from '../device/rng/rng-device.js';
import type { VirtioDeviceModel } from '../device/types.js';
import { VhostUserBackend } from '../vhost-user/backend.js';
import type { GpaRange } from '../vhost-user/memory.js';
import { VhostUserServer } from '../vhost-user/server.js';
import { type FlagSpec, type ParsedArgs, UsageError } from './args.js';
import type { CliIO, Command } from './command.js';

/** Device types `serve --vhost-user` can run. */
export const VHOST_USER_DEVICES = ['blk', 'rng', 'net'] as const;

/** Flags of `serve --vhost-user`. */
export const SERVE_VHOST_USER_FLAGS: readonly FlagSpec[] = [
  { name: 'vhost-user', type: 'string', valueName: 'SOCKET', description: 'listen for a vhost-user front-end (QEMU) on this UNIX socket path' },
  { name: 'disk', type: 'string', valueName: 'FILE', description: 'blk: disk image (raw; must exist)' },
  { name: 'read-only', type: 'boolean', description: 'blk: present the disk read-only' },
  { name: 'queues', type: 'int', valueName: 'N', min: 1, max: 64, description: 'blk: request queues (default 1; QEMU num-queues must not exceed it)' },
  { name: 'queue-size', type: 'int', valueName: 'N', min: 2, max: 32768, description: 'largest ring size the front-end may choose (power of 2, default 1024)' },
  { name: 'packed', type: 'boolean', description: 'offer VIRTIO_F_RING_PACKED (QEMU: packed=on)' },
  { name: 'access-platform', type: 'boolean', description: 'offer VIRTIO_F_ACCESS_PLATFORM (QEMU: iommu_platform=on,disable-legacy=on)' },
  {
    name: 'restrict',
    type: 'string',
    valueName: 'START-END',
    repeatable: true,
    description: 'only guest-physical [START, END) may hold buffers (hex or decimal; repeatable); the rest of guest RAM is not even mapped',
  },
  { name: 'net-listen', type: 'string', valueName: 'PATH', description: 'net: listen on a UNIX socket for one peer; frames carry a 4-byte big-endian length prefix (QEMU -netdev stream)' },
  { name: 'net-connect', type: 'string', valueName: 'PATH', description: 'net: connect to a peer listening on a UNIX socket (retried for up to 10 s)' },
  { name: 'mac', type: 'string', valueName: 'XX:XX:XX:XX:XX:XX', description: 'net: MAC address (default a locally administered 02:76:6b:xx:xx:xx)' },
  { name: 'responder', type: 'string', valueName: 'IP', description: 'net (vhost-user): attach an in-process host with this IPv4 address that answers ARP and ICMP echo (tests, demos)' },
  { name: 'once', type: 'boolean', description: 'exit after the first front-end disconnects' },
];

function parseAddr(s: string, what: string): number {
  const t = s.trim();
  const v = /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : Number.NaN;
  if (!Number.isSafeInteger(v)) throw new UsageError(`--restrict: ${what} '${s}' is not a number (use hex 0x… or decimal)`);
  return v;
}

/** Parse `START-END[,START-END...]` into ranges (END exclusive). */
export function parseRestrict(spec: string): GpaRange[] {
  return spec.split(',').map((part) => {
    const m = /^\s*([^-\s]+)\s*-\s*([^-\s]+)\s*$/.exec(part);
    if (m === null) throw new UsageError(`--restrict: '${part}' is not START-END (e.g. 0x1b200000-0x1f200000)`);
    const start = parseAddr(m[1]!, 'START');
    const end = parseAddr(m[2]!, 'END');
    if (end <= start) throw new UsageError(`--restrict: '${part}' is empty or reversed (END is exclusive and must be above START)`);
    return { start, end };
  });
}

async function buildModel(device: string, args: ParsedArgs): Promise<{ model: VirtioDeviceModel; close(): Promise<void>; describe: string }> {
  const f = args.flags;
  const queueSize = (f['queue-size'] as number | undefined) ?? 1024;
  if ((queueSize & (queueSize - 1)) !== 0) throw new UsageError(`--queue-size must be a power of 2 (got ${queueSize})`);
  if (device === 'blk') {
    const disk = f['disk'] as string | undefined;
    if (disk === undefined) throw new UsageError('serve blk needs --disk FILE (a raw disk image)');
    const queues = (f['queues'] as number | undefined) ?? 1;
    const blk = await openBlkDevice({ backend: 'file', path: disk, readOnly: f['read-only'] === true, queues, queueSize, segMax: Math.min(126, queueSize - 2 > 0 ? queueSize - 2 : 1) });
    return { model: blk, close: () => blk.close(), describe: `${disk} (${blk.backend.size} bytes, ${queues} queue${queues > 1 ? 's' : ''})` };
  }
  if (f['disk'] !== undefined || f['queues'] !== undefined || f['read-only'] !== undefined) throw new UsageError(`--disk, --queues and --read-only are for blk, not ${device}`);
  if (device === 'net') return buildNet(args, queueSize);
  for (const k of ['net-listen', 'net-connect', 'mac', 'responder']) if (f[k] !== undefined) throw new UsageError(`--${k} applies to net only`);
  const rng = new RngDevice({ queueSize });
  return { model: rng, close: () => Promise.resolve(), describe: 'random bytes' };
}

/**
 * virtio-net for QEMU's vhost-user-net front-end: one queue pair and no control queue (QEMU keeps
 * it), frames to a stream socket (--net-listen / --net-connect), to an in-process ARP/ICMP
 * responder (--responder), or dropped.
 */
async function buildNet(args: ParsedArgs, queueSize: number): Promise<{ model: VirtioDeviceModel; close(): Promise<void>; describe: string }> {
  const f = args.flags;
  const listen = f['net-listen'] as string | undefined;
  const connect = f['net-connect'] as string | undefined;
  const responderIp = f['responder'] as string | undefined;
  if ([listen, connect, responderIp].filter((x) => x !== undefined).length > 1) throw new UsageError('give one of --net-listen, --net-connect or --responder');
  const macText = f['mac'] as string | undefined;
  const check = <T>(flag: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      throw new UsageError(`--${flag}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const mac = macText === undefined ? undefined : check('mac', () => parseMac(macText));
  if (responderIp !== undefined) check('responder', () => parseIpv4(responderIp));
  let backend: NetBackend;
  let close: () => void = () => undefined;
  let describe: string;
  if (listen !== undefined || connect !== undefined) {
    const sb = listen !== undefined ? await SocketNetBackend.listen(listen) : await SocketNetBackend.connect(connect!);
    backend = sb;
    close = () => sb.close();
    describe = listen !== undefined ? `frames on stream socket ${listen} (listening)` : `frames on stream socket ${connect}`;
  } else if (responderIp !== undefined) {
    const r = new NetResponder({ ip: responderIp });
    backend = r;
    describe = `responder ${r.ipText} answers ARP and ICMP echo`;
  } else {
    backend = new NullBackend();
    describe = 'no peer (transmitted frames are dropped)';
  }
  // A stream socket carries plain frames (no virtio_net_hdr): offer no offloads then, so the driver
  // checksums in software and never sends GSO frames. The responder checksums its replies itself.
  const sock = listen !== undefined || connect !== undefined;
  const net = new VirtioNetDevice({ queueSize, ctrlVq: false, backend, offloads: !sock, ...(mac !== undefined ? { mac } : {}) });
  return { model: net, close: () => Promise.resolve(close()), describe: `${net.name}, ${describe}` };
}

/** Run `serve DEVICE --vhost-user SOCKET`; resolves with the exit code (on --once, or SIGINT/SIGTERM). */
export async function runServeVhostUser(args: ParsedArgs, io: CliIO): Promise<number> {
  const device = args.positionals[0];
  if (device === undefined || !(VHOST_USER_DEVICES as readonly string[]).includes(device) || args.positionals.length > 1) {
    throw new UsageError(`serve needs one device type: ${VHOST_USER_DEVICES.join(' or ')} (got ${args.positionals.length === 0 ? 'none' : args.positionals.join(' ')})`);
  }
  const sock = args.flags['vhost-user'] as string | undefined;
  if (sock === undefined) throw new UsageError('serve needs --vhost-user SOCKET');
  const restrictSpec = args.flags['restrict'] as string | undefined;
  const restrict = restrictSpec === undefined ? undefined : parseRestrict(restrictSpec);
  const dev = await buildModel(device, args);
  let backend: VhostUserBackend;
  let server: VhostUserServer;
  try {
    backend = new VhostUserBackend({
      model: dev.model,
      packed: args.flags['packed'] === true,
      accessPlatform: args.flags['access-platform'] === true,
      ...(restrict !== undefined ? { restrict } : {}),
    });
    server = VhostUserServer.listen(sock, backend);
  } catch (e) {
    await dev.close();
    throw e;
  }
  backend.onEvent((e) => {
    if (e.kind === 'guest-error') io.err(`guest-error: ${e.message}`);
    else if (e.kind === 'request-failed') io.err(`refused: ${e.message}`);
    else if (e.kind === 'session-start' || e.kind === 'session-end') io.err(`${e.kind}: ${e.message}`);
    else if (e.kind === 'space' && restrict !== undefined) io.err(e.message);
  });
  const ranges = restrict === undefined ? 'all guest RAM' : restrict.map((r) => `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`).join(' ');
  io.err(`virtiokit: vhost-user-${device} listening on ${sock}: ${dev.describe}; buffers allowed in ${ranges}`);

  const once = args.flags['once'] === true;
  const code = await new Promise<number>((resolve) => {
    const stop = (): void => resolve(0);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (once) void server.nextSession().then((s) => s.done.then(() => resolve(0)));
  });
  await server.close();
  await dev.close();
  const st = backend.stats;
  io.err(`virtiokit: stopped: ${st.sessions} session(s), ${st.messages} messages, ${st.kicks} kicks, ${st.calls} calls, ${st.guestErrors} guest errors, ${st.failedRequests} refused requests`);
  return code;
}

/** The `serve` command (vhost-user transport). */
export const serveVhostUserCommand: Command = {
  path: ['serve'],
  summary: 'run a device as a vhost-user back-end for QEMU (blk, rng, net)',
  description: [
    'Listen on a UNIX socket as a vhost-user back-end and run a virtio device model for the front-end',
    '(QEMU: -chardev socket,id=c,path=SOCKET -device vhost-user-blk-pci,chardev=c, or for net',
    '-netdev vhost-user,id=n,chardev=c -device virtio-net-pci,netdev=n; guest RAM must be',
    'shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem).',
    'With --restrict, only the given guest-physical ranges and the rings are mapped; any other buffer',
    'address is refused through the guest-error choke point (the ring stops until the guest resets it).',
    'See docs/real-guests.md for complete command lines.',
  ].join('\n'),
  positionalUsage: 'blk|rng|net',
  flags: SERVE_VHOST_USER_FLAGS,
  run: runServeVhostUser,
};
