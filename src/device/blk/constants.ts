/**
 * virtio-blk numbers (virtio 1.4 §5.2, device-types/blk/description.tex): request types, status
 * values, feature bits, and the sizes of the on-the-wire structures.
 */

/** Virtio device ID of a block device. */
export const VIRTIO_ID_BLOCK = 2;

/** Sectors are always 512 bytes, whatever blk_size says. */
export const SECTOR_SIZE = 512;
export const SECTOR_SHIFT = 9;

/** `struct virtio_blk_req` header: type le32, reserved le32, sector le64. */
export const BLK_REQ_HEADER_BYTES = 16;
/** `struct virtio_blk_discard_write_zeroes`: sector le64, num_sectors le32, flags le32. */
export const BLK_DWZ_SEGMENT_BYTES = 16;
/** GET_ID data length (the device ID string). */
export const BLK_ID_BYTES = 20;
/** `struct virtio_blk_config` size. */
export const BLK_CONFIG_BYTES = 96;

// --- request types
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_GET_LIFETIME = 10;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_T_SECURE_ERASE = 14;

// --- status values
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

/** Discard / write-zeroes segment flag: unmap (bit 0); bits 1..31 are reserved. */
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

// --- feature bits
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_GEOMETRY = 4;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;
export const VIRTIO_BLK_F_LIFETIME = 15;
export const VIRTIO_BLK_F_SECURE_ERASE = 16;
export const VIRTIO_BLK_F_ZONED = 17;

/** Human name of a request type (logs and errors). */
export function blkTypeName(type: number): string {
  switch (type) {
    case VIRTIO_BLK_T_IN:
      return 'IN';
    case VIRTIO_BLK_T_OUT:
      return 'OUT';
    case VIRTIO_BLK_T_FLUSH:
      return 'FLUSH';
    case VIRTIO_BLK_T_GET_ID:
      return 'GET_ID';
    case VIRTIO_BLK_T_GET_LIFETIME:
      return 'GET_LIFETIME';
    case VIRTIO_BLK_T_DISCARD:
      return 'DISCARD';
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return 'WRITE_ZEROES';
    case VIRTIO_BLK_T_SECURE_ERASE:
      return 'SECURE_ERASE';
    default:
      return `type ${type >>> 0}`;
  }
}
