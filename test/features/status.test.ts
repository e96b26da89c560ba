import { describe, it, expect } from 'vitest';
import {
  STATUS_ACKNOWLEDGE as A,
  STATUS_DRIVER as D,
  STATUS_DRIVER_OK as K,
  STATUS_FAILED,
  STATUS_FEATURES_OK as F,
  STATUS_NEEDS_RESET,
  STATUS_SUSPEND as S,
  STATUS_TRANSITIONS,
  StatusMachine,
  describeStatus,
  findTransition,
  type StatusHooks,
} from '../../src/features/status.js';

/** Drive a machine to `status` along the legal path (negotiation ok, suspend negotiated). */
function machineAt(status: number, hooks: StatusHooks = { suspendNegotiated: () => true }): StatusMachine {
  const m = new StatusMachine(hooks);
  const path = [A, A | D, A | D | F, A | D | F | K, A | D | F | K | S];
  for (const v of path) {
    if (m.status === status) break;
    m.write(v);
  }
  expect(m.status).toBe(status);
  return m;
}

describe('status transition table', () => {
  for (const row of STATUS_TRANSITIONS) {
    it(`[${row.clause}] ${describeStatus(row.from)} --write ${describeStatus(row.to)}--> ${row.kind}`, () => {
      const m = machineAt(row.from);
      const r = m.write(row.to);
      expect(r.accepted).toBe(true);
      expect(r.kind).toBe(row.kind);
      expect(r.clause).toBe(row.clause);
      expect(m.status).toBe(row.result ?? row.to);
    });
  }

  it('[init.dev-init.driver.1] every write not in the table from a table state is refused and changes nothing', () => {
    const states = [0, A, A | D, A | D | F, A | D | F | K, A | D | F | S];
    for (const from of states) {
      for (let v = 1; v < 256; v++) {
        if ((v & STATUS_FAILED) !== 0 || v === from || (v & ~STATUS_NEEDS_RESET) === from) continue;
        if (findTransition(from, v) !== undefined) continue;
        const m = machineAt(from);
        const r = m.write(v);
        expect(r.accepted, `0x${from.toString(16)} <- 0x${v.toString(16)}`).toBe(false);
        expect(m.status).toBe(from);
      }
    }
  });
});

describe('rules that apply from any state', () => {
  it('[pci.common-cfg.device.7] writing 0 resets from any state, NEEDS_RESET included', () => {
    const m = machineAt(A | D | F | K);
    m.deviceSet(STATUS_NEEDS_RESET);
    const r = m.write(0);
    expect(r).toMatchObject({ accepted: true, kind: 'reset', status: 0 });
    expect(m.status).toBe(0);
  });

  it('[init.dev-init.driver.2] the driver may set FAILED at any time', () => {
    for (const s of [0, A, A | D, A | D | F, A | D | F | K]) {
      const m = machineAt(s);
      const r = m.write(s | STATUS_FAILED);
      expect(r.kind).toBe('failed');
      expect(m.status).toBe(s | STATUS_FAILED);
    }
    // FAILED alone: the other bits are kept (FAILED is added)
    const m = machineAt(A | D);
    m.write(STATUS_FAILED);
    expect(m.status).toBe(A | D | STATUS_FAILED);
  });

  it('[basic.dev-status-field.driver.3] after FAILED only a reset re-initializes', () => {
    const m = machineAt(A);
    m.write(A | STATUS_FAILED);
    const r = m.write(A | D | STATUS_FAILED);
    expect(r.kind).toBe('failed'); // FAILED kept, DRIVER not taken
    expect(m.status).toBe(A | STATUS_FAILED);
    const r2 = m.write(A);
    expect(r2.accepted).toBe(false);
    expect(r2.clause).toBe('basic.dev-status-field.driver.3');
  });

  it('[basic.dev-status-field.driver.1] writing the current status back changes nothing', () => {
    const m = machineAt(A | D | F);
    expect(m.write(A | D | F)).toMatchObject({ accepted: true, kind: 'unchanged' });
    expect(m.status).toBe(A | D | F);
  });

  it('[basic.dev-status-field.driver.2] clearing a bit is refused', () => {
    const m = machineAt(A | D | F | K);
    const r = m.write(A | D | K);
    expect(r.accepted).toBe(false);
    expect(r.clause).toBe('basic.dev-status-field.driver.2');
    expect(m.status).toBe(A | D | F | K);
  });

  it('[init.dev-init.driver.1] skipping a step is refused (DRIVER_OK without FEATURES_OK)', () => {
    const m = machineAt(A | D);
    const r = m.write(A | D | K);
    expect(r.accepted).toBe(false);
    expect(r.clause).toBe('init.dev-init.driver.1');
    expect(m.write(A | D | F | K).accepted).toBe(false); // two bits at once
  });
});

describe('device-owned bits and conditional rows', () => {
  it('[basic.dev-status-field.device.2] NEEDS_RESET is set by the device only and survives driver writes', () => {
    const m = machineAt(A | D | F | K);
    m.deviceSet(STATUS_NEEDS_RESET);
    expect(m.status).toBe(A | D | F | K | STATUS_NEEDS_RESET);
    // the driver writes back what it read: unchanged
    expect(m.write(m.status).kind).toBe('unchanged');
    // writing without NEEDS_RESET does not clear it
    m.write(A | D | F | K);
    expect(m.status & STATUS_NEEDS_RESET).toBe(STATUS_NEEDS_RESET);
    // a driver cannot set it
    const m2 = machineAt(A);
    m2.write(A | STATUS_NEEDS_RESET);
    expect(m2.status).toBe(A);
    expect(() => m2.deviceSet(K)).toThrow();
  });

  it('[basic.feature-bits.device.2] FEATURES_OK does not stick when negotiation fails', () => {
    let ok = false;
    const m = new StatusMachine({ negotiate: () => (ok ? { ok: true } : { ok: false, code: 'FEATURE_NOT_OFFERED', clause: 'basic.feature-bits.driver.1', message: 'nope' }) });
    m.write(A);
    m.write(A | D);
    const r = m.write(A | D | F);
    expect(r.accepted).toBe(false);
    expect(r.kind).toBe('features-ok');
    expect(r.negotiation?.code).toBe('FEATURE_NOT_OFFERED');
    expect(m.status).toBe(A | D); // the driver re-reads and sees FEATURES_OK clear
    ok = true;
    expect(m.write(A | D | F).accepted).toBe(true);
    expect(m.status).toBe(A | D | F);
  });

  it('[init.dev-suspend.driver.1] SUSPEND without VIRTIO_F_SUSPEND negotiated is ignored', () => {
    const m = machineAt(A | D | F | K, { suspendNegotiated: () => false });
    const r = m.write(A | D | F | K | S);
    expect(r.accepted).toBe(false);
    expect(r.clause).toBe('init.dev-suspend.driver.1');
    expect(m.status).toBe(A | D | F | K);
  });

  it('[init.dev-suspend.device.1] SUSPEND before DRIVER_OK is ignored', () => {
    const m = machineAt(A | D | F);
    const r = m.write(A | D | F | S);
    expect(r.accepted).toBe(false);
    expect(r.clause).toBe('init.dev-suspend.device.1');
  });

  it('[init.dev-suspend.device.7] resume: driver sets DRIVER_OK, device clears SUSPEND', () => {
    const m = machineAt(A | D | F | S);
    const r = m.write(A | D | F | S | K);
    expect(r.kind).toBe('resume');
    expect(m.status).toBe(A | D | F | K);
  });
});
