/**
 * specialize() falls back to the factory itself when a compiled copy needs a name that only the
 * factory's module had (a transpiler's helper, as esbuild's keepNames emits). A file of its own:
 * the fallback is process-wide, and vitest gives each file fresh module state.
 */
import { expect, it } from 'vitest';
import { specialize, specializationActive } from '../../src/queue/specialize.js';

it('a copy that needs a helper of its module is not used: the factory itself runs, and later calls stay unspecialised', () => {
  // As esbuild's keepNames emits it: a helper of the module wrapped around a named inner function.
  const helper = <T>(f: T): T => f;
  const factory = (n: number): (() => number) => {
    const inner = helper(() => n + 1);
    return () => inner();
  };
  expect(specializationActive()).toBe(true);
  expect(specialize(factory, {}, 1)()).toBe(2);
  expect(specializationActive()).toBe(false);
  expect(specialize((n: number) => () => n * 3, {}, 5)()).toBe(15);
});
