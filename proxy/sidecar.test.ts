// Two sidecars on loopback, joined by real mTLS, with a real app behind one.
// The original destination comes from the test here (no iptables on
// loopback); test/netns covers the real redirect path.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { request } from 'undici';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { freePort } from '../lib/ports.js';
import { EndpointPools, forward } from './http/forward.js';
import { bodyText, testRequest } from './http/testdata/requests.js';
import { startSidecar, type Sidecar } from './sidecar.js';
import { MeshTls } from './tls/mesh-tls.js';
import { FixedConfig, FixedIdentity, issueCredentials, loopbackSidecar } from './testdata/mesh.js';
import { noDelayOfConnectionsTo, socketsConnectedTo } from './testdata/sockets.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10'; // never dialled: the test resolves original destinations itself

const portOf = (s: Server | HttpServer): number => (s.address() as AddressInfo).port;

async function listen<T extends Server | HttpServer>(s: T): Promise<T> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

function echoTcp(): Server {
  return createServer((s) => s.pipe(s));
}

/** A connection through `port` that has echoed `payload` back, left open, and what came back. */
function openEchoed(port: number, payload: string): Promise<{ socket: Socket; echoed: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let echoed = '';
    socket.on('data', (d: Buffer) => {
      echoed += d.toString();
      if (echoed.length >= payload.length) resolve({ socket, echoed });
    });
    socket.on('error', reject);
    socket.write(payload);
  });
}

/** What comes back through `port` for `payload`, the connection closed after. */
async function tcpRoundTrip(port: number, payload: string): Promise<string> {
  const { socket, echoed } = await openEchoed(port, payload);
  const closed = once(socket, 'close');
  socket.end();
  await closed;
  return echoed;
}

/** A sidecar with identity API whose inbound connections go to the app on 127.0.0.1:`appPort()`. */
function apiSidecar(ca: CertificateAuthority, config: FixedConfig, appPort: () => number): Promise<Sidecar> {
  return startSidecar({
    identity: new FixedIdentity(issueCredentials(ca, API)),
    config,
    log: silentLogger,
    host: '127.0.0.1',
    outboundPort: 0,
    inboundPort: 0,
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort(), family: 'IPv4' }),
    outboundOriginalDestination: () => {
      throw new Error('unused');
    },
  });
}

/** A sidecar with identity WEB whose app calls service api.shop, whose one endpoint (identity API) is 127.0.0.1:`port`. */
function webSidecarTo(ca: CertificateAuthority, port: number): Promise<Sidecar> {
  return loopbackSidecar(ca, WEB, new FixedConfig({
      services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: port }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
    }), {
    outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
    inboundOriginalDestination: () => {
      throw new Error('unused');
    },
  });
}

describe('sidecar pair on loopback (mTLS, HTTP/1.1, TCP)', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let app: HttpServer;
  let tcpApp: Server;
  let a: Sidecar;
  let b: Sidecar;
  let bConfig: FixedConfig;
  let aConfig: FixedConfig;
  let originalPort = 0; // what A's "app" dialled, for the passthrough case
  const servers: (Server | HttpServer)[] = [];
  /** Requests to /held wait here until the test answers them. */
  const held: (() => void)[] = [];

  const meshConfig = (bIdentity: string) => ({
    services: [
      {
        name: 'api',
        namespace: 'shop',
        clusterIPs: [SERVICE_IP],
        ports: [
          { port: 80, name: 'http', protocol: 'auto', targetPort: portOf(app) },
          { port: 7000, name: 'echo', protocol: 'tcp', targetPort: portOf(tcpApp) },
        ],
        endpoints: [{ address: '127.0.0.1', identity: bIdentity }],
      },
    ],
  });

  before(async () => {
    ({ ca } = await newRootCa());
    app = await listen(
      createHttpServer((req, res) => {
        res.setHeader('content-type', 'application/json');
        const answer = (): void => void res.end(JSON.stringify({ from: 'api', path: req.url, host: req.headers.host }));
        if (req.url?.startsWith('/held')) held.push(answer);
        else answer();
      }),
    );
    tcpApp = await listen(echoTcp());
    servers.push(app, tcpApp);
    bConfig = new FixedConfig({ mesh: { mtlsMode: 'STRICT' } });
    // B: the inbound side. Its "original destination" is the app port the endpoint was dialled on;
    // loopback has no redirect, so A dials B's inbound listener and B is told the app port.
    let bInboundAppPort = 0;
    b = await apiSidecar(ca, bConfig, () => bInboundAppPort);
    // A reaches "the endpoint" at B's inbound port; B forwards to whichever app port the test set.
    aConfig = new FixedConfig(meshConfig(API));
    a = await loopbackSidecar(ca, WEB, aConfig, {
      outboundOriginalDestination: () => ({ address: originalPort ? '127.0.0.1' : SERVICE_IP, port: originalPort || currentServicePort, family: 'IPv4' }),
      inboundOriginalDestination: () => {
        throw new Error('unused');
      },
    });
    // Endpoints point at B's inbound listener; B maps to the app port by the service port in use.
    const endpointAtB = (doc: ReturnType<typeof meshConfig>) => {
      for (const p of doc.services[0]!.ports) p.targetPort = b.inboundPort;
      return doc;
    };
    aConfig.set(endpointAtB(meshConfig(API)));
    setBTarget = (port) => (bInboundAppPort = port);
    rewriteEndpoints = (identity) => aConfig.set(endpointAtB(meshConfig(identity)));
  });

  let currentServicePort = 80;
  let setBTarget: (port: number) => void = () => {};
  let rewriteEndpoints: (identity: string) => void = () => {};

  after(async () => {
    await a?.drain(0);
    await b?.drain(0);
    for (const s of servers) s.close();
  });

  async function get(path: string, headers: Record<string, string> = {}) {
    const res = await request(`http://127.0.0.1:${a.outboundPort}${path}`, { headers: { host: 'api.shop', ...headers } });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  it('carries an HTTP/1.1 request from A through both proxies to B\'s app', async () => {
    currentServicePort = 80;
    setBTarget(portOf(app));
    const r = await get('/orders?id=7');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(JSON.parse(r.text), { from: 'api', path: '/orders?id=7', host: 'api.shop' });
  });

  it('B records the request with tls="true" and A\'s SPIFFE ID; A records B\'s', async () => {
    const bm = await b.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
    assert.match(bm, new RegExp(`direction="inbound",source_identity="${WEB}",destination_identity="${API}",destination_service="[^"]*",route="",response_code="200",tls="true"`));
    const am = await a.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
    assert.match(am, new RegExp(`direction="outbound",source_identity="${WEB}",destination_identity="${API}",destination_service="api.shop",route="default",response_code="200",tls="true"`));
  });

  it('carries concurrent requests from A to B as streams of one mTLS connection (tsmesh/mux)', async () => {
    const inFlight = Array.from({ length: 12 }, (_, i) => get(`/held/${i}`));
    const deadline = Date.now() + 5000;
    while (held.length < 12 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(held.length, 12, 'the app did not get the 12 requests at once');
    // Twelve HTTP/1.1 connections from A to B's app, and one connection from A to B.
    assert.equal(socketsConnectedTo(b.inboundPort).length, 1);
    for (const answer of held.splice(0)) answer();
    const answers = await Promise.all(inFlight);
    assert.deepEqual(
      answers.map((r) => r.status),
      answers.map(() => 200),
    );
    const m = await b.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
    assert.match(m, new RegExp(`direction="inbound",source_identity="${WEB}".*tls="true",grpc_status=""\\} 1[3-9]`));
  });

  it('carries an opaque TCP port over mTLS', async () => {
    currentServicePort = 7000;
    setBTarget(portOf(tcpApp));
    assert.equal(await tcpRoundTrip(a.outboundPort, 'ping over the mesh'), 'ping over the mesh');
    const m = await b.metrics.registry.getSingleMetricAsString('tsmesh_tcp_connections_opened_total');
    assert.match(m, /direction="inbound",destination_service="[^"]*",tls="true"\} 1/);
  });

  it('sets TCP_NODELAY on the connections it makes to the app and to passthrough destinations', async () => {
    // With Nagle's algorithm on the proxy's side, the second piece of a message a client writes
    // in two could wait for the first piece's delayed ACK (40 ms on Linux), though the client turned it off.
    const allNoDelay = (port: number): void => {
      const flags = noDelayOfConnectionsTo(port);
      assert.ok(flags.length > 0, `no connection to port ${port} found`);
      assert.deepEqual(flags, flags.map(() => true), `TCP_NODELAY of the connections to port ${port}`);
    };
    currentServicePort = 7000;
    setBTarget(portOf(tcpApp));
    const meshed = (await openEchoed(a.outboundPort, 'over the mesh')).socket;
    try {
      allNoDelay(portOf(tcpApp));
    } finally {
      meshed.destroy();
      currentServicePort = 80;
    }
    const echo = await listen(echoTcp());
    servers.push(echo);
    originalPort = portOf(echo);
    try {
      const passed = (await openEchoed(a.outboundPort, 'passed through')).socket;
      try {
        allNoDelay(portOf(echo));
      } finally {
        passed.destroy();
      }
    } finally {
      originalPort = 0;
    }
  });

  it('refuses an endpoint whose certificate carries another identity (503, nothing reaches B\'s app)', async () => {
    currentServicePort = 80;
    setBTarget(portOf(app));
    rewriteEndpoints('spiffe://cluster.local/ns/shop/sa/impostor-check');
    try {
      const r = await get('/');
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-tsmesh-error'], 'connect-failure');
      assert.match(r.text, /expected spiffe:\/\/cluster\.local\/ns\/shop\/sa\/impostor-check/);
    } finally {
      rewriteEndpoints(API);
    }
  });

  it('refuses plain connections to B in STRICT mode and passes them in PERMISSIVE', async () => {
    setBTarget(portOf(app));
    const plain = () => request(`http://127.0.0.1:${b.inboundPort}/`).then(async (r) => ({ status: r.statusCode, headers: r.headers, text: await r.body.text() }));
    const refusedHttp = await plain();
    assert.equal(refusedHttp.status, 403);
    assert.equal(refusedHttp.headers['x-tsmesh-error'], 'mtls-required');
    bConfig.set({ mesh: { mtlsMode: 'PERMISSIVE' } });
    try {
      const r = await plain();
      assert.equal(r.status, 200);
      assert.match(r.text, /"from":"api"/);
    } finally {
      bConfig.set({ mesh: { mtlsMode: 'STRICT' } });
    }
    const refused = await b.metrics.registry.getSingleMetricAsString('tsmesh_connections_refused_total');
    assert.match(refused, /direction="inbound",reason="plaintext"\} [1-9]/);
  });

  it('passes unknown destinations through untouched', async () => {
    const echo = await listen(echoTcp());
    servers.push(echo);
    originalPort = portOf(echo);
    try {
      assert.equal(await tcpRoundTrip(a.outboundPort, 'not a mesh service'), 'not a mesh service');
    } finally {
      originalPort = 0;
    }
  });

  it('survives garbage on every port and keeps serving', async () => {
    currentServicePort = 80;
    setBTarget(portOf(app));
    for (const [name, port] of [['outbound', a.outboundPort], ['inbound', b.inboundPort]] as const) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${name} kept the garbage connection open`)), 5000);
        const s = connect(port, '127.0.0.1', () => s.end(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 0x80, 0x00])));
        s.resume(); // read whatever comes back, so the close is seen
        s.on('close', () => (clearTimeout(t), resolve()));
        s.on('error', () => undefined);
      });
    }
    currentServicePort = 80;
    const r = await get('/still-alive');
    assert.equal(r.status, 200);
  });

  it('on drain, finishes a request in flight, then stops accepting', async () => {
    const slow = await listen(createHttpServer((_req, res) => setTimeout(() => res.end('slow but complete'), 400)));
    servers.push(slow);

    const c = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: portOf(slow), family: 'IPv4' }),
    });
    const port = c.inboundPort;
    aConfig.set({ services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, targetPort: port }], endpoints: [{ address: '127.0.0.1', identity: API }] }] });
    try {
      currentServicePort = 80;
      const inFlight = get('/slow');
      await new Promise((r) => setTimeout(r, 150));
      const drained = c.drain(5000);
      const r = await inFlight;
      assert.equal(r.status, 200);
      assert.equal(r.text, 'slow but complete');
      await drained;
      const after = await get('/after-drain');
      assert.equal(after.status, 503);
    } finally {
      rewriteEndpoints(API);
      await c.drain(0);
    }
  });
});

describe('sidecar pair on loopback: HTTP/2 (h2c from the app, tsmesh/h2 between proxies)', function () {
  this.timeout(30_000);
  it('carries h2c requests as HTTP/2 end to end, multiplexed, with per-request metrics', async () => {
    const { createServer: createH2cServer, connect: h2connect } = await import('node:http2');
    const { ca } = await newRootCa();
    const app = createH2cServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`h2 ${req.method} ${req.url} via ${req.headers[':authority']} (httpVersion ${req.httpVersion})`);
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    const b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    const a = await loopbackSidecar(ca, WEB, new FixedConfig({
        services: [{ name: 'grpc', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 50051, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }), {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 50051, family: 'IPv4' }),
    });
    const client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    try {
      const one = (path: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const s = client.request({ ':path': path, ':authority': 'grpc.shop:50051' });
          let body = '';
          let status = 0;
          s.on('response', (h) => (status = Number(h[':status'])));
          s.on('data', (d: Buffer) => (body += d.toString()));
          s.on('end', () => resolve({ status, body }));
          s.on('error', reject);
        });
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => one(`/call/${i}`)));
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200);
        assert.equal(r.body, `h2 GET /call/${i} via grpc.shop:50051 (httpVersion 2.0)`);
      }
      const bm = await b.metrics.registry.getSingleMetricAsString('tsmesh_requests_total');
      assert.match(bm, new RegExp(`direction="inbound",source_identity="${WEB}",destination_identity="${API}",destination_service="[^"]*",route="",response_code="200",tls="true",grpc_status=""\\} 20`));
    } finally {
      client.close();
      await a.drain(0);
      await b.drain(0);
      app.close();
    }
  });
});

describe('sidecar pair whose first connection meets an authorization policy', function () {
  this.timeout(30_000);

  it('answers each request over tsmesh/mux 403 or 200 by the policy, never closing the connection as L4 would', async () => {
    const { ca } = await newRootCa();
    const app = await listen(createHttpServer((req, res) => res.end(`api: ${req.url}`)));
    const bConfig = new FixedConfig({ mesh: { mtlsMode: 'STRICT' }, inbound: { authorization: [{ name: 'only-frontend', rules: [{ serviceAccounts: ['shop/frontend'] }] }] } });
    const b = await apiSidecar(ca, bConfig, () => portOf(app));
    const a = await webSidecarTo(ca, b.inboundPort);
    const call = async (): Promise<string> => {
      const r = await request(`http://127.0.0.1:${a.outboundPort}/guarded`, { headers: { host: 'api.shop' } });
      return `${r.statusCode} ${String(r.headers['x-tsmesh-error'] ?? '')} ${await r.body.text()}`;
    };
    try {
      assert.match(await call(), /^403 denied .*may not call port/);
      bConfig.set({ mesh: { mtlsMode: 'STRICT' }, inbound: { authorization: [{ name: 'shop-callers', rules: [{ namespaces: ['shop'] }] }] } });
      assert.equal(await call(), '200  api: /guarded');
      assert.equal(socketsConnectedTo(b.inboundPort).length, 1);
    } finally {
      await a.drain(0);
      await b.drain(0);
      app.close();
    }
  });
});

describe('sidecar to an endpoint whose proxy offers only tsmesh/h1', function () {
  this.timeout(30_000);

  it('falls back to an mTLS connection per HTTP/1.1 connection, as that proxy expects', async () => {
    const { ca } = await newRootCa();
    // An older proxy: mesh mTLS with B's identity, and HTTP/1.1 on each connection.
    const olderTls = new MeshTls(new FixedIdentity(issueCredentials(ca, API)));
    const served = createHttpServer((req, res) => res.end(`older proxy: ${req.url}`));
    const negotiated: (string | false | null)[] = [];
    const older = await listen(
      createTlsServer({ ...olderTls.options(), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['tsmesh/h1'] }, (tls: TLSSocket) => {
        negotiated.push(tls.alpnProtocol);
        served.emit('connection', tls);
      }),
    );
    const a = await webSidecarTo(ca, portOf(older));
    try {
      const texts = await Promise.all(
        [1, 2, 3].map(async (i) => {
          const r = await request(`http://127.0.0.1:${a.outboundPort}/old/${i}`, { headers: { host: 'api.shop' } });
          return `${r.statusCode} ${await r.body.text()}`;
        }),
      );
      assert.deepEqual(texts, [1, 2, 3].map((i) => `200 older proxy: /old/${i}`));
      assert.ok(negotiated.length >= 3, `${negotiated.length} connections for 3 concurrent requests`);
      assert.deepEqual(negotiated, negotiated.map(() => 'tsmesh/h1'));
    } finally {
      await a.drain(0);
      older.close();
      olderTls.close();
    }
  });
});

describe('the client pool against an endpoint whose connections are slow to open', function () {
  this.timeout(30_000);

  it('reports the wait for the mTLS connection apart from the request, and no wait on the connection it then reuses', async () => {
    const { ca } = await newRootCa();
    const app = await listen(createHttpServer((req, res) => res.end(`api: ${req.url}`)));
    const b = await apiSidecar(ca, new FixedConfig({}), () => portOf(app));
    // Between A's pool and B: every new connection is held 300 ms before its bytes flow (a slow handshake).
    const HOLD_MS = 300;
    const relay = await listen(
      createServer((down) => {
        down.pause();
        setTimeout(() => {
          const up = connect(b.inboundPort, '127.0.0.1', () => {
            down.pipe(up).pipe(down);
            down.resume();
          });
          up.on('error', () => down.destroy());
          down.on('error', () => up.destroy());
        }, HOLD_MS);
      }),
    );
    const webTls = new MeshTls(new FixedIdentity(issueCredentials(ca, WEB)));
    const pools = new EndpointPools(webTls);
    const ep = { address: '127.0.0.1', port: portOf(relay), identity: API };
    try {
      const timed = async (path: string): Promise<{ text: string; ms: number; connectMs: number | undefined }> => {
        const t0 = performance.now();
        const res = await forward(pools, ep, testRequest({ path, startedAt: t0 }));
        const text = await bodyText(res);
        return { text, ms: performance.now() - t0, connectMs: res.meta?.connectMs };
      };
      const first = await timed('/first');
      assert.equal(first.text, 'api: /first');
      assert.ok(first.connectMs !== undefined && first.connectMs >= HOLD_MS, `the first request waited ${first.connectMs} ms for its connection, of ${first.ms.toFixed(1)} ms in all`);
      assert.ok(first.ms - first.connectMs < HOLD_MS, `without the wait for its connection it took ${(first.ms - first.connectMs).toFixed(1)} ms`);
      const second = await timed('/second');
      assert.equal(second.text, 'api: /second');
      assert.equal(second.connectMs, undefined, 'the second request went out on the pooled connection at once');
      assert.ok(second.ms < HOLD_MS, `the second request took ${second.ms.toFixed(1)} ms`);
    } finally {
      await pools.close();
      webTls.close();
      await b.drain(0);
      relay.close();
      app.close();
    }
  });
});

describe('sidecar start on a port that is taken', () => {
  it('fails with EADDRINUSE and leaves none of its listeners behind', async () => {
    const { ca } = await newRootCa();
    const taken = await listen(createServer());
    const outboundPort = await freePort();
    try {
      await assert.rejects(
        startSidecar({
          identity: new FixedIdentity(issueCredentials(ca, WEB)),
          config: new FixedConfig({}),
          log: silentLogger,
          host: '127.0.0.1',
          outboundPort,
          inboundPort: portOf(taken),
          inboundOriginalDestination: () => ({ address: '127.0.0.1', port: 1, family: 'IPv4' }),
          outboundOriginalDestination: () => ({ address: '127.0.0.1', port: 1, family: 'IPv4' }),
        }),
        { code: 'EADDRINUSE' },
      );
      // The outbound listener had started before the inbound one failed: it is closed again.
      const refused = await new Promise<string>((resolve) => {
        const s = connect(outboundPort, '127.0.0.1');
        s.on('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      assert.equal(refused, 'ECONNREFUSED');
    } finally {
      taken.close();
    }
  });
});
