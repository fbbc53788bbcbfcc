// Gateway API routes end to end on loopback: an app's plain HTTP/1.1, h2c and
// gRPC calls go through its sidecar (web) to a Service "echo" whose port has
// gatewayRoutes, and on over real mTLS to echo apps behind their own
// sidecars. Each app answers with what it saw (its name, method, path, Host
// and fields), as the Gateway API conformance suite's echo server does, so
// the tests read what matching, rewrites and header modifiers did; redirects
// and response header modifiers are read from the answer itself.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type Http2ServerRequest, type Http2ServerResponse, type ClientHttp2Session, type Http2Server } from 'node:http2';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { echoClient, runOperation } from '../test/netns/grpc-calls.js'; // the gRPC calls the netns tests make
import { startEchoServer, type EchoClient, type EchoServer } from '../test/netns/grpc-service.js'; // the gRPC echo app of the netns tests
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar, metricValue } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/gamma/sa/web';
const IPS: Record<string, string> = { echo: '10.96.0.10', 'echo-v1': '10.96.0.11', 'echo-v2': '10.96.0.12', shadow: '10.96.0.13', grpc: '10.96.0.20', 'echo-h2': '10.96.0.30', 'h2-v1': '10.96.0.31', 'h2-v2': '10.96.0.32' };
const GRPC_PORT = 50051;
const GRPC_CODE = { OK: 0, UNIMPLEMENTED: 12 };

interface Seen {
  app: string;
  method: string;
  path: string;
  host: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An echo app (HTTP/1.1, or h2c only), and its sidecar. */
interface App {
  name: string;
  identity: string;
  sidecar: Sidecar;
  server: NetServer | Http2Server;
  seen: Seen[];
  /** ms the app waits before answering; tests set it. */
  delayMs: number;
}


describe('Gateway API routes through a sidecar on loopback (HTTP/1.1, h2c, gRPC)', function () {
  this.timeout(60_000);
  let ca: CertificateAuthority;
  let web: Sidecar;
  let webGrpc: Sidecar;
  let webH2: Sidecar;
  let config: FixedConfig;
  let grpcApp: EchoServer;
  let grpcSidecar: Sidecar;
  let grpcClient: EchoClient;
  const apps = new Map<string, App>();
  const agent = new Agent({ connections: 8 });

  async function startApp(name: string, h2 = false): Promise<App> {
    const identity = `spiffe://cluster.local/ns/gamma/sa/${name}`;
    const app: App = { name, identity, sidecar: undefined as unknown as Sidecar, server: undefined as unknown as NetServer, seen: [], delayMs: 0 };
    const answer = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const seen: Seen = { app: name, method: req.method ?? '', path: req.url ?? '', host: String(req.headers.host ?? req.headers[':authority'] ?? ''), headers: req.headers, body: Buffer.concat(chunks).toString() };
        app.seen.push(seen);
        setTimeout(() => {
          res.setHeader('content-type', 'application/json');
          res.setHeader('x-app-header', 'from-app');
          res.end(JSON.stringify(seen));
        }, app.delayMs);
      });
    };
    app.server = h2 ? createH2cServer(answer) : createHttpServer(answer);
    app.server.listen(0, '127.0.0.1');
    await once(app.server, 'listening');
    const port = (app.server.address() as AddressInfo).port;
    app.sidecar = await loopbackSidecar(ca, identity, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port, family: 'IPv4' }) });
    apps.set(name, app);
    return app;
  }

  const service = (name: string, app: string | undefined, gatewayRoutes?: object[]) => ({
    name,
    namespace: 'gamma',
    clusterIPs: [IPS[name]],
    ports: [{ port: 80, name: 'http', targetPort: 1 }],
    endpoints: app ? [{ address: '127.0.0.1', identity: apps.get(app)!.identity, ports: { http: apps.get(app)!.sidecar.inboundPort } }] : [],
    ...(gatewayRoutes ? { gatewayRoutes: [{ port: 80, routes: gatewayRoutes }] } : {}),
  });

  const grpcService = (gatewayRoutes?: object[]) => ({
    name: 'grpc',
    namespace: 'gamma',
    clusterIPs: [IPS.grpc],
    ports: [{ port: GRPC_PORT, name: 'grpc', protocol: 'http2', targetPort: grpcSidecar.inboundPort }],
    endpoints: [{ address: '127.0.0.1', identity: 'spiffe://cluster.local/ns/gamma/sa/grpc' }],
    ...(gatewayRoutes ? { gatewayRoutes: [{ port: GRPC_PORT, routes: gatewayRoutes }] } : {}),
  });

  /** echo's routes are `routes`; echo-v1, echo-v2 and shadow are services of their own apps. */
  function setRoutes(routes: object[], more: { grpc?: object[]; h2?: object[] } = {}): void {
    config.set({
      services: [
        service('echo', 'echo-v1', routes),
        service('echo-v1', 'echo-v1'),
        service('echo-v2', 'echo-v2'),
        service('shadow', 'shadow'),
        grpcService(more.grpc),
        service('echo-h2', 'h2-v1', more.h2),
        service('h2-v1', 'h2-v1'),
        service('h2-v2', 'h2-v2'),
      ],
    });
  }

  const v1 = [{ service: 'echo-v1', weight: 1 }];
  const v2 = [{ service: 'echo-v2', weight: 1 }];

  async function call(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Readable } = {}) {
    const res = await request(`http://127.0.0.1:${web.outboundPort}${path}`, {
      dispatcher: agent,
      method: (opts.method ?? 'GET') as 'GET',
      headers: { host: 'echo', ...opts.headers },
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    });
    const text = await res.body.text();
    const seen = res.headers['content-type'] === 'application/json' ? (JSON.parse(text) as Seen) : undefined;
    return { status: res.statusCode, headers: res.headers, seen, text };
  }

  before(async () => {
    ({ ca } = await newRootCa());
    for (const name of ['echo-v1', 'echo-v2', 'shadow']) await startApp(name);
    for (const name of ['h2-v1', 'h2-v2']) await startApp(name, true);
    grpcApp = await startEchoServer('grpc', '127.0.0.1', 0, () => undefined);
    grpcSidecar = await loopbackSidecar(ca, 'spiffe://cluster.local/ns/gamma/sa/grpc', new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: grpcApp.port, family: 'IPv4' }),
    });
    config = new FixedConfig({});
    web = await loopbackSidecar(ca, WEB, config, { outboundOriginalDestination: () => ({ address: IPS.echo!, port: 80, family: 'IPv4' }) });
    webH2 = await loopbackSidecar(ca, WEB, config, { outboundOriginalDestination: () => ({ address: IPS['echo-h2']!, port: 80, family: 'IPv4' }) });
    webGrpc = await loopbackSidecar(ca, WEB, config, { outboundOriginalDestination: () => ({ address: IPS.grpc!, port: GRPC_PORT, family: 'IPv4' }) });
    grpcClient = echoClient(`127.0.0.1:${webGrpc.outboundPort}`);
  });

  beforeEach(() => {
    for (const a of apps.values()) {
      a.seen = [];
      a.delayMs = 0;
    }
  });

  after(async () => {
    grpcClient?.close();
    await agent.close();
    await web?.drain(0);
    await webGrpc?.drain(0);
    await webH2?.drain(0);
    await grpcSidecar?.drain(0);
    await grpcApp?.close();
    for (const a of apps.values()) {
      await a.sidecar.drain(0);
      a.server.close();
    }
  });

  it('matches exact paths, whole-path regexes, header regexes, query parameters and methods, first match wins; no match is 404', async () => {
    setRoutes([
      { name: 'exact', match: { pathExact: '/exact' }, backends: v2 },
      { name: 'regex', match: { pathRegex: '/re/v[0-9]+' }, backends: v2 },
      { name: 'header', match: { pathPrefix: '/h', headerRegex: { 'X-Version': 'v2(\\.[0-9]+)?' } }, backends: v2 },
      { name: 'query', match: { pathPrefix: '/q', queryParams: { animal: 'whale' }, queryParamRegex: { n: '[0-9]+' } }, backends: v2 },
      { name: 'method', match: { pathPrefix: '/m', method: 'DELETE' }, backends: v2 },
      { name: 'v1', match: { pathPrefix: '/' , headers: { 'x-fallback': 'yes' } }, backends: v1 },
    ]);
    const cases: [string, { method?: string; headers?: Record<string, string> }, string | number][] = [
      ['/exact', {}, 'echo-v2'],
      ['/exact?x=1', {}, 'echo-v2'],
      ['/exact/more', { headers: { 'x-fallback': 'yes' } }, 'echo-v1'],
      ['/re/v12', {}, 'echo-v2'],
      ['/re/v12?q=/x', {}, 'echo-v2'],
      ['/re/v12/x', { headers: { 'x-fallback': 'yes' } }, 'echo-v1'],
      ['/h', { headers: { 'x-version': 'v2.1' } }, 'echo-v2'],
      ['/h', { headers: { 'X-Version': 'v21', 'x-fallback': 'yes' } }, 'echo-v1'],
      ['/q?animal=whale&n=7', {}, 'echo-v2'],
      ['/q?n=7&animal=dolphin&animal=whale', { headers: { 'x-fallback': 'yes' } }, 'echo-v1'],
      ['/m', { method: 'DELETE' }, 'echo-v2'],
      ['/m', { method: 'GET', headers: { 'x-fallback': 'yes' } }, 'echo-v1'],
      ['/nothing', {}, 404],
    ];
    for (const [path, opts, want] of cases) {
      const r = await call(path, opts);
      if (typeof want === 'number') {
        assert.equal(r.status, want, path);
        assert.equal(r.headers['x-tsmesh-error'], 'no-route-match');
      } else {
        assert.equal(r.status, 200, `${path}: ${r.text}`);
        assert.equal(r.seen?.app, want, `${path} ${JSON.stringify(opts)}`);
        assert.equal(r.seen?.path, path, 'the path goes on as it came');
      }
    }
    assert.equal(await metricValue(web, 'tsmesh_requests_total', { route: 'query', destination_service: 'echo.gamma' }), 1);
  });

  it('answers at once on routes whose regexes a backtracking matcher takes exponential time on, however the path and header are crafted', async () => {
    // On a backtracking RegExp the first request holds the sidecar (and this
    // test's process) for years; on the proxy's linear matcher each is a
    // pass over its 4,000 characters.
    setRoutes([
      { name: 'hostile-path', match: { pathRegex: '/(a+)+' }, backends: v2 },
      { name: 'hostile-header', match: { pathPrefix: '/h', headerRegex: { 'X-User': '(\\w+\\s?)+' } }, backends: v2 },
    ]);
    const long = 'a'.repeat(4_000);
    const hostile = [call(`/${long}!`), call('/h', { headers: { 'x-user': `${'ab '.repeat(1_300)}!` } })];
    for (const r of await Promise.all(hostile)) {
      assert.equal(r.status, 404, r.text);
      assert.equal(r.headers['x-tsmesh-error'], 'no-route-match');
    }
    assert.equal((await call(`/${long}`)).seen?.app, 'echo-v2');
    assert.equal((await call('/h', { headers: { 'x-user': 'ab '.repeat(1_300) } })).seen?.app, 'echo-v2');
  });

  it('modifies request headers (set, add to one line, remove) and response headers, at the route and at a backend', async () => {
    setRoutes([
      {
        match: { pathPrefix: '/headers' },
        filters: {
          requestHeaders: { set: { 'X-Header-Set': 'set-overwrites-values' }, add: { 'X-Header-Add': 'add-appends-values' }, remove: ['X-Header-Remove'] },
          responseHeaders: { set: { 'X-App-Header': 'replaced' }, add: { 'X-Resp-Add': 'added' } },
        },
        backends: [{ service: 'echo-v2', weight: 1, filters: { requestHeaders: { set: { 'X-Backend': 'v2' } }, responseHeaders: { remove: ['x-app-header'] } } }],
      },
      { filters: { responseHeaders: { set: { 'X-App-Header': 'replaced' } } }, backends: v1 },
    ]);
    const r = await call('/headers', { headers: { 'x-header-set': 'some-other-value', 'x-header-add': 'some-other-value', 'x-header-remove': 'gone', 'some-other-header': 'val' } });
    assert.equal(r.status, 200, r.text);
    const h = r.seen!.headers;
    assert.equal(h['x-header-set'], 'set-overwrites-values');
    assert.equal(h['x-header-add'], 'some-other-value,add-appends-values');
    assert.equal(h['x-header-remove'], undefined);
    assert.equal(h['some-other-header'], 'val');
    assert.equal(h['x-backend'], 'v2');
    // The backend's modifier runs first on the way back (it is inside the route's): removed, then the route sets it again.
    assert.equal(r.headers['x-app-header'], 'replaced');
    assert.equal(r.headers['x-resp-add'], 'added');
    const plain = await call('/other');
    assert.equal(plain.headers['x-app-header'], 'replaced');
    assert.equal(plain.seen!.headers['x-backend'], undefined);
  });

  it('answers redirects itself with the Location Gateway API specifies: scheme, host, port, path, status', async () => {
    const redirect = (prefix: string, r: object) => ({ match: { pathPrefix: prefix }, filters: { redirect: r } });
    setRoutes([
      redirect('/scheme', { scheme: 'https' }),
      redirect('/scheme-and-port', { scheme: 'https', port: 8443, statusCode: 301 }),
      redirect('/port', { port: 8083 }),
      redirect('/port-80', { port: 80 }),
      redirect('/host', { hostname: 'example.org', statusCode: 308 }),
      redirect('/original-prefix', { path: { replacePrefixMatch: '/replacement-prefix' } }),
      redirect('/strip', { path: { replacePrefixMatch: '/' }, statusCode: 303 }),
      redirect('/full', { path: { replaceFullPath: '/full-path-replacement' }, statusCode: 307 }),
      { backends: v1 },
    ]);
    const cases: [string, Record<string, string>, number, string][] = [
      ['/scheme', {}, 302, 'https://echo/scheme'],
      ['/scheme', { host: 'echo:80' }, 302, 'https://echo/scheme'],
      ['/scheme-and-port/x?y=1', {}, 301, 'https://echo:8443/scheme-and-port/x?y=1'],
      ['/port', {}, 302, 'http://echo:8083/port'],
      ['/port-80', {}, 302, 'http://echo/port-80'],
      ['/host', {}, 308, 'http://example.org/host'],
      ['/original-prefix/lemon?a=b', {}, 302, 'http://echo/replacement-prefix/lemon?a=b'],
      ['/original-prefix', {}, 302, 'http://echo/replacement-prefix'],
      ['/strip/three', {}, 303, 'http://echo/three'],
      ['/strip', {}, 303, 'http://echo/'],
      ['/full/path/original?q=1', {}, 307, 'http://echo/full-path-replacement?q=1'],
    ];
    for (const [path, headers, status, location] of cases) {
      const r = await call(path, { headers });
      assert.equal(r.status, status, path);
      assert.equal(r.headers.location, location, path);
      assert.equal(r.headers['x-tsmesh-error'], undefined);
    }
    assert.equal(apps.get('echo-v1')!.seen.length, 0, 'no redirected request reached an app');
  });

  it('rewrites the Host and the path (prefix per HTTPPathModifier, full), keeping the query', async () => {
    setRoutes([
      { match: { pathPrefix: '/prefix/one' }, filters: { rewrite: { path: { replacePrefixMatch: '/one' } } }, backends: v1 },
      { match: { pathPrefix: '/strip-prefix' }, filters: { rewrite: { path: { replacePrefixMatch: '/' } } }, backends: v1 },
      { match: { pathPrefix: '/empty-prefix/' }, filters: { rewrite: { path: { replacePrefixMatch: '' } } }, backends: v1 },
      { match: { pathPrefix: '/full/one' }, filters: { rewrite: { path: { replaceFullPath: '/one' } } }, backends: v1 },
      { match: { pathPrefix: '/host' }, filters: { rewrite: { hostname: 'rewritten.example.org' } }, backends: v1 },
    ]);
    const cases: [string, string, string][] = [
      ['/prefix/one/two', '/one/two', 'echo'],
      ['/prefix/one', '/one', 'echo'],
      ['/prefix/one/?x=1', '/one/?x=1', 'echo'],
      ['/strip-prefix/three', '/three', 'echo'],
      ['/strip-prefix', '/', 'echo'],
      ['/strip-prefix/', '/', 'echo'],
      ['/empty-prefix/a/b?c=d', '/a/b?c=d', 'echo'],
      ['/empty-prefix', '/', 'echo'],
      ['/full/one/two?q=1', '/one?q=1', 'echo'],
      ['/host/x', '/host/x', 'rewritten.example.org'],
    ];
    for (const [path, want, host] of cases) {
      const r = await call(path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.equal(r.seen!.path, want, path);
      assert.equal(r.seen!.host, host, path);
    }
  });

  it('answers 500 for a route without backends, and bounds each attempt by backendTimeout', async () => {
    setRoutes([
      { match: { pathPrefix: '/none' }, backends: [] },
      { match: { pathPrefix: '/slow' }, backendTimeout: '150ms', backends: v1 },
      { backends: v1 },
    ]);
    const none = await call('/none');
    assert.equal(none.status, 500);
    assert.equal(none.headers['x-tsmesh-error'], 'no-backend');
    apps.get('echo-v1')!.delayMs = 1000;
    const t0 = performance.now();
    const slow = await call('/slow');
    const ms = performance.now() - t0;
    assert.equal(slow.status, 504);
    assert.ok(ms < 800, `answered after ${ms} ms`);
    apps.get('echo-v1')!.delayMs = 300;
    assert.equal((await call('/other')).status, 200, 'a route without backendTimeout waits');
  });

  it('on a port with Gateway API routes, takes them over the TrafficPolicy\'s routes and keeps the policy\'s timeout for a route that sets none', async () => {
    setRoutes([{ match: { pathPrefix: '/own' }, timeout: '3s', backends: v1 }, { backends: v1 }]);
    const current = config.current();
    const echo = current.services.find((s) => s.name === 'echo')!;
    echo.trafficPolicy = { name: 'echo', timeout: '200ms', routes: [{ name: 'policy-route', match: { pathPrefix: '/policy' }, backends: v2 }] };
    config.set(current);
    assert.equal((await call('/policy/x')).seen?.app, 'echo-v1', 'the TrafficPolicy\'s route is not taken where Gateway API routes are');
    apps.get('echo-v1')!.delayMs = 1000;
    const t0 = performance.now();
    const inherited = await call('/policy/x');
    const ms = performance.now() - t0;
    assert.equal(inherited.status, 504, 'a route without a timeout of its own takes the TrafficPolicy\'s');
    assert.ok(ms < 800, `answered after ${ms} ms`);
    assert.equal((await call('/own')).status, 200, 'a route\'s own timeout wins over the policy\'s');
  });

  it('mirrors requests (bodies included) without delaying them, and drops a copy whose streamed body outgrows the bound', async () => {
    setRoutes([
      { match: { pathPrefix: '/mirror' }, filters: { mirrors: [{ service: 'shadow' }] }, backends: v1 },
      { match: { pathPrefix: '/backend-mirror' }, backends: [{ service: 'echo-v2', weight: 1, filters: { mirrors: [{ service: 'shadow' }] } }] },
      { match: { pathPrefix: '/never' }, filters: { mirrors: [{ service: 'shadow', percent: 0 }] }, backends: v1 },
      { backends: v1 },
    ]);
    const shadow = apps.get('shadow')!;
    shadow.delayMs = 2000;
    const labels = { destination_service: 'echo.gamma', mirror_service: 'shadow.gamma' };
    const t0 = performance.now();
    const r = await call('/mirror/a?b=c', { method: 'POST', body: 'hello mirror', headers: { 'x-mark': '1' } });
    assert.ok(performance.now() - t0 < 1500, 'the slow mirror did not delay the request');
    assert.equal(r.status, 200);
    assert.equal(r.seen!.body, 'hello mirror');
    while (shadow.seen.length < 1) await new Promise((res) => setTimeout(res, 20));
    assert.deepEqual([shadow.seen[0]!.method, shadow.seen[0]!.path, shadow.seen[0]!.body, shadow.seen[0]!.headers['x-mark']], ['POST', '/mirror/a?b=c', 'hello mirror', '1']);

    // A streamed body (no content-length) is teed while it passes.
    const chunks = (n: number) => Readable.from(Array.from({ length: n }, (_, i) => Buffer.alloc(16 * 1024, 97 + (i % 26))));
    const small = await call('/mirror/stream', { method: 'POST', body: chunks(2) });
    assert.equal(small.seen!.body.length, 32 * 1024);
    while (shadow.seen.length < 2) await new Promise((res) => setTimeout(res, 20));
    assert.equal(shadow.seen[1]!.body.length, 32 * 1024);
    const big = await call('/mirror/big', { method: 'POST', body: chunks(8) });
    assert.equal(big.status, 200);
    assert.equal(big.seen!.body.length, 128 * 1024, 'the request kept its whole body');
    assert.equal(await metricValue(web, 'tsmesh_mirrors_total', { ...labels, outcome: 'dropped' }), 1);

    await call('/backend-mirror/x');
    await call('/never');
    while (shadow.seen.length < 3) await new Promise((res) => setTimeout(res, 20));
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(shadow.seen.map((s) => s.path), ['/mirror/a?b=c', '/mirror/stream', '/backend-mirror/x']);
    assert.equal(await metricValue(web, 'tsmesh_mirrors_total', { ...labels, outcome: 'sent' }), 2);
    assert.equal(await metricValue(web, 'tsmesh_mirrors_total', { destination_service: 'echo-v2.gamma', mirror_service: 'shadow.gamma', outcome: 'sent' }), 1);
    assert.equal(await metricValue(web, 'tsmesh_retries_total', {}), 0);
  });

  describe('HTTP/2 (h2c from the app)', () => {
    let session: ClientHttp2Session;
    before(() => {
      session = h2connect(`http://127.0.0.1:${webH2.outboundPort}`);
      session.on('error', () => undefined);
    });
    after(() => session?.close());

    function h2call(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; seen: Seen | undefined }> {
      return new Promise((resolve, reject) => {
        const s = session.request({ ':path': path, ':authority': 'echo', ...headers });
        let head: Record<string, unknown> = {};
        const chunks: Buffer[] = [];
        s.on('response', (h) => (head = h));
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: Number(head[':status']), headers: head, seen: head['content-type'] === 'application/json' ? (JSON.parse(text) as Seen) : undefined });
        });
        s.on('error', reject);
        s.end();
      });
    }

    it('matches headers, modifies request and response headers, rewrites :authority and redirects', async () => {
      setRoutes([], {
        h2: [
          { match: { headerRegex: { 'x-version': 'v2' } }, filters: { requestHeaders: { set: { 'x-set': 'yes' }, remove: ['x-drop'] }, responseHeaders: { add: { 'x-resp': 'h2' } } }, backends: [{ service: 'h2-v2', weight: 1 }] },
          { match: { pathPrefix: '/host' }, filters: { rewrite: { hostname: 'rewritten.example.org', path: { replacePrefixMatch: '/' } } }, backends: [{ service: 'h2-v1', weight: 1 }] },
          { match: { pathPrefix: '/redirect' }, filters: { redirect: { scheme: 'https', hostname: 'example.org' } } },
        ],
      });
      const r = await h2call('/a', { 'x-version': 'v2', 'x-drop': 'x' });
      assert.equal(r.status, 200, JSON.stringify(r.headers));
      assert.equal(r.seen!.app, 'h2-v2');
      assert.equal(r.seen!.headers['x-set'], 'yes');
      assert.equal(r.seen!.headers['x-drop'], undefined);
      assert.equal(r.headers['x-resp'], 'h2');
      const host = await h2call('/host/p?q=1');
      assert.deepEqual([host.seen!.host, host.seen!.path], ['rewritten.example.org', '/p?q=1']);
      const redirect = await h2call('/redirect/x');
      assert.deepEqual([redirect.status, redirect.headers.location], [302, 'https://example.org/redirect/x']);
      assert.equal((await h2call('/a', { 'x-version': 'v3' })).status, 404);
    });
  });

  describe('gRPC (grpc-js client and server)', () => {
    it('matches a method by its path and a header, and modifies the request metadata and the response head', async () => {
      setRoutes([{ backends: v1 }], {
        grpc: [
          {
            name: 'grpcroute/gamma/echo/rule-0',
            match: { pathExact: '/tsmesh.test.Echo/Unary', headers: { 'x-env': 'canary' } },
            filters: { requestHeaders: { set: { 'x-route': 'canary' } }, responseHeaders: { set: { 'x-answered-by': 'canary-route' } } },
          },
          { match: { pathRegex: '/tsmesh\\.test\\.Echo/Server.*' } },
        ],
      });
      const r = await runOperation(grpcClient, { op: 'unary', request: { text: 'hi' }, options: { metadata: { 'x-env': 'canary' } } });
      assert.equal(r.code, GRPC_CODE.OK, r.details);
      assert.equal(r.replies[0]?.metadata['x-route'], 'canary');
      assert.equal(r.headers['x-answered-by'], 'canary-route');
      const stream = await runOperation(grpcClient, { op: 'server-stream', request: { count: 2 } });
      assert.equal(stream.code, GRPC_CODE.OK, stream.details);
      assert.equal(stream.headers['x-answered-by'], undefined);
      // No route matches: 404, which a gRPC caller reads as UNIMPLEMENTED.
      const none = await runOperation(grpcClient, { op: 'unary', request: { text: 'hi' }, options: { metadata: { 'x-env': 'prod' } } });
      assert.equal(none.code, GRPC_CODE.UNIMPLEMENTED, none.details);
    });
  });
});
