/** `serve --vhost-user` command-line handling (exit 2 with a clear message for bad flags). */
import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/main.js';
import { parseRestrict, serveVhostUserCommand } from '../../src/cli/serve-vhost-user.js';

async function cli(argv: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const code = await run(argv, { out: () => undefined, err: (t) => (err += `${t}\n`) }, [serveVhostUserCommand]);
  return { code, err };
}

describe('virtiokit serve --vhost-user (command line)', () => {
  it('parses repeatable --restrict ranges (hex or decimal, END exclusive)', () => {
    expect(parseRestrict('0x1000-0x2000,8192-12288')).toEqual([
      { start: 0x1000, end: 0x2000 },
      { start: 8192, end: 12288 },
    ]);
    expect(() => parseRestrict('0x2000-0x1000')).toThrow(/empty or reversed/);
    expect(() => parseRestrict('0x1000')).toThrow(/START-END/);
    expect(() => parseRestrict('abc-0x10')).toThrow(/not a number/);
  });

  it.each([
    [['serve', 'blk', '--disk', '/tmp/x'], /needs --vhost-user/],
    [['serve', '--vhost-user', '/tmp/s'], /one device type/],
    [['serve', 'console', '--vhost-user', '/tmp/s'], /one device type/],
    [['serve', 'net', '--vhost-user', '/tmp/s', '--responder', '10.0.2'], /--responder: '10.0.2' is not an IPv4 address/],
    [['serve', 'net', '--vhost-user', '/tmp/s', '--mac', 'zz'], /--mac:/],
    [['serve', 'net', '--vhost-user', '/tmp/s', '--responder', '10.0.2.2', '--net-listen', '/tmp/x'], /one of --net-listen, --net-connect or --responder/],
    [['serve', 'rng', '--vhost-user', '/tmp/s', '--responder', '10.0.2.2'], /--responder applies to net only/],
    [['serve', 'blk', '--vhost-user', '/tmp/s'], /needs --disk/],
    [['serve', 'blk', '--vhost-user', '/tmp/s', '--disk', '/tmp/x', '--restrict', '5-1'], /empty or reversed/],
    [['serve', 'blk', '--vhost-user', '/tmp/s', '--disk', '/tmp/x', '--queues', '0'], /--queues must be an integer between 1 and 64/],
    [['serve', 'blk', '--vhost-user', '/tmp/s', '--disk', '/tmp/x', '--queue-size', '100'], /power of 2/],
    [['serve', 'rng', '--vhost-user', '/tmp/s', '--disk', '/tmp/x'], /for blk/],
    [['serve', 'blk', '--vhost-user', '/tmp/s', '--bogus'], /unknown option --bogus/],
  ])('%j exits 2', async (argv, msg) => {
    const r = await cli(argv);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
  });

  it('a missing disk image is a failed command (exit 1) naming the file', async () => {
    const r = await cli(['serve', 'blk', '--vhost-user', '/tmp/vk-nonexistent.sock', '--disk', '/nonexistent/disk.raw']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/disk\.raw/);
  });
});
