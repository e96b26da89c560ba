import { expect } from 'vitest';
import type { VirtioErrorCode } from '../../../src/errors.js';
import { newChain, type Env } from './helpers.js';

export const F_NEXT = 1;
export const F_WRITE = 2;
export const F_INDIRECT = 4;

/** Pop once, expect exactly one error with `code`/`clause`, the queue parked, and later pops inert. */
export function expectParked(e: Env, code: VirtioErrorCode, clause: string | undefined): void {
  const c = newChain(256);
  expect(e.dev.pop(c)).toBe(false);
  expect(e.devSink.errors.map((x) => [x.code, x.clause, x.queue])).toEqual([[code, clause, e.cfg.index]]);
  expect(e.dev.parked).toBe(true);
  const calls = e.space.calls;
  expect(e.dev.pop(c)).toBe(false);
  expect(e.dev.pop(c)).toBe(false);
  expect(e.space.calls).toBe(calls);
  expect(e.devSink.errors).toHaveLength(1);
  expect(e.space.bad).toEqual([]);
}
