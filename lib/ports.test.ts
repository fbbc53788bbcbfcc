import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { ephemeralPortStart, freePort } from './ports.js';

describe('freePort', () => {
  it('gives a port below the ephemeral range that a server can then listen on', async () => {
    const seen = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      assert.ok(port >= 10_000 && port < ephemeralPortStart(), `${port}`);
      seen.add(port);
      const s = createServer().listen(port, '127.0.0.1');
      await new Promise((r) => s.once('listening', r));
      assert.equal((s.address() as AddressInfo).port, port);
      await new Promise((r) => s.close(r));
    }
    assert.ok(seen.size > 1, 'the same port every time');
  });
});
