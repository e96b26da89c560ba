/**
 * The control virtqueue (VIRTIO_NET_F_CTRL_VQ, virtio 1.4 §5.1.6.5).
 *
 * A command is one chain: device-readable `class u8, command u8, command-specific-data[]`, then
 * device-writable `ack u8` (VIRTIO_NET_OK 0 / VIRTIO_NET_ERR 1). The device writes the ack and
 * returns the chain with used len 1.
 *
 * Supported:
 *  - VIRTIO_NET_CTRL_RX: PROMISC, ALLMULTI (with CTRL_RX, net.packet-receive-filtering.device.1),
 *    ALLUNI, NOMULTI, NOUNI, NOBCAST (with CTRL_RX_EXTRA, …device.2); data = one byte, 0 off / non-zero on.
 *  - VIRTIO_NET_CTRL_MAC: TABLE_SET (with CTRL_RX, net.setting-mac-address-filtering.driver.1/3;
 *    the table is updated before the chain is used, …device.2), ADDR_SET (with CTRL_MAC_ADDR; mac in
 *    config space updated before the chain is used, …device.3).
 *  - VIRTIO_NET_CTRL_ANNOUNCE_ACK (with GUEST_ANNOUNCE): clears VIRTIO_NET_S_ANNOUNCE before the
 *    chain is used (net.gratuitous-packet-sending.device.1).
 *  - VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (with MQ): 1..max_virtqueue_pairs
 *    (net.automatic-receive-steering-in-multiqueue-mode.driver.2), else ERR.
 * Everything else (VLAN, RSS, offloads, coalescing, statistics, unknown classes) answers ERR.
 *
 * A config field the driver changes through a command (mac, status) bumps config_generation
 * through `configChanged` (pci.common-cfg.device.6), which also raises a config interrupt.
 *
 * Malformed chains — no writable byte for the ack, or fewer than 2 readable bytes — have no
 * normative clause; like QEMU ("ctrl missing headers") they are guest errors: choke point, the
 * queue parks. Bad lengths inside a well-formed command are answered with ERR.
 */
import type { AddressSpace } from '../../memory/space.js';
import type { GuestErrorSink } from '../choke.js';
import { DescChain, type DeviceQueue } from '../../queue/types.js';
import { readFromChain, writeByteToChain } from '../../queue/chain-io.js';
import type { FeatureSet } from '../../features/set.js';
import { NET_F } from './features.js';
import { MAC_TABLE_ENTRIES, type RxFilter } from './filter.js';
import { VIRTIO_NET_S_ANNOUNCE, type NetConfig } from './config.js';
import type { NetStats } from './stats.js';

export const VIRTIO_NET_OK = 0;
export const VIRTIO_NET_ERR = 1;

export const VIRTIO_NET_CTRL_RX = 0;
export const VIRTIO_NET_CTRL_RX_PROMISC = 0;
export const VIRTIO_NET_CTRL_RX_ALLMULTI = 1;
export const VIRTIO_NET_CTRL_RX_ALLUNI = 2;
export const VIRTIO_NET_CTRL_RX_NOMULTI = 3;
export const VIRTIO_NET_CTRL_RX_NOUNI = 4;
export const VIRTIO_NET_CTRL_RX_NOBCAST = 5;

export const VIRTIO_NET_CTRL_MAC = 1;
export const VIRTIO_NET_CTRL_MAC_TABLE_SET = 0;
export const VIRTIO_NET_CTRL_MAC_ADDR_SET = 1;

export const VIRTIO_NET_CTRL_VLAN = 2;

export const VIRTIO_NET_CTRL_ANNOUNCE = 3;
export const VIRTIO_NET_CTRL_ANNOUNCE_ACK = 0;

export const VIRTIO_NET_CTRL_MQ = 4;
export const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET = 0;

export const VIRTIO_NET_CTRL_GUEST_OFFLOADS = 5;

/** What the control queue acts on (the device model implements it). */
export interface CtrlTarget {
  readonly filter: RxFilter;
  readonly config: NetConfig;
  readonly stats: NetStats;
  /** Negotiated features. */
  readonly negotiated: FeatureSet;
  /** VQ_PAIRS_SET accepted: `n` pairs are active from now on. */
  setQueuePairs(n: number): void;
  /** The driver changed a config field (mac, status): bump config_generation. */
  configChanged(): void;
}

/** Processes control commands. */
export class CtrlPath {
  private readonly chain: DescChain;
  /** Class, command and small payloads; MAC tables are read in pieces. */
  private readonly scratch = new Uint8Array(8 + 6 * MAC_TABLE_ENTRIES);

  constructor(maxSegments = 64) {
    this.chain = new DescChain(maxSegments);
  }

  /**
   * Process every available command (bounded to 4 × queue size per call).
   * @returns false when a guest error was reported.
   */
  run(queue: DeviceQueue, space: AddressSpace, sink: GuestErrorSink, t: CtrlTarget): boolean {
    const ch = this.chain;
    let budget = queue.size * 4;
    for (;;) {
      queue.disableNotifications();
      while (budget > 0 && queue.pop(ch)) {
        budget--;
        if (ch.writableBytes < 1 || ch.readableBytes < 2) {
          try {
            sink.guestError({
              code: 'DEVICE_REQUEST_INVALID',
              clause: undefined,
              message: `virtio-net control queue ${queue.index}: command chain ${ch.head} has ${ch.readableBytes} readable bytes (class + command need 2) and ${ch.writableBytes} writable bytes (the ack needs 1)`,
              queue: queue.index,
            });
          } catch {
            // sinks do not throw
          }
          return false;
        }
        const ack = this.command(space, ch, t);
        if (ack === VIRTIO_NET_OK) t.stats.ctrlOk++;
        else t.stats.ctrlErr++;
        writeByteToChain(space, ch, 0, ack);
        queue.pushUsed(ch.head, 1);
      }
      if (budget === 0 || !queue.enableNotifications()) break;
    }
    return true;
  }

  /** Execute one command; returns the ack byte. */
  private command(space: AddressSpace, ch: DescChain, t: CtrlTarget): number {
    const s = this.scratch;
    readFromChain(space, ch, s, 0, 2);
    const cls = s[0]!;
    const cmd = s[1]!;
    const dataLen = ch.readableBytes - 2;
    const f = t.negotiated;
    switch (cls) {
      case VIRTIO_NET_CTRL_RX: {
        const base = cmd <= VIRTIO_NET_CTRL_RX_ALLMULTI;
        // net.packet-receive-filtering.device.1 (PROMISC, ALLMULTI with CTRL_RX) / .2 (the rest with CTRL_RX_EXTRA)
        if (cmd > VIRTIO_NET_CTRL_RX_NOBCAST || !f.has(base ? NET_F.CTRL_RX : NET_F.CTRL_RX_EXTRA) || dataLen !== 1) return VIRTIO_NET_ERR;
        readFromChain(space, ch, s, 0, 1, 2);
        const on = s[0] !== 0;
        const flt = t.filter;
        if (cmd === VIRTIO_NET_CTRL_RX_PROMISC) flt.promisc = on;
        else if (cmd === VIRTIO_NET_CTRL_RX_ALLMULTI) flt.allmulti = on;
        else if (cmd === VIRTIO_NET_CTRL_RX_ALLUNI) flt.alluni = on;
        else if (cmd === VIRTIO_NET_CTRL_RX_NOMULTI) flt.nomulti = on;
        else if (cmd === VIRTIO_NET_CTRL_RX_NOUNI) flt.nouni = on;
        else flt.nobcast = on;
        return VIRTIO_NET_OK;
      }
      case VIRTIO_NET_CTRL_MAC:
        if (cmd === VIRTIO_NET_CTRL_MAC_TABLE_SET) {
          // net.setting-mac-address-filtering.driver.1: MAC class commands need CTRL_RX.
          if (!f.has(NET_F.CTRL_RX)) return VIRTIO_NET_ERR;
          return this.tableSet(space, ch, t.filter, dataLen);
        }
        if (cmd === VIRTIO_NET_CTRL_MAC_ADDR_SET) {
          if (!f.has(NET_F.CTRL_MAC_ADDR) || dataLen !== 6) return VIRTIO_NET_ERR;
          readFromChain(space, ch, s, 0, 6, 2);
          // net.setting-mac-address-filtering.device.3: mac in config space is updated before the chain is used.
          const changed = !t.config.isMac(s, 0);
          t.config.setMac(s, 0);
          t.filter.knowsMac = true;
          if (changed) t.configChanged();
          return VIRTIO_NET_OK;
        }
        return VIRTIO_NET_ERR;
      case VIRTIO_NET_CTRL_ANNOUNCE:
        if (cmd !== VIRTIO_NET_CTRL_ANNOUNCE_ACK || !f.has(NET_F.GUEST_ANNOUNCE)) return VIRTIO_NET_ERR;
        // net.gratuitous-packet-sending.device.1: clear ANNOUNCE before the buffer is used.
        if (t.config.setStatusBits(0, VIRTIO_NET_S_ANNOUNCE)) t.configChanged();
        return VIRTIO_NET_OK;
      case VIRTIO_NET_CTRL_MQ: {
        if (cmd !== VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || !f.has(NET_F.MQ) || dataLen !== 2) return VIRTIO_NET_ERR;
        readFromChain(space, ch, s, 0, 2, 2);
        const n = s[0]! | (s[1]! << 8);
        // net.automatic-receive-steering-in-multiqueue-mode.driver.2: 1..max_virtqueue_pairs.
        if (n < 1 || n > t.config.maxQueuePairs) return VIRTIO_NET_ERR;
        t.setQueuePairs(n);
        return VIRTIO_NET_OK;
      }
      default:
        return VIRTIO_NET_ERR;
    }
  }

  /**
   * VIRTIO_NET_CTRL_MAC_TABLE_SET: le32 N, N unicast MACs, le32 M, M multicast MACs
   * (net.setting-mac-address-filtering.driver.3; either count may be 0, …driver.4). The whole
   * command is validated before the table changes; more than {@link MAC_TABLE_ENTRIES} entries of
   * a class make that class accept everything.
   */
  private tableSet(space: AddressSpace, ch: DescChain, flt: RxFilter, dataLen: number): number {
    const s = this.scratch;
    if (dataLen < 8) return VIRTIO_NET_ERR;
    readFromChain(space, ch, s, 0, 4, 2);
    const nUni = (s[0]! | (s[1]! << 8) | (s[2]! << 16) | (s[3]! << 24)) >>> 0;
    const multiAt = 4 + 6 * nUni;
    if (multiAt + 4 > dataLen) return VIRTIO_NET_ERR;
    readFromChain(space, ch, s, 0, 4, 2 + multiAt);
    const nMulti = (s[0]! | (s[1]! << 8) | (s[2]! << 16) | (s[3]! << 24)) >>> 0;
    if (multiAt + 4 + 6 * nMulti !== dataLen) return VIRTIO_NET_ERR;
    // net.setting-mac-address-filtering.device.2: the table is updated before the chain is used.
    flt.clearTable();
    const keepU = Math.min(nUni, MAC_TABLE_ENTRIES);
    readFromChain(space, ch, s, 0, 6 * keepU, 2 + 4);
    flt.addEntries(false, s, 0, nUni > MAC_TABLE_ENTRIES ? MAC_TABLE_ENTRIES + 1 : keepU);
    const keepM = Math.min(nMulti, MAC_TABLE_ENTRIES);
    readFromChain(space, ch, s, 0, 6 * keepM, 2 + multiAt + 4);
    flt.addEntries(true, s, 0, nMulti > MAC_TABLE_ENTRIES ? MAC_TABLE_ENTRIES + 1 : keepM);
    return VIRTIO_NET_OK;
  }
}
