/**
 * The packed suites run again with the fast paths (popFast / pushFast / addFast / collectFast)
 * switched off, so the complete walkers alone are proven against every case, batch entry points
 * included. Test titles are those of the original suites.
 */
import { describe } from 'vitest';
import { setPathMode } from './helpers.js';

setPathMode('slow');
describe('complete walkers only (fast paths off)', async () => {
  await import('./device-checks.test.js');
  await import('./driver-checks.test.js');
  await import('./roundtrip.test.js');
  await import('./batch.test.js');
  await import('./events.test.js');
  await import('./property.test.js');
});
