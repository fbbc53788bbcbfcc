// Trace context through a sidecar pair on loopback while span export is off
// (the default): the proxies pass W3C traceparent/tracestate and B3 on byte
// for byte, insert no span id of their own, and start no trace for a request
// that comes without context, so the app's own tracer decides (a sampled
// traceparent from the proxy would force 100% sampling downstream, and a
// parent span id nothing exports would leave the app's spans orphaned).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, createServer as createH2cServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';

const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'] as const;

describe('trace context through a sidecar pair without span export', function () {
  this.timeout(30_000);
  let app: Server;
  let h2app: Http2Server;
  /** Where b's inbound takes a connection: the HTTP/1.1 app or the h2c one. */
  let appPort = 0;
  let a: Sidecar;
  let b: Sidecar;
  const agent = new Agent();
  let seen: IncomingHttpHeaders = {};

  before(async () => {
    const { ca } = await newRootCa();
    app = createServer((req, res) => {
      seen = req.headers;
      res.end('ok');
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    appPort = (app.address() as AddressInfo).port;
    h2app = createH2cServer((req, res) => {
      seen = req.headers;
      res.end('ok');
    });
    h2app.listen(0, '127.0.0.1');
    await once(h2app, 'listening');
    b = await loopbackSidecar(ca, API, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }),
      { outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }) },
    );
  });

  after(async () => {
    await agent.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
    h2app?.close();
  });

  async function call(headers: Record<string, string>): Promise<IncomingHttpHeaders> {
    seen = {};
    const res = await request(`http://127.0.0.1:${a.outboundPort}/orders`, { headers: { host: 'api.shop', ...headers }, dispatcher: agent });
    assert.equal(res.statusCode, 200);
    await res.body.text();
    return seen;
  }

  const traceHeadersOf = (h: IncomingHttpHeaders): Record<string, unknown> => Object.fromEntries(TRACE_HEADERS.filter((k) => h[k] !== undefined).map((k) => [k, h[k]]));

  it("gives the app the caller's traceparent and tracestate byte for byte", async () => {
    const sent = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' };
    assert.deepEqual(traceHeadersOf(await call(sent)), sent);
    const unsampled = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' };
    assert.deepEqual(traceHeadersOf(await call(unsampled)), unsampled);
  });

  it('passes B3, multi-header and single, untouched', async () => {
    const multi = { 'x-b3-traceid': '463ac35c9f6413ad48485a3953bb6124', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-parentspanid': '0020000000000001', 'x-b3-sampled': '1' };
    assert.deepEqual(traceHeadersOf(await call(multi)), multi);
    const single = { b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90' };
    assert.deepEqual(traceHeadersOf(await call(single)), single);
  });

  it('passes a malformed traceparent on as it came: the app is the one to read it', async () => {
    const bad = { traceparent: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', tracestate: 'a=b' };
    assert.deepEqual(traceHeadersOf(await call(bad)), bad);
  });

  it('starts no trace for a request without context: the app gets none, and its own sampler decides', async () => {
    assert.deepEqual(traceHeadersOf(await call({})), {});
  });

  it('does the same for HTTP/2 (h2c from the client, tsmesh/h2 between the proxies)', async () => {
    const http1Port = appPort;
    appPort = (h2app.address() as AddressInfo).port;
    const client: ClientHttp2Session = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    try {
      const get = (headers: Record<string, string>) =>
        new Promise<void>((resolve, reject) => {
          const s = client.request({ ':path': '/orders', ':authority': 'api.shop', ...headers });
          s.on('response', () => undefined);
          s.resume();
          s.on('end', resolve);
          s.on('error', reject);
        });
      seen = {};
      const sent = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'congo=t61rcWkgMzE' };
      await get(sent);
      assert.deepEqual(traceHeadersOf(seen), sent);
      seen = {};
      await get({});
      assert.deepEqual(traceHeadersOf(seen), {});
    } finally {
      client.close();
      appPort = http1Port;
    }
  });
});
