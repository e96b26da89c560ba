import { describe, expect, it } from 'vitest';
import { main } from '../../examples/embed-queue.js';

describe('README embedding example', () => {
  it('[basic.split-vq.vq-used-ring.device.2] round-trips a request through one split queue', () => {
    const lines: string[] = [];
    const r = main((l) => lines.push(l));
    expect(r.reply).toBe('HELLO');
    expect(r.errors).toBe(0);
    expect(lines.some((l) => l.includes('token 7'))).toBe(true);
  });
});
