/**
 * virtio-net feature bit numbers by short name, looked up once from the table in
 * `src/features/bits.ts` (the one place that names feature bits).
 */
import { DeviceType, requireFeatureBit } from '../../features/bits.js';

const b = (n: string): number => requireFeatureBit(`VIRTIO_NET_F_${n}`, DeviceType.NET);

/** Network feature bits used by the net device model. */
export const NET_F = {
  CSUM: b('CSUM'),
  GUEST_CSUM: b('GUEST_CSUM'),
  MTU: b('MTU'),
  MAC: b('MAC'),
  GUEST_TSO4: b('GUEST_TSO4'),
  GUEST_TSO6: b('GUEST_TSO6'),
  GUEST_ECN: b('GUEST_ECN'),
  GUEST_UFO: b('GUEST_UFO'),
  HOST_TSO4: b('HOST_TSO4'),
  HOST_TSO6: b('HOST_TSO6'),
  HOST_ECN: b('HOST_ECN'),
  HOST_UFO: b('HOST_UFO'),
  MRG_RXBUF: b('MRG_RXBUF'),
  STATUS: b('STATUS'),
  CTRL_VQ: b('CTRL_VQ'),
  CTRL_RX: b('CTRL_RX'),
  CTRL_VLAN: b('CTRL_VLAN'),
  CTRL_RX_EXTRA: b('CTRL_RX_EXTRA'),
  GUEST_ANNOUNCE: b('GUEST_ANNOUNCE'),
  MQ: b('MQ'),
  CTRL_MAC_ADDR: b('CTRL_MAC_ADDR'),
  GUEST_USO4: b('GUEST_USO4'),
  GUEST_USO6: b('GUEST_USO6'),
  HOST_USO: b('HOST_USO'),
  HASH_REPORT: b('HASH_REPORT'),
  HOST_UDP_TUNNEL_GSO: b('HOST_UDP_TUNNEL_GSO'),
  OUT_NET_HEADER: b('OUT_NET_HEADER'),
  IPSEC: b('IPSEC'),
  RSS: b('RSS'),
} as const;
