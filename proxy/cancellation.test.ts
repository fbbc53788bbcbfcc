// Cancellation end to end through a real sidecar pair on loopback: a caller
// that goes away (closes its HTTP/1.1 connection, resets its HTTP/2 stream,
// closes its TCP connection) takes its request with it, through the client
// sidecar, the hop between the sidecars (tsmesh/mux, tsmesh/h2, tsmesh/tcp
// over mTLS) and the server sidecar, up to the app, which sees its
// connection or stream go away. The original destinations come from the test
// (no iptables on loopback); test/netns/overload.test.ts runs the same on the
// real redirect path.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { waitFor } from '../lib/netns.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';
import { API, SERVICE_IP, startApiSidecar, WEB } from './testdata/shop.js';


/** An app that never answers: it keeps each request until the client goes away, and counts what it holds. */
class HungApp {
  readonly held = new Set<object>();
  seen = 0;
  connections = 0;
  readonly server: Server;

  constructor(kind: 'http1' | 'http2' | 'tcp') {
    const hold = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
      this.seen++;
      const token = {};
      this.held.add(token);
      res.once('close', () => this.held.delete(token));
      void req;
    };
    if (kind === 'http1') this.server = createHttpServer(hold) as unknown as Server;
    else if (kind === 'http2') this.server = createH2cServer(hold) as unknown as Server;
    else
      this.server = createServer((s) => {
        this.seen++;
        const token = {};
        this.held.add(token);
        s.on('error', () => undefined);
        s.once('close', () => this.held.delete(token));
        // It reads what comes (and so sees the end of it) but never answers.
        s.resume();
      });
    this.server.on('connection', (s: Socket) => {
      this.connections++;
      s.once('close', () => this.connections--);
    });
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }
}

describe('cancellation through a sidecar pair on loopback', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  const stops: (() => unknown)[] = [];

  before(async () => {
    ({ ca } = await newRootCa());
  });

  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  /** The app, B's sidecar in front of it, and A's sidecar whose app calls service api.shop:80 (protocol as given). */
  async function pair(app: HungApp, protocol: 'http' | 'auto' | 'tcp'): Promise<{ a: Sidecar; b: Sidecar }> {
    const appPort = await app.listen();
    stops.push(() => new Promise<void>((r) => app.server.close(() => r())));
    const b = await startApiSidecar(ca, appPort);
    stops.push(() => b.drain(0));
    const a = await loopbackSidecar(ca, WEB, new FixedConfig({
        services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, protocol, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }), {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
    });
    stops.push(() => a.drain(0));
    return { a, b };
  }

  async function appLetGo(app: HungApp, n: number): Promise<void> {
    await waitFor(`the app to receive ${n} requests`, async () => (app.seen >= n ? true : undefined), 5000, 10);
    assert.equal(app.held.size, n);
    await waitFor(`the app to see every abandoned request go (held ${app.held.size}, connections ${app.connections})`, async () => (app.held.size === 0 && app.connections === 0 ? true : undefined), 5000, 10);
  }

  it('HTTP/1.1 (tsmesh/mux between the sidecars): a client that closes its connection cancels up to the app', async () => {
    const app = new HungApp('http1');
    const { a, b } = await pair(app, 'http');
    const reqs = Array.from({ length: 10 }, (_, i) => {
      const r = httpRequest({ host: '127.0.0.1', port: a.outboundPort, path: `/hung/${i}` });
      r.on('error', () => undefined);
      r.end();
      return r;
    });
    await waitFor('the app to receive 10 requests', async () => (app.seen >= 10 ? true : undefined), 5000, 10);
    for (const r of reqs) r.destroy();
    await appLetGo(app, 10);
    // Counted on both sides as cancelled: response_code "0", with how long they waited.
    for (const [side, direction] of [[a, 'outbound'], [b, 'inbound']] as const) {
      const requests = await side.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
      assert.match(requests, new RegExp(`direction="${direction}",[^}]*response_code="0"[^}]*\\} 10(\n|$)`), requests);
      const errors = await side.metrics.registry.getSingleMetricAsString('tsmesh_http_errors_total');
      assert.match(errors, new RegExp(`direction="${direction}",[^}]*error="cancelled"\\} 10(\n|$)`), errors);
      const durations = await side.metrics.registry.getSingleMetricAsString('tsmesh_request_duration_seconds');
      assert.match(durations, new RegExp(`_count\\{direction="${direction}",[^}]*response_code="0"\\} 10(\n|$)`), durations);
    }
  });

  it('HTTP/2 (tsmesh/h2 between the sidecars): a client that resets its stream cancels up to the app, the connection stays', async () => {
    const app = new HungApp('http2');
    const { a } = await pair(app, 'auto');
    const client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    stops.push(() => void client.close());
    client.on('error', () => undefined);
    const streams = Array.from({ length: 10 }, (_, i) => {
      const s = client.request({ ':path': `/hung/${i}` });
      s.on('error', () => undefined);
      return s;
    });
    await waitFor('the app to receive 10 requests', async () => (app.seen >= 10 ? true : undefined), 5000, 10);
    for (const s of streams) s.close();
    await waitFor(`every stream to go (held ${app.held.size})`, async () => (app.held.size === 0 ? true : undefined), 5000, 10);
    assert.equal(app.connections, 1, 'the h2c connection to the app carries on');
  });

  it('HTTP/2: a client that closes its connection cancels every stream of it up to the app', async () => {
    const app = new HungApp('http2');
    const { a } = await pair(app, 'auto');
    const client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    client.on('error', () => undefined);
    for (let i = 0; i < 10; i++) client.request({ ':path': `/hung/${i}` }).on('error', () => undefined);
    await waitFor('the app to receive 10 requests', async () => (app.seen >= 10 ? true : undefined), 5000, 10);
    // No RST_STREAM, no GOAWAY: the connection just ends.
    client.destroy();
    await waitFor(`every stream to go (held ${app.held.size})`, async () => (app.held.size === 0 ? true : undefined), 5000, 10);
  });

  for (const how of ['closes', 'resets'] as const) {
    it(`opaque TCP (tsmesh/tcp between the sidecars): a client that ${how} its connection ends the app's`, async () => {
      const app = new HungApp('tcp');
      const { a } = await pair(app, 'tcp');
      const sockets = Array.from({ length: 10 }, () => {
        const s = connect(a.outboundPort, '127.0.0.1');
        s.on('error', () => undefined);
        s.write('hello');
        return s;
      });
      await waitFor('the app to see 10 connections', async () => (app.seen >= 10 ? true : undefined), 5000, 10);
      for (const s of sockets) {
        if (how === 'closes') s.destroy();
        else s.resetAndDestroy();
      }
      await appLetGo(app, 10);
    });
  }
});

/** A port nothing listens on: an app that is not there (stopping, or not started). */
async function closedPort(): Promise<number> {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  return port;
}

/**
 * A's sidecar calling service api.shop (on `port`), whose two endpoints are
 * sidecars in front of the apps on `appPorts`; `stop` ends all three.
 */
async function twoEndpoints(ca: CertificateAuthority, appPorts: readonly [number, number], port: { port: number; name: string; protocol: 'http' | 'tcp' }): Promise<{ a: Sidecar; stop: () => Promise<void> }> {
  const endpoints = [await startApiSidecar(ca, appPorts[0]), await startApiSidecar(ca, appPorts[1])];
  const a = await loopbackSidecar(ca, WEB, new FixedConfig({
      services: [
        {
          name: 'api',
          namespace: 'shop',
          clusterIPs: [SERVICE_IP],
          ports: [{ ...port, targetPort: 1 }],
          endpoints: endpoints.map((e) => ({ address: '127.0.0.1', identity: API, ports: { [port.name]: e.inboundPort } })),
        },
      ],
    }), {
    outboundOriginalDestination: () => ({ address: SERVICE_IP, port: port.port, family: 'IPv4' }),
  });
  return {
    a,
    stop: async () => {
      for (const s of [a, ...endpoints]) await s.drain(0);
    },
  };
}

describe('a request the app never saw, through sidecars on loopback', function () {
  this.timeout(30_000);

  it('goes again to another endpoint whatever its method: a POST to an endpoint whose app refuses its proxy succeeds on the other', async () => {
    const { ca } = await newRootCa();
    const app = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(`${req.method} ok`));
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    const { a, stop } = await twoEndpoints(ca, [await closedPort(), appPort], { port: 80, name: 'http', protocol: 'http' });
    try {
      const post = (i: number): Promise<{ status: number; body: string }> =>
        new Promise((resolve, reject) => {
          const r = httpRequest({ host: '127.0.0.1', port: a.outboundPort, method: 'POST', path: `/orders/${i}`, headers: { 'content-type': 'application/json' } }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          });
          r.on('error', reject);
          r.end(`{"order":${i}}`);
        });
      const results = [];
      // Paced as a caller would be: a burst faster than this would spend the retry budget's floor (10 a second).
      for (let i = 0; i < 20; i++) {
        results.push(await post(i));
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(results.filter((r) => r.status !== 200), [], 'every POST succeeded');
      assert.ok(results.every((r) => r.body === 'POST ok'));
      const retries = await a.metrics.registry.getSingleMetricAsString('tsmesh_retries_total');
      assert.match(retries, /reason="connect-failure"\} [1-9]/, 'some went to the endpoint whose app refused, and again to the other');
    } finally {
      await stop();
      app.close();
    }
  });
  it('opaque TCP: after a connection to an endpoint whose app is gone comes back empty, the next ones go to the other endpoint', async () => {
    const { ca } = await newRootCa();
    const echo = createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    const echoPort = (echo.address() as AddressInfo).port;
    const { a, stop } = await twoEndpoints(ca, [await closedPort(), echoPort], { port: 7000, name: 'tcp', protocol: 'tcp' });
    try {
      const roundTrip = (): Promise<string> =>
        new Promise((resolve) => {
          const s = connect(a.outboundPort, '127.0.0.1');
          let got = '';
          s.on('data', (d: Buffer) => {
            got += d.toString();
            if (got.length >= 5) s.end();
          });
          s.on('error', () => undefined);
          s.on('close', () => resolve(got));
          s.write('hello');
        });
      const answers: string[] = [];
      for (let i = 0; i < 20; i++) answers.push(await roundTrip());
      const empty = answers.filter((x) => x !== 'hello').length;
      assert.ok(empty <= 2, `${empty} of 20 connections came back empty`);
    } finally {
      await stop();
      echo.close();
    }
  });
});
