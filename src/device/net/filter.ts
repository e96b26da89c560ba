/**
 * Receive filtering: the rx mode set with VIRTIO_NET_CTRL_RX and the MAC filtering table set with
 * VIRTIO_NET_CTRL_MAC_TABLE_SET (virtio 1.4 §5.1.6.5.1/.2).
 *
 * Decision order for a frame's destination MAC (per net.packet-receive-filtering.device.1/2 and
 * net.setting-mac-address-filtering.device.4):
 *  1. promiscuous → accept (it takes effect even when another mode is on);
 *  2. broadcast   → accept unless NOBCAST (which wins over ALLMULTI);
 *  3. multicast   → NOMULTI drops (wins over ALLMULTI); ALLMULTI accepts; else the multicast table;
 *  4. unicast     → NOUNI drops (wins over ALLUNI); ALLUNI accepts; else mac or the unicast table.
 *
 * Choices where the spec leaves room (documented, tested):
 *  - Without VIRTIO_NET_F_CTRL_RX the driver cannot program a table, so every multicast frame is
 *    accepted (otherwise IPv6 neighbour discovery would break).
 *  - When the driver did not negotiate VIRTIO_NET_F_MAC and never set an address with
 *    VIRTIO_NET_CTRL_MAC_ADDR_SET, it uses an address the device does not know
 *    (net.dev-cfg-layout.driver.4), so every unicast frame is accepted.
 *  - A table with more than {@link MAC_TABLE_ENTRIES} entries of a class accepts every address of
 *    that class (as QEMU does) rather than failing the command.
 */
import { macToNumber } from './config.js';

/** Entries kept per class (unicast, multicast) before the table overflows to "accept all". */
export const MAC_TABLE_ENTRIES = 64;

/** The receive filter of one device. */
export class RxFilter {
  promisc = false;
  allmulti = false;
  alluni = false;
  nomulti = false;
  nouni = false;
  nobcast = false;
  /** VIRTIO_NET_F_CTRL_RX negotiated: the multicast table applies. */
  controlled = false;
  /** The device knows the driver's address (MAC negotiated or set by ADDR_SET). */
  knowsMac = true;
  uniCount = 0;
  multiCount = 0;
  uniOverflow = false;
  multiOverflow = false;
  private readonly uni = new Float64Array(MAC_TABLE_ENTRIES);
  private readonly multi = new Float64Array(MAC_TABLE_ENTRIES);

  /** Device reset: every mode off, empty table (net.setting-mac-address-filtering.device.1). */
  reset(): void {
    this.promisc = this.allmulti = this.alluni = this.nomulti = this.nouni = this.nobcast = false;
    this.controlled = false;
    this.knowsMac = true;
    this.clearTable();
  }

  clearTable(): void {
    this.uniCount = this.multiCount = 0;
    this.uniOverflow = this.multiOverflow = false;
  }

  /** Add `n` MACs from `buf[off..]` (6 bytes each) to the unicast or multicast table. */
  addEntries(multicast: boolean, buf: Uint8Array, off: number, n: number): void {
    const t = multicast ? this.multi : this.uni;
    let c = multicast ? this.multiCount : this.uniCount;
    let over = false;
    for (let i = 0; i < n; i++) {
      if (c === MAC_TABLE_ENTRIES) {
        over = true;
        break;
      }
      t[c++] = macToNumber(buf, off + 6 * i);
    }
    if (multicast) {
      this.multiCount = c;
      this.multiOverflow ||= over;
    } else {
      this.uniCount = c;
      this.uniOverflow ||= over;
    }
  }

  /** The unicast (or multicast) table entries as numbers (inspection and tests). */
  entries(multicast: boolean): number[] {
    const t = multicast ? this.multi : this.uni;
    return Array.from(t.subarray(0, multicast ? this.multiCount : this.uniCount));
  }

  /**
   * Should a frame whose destination MAC is `buf[off..off+6)` be delivered?
   * @param isOwn whether the destination equals the device's current mac.
   */
  accepts(buf: Uint8Array, off: number, isOwn: boolean): boolean {
    // net.packet-receive-filtering.device.1: promiscuous receives everything, whatever else is on.
    if (this.promisc) return true;
    const d0 = buf[off]!;
    if ((d0 & 1) !== 0) {
      if (d0 === 0xff && buf[off + 1] === 0xff && buf[off + 2] === 0xff && buf[off + 3] === 0xff && buf[off + 4] === 0xff && buf[off + 5] === 0xff) {
        // net.packet-receive-filtering.device.2: NOBCAST wins over ALLMULTI; NOMULTI does not apply.
        return !this.nobcast;
      }
      // net.packet-receive-filtering.device.2: NOMULTI wins over ALLMULTI.
      if (this.nomulti) return false;
      if (this.allmulti || !this.controlled || this.multiOverflow) return true;
      return this.lookup(this.multi, this.multiCount, macToNumber(buf, off));
    }
    // net.packet-receive-filtering.device.2: NOUNI wins over ALLUNI.
    if (this.nouni) return false;
    if (this.alluni || isOwn || !this.knowsMac || this.uniOverflow) return true;
    // net.setting-mac-address-filtering.device.4: neither mac nor the table → drop.
    return this.lookup(this.uni, this.uniCount, macToNumber(buf, off));
  }

  private lookup(t: Float64Array, n: number, m: number): boolean {
    for (let i = 0; i < n; i++) if (t[i] === m) return true;
    return false;
  }
}
