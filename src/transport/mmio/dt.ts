/**
 * Device-tree source for a virtio-mmio device, optionally with its SWIOTLB bounce window as a
 * `restricted-dma-pool` (the 2025 RFC's MMIO mechanism, `reference/swiotlb.md` §2 and §4.2;
 * the edit that boots an arm64 Linux guest is `reference/real-guests.md` §6.4):
 *
 *     / {
 *         reserved-memory {
 *             #address-cells = <2>; #size-cells = <2>; ranges;
 *             label: restricted-dma@<base> {
 *                 compatible = "restricted-dma-pool";
 *                 reg = <base-hi base-lo size-hi size-lo>;
 *             };
 *         };
 *         virtio_mmio@<base> {
 *             compatible = "virtio,mmio";
 *             reg = <...>; interrupts = <...>;
 *             memory-region = <&label>;
 *         };
 *     };
 *
 * Binding facts kept: the pool node has neither `no-map` nor `reusable` (Linux rejects a
 * restricted pool with either); unit addresses match the first `reg` address; addresses and sizes
 * use two cells each. The snippet is a root-node fragment: dtc merges it into a tree that has its
 * own root (later definitions of the same node merge), so it can be appended to a dumped
 * `virt.dts`. Interrupts default to the arm GIC three-cell form (SPI, edge rising) that QEMU's
 * `virt` board uses for its virtio-mmio transports.
 */
import { requireArg } from '../../errors.js';
import { VIRTIO_MMIO_DEFAULT_SIZE } from './registers.js';

/** The bounce pool as the device tree describes it. */
export interface DtDmaPool {
  /** System (guest-physical) address of the pool; page aligned (4 KiB). */
  base: number;
  /** Bytes; whole pages. */
  size: number;
  /** Label the device node references (default `virtio_dma_pool`). */
  label?: string;
  /** Node name before `@` (default `restricted-dma`). */
  nodeName?: string;
}

/** Options of {@link dtsSnippet}. */
export interface DtsOptions {
  /** Base address of the register window. */
  base: number;
  /** Register window size (default 0x200). */
  size?: number;
  /** Interrupt number: the GIC SPI number in `gic` form, the raw cell otherwise. */
  irq: number;
  /**
   * `gic` (default): `<0 irq 1>` (GIC_SPI, IRQ_TYPE_EDGE_RISING, as QEMU `virt`); `gic-level`:
   * `<0 irq 4>` (level high); `single`: `<irq>` for a one-cell interrupt controller.
   */
  interruptStyle?: 'gic' | 'gic-level' | 'single';
  /** Emit `dma-coherent;` (default true, as QEMU `virt` does). */
  dmaCoherent?: boolean;
  /** Node name before `@` (default `virtio_mmio`, as QEMU names it). */
  nodeName?: string;
  /** Label of the device node (default none). */
  label?: string;
  /** The bounce window: adds the reserved-memory node and `memory-region`. */
  pool?: DtDmaPool;
  /** Indentation unit (default a tab). */
  indent?: string;
}

const PAGE = 4096;
const TWO32 = 4294967296;
const LABEL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NODE_RE = /^[A-Za-z0-9,._+-]+$/;

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Two cells for a 64-bit value. */
function cells2(v: number): string {
  return `${hex(Math.floor(v / TWO32))} ${hex(v % TWO32)}`;
}

function checkAddr(what: string, v: number): void {
  requireArg(Number.isSafeInteger(v) && v >= 0, `dtsSnippet: ${what} ${v} must be a non-negative integer below 2^53`);
}

/**
 * The device-tree source fragment for one virtio-mmio device (and its restricted DMA pool).
 * @throws VirtioError INVALID_ARGUMENT for a bad address, size, label or interrupt
 */
export function dtsSnippet(o: DtsOptions): string {
  const size = o.size ?? VIRTIO_MMIO_DEFAULT_SIZE;
  checkAddr('base', o.base);
  requireArg(Number.isSafeInteger(size) && size > 0, `dtsSnippet: size ${size} must be a positive integer`);
  requireArg(Number.isInteger(o.irq) && o.irq >= 0 && o.irq <= 0xffffffff, `dtsSnippet: irq ${o.irq} must be a 32-bit cell value`);
  const style = o.interruptStyle ?? 'gic';
  const node = o.nodeName ?? 'virtio_mmio';
  requireArg(NODE_RE.test(node), `dtsSnippet: node name "${node}" has characters a device-tree node name cannot have`);
  if (o.label !== undefined) requireArg(LABEL_RE.test(o.label), `dtsSnippet: label "${o.label}" must match [A-Za-z_][A-Za-z0-9_]*`);
  const t = o.indent ?? '\t';
  const lines: string[] = ['/ {'];
  let poolLabel: string | undefined;
  const p = o.pool;
  if (p !== undefined) {
    checkAddr('pool.base', p.base);
    requireArg(p.base % PAGE === 0, `dtsSnippet: pool.base ${hex(p.base)} must be ${PAGE}-byte aligned (Linux maps the pool by pages)`);
    requireArg(Number.isSafeInteger(p.size) && p.size > 0 && p.size % PAGE === 0, `dtsSnippet: pool.size ${p.size} must be a positive multiple of ${PAGE}`);
    poolLabel = p.label ?? 'virtio_dma_pool';
    requireArg(LABEL_RE.test(poolLabel), `dtsSnippet: pool.label "${poolLabel}" must match [A-Za-z_][A-Za-z0-9_]*`);
    const pn = p.nodeName ?? 'restricted-dma';
    requireArg(NODE_RE.test(pn), `dtsSnippet: pool.nodeName "${pn}" has characters a device-tree node name cannot have`);
    requireArg(p.base + p.size <= o.base || o.base + size <= p.base, `dtsSnippet: the pool [${hex(p.base)}, +${hex(p.size)}) overlaps the register window [${hex(o.base)}, +${hex(size)})`);
    lines.push(
      `${t}reserved-memory {`,
      `${t}${t}#address-cells = <2>;`,
      `${t}${t}#size-cells = <2>;`,
      `${t}${t}ranges;`,
      '',
      // No `no-map` and no `reusable`: Linux refuses a restricted-dma-pool with either.
      `${t}${t}${poolLabel}: ${pn}@${p.base.toString(16)} {`,
      `${t}${t}${t}compatible = "restricted-dma-pool";`,
      `${t}${t}${t}reg = <${cells2(p.base)} ${cells2(p.size)}>;`,
      `${t}${t}};`,
      `${t}};`,
      '',
    );
  }
  const irqCells = style === 'single' ? hex(o.irq) : `0x0 ${hex(o.irq)} ${style === 'gic-level' ? '0x4' : '0x1'}`;
  lines.push(
    `${t}${o.label !== undefined ? `${o.label}: ` : ''}${node}@${o.base.toString(16)} {`,
    `${t}${t}compatible = "virtio,mmio";`,
    `${t}${t}reg = <${cells2(o.base)} ${cells2(size)}>;`,
    `${t}${t}interrupts = <${irqCells}>;`,
  );
  if (o.dmaCoherent ?? true) lines.push(`${t}${t}dma-coherent;`);
  if (poolLabel !== undefined) lines.push(`${t}${t}memory-region = <&${poolLabel}>;`);
  lines.push(`${t}};`, '};', '');
  return lines.join('\n');
}
