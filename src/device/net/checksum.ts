/**
 * Internet checksum (RFC 1071) helpers for completing a partial checksum in software, the way a
 * device does when the receiving driver did not negotiate VIRTIO_NET_F_GUEST_CSUM
 * (net.processing-incoming-packets.device.5). No allocation.
 */

/**
 * Ones'-complement sum of `len` bytes at `buf[off..]` as 16-bit big-endian words (an odd last
 * byte is padded with zero), added to `initial`. Returns an unfolded 32-bit-safe accumulator.
 */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + len;
  let i = off;
  // Fold every 32768 words so the accumulator stays well below 2^53 (it stays below 2^31 anyway).
  while (i + 1 < end) {
    sum += (buf[i]! << 8) | buf[i + 1]!;
    i += 2;
    if ((i & 0xffff) === 0) sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

/** Fold an accumulator to 16 bits (not complemented). */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The checksum a partial-checksum packet needs at `csumStart + csumOffset`: the complement of the
 * ones'-complement sum from csum_start to the end of the frame, where the checksum field already
 * holds the pseudo-header sum (net.packet-transmission.driver.17). A result of 0 is written as
 * 0xffff (equivalent in ones' complement; for UDP, 0 would mean "no checksum").
 * @returns the 16-bit value to store big-endian at the checksum field.
 */
export function completeChecksum(frame: Uint8Array, off: number, len: number, csumStart: number): number {
  const c = ~foldSum(onesSum(frame, off + csumStart, len - csumStart)) & 0xffff;
  return c === 0 ? 0xffff : c;
}
