/**
 * The hardening, driver-validation, round-trip and property suites run again with pop / add /
 * getUsed routed through popEach / addEach / collectEach (one chain per call), so every check is
 * proven on the visitor entry points too. Test titles are those of the original suites.
 */
import { describe } from 'vitest';
import { setPathMode } from './helpers.js';

setPathMode('visit');
describe('via popEach / addEach / collectEach', async () => {
  await import('./hardening.test.js');
  await import('./driver-validation.test.js');
  await import('./roundtrip.test.js');
  await import('./property.test.js');
});
