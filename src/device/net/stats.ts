/** Counters of one virtio-net device (plain numbers, cheap on hot paths). */
export interface NetStats {
  /** Frames handed to the backend. */
  txFrames: number;
  txBytes: number;
  /** TX chains dropped: frame shorter than an Ethernet header. */
  txRunt: number;
  /** TX chains dropped: frame longer than {@link MAX_FRAME_LEN}, or than mtu with gso NONE. */
  txOversize: number;
  /** TX chains dropped: offload fields the negotiated features do not allow. */
  txBadOffload: number;
  /** TX chains carrying device-writable descriptors (ignored; nothing is written). */
  txWritableIgnored: number;
  /** TX chains consumed while the link was down (frames dropped). */
  txLinkDown: number;
  /** Frames written to guest receive buffers. */
  rxFrames: number;
  rxBytes: number;
  /** Receive buffers used (> rxFrames with mergeable buffers). */
  rxBuffers: number;
  /** Frames offered before DRIVER_OK / after reset (dropped). */
  rxNotReady: number;
  /** Frames offered while the link was down (dropped). */
  rxLinkDown: number;
  /** Frames shorter than an Ethernet header (dropped). */
  rxRunt: number;
  /** Frames dropped by the rx mode / MAC filter. */
  rxFiltered: number;
  /** GSO frames the driver did not negotiate the matching GUEST_* feature for (dropped; the device does not segment). */
  rxGsoDropped: number;
  /** Frames larger than mtu (+Ethernet header) or {@link MAX_FRAME_LEN} (dropped). */
  rxOversize: number;
  /** Frames with offload fields pointing outside the frame (dropped). */
  rxBadOffload: number;
  /** Frames that did not fit the receive buffer (no MRG_RXBUF) or 65535 buffers (dropped). */
  rxTooBig: number;
  /** Frames parked in the backlog because no receive buffer was available. */
  rxBacklogged: number;
  /** Frames dropped because no buffer was available and the backlog was full. */
  rxNoBuffer: number;
  /** Partial checksums completed in software (receiver without GUEST_CSUM). */
  rxCsumCompleted: number;
  /** Control commands answered VIRTIO_NET_OK / VIRTIO_NET_ERR. */
  ctrlOk: number;
  ctrlErr: number;
  /** Config-space writes by the driver (ignored). */
  configWrites: number;
}

/** A zeroed counter set. */
export function newNetStats(): NetStats {
  return {
    txFrames: 0,
    txBytes: 0,
    txRunt: 0,
    txOversize: 0,
    txBadOffload: 0,
    txWritableIgnored: 0,
    txLinkDown: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxBuffers: 0,
    rxNotReady: 0,
    rxLinkDown: 0,
    rxRunt: 0,
    rxFiltered: 0,
    rxGsoDropped: 0,
    rxOversize: 0,
    rxBadOffload: 0,
    rxTooBig: 0,
    rxBacklogged: 0,
    rxNoBuffer: 0,
    rxCsumCompleted: 0,
    ctrlOk: 0,
    ctrlErr: 0,
    configWrites: 0,
  };
}

/** Ethernet header bytes (destination, source, ethertype). */
export const ETH_HLEN = 14;
/** One 802.1Q tag. */
export const VLAN_HLEN = 4;
/**
 * Largest frame (without the virtio_net_hdr) the device carries: a maximal IP datagram (65535)
 * plus an Ethernet header and one VLAN tag. Larger TX chains are dropped; the switch never
 * produces larger frames.
 */
export const MAX_FRAME_LEN = 65535 + ETH_HLEN + VLAN_HLEN;
