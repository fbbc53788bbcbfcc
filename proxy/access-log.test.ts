// Access logs through a sidecar pair on loopback: what each proxy writes to
// its stdout (here caught from the writer's sink, which is process.stdout in
// a real proxy; telemetry/access-log.test.ts checks that end in a process of
// its own), one JSON line per request, by mode: off by default, all, errors
// and sampled, over the mesh's setting a workload's own.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';

type Line = Record<string, unknown>;

describe('access logs from a sidecar pair on loopback', function () {
  this.timeout(30_000);
  let app: Server;
  let h2app: Http2Server;
  let appPort = 0;
  let a: Sidecar | undefined;
  let b: Sidecar | undefined;
  let aConfig: FixedConfig;
  let bConfig: FixedConfig;
  const agent = new Agent();
  const written: { a: string[]; b: string[] } = { a: [], b: [] };
  /** The randomness of a's sampling: the next values it draws. */
  let draws: number[] = [];
  let failNext = 0;

  const policy = { name: 'api', retries: { attempts: 2, retryOn: ['503'], backoff: { base: '1ms', max: '1ms' } } };
  function setAccessLog(accessLog: unknown, bOverride?: unknown): void {
    const mesh = accessLog === undefined ? {} : { accessLog };
    aConfig.set({
      mesh,
      services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, targetPort: b!.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }], trafficPolicy: policy }],
    });
    bConfig.set({ mesh, ...(bOverride === undefined ? {} : { telemetry: { accessLog: bOverride } }) });
  }

  before(async () => {
    const { ca } = await newRootCa();
    app = createServer((req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => {
        if (failNext > 0) {
          failNext--;
          res.statusCode = 503;
        }
        if (req.url?.startsWith('/fail')) res.statusCode = 500;
        res.end(req.url?.startsWith('/big') ? Buffer.alloc(300_000, 'x') : `got ${n} bytes`);
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    appPort = (app.address() as AddressInfo).port;
    h2app = createH2cServer();
    h2app.on('stream', (stream) => {
      stream.resume();
      stream.on('end', () => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'down' }, { endStream: true }));
    });
    h2app.listen(0, '127.0.0.1');
    await once(h2app, 'listening');
    bConfig = new FixedConfig({});
    b = await loopbackSidecar(ca, API, bConfig, {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
      telemetry: { accessLogSink: (text) => written.b.push(text) },
    });
    aConfig = new FixedConfig({});
    a = await loopbackSidecar(ca, WEB, aConfig, {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
      telemetry: { accessLogSink: (text) => written.a.push(text), random: () => draws.shift() ?? 0.99 },
    });
  });

  after(async () => {
    await agent.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
    h2app?.close();
  });

  /** The lines each proxy wrote since the last call: every write is whole lines. */
  async function lines(): Promise<{ a: Line[]; b: Line[] }> {
    await new Promise((r) => setTimeout(r, 50));
    const take = (chunks: string[]): Line[] => {
      const text = chunks.splice(0).join('');
      assert.ok(text === '' || text.endsWith('\n'), 'a write ends with a newline');
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line);
    };
    return { a: take(written.a), b: take(written.b) };
  }

  async function call(path: string, opts: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<{ status: number; size: number }> {
    const res = await request(`http://127.0.0.1:${a!.outboundPort}${path}`, {
      method: (opts.method ?? 'GET') as 'GET',
      headers: { host: 'api.shop', ...opts.headers },
      body: opts.body ?? null,
      dispatcher: agent,
    });
    return { status: res.statusCode, size: (await res.body.arrayBuffer()).byteLength };
  }

  it('writes nothing while access logs are off, the default', async () => {
    setAccessLog(undefined);
    assert.equal((await call('/orders')).status, 200);
    assert.deepEqual(await lines(), { a: [], b: [] });
  });

  it('writes one JSON line per request on each proxy in mode all, with every field', async () => {
    setAccessLog('all');
    const started = Date.now();
    const body = 'hello world';
    const r = await call('/orders/7?token=secret', { method: 'POST', body, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
    assert.equal(r.status, 200);
    const { a: [out, ...moreOut], b: [inb, ...moreIn] } = await lines();
    assert.deepEqual([moreOut, moreIn], [[], []], 'one line each');
    for (const line of [out!, inb!]) {
      assert.ok(Date.parse(String(line.time)) >= started - 1000 && Date.parse(String(line.time)) <= Date.now(), `time ${String(line.time)}`);
      assert.equal(line.source_identity, WEB);
      assert.equal(line.destination_identity, API);
      assert.equal(line.method, 'POST');
      assert.equal(line.authority, 'api.shop');
      assert.equal(line.path, '/orders/7', 'the query is stripped');
      assert.equal(line.protocol, 'HTTP/1.1');
      assert.equal(line.status, 200);
      assert.equal(line.grpc_status, null);
      assert.ok(typeof line.duration_ms === 'number' && line.duration_ms > 0);
      assert.equal(line.bytes_in, body.length);
      assert.equal(line.bytes_out, r.size);
      assert.equal(line.retries, 0);
      assert.equal(line.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
      assert.equal(line.error, null);
    }
    assert.equal(out!.direction, 'outbound');
    assert.equal(out!.destination_service, 'api.shop');
    assert.equal(out!.route, 'default');
    assert.equal(out!.upstream, `127.0.0.1:${b!.inboundPort}`);
    assert.equal(inb!.direction, 'inbound');
    assert.equal(inb!.upstream, `127.0.0.1:${appPort}`);
  });

  it('counts streamed bodies both ways, and keeps the query when the settings say so', async () => {
    setAccessLog({ mode: 'all', query: true });
    const upload = Buffer.alloc(200_000, 'u');
    const r = await call('/big?page=2', { method: 'PUT', body: upload });
    assert.equal(r.size, 300_000);
    const { a: [out], b: [inb] } = await lines();
    for (const line of [out!, inb!]) {
      assert.equal(line.path, '/big?page=2');
      assert.equal(line.bytes_in, upload.length);
      assert.equal(line.bytes_out, 300_000);
      assert.equal(line.trace_id, null, 'no trace context, no span export: no trace id');
    }
  });

  it('gives the retries of a request that went again', async () => {
    setAccessLog('all');
    failNext = 1;
    assert.equal((await call('/orders')).status, 200);
    const { a: [out], b: ins } = await lines();
    assert.equal(out!.retries, 1);
    assert.equal(out!.status, 200);
    assert.deepEqual(
      ins.map((l) => l.status),
      [503, 200],
      'the server side logs each try',
    );
  });

  it("in mode errors, writes only failures: a 5xx, the proxy's own answer, a gRPC server failure", async () => {
    setAccessLog('errors');
    assert.equal((await call('/orders')).status, 200);
    assert.equal((await call('/fail')).status, 500);
    let got = await lines();
    assert.deepEqual(got.a.map((l) => [l.path, l.status, l.error]), [['/fail', 500, null]]);
    assert.deepEqual(got.b.map((l) => [l.path, l.status]), [['/fail', 500]]);

    // The proxy's own answer: the service has no endpoint left in a's config.
    aConfig.set({ mesh: { accessLog: 'errors' }, services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, targetPort: b!.inboundPort }], endpoints: [] }] });
    assert.equal((await call('/orders')).status, 503);
    got = await lines();
    assert.deepEqual(got.a.map((l) => [l.status, l.error, l.upstream]), [[503, 'no-endpoints', null]]);

    // gRPC: UNAVAILABLE in a trailers-only answer, HTTP 200.
    setAccessLog('errors');
    const http1Port = appPort;
    appPort = (h2app.address() as AddressInfo).port;
    const client = h2connect(`http://127.0.0.1:${a!.outboundPort}`);
    try {
      await new Promise<void>((resolve, reject) => {
        const s = client.request({ ':method': 'POST', ':path': '/shop.Orders/Get', ':authority': 'api.shop', 'content-type': 'application/grpc' });
        s.end(Buffer.alloc(5));
        s.resume();
        s.on('end', resolve);
        s.on('error', reject);
      });
    } finally {
      client.close();
      appPort = http1Port;
    }
    got = await lines();
    for (const l of [...got.a, ...got.b]) {
      assert.equal(l.status, 200);
      assert.equal(l.grpc_status, 14);
      assert.equal(l.protocol, 'HTTP/2');
    }
    assert.equal(got.a.length + got.b.length, 2);
  });

  it('in mode sampled, writes the share its draws pick', async () => {
    setAccessLog({ mode: 'sampled', sampling: 0.3 }, 'off');
    draws = [0.1, 0.5, 0.29, 0.9];
    for (let i = 0; i < 4; i++) assert.equal((await call(`/orders/${i}`)).status, 200);
    const got = await lines();
    assert.deepEqual(
      got.a.map((l) => l.path),
      ['/orders/0', '/orders/2'],
    );
    assert.deepEqual(got.b, [], "b's own setting, off, wins over the mesh's");
  });
});
