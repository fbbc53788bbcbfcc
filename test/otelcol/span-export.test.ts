// Span export through a sidecar pair on loopback into a real OpenTelemetry
// Collector (test/otelcol/build.sh: the core OTLP receiver, the contrib file
// exporter): a request from the app behind sidecar a (web) to the app behind
// sidecar b (api) yields a client span from a and a server span from b in the
// caller's trace, each the child of the one before, and the app sees b's span
// as its parent. Sampling follows the caller; a trace the proxy starts takes
// the ratio. The spans carry the semantic conventions' HTTP attributes, both
// SPIFFE IDs, the route, gRPC's status, and retries and ejections as events.
// A collector that is away or stalls costs requests nothing: the spans are
// dropped and counted.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { Agent, request } from 'undici';
import type { CertificateAuthority } from '../../ca/authority.js';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { FixedConfig, loopbackSidecar, metricValue } from '../../proxy/testdata/mesh.js';
import { Collector, otelcolMissing, type CollectedSpan } from './collector.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const API_IP = '10.96.0.10';
const FLAKY_IP = '10.96.0.11';
const CLIENT = 3;
const SERVER = 2;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';


describe('span export from a sidecar pair to a real OpenTelemetry Collector', function () {
  this.timeout(60_000);
  let collector: Collector | undefined;
  let ca: CertificateAuthority;
  let app: Server;
  let h2app: Http2Server;
  let appPort = 0;
  let a: Sidecar | undefined;
  let b: Sidecar | undefined;
  let aConfig: FixedConfig;
  let bConfig: FixedConfig;
  const agent = new Agent();
  let seen: IncomingHttpHeaders = {};
  let flakyCalls = 0;

  const services = (bInbound: number) => [
    { name: 'api', namespace: 'shop', clusterIPs: [API_IP], ports: [{ port: 80, targetPort: bInbound }], endpoints: [{ address: '127.0.0.1', identity: API }] },
    {
      name: 'flaky',
      namespace: 'shop',
      clusterIPs: [FLAKY_IP],
      ports: [{ port: 80, targetPort: bInbound }],
      endpoints: [{ address: '127.0.0.1', identity: API }],
      trafficPolicy: {
        name: 'flaky-policy',
        routes: [{ name: 'orders', match: { pathPrefix: '/orders' }, retries: { attempts: 2, retryOn: ['503'], backoff: { base: '1ms', max: '1ms' } } }],
        circuitBreaker: { consecutiveFailures: 1, maxEjectionPercent: 100, ejectionTime: '100ms' },
      },
    },
  ];

  /** The proxies' mesh.tracing (undefined: span export off); b's is a's unless given. */
  async function setTracing(tracing: object | undefined, bTracing = tracing): Promise<void> {
    aConfig.set({ mesh: tracing === undefined ? {} : { tracing }, services: services(b!.inboundPort) });
    bConfig.set({ mesh: bTracing === undefined ? {} : { tracing: bTracing } });
    await a!.telemetry.settled();
    await b!.telemetry.settled();
  }

  before(async function () {
    const missing = otelcolMissing();
    if (missing) {
      console.log(`      OpenTelemetry Collector tier skipped: ${missing}`);
      this.skip();
    }
    collector = await Collector.start();
    ({ ca } = await newRootCa());
    app = createServer((req, res) => {
      seen = req.headers;
      if (req.headers.host === 'flaky.shop') {
        flakyCalls++;
        res.statusCode = 503;
      }
      res.end('ok');
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    appPort = (app.address() as AddressInfo).port;
    h2app = createH2cServer();
    h2app.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no such order' }, { endStream: true });
    });
    h2app.listen(0, '127.0.0.1');
    await once(h2app, 'listening');
    bConfig = new FixedConfig({});
    b = await loopbackSidecar(ca, API, bConfig, { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    aConfig = new FixedConfig({});
    let target = API_IP;
    a = await loopbackSidecar(ca, WEB, aConfig, {
      outboundOriginalDestination: () => ({ address: target, port: 80, family: 'IPv4' }),
      telemetry: { tracerTuning: { delayMs: 20, exportTimeoutMs: 3000 } },
    });
    // The flaky service's test dials its own ClusterIP.
    useTarget = (ip) => (target = ip);
  });
  let useTarget: (ip: string) => void = () => undefined;

  after(async () => {
    await agent.close();
    await a?.drain(0);
    await b?.drain(0);
    app?.close();
    h2app?.close();
    await collector?.stop();
  });

  async function call(headers: Record<string, string>, host = 'api.shop', path = '/orders?id=7', dispatcher = agent): Promise<number> {
    seen = {};
    const res = await request(`http://127.0.0.1:${a!.outboundPort}${path}`, { headers: { host, ...headers }, dispatcher });
    await res.body.text();
    return res.statusCode;
  }

  const only = (spans: CollectedSpan[], kind: number): CollectedSpan => {
    const found = spans.filter((s) => s.kind === kind);
    assert.equal(found.length, 1, `one span of kind ${kind} in ${JSON.stringify(spans)}`);
    return found[0]!;
  };

  it("puts a client and a server span in the caller's trace, each the parent of the next, and the app's parent is the server span", async () => {
    await setTracing({ export: true, collector: collector!.url, sampling: 0 });
    assert.equal(await call({ traceparent: `00-${TRACE}-${CALLER_SPAN}-01`, tracestate: 'shop=1' }), 200);
    const spans = await collector!.trace(TRACE, 2);
    const client = only(spans, CLIENT);
    const server = only(spans, SERVER);
    assert.equal(client.parentSpanId, CALLER_SPAN, "the client span's parent is the caller app's span");
    assert.equal(server.parentSpanId, client.spanId, "the server span's parent is the client span");
    assert.equal(seen.traceparent, `00-${TRACE}-${server.spanId}-01`, "the app's parent is the server span");
    assert.equal(seen.tracestate, 'shop=1');
    assert.equal(client.service, 'web.shop');
    assert.equal(server.service, 'api.shop');
    for (const s of [client, server]) {
      assert.equal(s.name, 'GET');
      assert.equal(s.attributes['http.request.method'], 'GET');
      assert.equal(s.attributes['http.response.status_code'], 200);
      assert.equal(s.attributes['tsmesh.source.identity'], WEB);
      assert.equal(s.attributes['tsmesh.destination.identity'], API);
      assert.equal(s.attributes['server.address'], 'api.shop');
      assert.equal(s.status.code ?? 0, 0, 'no error status');
    }
    assert.equal(client.attributes['url.full'], 'http://api.shop/orders', 'the query is left out');
    assert.equal(client.attributes['tsmesh.route'], 'default');
    assert.equal(client.attributes['network.peer.address'], '127.0.0.1');
    assert.equal(server.attributes['url.path'], '/orders');
    assert.equal(await metricValue(a!, 'tsmesh_trace_spans_exported_total'), 1);
  });

  it('exports nothing for a request its caller did not sample, and passes its context untouched', async () => {
    const trace = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1';
    const unsampled = `00-${trace}-${CALLER_SPAN}-00`;
    assert.equal(await call({ traceparent: unsampled }), 200);
    assert.equal(seen.traceparent, unsampled);
    // A sampled request after it: once its spans arrive, the unsampled one's would have too.
    const after = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2';
    assert.equal(await call({ traceparent: `00-${after}-${CALLER_SPAN}-01` }), 200);
    assert.equal((await collector!.trace(after, 2)).length, 2);
    assert.deepEqual(collector!.spans().filter((s) => s.traceId === trace), []);
  });

  it('starts a trace for a request without context at the sampling ratio: all at 1, none at 0', async () => {
    assert.equal(await call({}), 200);
    assert.equal(seen.traceparent, undefined, 'at ratio 0 the app gets no context');
    await setTracing({ export: true, collector: collector!.url, sampling: 1 });
    assert.equal(await call({}), 200);
    const [, traceId, parent] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(seen.traceparent)) ?? [];
    assert.ok(traceId, `the app got ${seen.traceparent}`);
    const spans = await collector!.trace(traceId, 2);
    const client = only(spans, CLIENT);
    const server = only(spans, SERVER);
    assert.equal(client.parentSpanId ?? '', '', 'the client span is the root');
    assert.equal(server.parentSpanId, client.spanId);
    assert.equal(parent, server.spanId);
  });

  it("follows the workload's own setting over the mesh's: export off for b leaves a's client span the app's parent", async () => {
    await setTracing({ export: true, collector: collector!.url, sampling: 0 });
    bConfig.set({ mesh: { tracing: { export: true, collector: collector!.url, sampling: 0 } }, telemetry: { tracing: { export: false } } });
    await b!.telemetry.settled();
    const trace = 'dddddddddddddddddddddddddddddd01';
    assert.equal(await call({ traceparent: `00-${trace}-${CALLER_SPAN}-01` }), 200);
    const spans = await collector!.trace(trace, 1);
    const client = only(spans, CLIENT);
    assert.equal(seen.traceparent, `00-${trace}-${client.spanId}-01`, "b passed a's context on untouched");
    // b exports nothing: a later trace through both, once b exports again, brings its server span and none of this one.
    await setTracing({ export: true, collector: collector!.url, sampling: 0 });
    const later = 'dddddddddddddddddddddddddddddd02';
    assert.equal(await call({ traceparent: `00-${later}-${CALLER_SPAN}-01` }), 200);
    assert.equal((await collector!.trace(later, 2)).length, 2);
    assert.deepEqual(collector!.spans().filter((s) => s.traceId === trace).map((s) => s.kind), [CLIENT]);
  });

  it("records a gRPC call's status, by the RPC conventions", async () => {
    await setTracing({ export: true, collector: collector!.url, sampling: 0 });
    const client = h2connect(`http://127.0.0.1:${a!.outboundPort}`);
    const h2Port = (h2app.address() as AddressInfo).port;
    const http1Port = appPort;
    appPort = h2Port;
    const trace = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1';
    try {
      await new Promise<void>((resolve, reject) => {
        const s = client.request({ ':method': 'POST', ':path': '/shop.Orders/Get', ':authority': 'api.shop', 'content-type': 'application/grpc', te: 'trailers', traceparent: `00-${trace}-${CALLER_SPAN}-01` });
        s.end(Buffer.alloc(5));
        s.resume();
        s.on('end', resolve);
        s.on('error', reject);
      });
    } finally {
      client.close();
      appPort = http1Port;
    }
    const spans = await collector!.trace(trace, 2);
    for (const s of [only(spans, CLIENT), only(spans, SERVER)]) {
      assert.equal(s.attributes['rpc.system'], 'grpc');
      assert.equal(s.attributes['rpc.service'], 'shop.Orders');
      assert.equal(s.attributes['rpc.method'], 'Get');
      assert.equal(s.attributes['rpc.grpc.status_code'], 5);
      assert.equal(s.attributes['network.protocol.version'], '2');
    }
    assert.equal(only(spans, CLIENT).status.code, 2, 'NOT_FOUND fails a client span');
    assert.equal(only(spans, SERVER).status.code ?? 0, 0, 'but not a server span (the conventions: a caller error)');
  });

  it('gives the client span a retry and an ejection event, its route and the error', async () => {
    await setTracing({ export: true, collector: collector!.url, sampling: 0 });
    const trace = 'cccccccccccccccccccccccccccccc01';
    // A connection of its own: the outbound listener takes the original destination per connection.
    const fresh = new Agent();
    useTarget(FLAKY_IP);
    try {
      assert.equal(await call({ traceparent: `00-${trace}-${CALLER_SPAN}-01` }, 'flaky.shop', '/orders', fresh), 503);
    } finally {
      useTarget(API_IP);
      await fresh.close();
    }
    // The first try's 503 ejects the one endpoint; the retry finds the circuit open.
    assert.equal(flakyCalls, 1);
    const spans = await collector!.trace(trace, 2);
    const client = only(spans, CLIENT);
    assert.deepEqual(
      client.events.map((e) => e.name),
      ['ejection', 'retry'],
    );
    assert.equal(client.events[1]!.attributes['tsmesh.retry.reason'], '503');
    assert.equal(client.events[1]!.attributes['tsmesh.retry.attempt'], 2);
    assert.equal(client.events[0]!.attributes['tsmesh.endpoint'], `127.0.0.1:${b!.inboundPort}`);
    assert.equal(client.attributes['tsmesh.route'], 'orders');
    assert.equal(client.attributes['tsmesh.error'], 'circuit-open');
    assert.equal(client.attributes['error.type'], 'circuit-open');
    assert.equal(client.attributes['http.response.status_code'], 503);
    assert.equal(client.status.code, 2);
    assert.equal(only(spans, SERVER).attributes['http.response.status_code'], 503, "the server span saw the app's 503");
  });

  describe('when the collector is away or stalls', () => {
    let stalled: TcpServer | undefined;
    const held: Socket[] = [];
    after(() => {
      for (const s of held) s.destroy();
      stalled?.close();
    });

    it('drops the spans a closed port refuses, counted as export-failed', async () => {
      const closed = await new Promise<number>((resolve) => {
        const s = createTcpServer().listen(0, '127.0.0.1', () => {
          const { port } = s.address() as AddressInfo;
          s.close(() => resolve(port));
        });
      });
      await setTracing({ export: true, collector: `http://127.0.0.1:${closed}/v1/traces`, sampling: 1 }, undefined);
      const before = await metricValue(a!, 'tsmesh_trace_spans_dropped_total', { reason: 'export-failed' });
      assert.equal(await call({}), 200);
      const deadline = Date.now() + 15_000;
      while ((await metricValue(a!, 'tsmesh_trace_spans_dropped_total', { reason: 'export-failed' })) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal((await metricValue(a!, 'tsmesh_trace_spans_dropped_total', { reason: 'export-failed' })) - before, 1);
    });

    it('drops what does not fit its queue while the collector stalls, and requests take no longer', async () => {
      // A collector that takes the connection and never answers: the first batch hangs.
      stalled = createTcpServer((s) => held.push(s.on('error', () => undefined)));
      stalled.listen(0, '127.0.0.1');
      await once(stalled, 'listening');
      const url = `http://127.0.0.1:${(stalled.address() as AddressInfo).port}/v1/traces`;
      await a!.drain(0);
      a = await loopbackSidecar(ca, WEB, aConfig, {
        outboundOriginalDestination: () => ({ address: API_IP, port: 80, family: 'IPv4' }),
        telemetry: { tracerTuning: { delayMs: 1, maxBatch: 1, maxQueue: 5, exportTimeoutMs: 3000 } },
      });
      await setTracing({ export: true, collector: url, sampling: 1 }, undefined);
      const started = performance.now();
      for (let i = 0; i < 50; i++) assert.equal(await call({}), 200);
      const ms = performance.now() - started;
      console.log(`      50 sequential requests with the collector stalled: ${ms.toFixed(0)} ms`);
      // One batch (a span) hangs in flight (until its 3 s timeout) and 5 wait; the other 44 are dropped.
      assert.equal(await metricValue(a!, 'tsmesh_trace_spans_dropped_total', { reason: 'queue-full' }), 44);
      assert.ok(ms < 10_000, `the requests took ${ms} ms`);
    });
  });
});
