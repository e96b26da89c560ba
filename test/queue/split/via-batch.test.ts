/**
 * The hardening, driver-validation, round-trip and property suites run again with pop / add /
 * getUsed routed through popBatch / addBatch / getUsedBatch, so every check is proven on the batch
 * entry points too. Test titles are those of the original suites.
 */
import { describe } from 'vitest';
import { setPathMode } from './helpers.js';

setPathMode('batch');
describe('via popBatch / addBatch / getUsedBatch', async () => {
  await import('./hardening.test.js');
  await import('./driver-validation.test.js');
  await import('./roundtrip.test.js');
  await import('./property.test.js');
});
