// HTTP/2 trailers through a sidecar pair on loopback (h2c from the client,
// tsmesh/h2 between the proxies, h2c to the app): trailers both ways, a head
// that ends the stream (gRPC's trailers-only answer) kept in that shape, and
// `te: trailers` reaching the app.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';

interface Exchange {
  headers: IncomingHttpHeaders;
  /** Whether the response head carried END_STREAM. */
  endAfterHeaders: boolean;
  body: string;
  trailers: IncomingHttpHeaders | undefined;
}

function exchange(client: ClientHttp2Session, headers: Record<string, string>, body?: { data: string; trailers?: Record<string, string> }): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const s = client.request({ ':authority': 'api.shop:80', ...headers }, { endStream: body === undefined, waitForTrailers: body?.trailers !== undefined });
    if (body?.trailers) s.once('wantTrailers', () => s.sendTrailers(body.trailers!));
    if (body) s.end(body.data);
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    let text = '';
    let endAfterHeaders = false;
    s.on('response', (h, flags) => {
      head = h;
      endAfterHeaders = (flags & 0x1) !== 0; // END_STREAM
    });
    s.on('trailers', (t) => (trailers = t));
    s.on('data', (d: Buffer) => (text += d.toString()));
    s.on('end', () => resolve({ headers: head, endAfterHeaders, body: text, trailers }));
    s.on('error', reject);
  });
}

describe('HTTP/2 trailers through a sidecar pair on loopback', function () {
  this.timeout(30_000);
  let app: Http2Server;
  let a: Sidecar;
  let b: Sidecar;
  let client: ClientHttp2Session;
  /** What the app received with each request: its head and trailers. */
  const seen: { headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders | undefined; body: string }[] = [];

  before(async () => {
    const { ca } = await newRootCa();
    app = createH2cServer();
    app.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      let trailers: IncomingHttpHeaders | undefined;
      let body = '';
      stream.on('trailers', (t) => (trailers = t));
      stream.on('data', (d: Buffer) => (body += d.toString()));
      stream.on('end', () => {
        seen.push({ headers, trailers, body });
        const path = headers[':path'];
        if (path === '/trailers-only') {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'down%20for%20now' }, { endStream: true });
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: path === '/trailers' });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-checksum': 'abc123' }));
        stream.end(`echo ${body}`);
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    a = await loopbackSidecar(ca, WEB, new FixedConfig({
        services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }), {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
    });
    client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
  });

  after(async () => {
    client?.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
  });

  it('carries response trailers from the app to the client', async () => {
    const r = await exchange(client, { ':method': 'POST', ':path': '/trailers' }, { data: 'x' });
    assert.equal(r.headers[':status'], 200);
    assert.equal(r.body, 'echo x');
    assert.equal(r.trailers?.['grpc-status'], '0');
    assert.equal(r.trailers?.['x-checksum'], 'abc123');
  });

  it('carries request trailers from the client to the app', async () => {
    seen.length = 0;
    const r = await exchange(client, { ':method': 'POST', ':path': '/plain' }, { data: 'body', trailers: { 'x-request-sum': '42' } });
    assert.equal(r.body, 'echo body');
    assert.equal(r.trailers, undefined, 'a response without trailers gets none');
    assert.equal(seen[0]?.trailers?.['x-request-sum'], '42');
    assert.equal(seen[0]?.body, 'body');
  });

  it('keeps a head that ends the stream (trailers-only) in that shape', async () => {
    const r = await exchange(client, { ':method': 'POST', ':path': '/trailers-only', 'content-type': 'application/grpc' }, { data: '' });
    assert.equal(r.endAfterHeaders, true, 'the head carried END_STREAM');
    assert.equal(r.headers['grpc-status'], '14');
    assert.equal(r.headers['grpc-message'], 'down%20for%20now');
    assert.equal(r.body, '');
  });

  it('passes te: trailers to the app', async () => {
    seen.length = 0;
    await exchange(client, { ':method': 'GET', ':path': '/te', te: 'trailers' });
    assert.equal(seen[0]?.headers.te, 'trailers');
  });
});
