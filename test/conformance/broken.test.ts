/**
 * Every check must be able to FAIL: deliberately broken devices (the in-process devices with one
 * behaviour sabotaged) and deliberately broken driver recordings must be caught.
 */
import { describe, expect, it } from 'vitest';
import type { Check, Dut } from '../../src/conformance/check.js';
import { findCheck } from '../../src/conformance/registry.js';
import { runCheck } from '../../src/conformance/runner.js';
import { InprocTarget } from '../../src/conformance/targets/inproc.js';
import type { DutRequest, Target } from '../../src/conformance/targets/target.js';
import type { PciFunctionAccess } from '../../src/driver/access.js';
import { CC } from '../../src/driver/pci-regs.js';
import { DescChain } from '../../src/queue/types.js';
import { judgeDriver, type DriverEvent } from '../../src/conformance/driver-judge.js';

/** The in-process target with a sabotage applied to every DUT. */
class TamperTarget implements Target {
  readonly name = 'tampered';
  readonly buildsVariants = true;
  readonly devices = ['blk', 'net', 'rng', 'console'] as const;
  readonly transports = ['pci', 'mmio'] as const;
  readonly swiotlbModes = [false, true];
  private readonly inner = new InprocTarget();
  constructor(private readonly tamper: (d: Dut) => Dut) {}
  async open(req: DutRequest): Promise<Dut> {
    return this.tamper(await this.inner.open(req));
  }
}

/** Wrap a DUT's PCI function; `common` is resolved lazily from the probe the check does. */
function wrapPci(d: Dut, hook: { read?: (addr: number, size: number, v: number) => number; msi?: (vector: number) => boolean }): Dut {
  const p = d.pci!;
  const w: PciFunctionAccess = {
    configRead: (o, s) => p.configRead(o, s),
    configWrite: (o, s, v) => p.configWrite(o, s, v),
    mmioRead: (a, s) => {
      const v = p.mmioRead(a, s);
      return hook.read ? hook.read(a, s, v) : v;
    },
    mmioWrite: (a, s, v) => p.mmioWrite(a, s, v),
    barMapping: (b) => p.barMapping?.(b),
    onMsi: (fn) => p.onMsi!((a, data, v) => (hook.msi && !hook.msi(data - 0x40) ? undefined : fn(a, data, v))),
    onIntx: (fn) => p.onIntx!(fn),
  };
  return { ...d, pci: w };
}

/** Replace the model's notify with a broken one (in-process only). */
function brokenModel(d: Dut, notify: (q: number, pop: () => DescChain | undefined, push: (head: number, len: number) => void, write: (c: DescChain, i: number, b: number) => void) => void): Dut {
  const core = d.core!;
  const model = core.model as { notify(q: number): void };
  const chain = new DescChain(64);
  model.notify = (q: number): void => {
    const ctx = core.context;
    const queue = ctx?.queues[q];
    if (ctx === null || ctx === undefined || queue === null || queue === undefined) return;
    notify(
      q,
      () => (queue.pop(chain) ? chain : undefined),
      (h, l) => {
        queue.pushUsed(h, l);
        ctx.interrupt(q);
      },
      (c, i, b) => {
        const r = ctx.space.regions[c.region[i]!]!;
        r.u8[c.offset[i]!] = b;
      },
    );
  };
  return d;
}

/** Bus address of the (64-bit) BAR 0, where the common cfg starts. */
const bar0 = (d: Dut): number => ((d.pci!.configRead(0x10, 4) & ~0xf) >>> 0) + (d.pci!.configRead(0x14, 4) >>> 0) * 4294967296;

const must = (id: string): Check => {
  const c = findCheck(id);
  if (c === undefined) throw new Error(`no check ${id}`);
  return c;
};

async function verdictOn(t: Target, id: string, device: 'blk' | 'net' | 'rng' | 'console', transport: 'pci' | 'mmio' = 'pci'): Promise<string> {
  const r = await runCheck(must(id), t, { device, transport, swiotlb: false }, 2000);
  return `${r.verdict}: ${r.detail}`;
}

describe('checks catch broken devices', () => {
  it('[rng.dev-op.device.1] an entropy device answering with 0 bytes FAILs', async () => {
    const t = new TamperTarget((d) => brokenModel(d, (_q, pop, push) => { for (let c = pop(); c; c = pop()) push(c.head, 0); }));
    expect(await verdictOn(t, 'rng.at-least-one-byte', 'rng')).toMatch(/^FAIL/);
  });

  it('[basic.split-vq.vq-desc-table.device.1] a device writing a device-readable buffer FAILs', async () => {
    const t = new TamperTarget((d) =>
      brokenModel(d, (_q, pop, push, write) => {
        for (let c = pop(); c; c = pop()) {
          write(c, 0, 0xee);
          push(c.head, 1);
        }
      }),
    );
    expect(await verdictOn(t, 'split.readable-and-table-untouched', 'console')).toMatch(/^FAIL/);
  });

  it('[basic.split-vq.vq-used-ring.device.2] a used len beyond the writable bytes FAILs', async () => {
    const t = new TamperTarget((d) => brokenModel(d, (_q, pop, push) => { for (let c = pop(); c; c = pop()) push(c.head, c.writableBytes + 100); }));
    expect(await verdictOn(t, 'split.used-ring-len', 'rng')).toMatch(/^FAIL/);
  });

  it('[basic.dev-status-field.device.3] NEEDS_RESET without a configuration-change notification FAILs', async () => {
    const t = new TamperTarget((d) => wrapPci(d, { msi: (v) => v !== 0 }));
    expect(await verdictOn(t, 'status.needs-reset-notifies', 'blk')).toMatch(/^FAIL.*configuration-change/);
  });

  it('[basic.dev-reset.device.1] a status that does not read 0 after reset FAILs', async () => {
    let common = -1;
    const t = new TamperTarget((d) =>
      wrapPci(d, {
        read: (a, s, v) => {
          if (common < 0) {
            // The common cfg sits at the start of BAR 0 (its 64-bit address is in config space).
            common = bar0(d);
          }
          return a === common + CC.DEVICE_STATUS && s === 1 && v === 0 ? 0x01 : v;
        },
      }),
    );
    expect(await verdictOn(t, 'status.reset-clears', 'rng')).toMatch(/^FAIL.*after writing 0/);
  });

  it('[pci.common-cfg.device.14] a queue_size for a nonexistent queue FAILs', async () => {
    let common = -1;
    const t = new TamperTarget((d) =>
      wrapPci(d, {
        read: (a, s, v) => {
          if (common < 0) common = bar0(d);
          return a === common + CC.QUEUE_SIZE && s === 2 && v === 0 ? 64 : v;
        },
      }),
    );
    expect(await verdictOn(t, 'pci.queue-select', 'rng')).toMatch(/^FAIL/);
  });

  it('[basic.dev-reset.device.1] a device that stops answering after a malformed chain is WEDGED', async () => {
    let mute = false;
    const t = new TamperTarget((d) =>
      brokenModel(d, (_q, pop, push) => {
        if (mute) return; // never answers again
        const c = pop();
        if (c === undefined) mute = true;
        else push(c.head, 1);
      }),
    );
    const r = await runCheck(must('split.malformed.loop'), t, { device: 'rng', transport: 'mmio', swiotlb: false }, 1500);
    expect(r.verdict).toBe('WEDGED');
  });
});

describe('driver-side checks need the workload served', () => {
  for (const [id, transport] of [['driver.sim-pci', 'pci'], ['driver.sim-mmio', 'mmio']] as const) {
    it(`[init.dev-init.driver.4] ${id}: a device that never completes the workload request is WEDGED, not PASS`, async () => {
      // Takes the chain off the ring and never returns it.
      const t = new TamperTarget((d) => brokenModel(d, (_q, pop) => { while (pop() !== undefined); }));
      const t0 = performance.now();
      const r = await runCheck(must(id), t, { device: 'blk', transport, swiotlb: false }, 1500);
      expect(`${r.verdict}: ${r.detail}`).toMatch(/^WEDGED: .*workload was not served: a valid blk request on queue 0 was not completed within 500 ms/);
      // The check's own wait ended it (not the runner's time limit), and it claims no clause PASS.
      expect(performance.now() - t0).toBeLessThan(1400);
      expect(Object.values(r.perClause ?? {}).filter((o) => o.verdict === 'PASS')).toEqual([]);
      expect(Object.values(r.perClause ?? {}).some((o) => o.verdict === 'WEDGED')).toBe(true);
    });

    it(`[init.dev-init.driver.4] ${id}: a workload completed wrongly FAILs`, async () => {
      const t = new TamperTarget((d) => brokenModel(d, (_q, pop, push) => { for (let c = pop(); c; c = pop()) push(c.head, 0); }));
      const r = await runCheck(must(id), t, { device: 'rng', transport, swiotlb: false }, 1500);
      expect(`${r.verdict}: ${r.detail}`).toMatch(/^FAIL: .*completed wrongly: used len 0 for a 64-byte buffer/);
      // The device is at fault, not the driver: no driver clause PASSes or FAILs from this run.
      const clauses = Object.values(r.perClause ?? {});
      expect(clauses.filter((o) => o.verdict === 'PASS' || o.verdict === 'FAIL')).toEqual([]);
      expect(clauses.some((o) => o.verdict === 'SKIP' && /workload was not served/.test(o.detail ?? ''))).toBe(true);
    });
  }
});

describe('more broken devices', () => {
  it('[reserved.reserved-feature-bits.device.1] a device hiding VIRTIO_F_VERSION_1 FAILs', async () => {
    let common = -1;
    const t = new TamperTarget((d) =>
      wrapPci(d, {
        read: (a, s, v) => {
          if (common < 0) common = bar0(d);
          return a === common + CC.DEVICE_FEATURE && s === 4 ? v & ~1 : v;
        },
      }),
    );
    expect(await verdictOn(t, 'features.version-1', 'rng')).toMatch(/^FAIL/);
  });

  it('[basic.split-vq.used-buffer-notif-suppression.device.1] a device that never sends used-buffer notifications FAILs', async () => {
    const t = new TamperTarget((d) => wrapPci(d, { msi: (v) => v === 0 }));
    expect(await verdictOn(t, 'split.used-notif-flags', 'rng')).toMatch(/^FAIL/);
    expect(await verdictOn(t, 'split.used-notif-event-idx', 'rng')).toMatch(/^FAIL/);
  });

  it('[mmio.regs.device.1, mmio.regs.device.3] a wrong MagicValue and an InterruptStatus that never sets FAIL', async () => {
    const t = new TamperTarget((d) => {
      const a = d.mmio!.access;
      return { ...d, mmio: { ...d.mmio!, access: { read: (o: number, sz: number) => (o === 0 ? 0x12345678 : o === 0x60 ? 0 : a.read(o, sz)), write: (o: number, sz: number, v: number) => a.write(o, sz, v), onIrq: (fn: (l: boolean) => void) => a.onIrq!(fn) } } };
    });
    expect(await verdictOn(t, 'mmio.magic-version', 'rng', 'mmio')).toMatch(/^FAIL/);
    expect(await verdictOn(t, 'mmio.interrupt-status', 'rng', 'mmio')).toMatch(/^FAIL/);
  });

  it('[basic.dev-reset.device.2] a device that keeps serving the old rings after reset FAILs', async () => {
    const t = new TamperTarget((d) => {
      const core = d.core!;
      const model = core.model as { reset(): void };
      const origReset = model.reset.bind(model);
      model.reset = (): void => {
        // Broken: a worker keeps the queue and goes on serving it after the reset.
        const q = core.context?.queues[0] ?? null;
        origReset();
        if (q === null) return;
        const chain = new DescChain(64);
        let n = 0;
        const zombie = (): void => {
          if (q.pop(chain)) q.pushUsed(chain.head, 1);
          if (++n < 20) setImmediate(zombie);
        };
        setImmediate(zombie);
      };
      return d;
    });
    expect(await verdictOn(t, 'status.silent-after-reset', 'rng')).toMatch(/^FAIL/);
  });
});

describe('driver judge catches broken drivers', () => {
  const good: DriverEvent[] = [
    { k: 'status-w', v: 0 },
    { k: 'status-r', v: 0 },
    { k: 'status-w', v: 1 },
    { k: 'status-w', v: 3 },
    { k: 'drvfeat-sel', v: 1 },
    { k: 'drvfeat-w', v: 1 },
    { k: 'status-w', v: 11 },
    { k: 'status-r', v: 11 },
    { k: 'qsel', v: 0 },
    { k: 'qsize-w', v: 16 },
    { k: 'qaddr-w', area: 'desc', high: false, v: 0x1000 },
    { k: 'qaddr-w', area: 'driver', high: false, v: 0x2000 },
    { k: 'qaddr-w', area: 'device', high: false, v: 0x3000 },
    { k: 'qenable-w', v: 1 },
    { k: 'status-w', v: 15 },
    { k: 'notify', q: 0 },
  ];
  const judge = (events: DriverEvent[], offered = [0, 1]): Map<string, string> => new Map(judgeDriver({ transport: 'pci', events, offered }).map((j) => [j.clause, j.verdict]));

  it('[init.dev-init.driver.1, basic.dev-status-field.driver.2] a correct sequence passes', () => {
    const j = judge(good);
    for (const c of ['init.dev-init.driver.1', 'basic.dev-status-field.driver.2', 'basic.feature-bits.driver.1', 'init.dev-init.driver.4', 'pci.common-cfg.driver.4', 'pci.common-cfg.driver.6']) expect(j.get(c), c).toBe('PASS');
  });
  it('[basic.dev-status-field.driver.2] clearing a status bit FAILs', () => {
    expect(judge([...good.slice(0, 4), { k: 'status-w', v: 1 }]).get('basic.dev-status-field.driver.2')).toBe('FAIL');
  });
  it('[basic.feature-bits.driver.1] acking an unoffered bit FAILs', () => {
    expect(judge(good, [0, 0]).get('basic.feature-bits.driver.1')).toBe('FAIL');
  });
  it('[init.dev-init.driver.4] a notification before DRIVER_OK FAILs', () => {
    const ev = [...good];
    ev.splice(14, 0, { k: 'notify', q: 0 });
    expect(judge(ev).get('init.dev-init.driver.4')).toBe('FAIL');
  });
  it('[pci.common-cfg.driver.6, pci.common-cfg.driver.4, pci.common-cfg.driver.3] queue_enable 0, enable before addresses and a non-power-of-2 size FAIL', () => {
    const ev = good.filter((e) => !(e.k === 'qaddr-w' && e.area === 'device')).map((e) => (e.k === 'qsize-w' ? { ...e, v: 24 } : e));
    ev.push({ k: 'qenable-w', v: 0 });
    const j = judge(ev);
    expect(j.get('pci.common-cfg.driver.6')).toBe('FAIL');
    expect(j.get('pci.common-cfg.driver.4')).toBe('FAIL');
    expect(j.get('pci.common-cfg.driver.3')).toBe('FAIL');
  });
  it('[init.dev-init.driver.1] DRIVER_OK without re-reading FEATURES_OK FAILs', () => {
    expect(judge(good.filter((e, i) => i !== 7)).get('init.dev-init.driver.1')).toBe('FAIL');
  });
  it('[rfc-swiotlb.pci.driver.2] a ring outside the bounce window FAILs once SWIOTLB is acked', () => {
    const ev = good.map((e) => (e.k === 'drvfeat-w' ? { ...e, v: 1 } : e));
    ev.splice(4, 0, { k: 'drvfeat-sel', v: 0 }, { k: 'drvfeat-w', v: 1 << 27 });
    const j = new Map(judgeDriver({ transport: 'pci', events: ev, offered: [1 << 27, 1], swiotlb: { bit: 27, base: 0x2000, size: 0x10000 } }).map((x) => [x.clause, x.verdict]));
    expect(j.get('rfc-swiotlb.pci.driver.2')).toBe('FAIL');
  });
});
