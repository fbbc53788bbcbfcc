// `TE: trailers` on HTTP/1.1 reaches the app (RFC 9110 10.1.4). TE is
// hop-by-hop: the transfer codings it lists are the client's connection's and
// go no further, but its "trailers" says the client reads trailer fields,
// which a proxy that carries trailers end to end may say for it (gRPC servers
// and some apps check it). The proxy sends `te: trailers` with `connection:
// te`, as a sender of TE must, when the client's TE listed trailers, and no TE
// otherwise. A raw app records each head it receives, through a sidecar pair
// on loopback (tsmesh/mux between the proxies) and through one outbound proxy
// to an endpoint without a sidecar.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { PLAIN_CLIENT_ADDRESS, pairAndPlain } from './testdata/mesh.js';


/** Sends one request from `localAddress` and resolves with the response once the proxy closes. */
function request(port: number, localAddress: string, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.write(`${head}connection: close\r\n\r\n`);
  });
}

describe('TE: trailers on HTTP/1.1 reaches the app', function () {
  this.timeout(30_000);
  let app: Server;
  let a: Sidecar;
  let b: Sidecar;
  /** The header lines of each request head the app received, lowercased names. */
  const heads: string[][] = [];
  const sockets = new Set<Socket>();

  before(async () => {
    const { ca } = await newRootCa();
    app = createServer((s) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
      let buf = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        buf += d;
        for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
          const lines = buf.slice(0, end).split('\r\n').slice(1);
          buf = buf.slice(end + 4);
          heads.push(lines.map((l) => l.replace(/^[^:]+/, (n) => n.toLowerCase())));
          s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        }
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    ({ a, b } = await pairAndPlain(ca, appPort));
  });

  after(async () => {
    await a?.drain(0);
    await b?.drain(0);
    for (const s of sockets) s.destroy();
    app?.close();
  });

  /** The TE and Connection lines of the head the app received for one request. */
  async function seen(from: string, fields: string): Promise<string[]> {
    heads.length = 0;
    const res = await request(a.outboundPort, from, `GET /te HTTP/1.1\r\nhost: api.shop\r\n${fields}`);
    assert.match(res, /^HTTP\/1.1 200 OK\r\n/);
    assert.equal(heads.length, 1);
    return heads[0]!.filter((l) => /^(te|connection):/.test(l));
  }

  for (const [name, from] of [
    ['a sidecar pair', '127.0.0.1'],
    ['one outbound proxy', PLAIN_CLIENT_ADDRESS],
  ] as const) {
    describe(`through ${name}`, () => {
      it('TE: trailers (with Connection: TE, as a client must send it) arrives as te: trailers', async () => {
        assert.deepEqual(await seen(from, 'TE: trailers\r\nConnection: TE\r\n'), ['te: trailers', 'connection: te']);
      });

      it('a TE that lists trailers beside transfer codings arrives as trailers alone', async () => {
        assert.deepEqual(await seen(from, 'te: deflate;q=0.5, Trailers\r\n'), ['te: trailers', 'connection: te']);
      });

      it('a TE without trailers is this connection’s and goes no further', async () => {
        assert.deepEqual(await seen(from, 'te: gzip;q=1\r\nconnection: te\r\n'), []);
      });

      it('no TE, none added', async () => {
        assert.deepEqual(await seen(from, ''), []);
      });
    });
  }
});
