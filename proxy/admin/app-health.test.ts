// App probes against real app servers on loopback.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { createRootCa } from '../../ca/root.js';
import { freePort } from '../../lib/ports.js';
import type { AppProbe } from '../../contract/env.js';
import { startEchoServer, type EchoServer } from '../../test/netns/grpc-service.js'; // a grpc-js app with the Health service
import { AppProbesError, MAX_PROBE_BODY_BYTES, parseAppProbes, runAppProbe } from './app-health.js';

async function listen<S extends Server | ReturnType<typeof createTcpServer>>(server: S): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

describe('app probes: httpGet', () => {
  let app: Server;
  let port: number;
  let seen: { url: string; headers: IncomingHttpHeaders }[];

  before(async () => {
    app = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      const url = req.url ?? '/';
      if (url === '/healthz' || url === '/healthz?verbose=1') res.writeHead(200).end('ok from app');
      else if (url === '/empty') res.writeHead(204).end();
      else if (url === '/sick') res.writeHead(503).end('database down');
      else if (url === '/slow') setTimeout(() => res.writeHead(200).end('late'), 1500).unref();
      else if (url === '/moved') res.writeHead(302, { location: '/healthz' }).end();
      else if (url === '/away') res.writeHead(301, { location: 'https://login.example.com/' }).end();
      else if (url === '/loop') res.writeHead(307, { location: '/loop' }).end();
      else if (url === '/nolocation') res.writeHead(302).end();
      else if (url === '/big') res.writeHead(500).end('x'.repeat(1024 * 1024));
      else res.writeHead(404).end('no such page');
    });
    port = await listen(app);
  });
  beforeEach(() => (seen = []));
  after(() => {
    app.closeAllConnections();
    app.close();
  });

  const get = (path: string | undefined, extra: Partial<NonNullable<AppProbe['httpGet']>> = {}, timeoutSeconds?: number) =>
    runAppProbe({ httpGet: { port, ...(path === undefined ? {} : { path }), ...extra }, ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }) }, 'kube-probe/1.31');

  it('passes a 2xx through with the body', async () => {
    assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok from app' });
    assert.deepEqual(await get('/empty'), { status: 204, body: '' });
  });

  it('passes a failure status through, body and all', async () => {
    assert.deepEqual(await get('/sick'), { status: 503, body: 'database down' });
    assert.deepEqual(await get('/missing'), { status: 404, body: 'no such page' });
  });

  it("sends the probe's path, query and headers, and kubelet's User-Agent", async () => {
    await get('/healthz?verbose=1', { httpHeaders: [{ name: 'Host', value: 'web.example' }, { name: 'X-Probe', value: 'yes' }] });
    assert.equal(seen[0]?.url, '/healthz?verbose=1');
    assert.equal(seen[0]?.headers.host, 'web.example');
    assert.equal(seen[0]?.headers['x-probe'], 'yes');
    assert.equal(seen[0]?.headers['user-agent'], 'kube-probe/1.31');
  });

  it('probes / when the path is empty, and adds a missing leading slash', async () => {
    await get(undefined);
    await get('healthz');
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/', '/healthz'],
    );
  });

  it("fails after the probe's own timeout", async () => {
    const started = Date.now();
    const r = await get('/slow', {}, 1);
    assert.equal(r.status, 503);
    assert.match(r.body, /no answer within 1000ms/);
    assert.ok(Date.now() - started < 1400);
  });

  it('fails with the reason when nothing listens', async () => {
    const r = await runAppProbe({ httpGet: { port: await freePort(), path: '/' } });
    assert.equal(r.status, 503);
    assert.match(r.body, /app probe failed: connect ECONNREFUSED 127.0.0.1:\d+/);
  });

  it('follows a redirect on the same host, as kubelet does, instead of relaying it', async () => {
    assert.deepEqual(await get('/moved'), { status: 200, body: 'ok from app' });
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/moved', '/healthz'],
    );
  });

  it('counts a redirect elsewhere, or without a Location, as success', async () => {
    const away = await get('/away');
    assert.equal(away.status, 200);
    assert.match(away.body, /redirects to https:\/\/login.example.com\/, which is not followed/);
    assert.equal(seen.length, 1);
    assert.equal((await get('/nolocation')).status, 200);
  });

  it('stops a redirect loop', async () => {
    const r = await get('/loop');
    assert.equal(r.status, 503);
    assert.match(r.body, /more than 10 redirects/);
  });

  it(`keeps at most ${MAX_PROBE_BODY_BYTES} bytes of the body`, async () => {
    const r = await get('/big');
    assert.equal(r.status, 500);
    assert.equal(r.body.length, MAX_PROBE_BODY_BYTES);
  });

  it('probes HTTPS without verifying the app certificate, as kubelet does', async () => {
    const { certPem, keyPem } = await createRootCa('cluster.local');
    const tlsApp = createHttpsServer({ cert: certPem, key: keyPem }, (_req, res) => res.writeHead(200).end('tls ok'));
    const tlsPort = await listen(tlsApp);
    try {
      assert.deepEqual(await runAppProbe({ httpGet: { port: tlsPort, path: '/', scheme: 'HTTPS' } }), { status: 200, body: 'tls ok' });
    } finally {
      tlsApp.close();
    }
  });
});

describe('app probes: tcpSocket', () => {
  it('succeeds when the port accepts a connection', async () => {
    const server = createTcpServer((s) => s.destroy());
    const port = await listen(server);
    try {
      assert.deepEqual(await runAppProbe({ tcpSocket: { port } }), { status: 200, body: `tcp connect to 127.0.0.1:${port} succeeded\n` });
    } finally {
      server.close();
    }
  });

  it('fails when nothing listens', async () => {
    const r = await runAppProbe({ tcpSocket: { port: await freePort() } });
    assert.equal(r.status, 503);
    assert.match(r.body, /ECONNREFUSED/);
  });
});

describe('app probes: grpc (grpc.health.v1.Health/Check)', () => {
  let app: EchoServer;
  const checked: string[] = [];

  before(async () => {
    app = await startEchoServer('app', '127.0.0.1', 0, (e) => {
      if (e.event === 'health') checked.push(e.service);
    });
    app.setHealth('orders.v1.Orders', 'SERVING');
    app.setHealth('payments.v1.Payments', 'NOT_SERVING');
  });
  after(() => app.close());

  const grpcProbe = (service?: string, port = app.port, timeoutSeconds?: number) =>
    runAppProbe({ grpc: { port, ...(service === undefined ? {} : { service }) }, ...(timeoutSeconds === undefined ? {} : { timeoutSeconds }) }, 'kube-probe/1.31');

  it('succeeds when the app answers SERVING, for the server or a service by name', async () => {
    checked.length = 0;
    assert.deepEqual(await grpcProbe(), { status: 200, body: 'gRPC health check of the server: SERVING\n' });
    assert.deepEqual(await grpcProbe('orders.v1.Orders'), { status: 200, body: 'gRPC health check of service "orders.v1.Orders": SERVING\n' });
    assert.deepEqual(checked, ['', 'orders.v1.Orders'], 'the app was asked about the service the probe names');
  });

  it("fails with kubelet's words when the service is not serving, or unknown to the app", async () => {
    assert.deepEqual(await grpcProbe('payments.v1.Payments'), { status: 503, body: 'app probe failed: service unhealthy (responded with "NOT_SERVING")\n' });
    const unknown = await grpcProbe('nope.v1.Nope');
    assert.equal(unknown.status, 503);
    assert.match(unknown.body, /rpc error: code = NotFound desc = unknown service nope\.v1\.Nope/);
  });

  it('fails when nothing listens, and after its timeout when the app never answers', async () => {
    const closed = await grpcProbe(undefined, await freePort());
    assert.equal(closed.status, 503);
    assert.match(closed.body, /ECONNREFUSED/);
    const silent = createTcpServer(() => undefined);
    const port = await listen(silent);
    try {
      const t0 = Date.now();
      const hung = await grpcProbe(undefined, port, 1);
      assert.equal(hung.status, 503);
      assert.match(hung.body, /no answer within 1000ms/);
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      silent.close();
    }
  });
});

describe('parseAppProbes', () => {
  it('reads what the webhook writes', () => {
    const probes = {
      '/app-health/web/livez': { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP', httpHeaders: [{ name: 'X-A', value: 'b' }] }, timeoutSeconds: 3 },
      '/app-health/web/readyz': { tcpSocket: { port: 8080 } },
      '/app-health/web/startupz': { httpGet: { port: 8080, host: '10.244.0.7' } },
      '/app-health/api/livez': { grpc: { port: 50051 } },
      '/app-health/api/readyz': { grpc: { port: 50051, service: 'orders.v1.Orders' }, timeoutSeconds: 2 },
    };
    assert.deepEqual(parseAppProbes(JSON.stringify(probes)), probes);
  });

  const bad: [string, string, RegExp][] = [
    ['not JSON', '{', /TSMESH_APP_PROBES is not JSON/],
    ['a list', '[]', /must be a JSON object/],
    ['a bad key', '{"/health":{"tcpSocket":{"port":1}}}', /\["\/health"\]: the key is not \/app-health/],
    ['both actions', '{"/app-health/a/livez":{"tcpSocket":{"port":1},"httpGet":{"port":1}}}', /exactly one of httpGet, tcpSocket and grpc/],
    ['no action', '{"/app-health/a/livez":{}}', /exactly one of httpGet, tcpSocket and grpc/],
    ['a named port', '{"/app-health/a/livez":{"httpGet":{"port":"http"}}}', /\.httpGet\.port: must be a port number/],
    ['port 0', '{"/app-health/a/livez":{"tcpSocket":{"port":0}}}', /\.tcpSocket\.port: must be a port number/],
    ['a bad scheme', '{"/app-health/a/livez":{"httpGet":{"port":1,"scheme":"ftp"}}}', /\.httpGet\.scheme: must be HTTP or HTTPS/],
    ['a header with a newline', '{"/app-health/a/livez":{"httpGet":{"port":1,"httpHeaders":[{"name":"X","value":"a\\r\\nb"}]}}}', /httpHeaders\[0\]/],
    ['a zero timeout', '{"/app-health/a/livez":{"tcpSocket":{"port":1},"timeoutSeconds":0}}', /\.timeoutSeconds: must be a whole number/],
    ['a gRPC probe with a tcpSocket', '{"/app-health/a/livez":{"grpc":{"port":1},"tcpSocket":{"port":1}}}', /exactly one of httpGet, tcpSocket and grpc/],
    ['a gRPC probe without a port', '{"/app-health/a/livez":{"grpc":{}}}', /\.grpc\.port: must be a port number/],
    ['a gRPC service that is not a string', '{"/app-health/a/livez":{"grpc":{"port":50051,"service":7}}}', /\.grpc\.service: must be a string/],
  ];
  for (const [what, json, message] of bad)
    it(`refuses ${what}, naming the field`, () => {
      assert.throws(() => parseAppProbes(json), (e: Error) => e instanceof AppProbesError && message.test(e.message));
    });
});
