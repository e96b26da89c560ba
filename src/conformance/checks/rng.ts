/** virtio-rng checks (virtio 1.4 §5.4). */
import { ANY_TRANSPORT, defineCheck, type Check } from '../check.js';
import { fail, pass } from '../verdict.js';
import { rawInit, withRaw } from './util.js';

export const rngChecks: readonly Check[] = [
  defineCheck({
    id: 'rng.at-least-one-byte',
    title: 'every request gets at least one random byte, never more than the buffer',
    clauses: ['rng.dev-op.device.1'],
    role: 'device',
    transports: ANY_TRANSPORT,
    devices: ['rng'],
    async run(ctx) {
      return withRaw(rawInit(ctx), async (raw) => {
        const lens: number[] = [];
        for (const n of [1, 16, 4096]) {
          const r = await raw.transact(0, [], [n], ctx.waitMs, { signal: ctx.signal });
          if (r === undefined) return fail(`a ${n}-byte request was not answered`);
          if (r.len < 1 || r.len > n) return fail(`a ${n}-byte request answered with len ${r.len}`);
          lens.push(r.len);
        }
        const r2 = await raw.transact(0, [], [8, 8], ctx.waitMs, { signal: ctx.signal });
        if (r2 === undefined || r2.len < 1) return fail('a request of two 8-byte buffers got no byte');
        return pass(`lens ${lens.join(', ')} for 1/16/4096-byte buffers; 2-buffer request got ${r2.len}`);
      });
    },
  }),
];
