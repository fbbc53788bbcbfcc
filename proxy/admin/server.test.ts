// The admin server on a real socket (port 0), including what a careless or
// hostile client may send it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { request } from 'undici';
import { combineReadiness, createAdminServer, type AdminServerOptions } from './server.js';
import { startEchoServer, type EchoServer } from '../../test/netns/grpc-service.js'; // a grpc-js app with the Health service

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Sends raw bytes, returns whatever comes back before the server closes the connection. */
async function raw(port: number, bytes: string, waitMs = 3000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write(bytes);
  const closed = once(socket, 'close');
  const timeout = new Promise((r) => setTimeout(r, waitMs).unref());
  await Promise.race([closed, timeout]);
  socket.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

describe('proxy admin server', () => {
  let server: Server;
  let app: Server;
  let grpcApp: EchoServer;
  let base: string;
  let port: number;
  let whyNotReady: string | undefined;
  let config: unknown;
  let readinessThrows = false;
  const registry = new Registry();
  const updates = new Counter({ name: 'tsmesh_config_updates_total', help: 'Config versions applied.', registers: [registry] });

  before(async () => {
    app = createHttpServer((req, res) => (req.url === '/healthz' ? res.writeHead(200).end('app ok') : res.writeHead(500).end('app sick')));
    const appPort = await listen(app);
    grpcApp = await startEchoServer('api', '127.0.0.1', 0, () => undefined);
    grpcApp.setHealth('down.v1.Down', 'NOT_SERVING');
    const opts: AdminServerOptions = {
      registry,
      readiness: () => {
        if (readinessThrows) throw new Error('readiness exploded');
        return whyNotReady;
      },
      config: () => config,
      appProbes: {
        '/app-health/web/livez': { httpGet: { port: appPort, path: '/healthz' } },
        '/app-health/web/readyz': { httpGet: { port: appPort, path: '/other' } },
        '/app-health/worker/startupz': { tcpSocket: { port: appPort } },
        '/app-health/api/livez': { grpc: { port: grpcApp.port } },
        '/app-health/api/readyz': { grpc: { port: grpcApp.port, service: 'down.v1.Down' } },
      },
      limits: { headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 50, maxHeaderSize: 2048 },
    };
    server = createAdminServer(opts);
    port = await listen(server);
    base = `http://127.0.0.1:${port}`;
  });
  beforeEach(() => {
    whyNotReady = undefined;
    config = undefined;
    readinessThrows = false;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
    app.closeAllConnections();
    app.close();
    void grpcApp.close();
  });

  const get = async (path: string, method: 'GET' | 'HEAD' | 'POST' | 'DELETE' = 'GET') => {
    const res = await request(base + path, { method });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };

  it('/live answers 200 while the process runs', async () => {
    assert.deepEqual((await get('/live')).status, 200);
  });

  it('/ready says why it is not ready, then 200 once it is', async () => {
    whyNotReady = 'no certificate from the CA yet';
    let r = await get('/ready');
    assert.equal(r.status, 503);
    assert.equal(r.text, 'not ready: no certificate from the CA yet\n');
    whyNotReady = undefined;
    r = await get('/ready?verbose');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'ready\n');
  });

  it('/metrics serves the registry in the Prometheus text format', async () => {
    updates.inc();
    const r = await get('/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0.0.4/);
    assert.match(r.text, /^tsmesh_config_updates_total 1$/m);
    const head = await get('/metrics', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  it('/config serves the running config as JSON, 503 before the first one', async () => {
    let r = await get('/config');
    assert.equal(r.status, 503);
    assert.match(r.text, /no config received yet/);
    config = { version: '7', services: [{ name: 'api.payments.svc.cluster.local', port: 8080 }] };
    r = await get('/config');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(r.text), config);
  });

  it('/app-health forwards to the app and passes its status through', async () => {
    assert.deepEqual(await get('/app-health/web/livez').then((r) => [r.status, r.text]), [200, 'app ok']);
    assert.deepEqual(await get('/app-health/web/readyz').then((r) => [r.status, r.text]), [500, 'app sick']);
    assert.equal((await get('/app-health/worker/startupz')).status, 200);
  });

  it('/app-health makes the gRPC health check of a grpc probe: 200 for SERVING, 503 with the reason otherwise', async () => {
    assert.equal((await get('/app-health/api/livez')).status, 200);
    const down = await get('/app-health/api/readyz');
    assert.equal(down.status, 503);
    assert.match(down.text, /service unhealthy \(responded with "NOT_SERVING"\)/);
  });

  it('/app-health names the probes it knows when asked for another', async () => {
    const r = await get('/app-health/web/startupz');
    assert.equal(r.status, 404);
    assert.match(r.text, /no app probe at \/app-health\/web\/startupz; this proxy runs \/app-health\/web\/livez, \/app-health\/web\/readyz/);
  });

  it('answers other paths with 404 and the list of paths', async () => {
    const r = await get('/debug/pprof');
    assert.equal(r.status, 404);
    assert.match(r.text, /try \/live, \/ready, \/metrics, \/config/);
  });

  it('answers only GET and HEAD', async () => {
    for (const method of ['POST', 'DELETE'] as const) {
      const r = await get('/ready', method);
      assert.equal(r.status, 405);
      assert.equal(r.headers.allow, 'GET, HEAD');
    }
  });

  it('answers 500 when a check throws, and keeps serving', async () => {
    readinessThrows = true;
    const r = await get('/ready');
    assert.equal(r.status, 500);
    assert.match(r.text, /readiness exploded/);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    config = circular;
    assert.equal((await get('/config')).status, 500);
    assert.equal((await get('/live')).status, 200);
  });

  describe('garbage and slow clients', () => {
    it('answers 400 to bytes that are not HTTP', async () => {
      assert.match(await raw(port, 'HELLO THERE\r\n\r\n'), /^HTTP\/1.1 400 Bad Request/);
      assert.match(await raw(port, '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), /^HTTP\/1.1 400/);
    });

    it('answers 400 to a request target that is not a path', async () => {
      assert.match(await raw(port, 'GET http://elsewhere/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1.1 400/);
      assert.match(await raw(port, 'OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1.1 405/);
    });

    it('answers 431 to headers over the limit', async () => {
      assert.match(await raw(port, `GET /live HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(4096)}\r\n\r\n`), /^HTTP\/1.1 431/);
    });

    it('closes a connection whose headers never finish', async () => {
      const started = Date.now();
      const out = await raw(port, 'GET /live HTTP/1.1\r\nhost: x\r\n');
      assert.match(out, /^HTTP\/1.1 408 Request Timeout/);
      assert.ok(Date.now() - started < 2000, `closed after ${Date.now() - started}ms`);
    });

    it('ignores a body on GET and keeps serving', async () => {
      const res = await request(`${base}/live`, { method: 'GET', body: 'x'.repeat(100_000) }).catch((e: Error) => e);
      if (!(res instanceof Error)) {
        assert.equal(res.statusCode, 200);
        await res.body.dump();
      }
      assert.equal((await get('/live')).status, 200);
    });

    it('survives a client that disconnects mid-request', async () => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write('GET /app-health/web/livez HTTP/1.1\r\nhost: x\r\n\r\n');
      socket.destroy();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await get('/live')).status, 200);
    });
  });
});

describe('combineReadiness', () => {
  it('is ready when every check is, else gives the first reason', () => {
    let creds: string | undefined = 'no certificate yet';
    let cfg: string | undefined = 'no config yet';
    const ready = combineReadiness(
      () => creds,
      () => cfg,
    );
    assert.equal(ready(), 'no certificate yet');
    creds = undefined;
    assert.equal(ready(), 'no config yet');
    cfg = undefined;
    assert.equal(ready(), undefined);
  });
});
