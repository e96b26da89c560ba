import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { negotiate, regs, rig, setupQueue, V1 } from './helpers.js';
import { MMIO } from '../../../src/transport/mmio/registers.js';
import { dtsSnippet } from '../../../src/transport/mmio/dt.js';
import { SwiotlbWindow } from '../../../src/swiotlb/window.js';
import { DEFAULT_SWIOTLB_BIT } from '../../../src/features/bits.js';
import type { SwiotlbPolicy } from '../../../src/device/types.js';
import { AddressSpace } from '../../../src/memory/space.js';

const WBASE = 0x5000_0000;
const WSIZE = 0x10000;
const SW_WORD0 = 1 << DEFAULT_SWIOTLB_BIT;

function swRig(policy: SwiotlbPolicy = 'preferred') {
  const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { base: WBASE, name: 'mmio-pool' });
  const r = rig({ core: { swiotlb: { policy, space: window.asAddressSpace() } }, mmio: { swiotlbWindow: window, base: 0x0a00_3e00, irq: 0x2f } });
  return { ...r, window };
}

describe('SWIOTLB on virtio-mmio (restricted-dma-pool)', () => {
  it('[rfc-swiotlb.feature.device.2] the bit is offered only with a window; a core offering it without one is refused', () => {
    const r = swRig();
    regs(r.dev).w(MMIO.DEVICE_FEATURES_SEL, 0);
    expect(regs(r.dev).r(MMIO.DEVICE_FEATURES) & SW_WORD0).toBe(SW_WORD0);
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { base: WBASE });
    expect(() => rig({ core: { swiotlb: { policy: 'preferred', space: window.asAddressSpace() } } })).toThrow(/swiotlbWindow/);
    const off = rig({ mmio: { swiotlbWindow: window } });
    expect(off.core.offered.has(DEFAULT_SWIOTLB_BIT)).toBe(false);
    expect(off.dev.platformInfo().pool).toBeUndefined();
    expect(off.dev.dtsSnippet()).not.toMatch(/restricted-dma-pool|memory-region/);
  });

  it('[rfc-swiotlb.mmio.driver.2] negotiated: the DMA space becomes the window at FEATURES_OK; queues get only the window; reset restores RAM', () => {
    const r = swRig();
    expect(negotiate(r.dev, [SW_WORD0, 1])).toBe(0xb);
    expect(r.core.swiotlbNegotiated).toBe(true);
    expect(r.dev.swiotlb!.active).toBe(true);
    setupQueue(r.dev, 0, WBASE);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    const ws = r.window.asAddressSpace();
    expect(r.core.space).toBe(ws);
    expect(r.queues[0]!.space).toBe(ws);
    expect(ws.regions.length).toBe(1);
    expect(ws.check(0x1000, 16, false)).toBe(false); // guest RAM is not reachable
    expect(r.dev.swiotlb!.spaceMismatch).toBe(false);
    regs(r.dev).w(MMIO.STATUS, 0);
    expect(r.core.space).toBe(r.space);
    expect(r.dev.swiotlb!.active).toBe(false);
  });

  it('[rfc-swiotlb.mmio.driver.2] core built with hasRegion (no space): the device switches the core to the window at FEATURES_OK', () => {
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { base: WBASE });
    const r = rig({ core: { swiotlb: { policy: 'preferred', hasRegion: true } }, mmio: { swiotlbWindow: window } });
    expect(negotiate(r.dev, [SW_WORD0, 1])).toBe(0xb);
    expect(r.core.space).toBe(window.asAddressSpace()); // already at FEATURES_OK
    setupQueue(r.dev, 0, WBASE);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    expect(r.queues[0]!.space).toBe(window.asAddressSpace());
    expect(r.dev.swiotlb!.spaceMismatch).toBe(false);
    regs(r.dev).w(MMIO.STATUS, 0);
    expect(r.core.space).toBe(r.space);
  });

  it('[rfc-swiotlb.feature.device.1] declined: preferred keeps guest RAM; required refuses FEATURES_OK', () => {
    const p = swRig('preferred');
    expect(negotiate(p.dev, V1)).toBe(0xb);
    setupQueue(p.dev, 0);
    regs(p.dev).w(MMIO.STATUS, 0xf);
    expect(p.queues[0]!.space).toBe(p.space);
    const q = swRig('required');
    expect(negotiate(q.dev, V1) & 0x8).toBe(0);
    expect(q.core.trace.ofKind('negotiation-refused').length).toBe(1);
    expect(negotiate(q.dev, [SW_WORD0, 1])).toBe(0xb);
  });

  it('[rfc-swiotlb.feature.driver.1] a core built with another swiotlb space is flagged at DRIVER_OK', () => {
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { base: WBASE });
    const other = new AddressSpace([{ base: 0x9000_0000, size: WSIZE, buffer: new ArrayBuffer(WSIZE) }], 'other');
    const r = rig({ core: { swiotlb: { policy: 'preferred', space: other } }, mmio: { swiotlbWindow: window } });
    negotiate(r.dev, [SW_WORD0, 1]);
    regs(r.dev).w(MMIO.STATUS, 0xf);
    expect(r.dev.swiotlb!.spaceMismatch).toBe(true);
  });

  it('a window overlapping the register window is refused', () => {
    const window = new SwiotlbWindow(new ArrayBuffer(WSIZE), { base: 0x0a00_0000 });
    expect(() => rig({ core: { swiotlb: { policy: 'preferred', space: window.asAddressSpace() } }, mmio: { swiotlbWindow: window } })).toThrow(/overlaps/);
  });
});

describe('device-tree snippet', () => {
  it('[rfc-swiotlb.mmio.driver.1] emits the restricted-dma-pool node and memory-region on the virtio,mmio node', () => {
    const r = swRig();
    const s = r.dev.dtsSnippet();
    expect(s).toContain('reserved-memory {');
    expect(s).toContain('#address-cells = <2>;');
    expect(s).toContain('#size-cells = <2>;');
    expect(s).toContain('ranges;');
    expect(s).toContain('virtio_dma_pool: restricted-dma@50000000 {');
    expect(s).toContain('compatible = "restricted-dma-pool";');
    expect(s).toContain('reg = <0x0 0x50000000 0x0 0x10000>;');
    expect(s).not.toMatch(/no-map|reusable/);
    expect(s).toContain('virtio_mmio@a003e00 {');
    expect(s).toContain('compatible = "virtio,mmio";');
    expect(s).toContain('reg = <0x0 0xa003e00 0x0 0x200>;');
    expect(s).toContain('interrupts = <0x0 0x2f 0x1>;');
    expect(s).toContain('memory-region = <&virtio_dma_pool>;');
    // The label is defined once and referenced once (the RFC's example spells them differently).
    expect(s.match(/virtio_dma_pool/g)!.length).toBe(2);
  });

  it('options: label, 64-bit addresses, level interrupts, single-cell interrupts; bad input refused', () => {
    const s = dtsSnippet({ base: 0x1_0000_0000, irq: 5, interruptStyle: 'gic-level', dmaCoherent: false, label: 'vblk', pool: { base: 0x2_4000_0000, size: 0x40_0000, label: 'rdma' } });
    expect(s).toContain('reg = <0x2 0x40000000 0x0 0x400000>;');
    expect(s).toContain('vblk: virtio_mmio@100000000 {');
    expect(s).toContain('reg = <0x1 0x0 0x0 0x200>;');
    expect(s).toContain('interrupts = <0x0 0x5 0x4>;');
    expect(s).toContain('memory-region = <&rdma>;');
    expect(s).not.toContain('dma-coherent');
    expect(dtsSnippet({ base: 0x1000, irq: 7, interruptStyle: 'single' })).toContain('interrupts = <0x7>;');
    expect(() => dtsSnippet({ base: 0, irq: 1, pool: { base: 0x1234, size: 0x1000 } })).toThrow(/aligned/);
    expect(() => dtsSnippet({ base: 0, irq: 1, pool: { base: 0x10000, size: 0x1000, label: 'bad-label' } })).toThrow(/label/);
    expect(() => dtsSnippet({ base: 0x10000, irq: 1, pool: { base: 0x10000, size: 0x1000 } })).toThrow(/overlaps/);
    expect(() => dtsSnippet({ base: -1, irq: 1 })).toThrow(/base/);
  });

  const dtc = (() => {
    try {
      execFileSync('dtc', ['--version'], { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!dtc)('[rfc-swiotlb.mmio.driver.1] dtc compiles the snippet inside a minimal tree and the blob round-trips (skipped without device-tree-compiler)', () => {
    const r = swRig();
    const tree = [
      '/dts-v1/;',
      '/ {',
      '\t#address-cells = <2>;',
      '\t#size-cells = <2>;',
      '\tinterrupt-parent = <&gic>;',
      '\tgic: intc@8000000 {',
      '\t\tcompatible = "arm,cortex-a15-gic";',
      '\t\t#interrupt-cells = <3>;',
      '\t\tinterrupt-controller;',
      '\t\treg = <0x0 0x8000000 0x0 0x10000 0x0 0x8010000 0x0 0x10000>;',
      '\t};',
      '\tmemory@40000000 {',
      '\t\tdevice_type = "memory";',
      '\t\treg = <0x0 0x40000000 0x0 0x20000000>;',
      '\t};',
      '};',
      '',
      r.dev.dtsSnippet(),
    ].join('\n');
    const dir = mkdtempSync(join(tmpdir(), 'vk-dts-'));
    try {
      const src = join(dir, 'virt.dts');
      const blob = join(dir, 'virt.dtb');
      writeFileSync(src, tree);
      const out = execFileSync('dtc', ['-I', 'dts', '-O', 'dtb', '-o', blob, src], { stdio: 'pipe', encoding: 'utf8' });
      expect(readFileSync(blob).readUInt32BE(0)).toBe(0xd00dfeed); // FDT magic
      const back = execFileSync('dtc', ['-I', 'dtb', '-O', 'dts', blob], { stdio: 'pipe', encoding: 'utf8' });
      expect(back).toMatch(/restricted-dma@50000000 \{[^}]*compatible = "restricted-dma-pool";[^}]*reg = <0x00 0x50000000 0x00 0x10000>;/s);
      // The label became a phandle: memory-region points at the pool node's phandle.
      const ph = /restricted-dma@50000000 \{[^}]*phandle = <(0x[0-9a-f]+)>/s.exec(back)?.[1];
      expect(ph).toBeDefined();
      expect(back).toMatch(new RegExp(`virtio_mmio@a003e00 \\{[^}]*memory-region = <${ph}>;`, 's'));
      expect(back).toMatch(/virtio_mmio@a003e00 \{[^}]*compatible = "virtio,mmio";/s);
      expect(out).not.toMatch(/ERROR/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!dtc)('dtc rejects a snippet whose memory-region names no label (the check can fail)', () => {
    const s = dtsSnippet({ base: 0x0a00_0000, irq: 16, pool: { base: WBASE, size: WSIZE } }).replace('memory-region = <&virtio_dma_pool>', 'memory-region = <&virtio-dma-pool>');
    const dir = mkdtempSync(join(tmpdir(), 'vk-dts-'));
    try {
      const src = join(dir, 'bad.dts');
      writeFileSync(src, `/dts-v1/;\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n};\n${s}`);
      expect(() => execFileSync('dtc', ['-I', 'dts', '-O', 'dtb', '-o', join(dir, 'bad.dtb'), src], { stdio: 'pipe' })).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
