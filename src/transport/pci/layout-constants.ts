/**
 * The numeric layout of a virtio-pci function, as numbers only (no code, no imports): PCI type-0
 * header offsets and bits, capability ids, virtio `cfg_type` values and `struct virtio_pci_cap`
 * field offsets, MSI-X capability bits, ISR bits and `struct virtio_pci_common_cfg` field offsets
 * (virtio 1.4 §4.1, `reference/spec-facts.md`; Linux `pci_regs.h` / `virtio_pci.h` names).
 *
 * The one source of truth for both sides: the device-side decoders in this folder and the
 * simulated guest driver (`src/driver/`) import these, like a uapi header.
 */

// ---------------------------------------------------------------- PCI configuration header

/** Size of the conventional header + capability area. */
export const PCI_CONFIG_HEADER_SIZE = 256;
/** Size of the PCIe configuration space (header + extended space). */
export const PCI_CONFIG_SPACE_SIZE = 4096;

/** Type-0 header offsets. */
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;

/** Command register bits. */
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_PARITY = 0x40;
export const PCI_COMMAND_SERR = 0x100;
export const PCI_COMMAND_INTX_DISABLE = 0x400;

/** Status register bits. */
export const PCI_STATUS_INTERRUPT = 0x8;
export const PCI_STATUS_CAP_LIST = 0x10;
/** Error bits of the status register that are write-1-to-clear. */
export const PCI_STATUS_W1C = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000;

// ---------------------------------------------------------------- capabilities

/** PCI capability ids. */
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_MSIX = 0x11;

/** virtio cfg_type values (transport-pci.tex "cfg_type"). */
export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;
export const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG = 8;
export const VIRTIO_PCI_CAP_VENDOR_CFG = 9;
/** SWIOTLB bounce-buffer capability as proposed by the 2025 RFC (never merged; configurable). */
export const VIRTIO_PCI_CAP_SWIOTLB_DEFAULT = 10;

/** PCI vendor id of virtio devices (pci.discovery.device.1). */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;

/** Sizes of the virtio capability structures. */
export const VIRTIO_PCI_CAP_LEN = 16;
export const VIRTIO_PCI_CAP64_LEN = 24;
export const VIRTIO_PCI_NOTIFY_CAP_LEN = 20;
export const VIRTIO_PCI_CFG_CAP_LEN = 20;

/** Field offsets inside `struct virtio_pci_cap`. */
export const CAP_VNDR = 0;
export const CAP_NEXT = 1;
export const CAP_LEN = 2;
export const CAP_CFG_TYPE = 3;
export const CAP_BAR = 4;
export const CAP_ID = 5;
export const CAP_OFFSET = 8;
export const CAP_LENGTH = 12;
/** `notify_off_multiplier` / `pci_cfg_data` / `offset_hi` sit at 16; `length_hi` at 20. */
export const CAP_EXTRA = 16;
export const CAP_LENGTH_HI = 20;

// ---------------------------------------------------------------- MSI-X capability

/** Message Control bits of the MSI-X capability. */
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
/** Bytes per table entry. */
export const PCI_MSIX_ENTRY_SIZE = 16;
/** Most vectors a table can have (Table Size field is 11 bits). */
export const PCI_MSIX_MAX_VECTORS = 2048;

// ---------------------------------------------------------------- ISR status

/** ISR status bits: a used-buffer notification, a configuration change. */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

// ---------------------------------------------------------------- struct virtio_pci_common_cfg

/** Size of the structure. */
export const COMMON_CFG_SIZE = 64;

/** Field offsets (virtio_pci_common_cfg). */
export const COMMON_CFG = {
  DEVICE_FEATURE_SELECT: 0,
  DEVICE_FEATURE: 4,
  DRIVER_FEATURE_SELECT: 8,
  DRIVER_FEATURE: 12,
  CONFIG_MSIX_VECTOR: 16,
  NUM_QUEUES: 18,
  DEVICE_STATUS: 20,
  CONFIG_GENERATION: 21,
  QUEUE_SELECT: 22,
  QUEUE_SIZE: 24,
  QUEUE_MSIX_VECTOR: 26,
  QUEUE_ENABLE: 28,
  QUEUE_NOTIFY_OFF: 30,
  QUEUE_DESC_LO: 32,
  QUEUE_DESC_HI: 36,
  QUEUE_DRIVER_LO: 40,
  QUEUE_DRIVER_HI: 44,
  QUEUE_DEVICE_LO: 48,
  QUEUE_DEVICE_HI: 52,
  QUEUE_NOTIF_CONFIG_DATA: 56,
  QUEUE_RESET: 58,
  ADMIN_QUEUE_INDEX: 60,
  ADMIN_QUEUE_NUM: 62,
} as const;
