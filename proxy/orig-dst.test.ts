import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { originalDestination, OriginalDestinationError, parseSockaddr } from './orig-dst.js';

// The redirected case needs iptables in a network namespace: see
// test/netns/init.test.ts. Here: decoding, and a connection nobody redirected.
describe('originalDestination', function () {
  it('decodes a sockaddr_in', function () {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(2, 0);
    b.writeUInt16BE(8080, 2);
    Buffer.from([10, 96, 0, 10]).copy(b, 4);
    assert.deepEqual(parseSockaddr(b), { address: '10.96.0.10', port: 8080, family: 'IPv4' });
  });

  it('decodes a sockaddr_in6', function () {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(10, 0);
    b.writeUInt16BE(443, 2);
    Buffer.from('fd000010024400000000000000000003', 'hex').copy(b, 8);
    assert.deepEqual(parseSockaddr(b), { address: 'fd00:10:244::3', port: 443, family: 'IPv6' });
    Buffer.alloc(16).copy(b, 8);
    b[23] = 1;
    assert.equal(parseSockaddr(b).address, '::1');
  });

  it('refuses another address family', function () {
    assert.throws(() => parseSockaddr(Buffer.alloc(28)), OriginalDestinationError);
  });

  it('calls getsockopt on a real socket: no NAT entry, or the address it reached', async function () {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const client = connect(port, '127.0.0.1');
    const [accepted] = (await once(server, 'connection')) as [Socket];
    try {
      // Where conntrack runs, an unredirected connection reads back its own destination.
      const got = originalDestination(accepted);
      assert.deepEqual(got, { address: '127.0.0.1', port, family: 'IPv4' });
    } catch (e) {
      assert.ok(e instanceof OriginalDestinationError, String(e));
      assert.equal(e.errno, 2, e.message);
      assert.match(e.message, /not redirected/);
    } finally {
      client.destroy();
      accepted.destroy();
      server.close();
    }
  });

  it('refuses a closed socket', async function () {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    client.destroy();
    server.close();
    assert.throws(() => originalDestination(client), /no file descriptor/);
  });
});
