// Inbound policy through a sidecar pair on loopback, over real mTLS: web's
// sidecar calls service api (HTTP/1.1 on 80, opaque TCP on 5432, gRPC on
// 50051), whose one endpoint is api's sidecar in front of real apps (a
// node:http app that shows the headers it got, a TCP echo, a grpc-js
// server). api's config says the policy under test: the default inbound
// policy, ALLOW, DENY and AUDIT policies with caller, port and HTTP rules,
// the mTLS mode per port; plain callers dial api's inbound port directly.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { Agent, request } from 'undici';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { parseMetrics, total } from '../lib/prom-text.js';
import { echoClient, runOperation } from '../test/netns/grpc-calls.js'; // the gRPC calls of the netns tests
import { ECHO_SERVICE, startEchoServer, type EchoClient, type EchoServer } from '../test/netns/grpc-service.js';
import { createAdminServer } from './admin/server.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, FixedIdentity, issueCredentials, loopbackSidecar } from './testdata/mesh.js';
import { startSidecar } from './sidecar.js';
import { silentLogger } from '../lib/log.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const OTHER = 'spiffe://cluster.local/ns/jobs/sa/batch';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';
const PERMISSION_DENIED = 7;

const listen = async <S extends HttpServer | NetServer>(server: S): Promise<number> => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
};

describe('inbound policy between sidecars on loopback', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let api: Sidecar;
  let web: Sidecar;
  let other: Sidecar;
  let apiConfig: FixedConfig;
  let httpApp: HttpServer;
  let tcpApp: NetServer;
  let grpcApp: EchoServer;
  let grpc: EchoClient;
  let admin: HttpServer;
  const ports = { http: 0, tcp: 0, grpc: 0, admin: 0 };
  let webCert = '';
  /** The app port api's sidecar takes as each inbound connection's original destination. */
  let appPort = 0;
  /** Headers of the last request the HTTP app saw; its requests. */
  let seen: IncomingHttpHeaders = {};
  let hits = 0;
  const agent = new Agent({ connections: 8 });

  const apiService = () => ({
    services: [
      {
        name: 'api',
        namespace: 'shop',
        clusterIPs: [SERVICE_IP],
        ports: [
          { port: 80, name: 'http', protocol: 'http', targetPort: api.inboundPort },
          { port: 5432, name: 'db', protocol: 'tcp', targetPort: api.inboundPort },
          { port: 50051, name: 'grpc', protocol: 'http2', targetPort: api.inboundPort },
        ],
        endpoints: [{ address: '127.0.0.1', identity: API }],
      },
    ],
  });
  /** The caller's sidecar takes every connection of its app as one to api on `servicePort`. */
  let servicePort = 80;
  const caller = (identity: string, creds = issueCredentials(ca, identity)) =>
    startSidecar({
      identity: new FixedIdentity(creds),
      config: new FixedConfig(apiService()),
      log: silentLogger,
      host: '127.0.0.1',
      outboundPort: 0,
      inboundPort: 0,
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: servicePort, family: 'IPv4' }),
    });

  /** api's inbound: `inbound` over the mesh settings `mesh`. */
  const policy = (inbound: object, mesh: object = {}): void => apiConfig.set({ mesh, inbound });

  async function get(from: Sidecar, path: string, headers: Record<string, string> = {}, method = 'GET') {
    appPort = ports.http;
    servicePort = 80;
    const res = await request(`http://127.0.0.1:${from.outboundPort}${path}`, { method: method as 'GET', dispatcher: agent, headers: { host: 'api.shop', ...headers } });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  /** Plain HTTP straight to api's inbound port (a caller outside the mesh), on a connection of its own. */
  async function plainGet(path: string, headers: Record<string, string> = {}) {
    appPort = ports.http;
    const once = new Agent({ pipelining: 0 });
    try {
      const res = await request(`http://127.0.0.1:${api.inboundPort}${path}`, { dispatcher: once, headers: { host: 'api.shop', ...headers } });
      return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
    } finally {
      await once.close();
    }
  }

  /** A line through `via` (a sidecar's outbound port to api:5432, or api's inbound port): what came back before the close. */
  async function tcpEcho(port: number, line = 'ping\n'): Promise<string> {
    appPort = ports.tcp;
    servicePort = 5432;
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (Buffer.concat(chunks).includes('\n')) s.end();
    });
    s.on('error', () => s.destroy());
    s.write(line);
    const timer = setTimeout(() => s.destroy(), 5000);
    await once(s, 'close');
    clearTimeout(timer);
    return Buffer.concat(chunks).toString();
  }

  const metric = async (name: string, labels: Record<string, string>): Promise<number> => total(parseMetrics(await api.metrics.registry.metrics()), name, labels);

  before(async () => {
    ({ ca } = await newRootCa());
    httpApp = createHttpServer((req, res) => {
      hits++;
      seen = req.headers;
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    ports.http = await listen(httpApp);
    tcpApp = createNetServer((s) => s.pipe(s));
    ports.tcp = await listen(tcpApp);
    grpcApp = await startEchoServer('api', '127.0.0.1', 0, () => undefined);
    ports.grpc = grpcApp.port;
    apiConfig = new FixedConfig({});
    api = await loopbackSidecar(ca, API, apiConfig, { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    const webCreds = issueCredentials(ca, WEB);
    webCert = webCreds.certChainPem;
    web = await caller(WEB, webCreds);
    other = await caller(OTHER);
    // The probe the injector would have rewritten to api's admin port: kubelet -> /app-health/app/readyz -> the app.
    admin = createAdminServer({
      registry: api.metrics.registry,
      readiness: () => undefined,
      config: () => api.config(),
      appProbes: { '/app-health/app/readyz': { httpGet: { port: ports.http, path: '/healthz' } } },
    });
    ports.admin = await listen(admin);
    grpc = echoClient(`127.0.0.1:${web.outboundPort}`);
  });

  afterEach(() => policy({}));

  after(async () => {
    grpc?.close();
    await agent.close();
    for (const s of [web, other, api]) await s?.drain(0);
    for (const s of [httpApp, tcpApp, admin]) s?.close();
    await grpcApp?.close();
  });

  describe('default inbound policy', () => {
    it('deny: a mesh caller gets 403 naming default:deny, counted; the admin port and the app probe through it still answer', async () => {
      policy({ defaultPolicy: 'deny' });
      hits = 0;
      const r = await get(web, '/orders');
      assert.equal(r.status, 403);
      assert.equal(r.headers['x-tsmesh-error'], 'denied');
      assert.equal(r.headers['x-tsmesh-policy'], 'default:deny');
      assert.match(r.text, /shop\/sa\/web may not call port \d+: the default inbound policy of this workload is deny/);
      assert.equal(await tcpEcho(web.outboundPort), '', 'a TCP connection is closed');
      assert.equal(hits, 0);
      assert.equal(await metric('tsmesh_authz_denials_total', { source_identity: WEB, protocol: 'http', policy: 'default:deny', rule: '' }), 1);
      assert.equal(await metric('tsmesh_authz_denials_total', { source_identity: WEB, protocol: 'tcp', policy: 'default:deny' }), 1);
      for (const path of ['/live', '/ready', '/app-health/app/readyz', '/metrics']) {
        const res = await request(`http://127.0.0.1:${ports.admin}${path}`);
        await res.body.text();
        assert.equal(res.statusCode, 200, path);
      }
      assert.equal(hits, 1, 'the probe reached the app');
    });

    it('deny: an ALLOW policy opens what it names and nothing else', async () => {
      policy({ defaultPolicy: 'deny', authorization: [{ name: 'web-reads', rules: [{ serviceAccounts: ['shop/web'], methods: ['GET'] }] }] });
      assert.equal((await get(web, '/orders')).status, 200);
      const post = await get(web, '/orders', {}, 'POST');
      assert.equal(post.status, 403);
      assert.equal(post.headers['x-tsmesh-policy'], 'web-reads');
      assert.equal((await get(other, '/orders')).status, 403);
    });

    it('all-authenticated (the default): mesh callers only; all-unauthenticated: plain callers too, where PERMISSIVE lets them in', async () => {
      assert.equal((await get(web, '/orders')).status, 200);
      policy({ defaultPolicy: 'all-authenticated' }, { mtlsMode: 'PERMISSIVE' });
      const plain = await plainGet('/orders');
      assert.equal(plain.status, 403);
      assert.equal(plain.headers['x-tsmesh-policy'], 'default:all-authenticated');
      assert.match(plain.text, /a caller without a mesh identity may not call/);
      assert.equal(await tcpEcho(api.inboundPort), '');
      policy({ defaultPolicy: 'all-unauthenticated' }, { mtlsMode: 'PERMISSIVE' });
      assert.equal((await plainGet('/orders')).status, 200);
      assert.equal(await tcpEcho(api.inboundPort), 'ping\n');
      // PERMISSIVE with no default policy set lets plain callers in, as it always has.
      policy({}, { mtlsMode: 'PERMISSIVE' });
      assert.equal((await plainGet('/orders')).status, 200);
    });
  });

  describe('AuthorizationPolicy', () => {
    it('DENY by method and path prefix wins over ALLOW: 403 with the policy, counted with policy and rule; other requests pass', async () => {
      policy({
        authorization: [
          { name: 'shop-callers', rules: [{ namespaces: ['shop'] }] },
          { name: 'no-admin', action: 'DENY', rules: [{ methods: ['DELETE'] }, { pathPrefixes: ['/admin'] }] },
        ],
      });
      assert.equal((await get(web, '/orders')).status, 200);
      for (const path of ['/admin', '/admin/users', '//admin', '/x/../admin', '/%61dmin']) {
        const r = await get(web, path);
        assert.equal(r.status, 403, path);
        assert.equal(r.headers['x-tsmesh-policy'], 'no-admin');
        assert.match(r.text, /rule 1 of DENY authorization policy no-admin denies it/);
      }
      assert.equal((await get(web, '/orders/1', {}, 'DELETE')).status, 403);
      assert.equal((await get(web, '/administrator')).status, 200);
      assert.equal(await metric('tsmesh_authz_denials_total', { policy: 'no-admin', rule: '1', protocol: 'http' }), 5);
      assert.equal(await metric('tsmesh_authz_denials_total', { policy: 'no-admin', rule: '0' }), 1);
      assert.equal((await get(other, '/orders')).status, 403, 'jobs is not an allowed namespace');
    });

    it('AUDIT denies nothing: what its rules match reaches the app, counted as audited', async () => {
      policy({ authorization: [{ name: 'try-no-delete', action: 'AUDIT', rules: [{ methods: ['DELETE'] }] }] });
      const before = await metric('tsmesh_authz_audits_total', { policy: 'try-no-delete', rule: '0' });
      hits = 0;
      assert.equal((await get(web, '/orders/1', {}, 'DELETE')).status, 200);
      assert.equal((await get(web, '/orders/1')).status, 200);
      assert.equal(hits, 2);
      assert.equal((await metric('tsmesh_authz_audits_total', { policy: 'try-no-delete', rule: '0', source_identity: WEB })) - before, 1);
    });

    it('opaque TCP is judged at L4: rules with HTTP fields never match it; a port rule does', async () => {
      policy({ authorization: [{ name: 'web-http', rules: [{ serviceAccounts: ['shop/web'], methods: ['GET'] }] }] });
      assert.equal((await get(web, '/x')).status, 200);
      assert.equal(await tcpEcho(web.outboundPort), '', 'an ALLOW rule about methods does not let a TCP connection in');
      policy({ authorization: [{ name: 'web-db', rules: [{ serviceAccounts: ['shop/web'], ports: [ports.tcp] }] }] });
      assert.equal(await tcpEcho(web.outboundPort), 'ping\n');
      assert.equal(await tcpEcho(other.outboundPort), '');
      policy({ authorization: [{ name: 'no-admin', action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] }] });
      assert.equal(await tcpEcho(web.outboundPort), 'ping\n', 'a DENY rule about paths does not close TCP');
      assert.ok((await metric('tsmesh_authz_denials_total', { policy: 'web-db', protocol: 'tcp', source_identity: OTHER })) >= 1);
    });

    it('a denied gRPC call gets PERMISSION_DENIED naming the policy; another method of the service goes through', async () => {
      policy({ authorization: [{ name: 'no-unary', action: 'DENY', rules: [{ paths: [`/${ECHO_SERVICE}/Unary`] }] }] });
      appPort = ports.grpc;
      servicePort = 50051;
      const denied = await runOperation(grpc, { op: 'unary', request: { text: 'x' } });
      assert.equal(denied.code, PERMISSION_DENIED, denied.details);
      assert.equal(denied.trailers['x-tsmesh-error'], 'denied');
      assert.match(denied.details, /DENY authorization policy no-unary/);
      const streamed = await runOperation(grpc, { op: 'server-stream', request: { text: 's', count: 2 } });
      assert.equal(streamed.code, 0, streamed.details);
      assert.equal(await metric('tsmesh_authz_denials_total', { policy: 'no-unary', rule: '0' }), 1);
    });
  });

  describe('mTLS mode per port', () => {
    it('a PERMISSIVE workload keeps one port STRICT, and a STRICT one opens one port', async () => {
      policy({ mtlsMode: 'PERMISSIVE', portMtlsModes: { [ports.http]: 'STRICT' } });
      const strict = await plainGet('/orders');
      assert.equal(strict.status, 403);
      assert.equal(strict.headers['x-tsmesh-error'], 'mtls-required');
      assert.equal(await tcpEcho(api.inboundPort), 'ping\n');
      policy({ portMtlsModes: { [ports.http]: 'PERMISSIVE' } });
      assert.equal((await plainGet('/orders')).status, 200);
      assert.equal(await tcpEcho(api.inboundPort), '');
      assert.equal((await get(web, '/orders')).status, 200, 'mesh callers are served on both');
    });
  });

  describe("the caller's identity for the app", () => {
    it('sets x-tsmesh-client-id and x-forwarded-client-cert from the verified certificate, over a forged value', async () => {
      const r = await get(web, '/whoami', { 'x-tsmesh-client-id': 'spiffe://cluster.local/ns/kube-system/sa/admin', 'x-forwarded-client-cert': 'URI=spiffe://cluster.local/ns/x/sa/y' });
      assert.equal(r.status, 200);
      assert.equal(seen['x-tsmesh-client-id'], WEB);
      const hash = createHash('sha256').update(new X509Certificate(webCert).raw).digest('hex');
      assert.equal(seen['x-forwarded-client-cert'], `By=${API};Hash=${hash};URI=${WEB}`);
    });

    it('removes them from a plain caller (PERMISSIVE), which gets none', async () => {
      policy({}, { mtlsMode: 'PERMISSIVE' });
      const r = await plainGet('/whoami', { 'x-tsmesh-client-id': WEB, 'x-forwarded-client-cert': `By=${API};URI=${WEB}` });
      assert.equal(r.status, 200);
      assert.equal(seen['x-tsmesh-client-id'], undefined);
      assert.equal(seen['x-forwarded-client-cert'], undefined);
      assert.equal(seen['host'], 'api.shop');
    });
  });
});
