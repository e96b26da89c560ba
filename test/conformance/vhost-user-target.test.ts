/**
 * The vhost-user target (`--target vhost-user:SOCKET`) against virtiokit's own back-end served
 * in this process: which checks apply over vhost-user, that register-only checks SKIP with
 * "not observable over vhost-user", that malformed rings are REJECTed through the error eventfd,
 * and that a back-end that stops serving rings gets FAIL / WEDGED — within the time limits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findCheck, CHECKS } from '../../src/conformance/registry.js';
import { runCheck, runSuite } from '../../src/conformance/runner.js';
import { parseVhostUserSpec, VhostUserTarget } from '../../src/conformance/targets/vhost-user.js';
import { BlkDevice } from '../../src/device/blk/blk-device.js';
import { RamBackend } from '../../src/device/blk/ram-backend.js';
import type { VirtioDeviceModel } from '../../src/device/types.js';
import { native } from '../../src/native/index.js';
import { VhostUserBackend } from '../../src/vhost-user/backend.js';
import { VhostUserServer } from '../../src/vhost-user/server.js';

const dir = mkdtempSync(join(tmpdir(), 'vk-vut-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A blk model whose notify does nothing: rings are accepted but never served. */
function deaf(model: BlkDevice): VirtioDeviceModel {
  return new Proxy(model, {
    get(t, p) {
      if (p === 'notify') return () => undefined;
      const v: unknown = Reflect.get(t, p, t);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

async function serve(name: string, model: VirtioDeviceModel): Promise<{ sock: string; close(): Promise<void> }> {
  const sock = join(dir, `${name}.sock`);
  const server = VhostUserServer.listen(sock, new VhostUserBackend({ model }));
  return { sock, close: () => server.close() };
}

describe('vhost-user target spec', () => {
  it('parses SOCKET[,device=][,disk=]', () => {
    expect(parseVhostUserSpec('/tmp/s.sock')).toEqual({ socketPath: '/tmp/s.sock', opts: {} });
    expect(parseVhostUserSpec('/tmp/s.sock,device=rng,disk=/tmp/d')).toEqual({ socketPath: '/tmp/s.sock', opts: { device: 'rng', disk: '/tmp/d' } });
    expect(() => parseVhostUserSpec('/tmp/s.sock,device=gpu')).toThrow(/device=gpu/);
    expect(() => parseVhostUserSpec('/tmp/s.sock,foo=1')).toThrow(/unknown option/);
  });
});

describe.runIf(native.available)('vhost-user target against virtiokit\'s back-end (in process)', () => {
  it('[basic.dev-reset.device.1][basic.split-vq.vq-used-ring.device.1] ring checks PASS/REJECT, register checks SKIP as not observable over vhost-user', { timeout: 30_000 }, async () => {
    const disk = new RamBackend(1 << 20);
    const s = await serve('good', new BlkDevice(disk, { queueSize: 256 }));
    try {
      const target = await VhostUserTarget.create(s.sock);
      expect(target.devices).toEqual(['blk']);
      expect(target.transports).toEqual(['vhost-user']);
      const suite = await runSuite({ target, checks: CHECKS, devices: ['blk'], timeoutMs: 2000 });
      const bad = suite.runs.filter((r) => r.verdict === 'FAIL' || r.verdict === 'WEDGED').map((r) => `${r.verdict} ${r.check}: ${r.detail}`);
      expect(bad).toEqual([]);
      const by = (id: string) => suite.runs.find((r) => r.check === id)!;
      expect(by('split.used-ring-len').verdict).toBe('PASS');
      expect(by('blk.request-types').verdict).toBe('PASS');
      expect(by('split.malformed.loop').verdict).toBe('REJECT');
      expect(by('split.malformed.loop').perClause?.['basic.dev-status-field.device.3']?.detail).toMatch(/not observable over vhost-user/);
      for (const id of ['status.reset-clears', 'pci.capabilities', 'mmio.magic-version', 'driver.sim-pci', 'init.no-legacy-interface']) {
        expect(by(id).verdict, id).toBe('SKIP');
        expect(by(id).detail, id).toMatch(/^not observable over vhost-user/);
      }
      // Every check got a fresh connection.
      expect(target.connections).toBeGreaterThanOrEqual(suite.runs.filter((r) => !r.detail.startsWith('not observable') && !r.detail.startsWith('device type')).length);
    } finally {
      await s.close();
    }
  });

  it('[basic.split-vq.vq-used-ring.device.1][basic.dev-reset.device.1] a back-end that never serves its rings: FAIL and WEDGED within the limits', { timeout: 30_000 }, async () => {
    const s = await serve('deaf', deaf(new BlkDevice(new RamBackend(1 << 20), { queueSize: 256 })));
    try {
      const target = await VhostUserTarget.create(s.sock);
      const limit = 900;
      const used = await runCheck(findCheck('split.used-ring-len')!, target, { device: 'blk', transport: 'vhost-user', swiotlb: false }, limit);
      expect(used.verdict).toBe('FAIL');
      const loop = await runCheck(findCheck('split.malformed.loop')!, target, { device: 'blk', transport: 'vhost-user', swiotlb: false }, limit);
      expect(loop.verdict).toBe('WEDGED');
      for (const r of [used, loop]) expect(r.ms).toBeLessThan(limit + 1500);
    } finally {
      await s.close();
    }
  });
});
