/**
 * The hardening, driver-validation, round-trip and property suites run again with the fast paths
 * (popFast / pushFast / addFast / collectFast) switched off, so the complete walkers alone are
 * proven against every case. Test titles are those of the original suites.
 */
import { describe } from 'vitest';
import { setPathMode } from './helpers.js';

setPathMode('slow');
describe('complete walkers only (fast paths off)', async () => {
  await import('./hardening.test.js');
  await import('./driver-validation.test.js');
  await import('./roundtrip.test.js');
  await import('./property.test.js');
});
