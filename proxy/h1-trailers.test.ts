// HTTP/1.1 chunked trailers through a sidecar pair on loopback (tsmesh/mux
// between the proxies): a request's trailers reach the app and a response's
// reach the client; fields a trailer may not carry are dropped.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { BodyDecoder, lastChunkWith } from './http/h1/body.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';

/** Sends `raw` on a connection to `port` and returns everything that comes back until the server closes. */
function exchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.write(raw);
  });
}

describe('HTTP/1.1 chunked trailers', () => {
  it('are read by the decoder, framing and routing fields dropped, and written after the last chunk', () => {
    const d = new BodyDecoder({ kind: 'chunked' }, 400);
    const wire = Buffer.from('3\r\nabc\r\n0\r\nX-Checksum: abc123\r\ncontent-length: 5\r\nhost: evil\r\nx-checksum: more\r\n\r\n');
    d.feed(wire, 0, () => undefined);
    assert.ok(d.done);
    assert.deepEqual({ ...d.trailers }, { 'x-checksum': 'abc123, more' });
    assert.equal(lastChunkWith({ 'grpc-status': '0', 'transfer-encoding': 'chunked', 'x-multi': ['a', 'b'], 'x-bad': 'a\r\nb' }), '0\r\ngrpc-status: 0\r\nx-multi: a\r\nx-multi: b\r\n\r\n');
    assert.equal(lastChunkWith(undefined), '0\r\n\r\n');
  });

  describe('through a sidecar pair on loopback', function () {
    this.timeout(30_000);
    let app: Server;
    let a: Sidecar;
    let b: Sidecar;
    let seen: { trailers: IncomingHttpHeaders; body: string } | undefined;

    before(async () => {
      const { ca } = await newRootCa();
      app = createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (body += d));
        req.on('end', () => {
          seen = { trailers: req.trailers, body };
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
          res.write('part one, ');
          res.addTrailers({ 'x-checksum': 'sha256=feed', 'grpc-status': '0' });
          res.end('part two');
        });
      });
      app.listen(0, '127.0.0.1');
      await once(app, 'listening');
      const appPort = (app.address() as AddressInfo).port;
      b = await loopbackSidecar(ca, API, new FixedConfig({}), {
        inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
      });
      a = await loopbackSidecar(ca, WEB, new FixedConfig({
          services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, protocol: 'http', targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
        }), {
        outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
      });
    });

    after(async () => {
      await a?.drain(0);
      await b?.drain(0);
      app?.close();
    });

    it("carries a chunked request's trailers to the app and a chunked response's to the client", async () => {
      const raw = await exchange(
        a.outboundPort,
        'POST /upload HTTP/1.1\r\nhost: api.shop\r\ntransfer-encoding: chunked\r\ntrailer: x-request-sum\r\nte: trailers\r\nconnection: close\r\n\r\n' +
          '5\r\nhello\r\n0\r\nx-request-sum: 42\r\n\r\n',
      );
      assert.equal(seen?.body, 'hello');
      assert.equal(seen?.trailers['x-request-sum'], '42');
      assert.match(raw, /^HTTP\/1\.1 200 /);
      assert.match(raw, /transfer-encoding: chunked\r\n/i);
      assert.match(raw, /\r\n0\r\n(?:[^\r]*\r\n)*x-checksum: sha256=feed\r\n/);
      assert.match(raw, /\r\n0\r\n(?:[^\r]*\r\n)*grpc-status: 0\r\n/);
      assert.ok(raw.endsWith('\r\n\r\n'));
    });
  });
});
