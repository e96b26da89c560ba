/**
 * vfio-user wire constants and struct layouts (QEMU `docs/interop/vfio-user.rst`, as QEMU 11.1.3
 * speaks it — `reference/vfio-user.md` §4).
 *
 * Every message starts with a 16-byte little-endian header: `msg_id` u16 @0, `command` u16 @2,
 * `size` u32 @4 (header included), `flags` u32 @8, `error` u32 @12. Payload offsets below are
 * relative to the end of the header.
 */

/** Header length in bytes. */
export const HEADER_SIZE = 16;

/** Commands. */
export const Cmd = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;
export type CmdCode = (typeof Cmd)[keyof typeof Cmd];

/** Highest command number known. */
export const MAX_COMMAND = 18;

/** Command name for logs. */
export function cmdName(c: number): string {
  for (const [k, v] of Object.entries(Cmd)) if (v === c) return k;
  return `CMD_${c}`;
}

/** Header flags: bits 0–3 message type, then NO_REPLY and ERROR. */
export const FLAG_TYPE_MASK = 0xf;
export const FLAG_TYPE_COMMAND = 0;
export const FLAG_TYPE_REPLY = 1;
export const FLAG_NO_REPLY = 0x10;
export const FLAG_ERROR = 0x20;

/** errno values used in error replies (Linux). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  EPROTO: 71,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ETIMEDOUT: 110,
} as const;

/** DMA_MAP flags. */
export const DMA_FLAG_READ = 1;
export const DMA_FLAG_WRITE = 2;
/** DMA_UNMAP flags. */
export const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
export const DMA_UNMAP_FLAG_ALL = 2;

/** Device info flags. */
export const DEVICE_FLAGS_RESET = 1;
export const DEVICE_FLAGS_PCI = 2;

/** Region indexes of a PCI device (Linux VFIO). */
export const PCI_BAR0_REGION_INDEX = 0;
export const PCI_ROM_REGION_INDEX = 6;
export const PCI_CONFIG_REGION_INDEX = 7;
export const PCI_VGA_REGION_INDEX = 8;
/** Regions reported (BAR0–5, ROM, config, VGA). */
export const PCI_NUM_REGIONS = 9;

/** Region info flags. */
export const REGION_INFO_FLAG_READ = 1;
export const REGION_INFO_FLAG_WRITE = 2;
export const REGION_INFO_FLAG_MMAP = 4;
export const REGION_INFO_FLAG_CAPS = 8;
/** Region info capability: sparse mmap areas (id 1, version 1). */
export const REGION_INFO_CAP_SPARSE_MMAP = 1;

/** IRQ indexes of a PCI device. */
export const PCI_INTX_IRQ_INDEX = 0;
export const PCI_MSI_IRQ_INDEX = 1;
export const PCI_MSIX_IRQ_INDEX = 2;
export const PCI_ERR_IRQ_INDEX = 3;
export const PCI_REQ_IRQ_INDEX = 4;
export const PCI_NUM_IRQS = 5;

/** IRQ info flags. */
export const IRQ_INFO_EVENTFD = 1;
export const IRQ_INFO_MASKABLE = 2;
export const IRQ_INFO_AUTOMASKED = 4;
export const IRQ_INFO_NORESIZE = 8;

/** SET_IRQS flags: data type (one of) and action (one of). */
export const IRQ_SET_DATA_NONE = 0x1;
export const IRQ_SET_DATA_BOOL = 0x2;
export const IRQ_SET_DATA_EVENTFD = 0x4;
export const IRQ_SET_DATA_MASK = 0x7;
export const IRQ_SET_ACTION_MASK = 0x8;
export const IRQ_SET_ACTION_UNMASK = 0x10;
export const IRQ_SET_ACTION_TRIGGER = 0x20;
export const IRQ_SET_ACTION_MASK_ALL = 0x38;

/** Fixed payload sizes (bytes after the header). */
export const SIZES = {
  VERSION_MIN: 4 + 1, // major, minor, at least the NUL
  DMA_MAP: 32,
  DMA_UNMAP: 24,
  DEVICE_INFO: 16,
  REGION_INFO: 32,
  IRQ_INFO: 16,
  SET_IRQS: 20,
  REGION_ACCESS: 16, // offset u64, region u32, count u32 (+ data)
  DMA_ACCESS: 16, // address u64, count u64 (+ data)
} as const;

/** Protocol version spoken. */
export const VERSION_MAJOR = 0;
export const VERSION_MINOR = 0;

/** Capabilities one side advertises in VERSION (JSON `{"capabilities": {...}}`). */
export interface VfioUserCaps {
  /** Most fds in one message (spec default 1; QEMU asks 16). */
  maxMsgFds: number;
  /** Largest data transfer (REGION/DMA read/write data) in bytes (spec default 1 MiB). */
  maxDataXferSize: number;
  /** Supported page sizes bitmap (default 4096). */
  pgsizes: number;
  /** Most DMA mappings (default 65535). */
  maxDmaMaps: number;
}

/** Spec defaults for keys a peer leaves out. */
export const DEFAULT_CAPS: Readonly<VfioUserCaps> = { maxMsgFds: 1, maxDataXferSize: 1024 * 1024, pgsizes: 4096, maxDmaMaps: 65535 };

/** Upper bounds we accept from a peer (QEMU's own checks: reference §5). */
export const CAP_LIMITS = { maxMsgFds: 16, maxDataXferSize: 64 * 1024 * 1024, maxDmaMaps: 65535 } as const;
