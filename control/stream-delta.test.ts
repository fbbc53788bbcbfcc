// Deltas on the discovery stream, end to end over real mTLS: proxies that ask
// for them (in two namespaces, one with consumer Gateway API routes) hold,
// after every change, the config buildProxyConfig makes for them; a proxy
// that does not ask keeps getting whole configs; and a proxy sent a delta it
// cannot apply (one lost, or a wrong digest) reconnects for a whole config.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpsServer, request as httpsRequest, type Server } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CertificateAuthority } from '../ca/authority.js';
import { TokenFileAuthenticator } from '../ca/authn/token-file.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { DELTA_KIND, serviceKey } from '../contract/config-delta.js';
import type { ProxyConfig } from '../contract/proxy-config.js';
import { DELTAS_HEADER } from '../contract/proxy-status.js';
import { parseProxyConfig } from '../contract/validate.js';
import { createLogger, silentLogger } from '../lib/log.js';
import { freePort } from '../lib/ports.js';
import { StreamConfigSource } from '../proxy/config/stream.js';
import { issueCredentials } from '../proxy/testdata/mesh.js';
import { deltaLine, ModelView } from './config-views.js';
import type { MeshModel, ProxyIdentity, ServiceModel } from './model.js';
import { startControlPlane, type RunningControlPlane } from './plane.js';
import { buildProxyConfig } from './snapshot.js';
import type { MeshSource } from './sources/source.js';

const id = (namespace: string, serviceAccount: string): ProxyIdentity => ({ spiffeId: `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`, namespace, serviceAccount });
const WEB = id('shop', 'web');
const CLIENT = id('edge', 'client');

class MemorySource implements MeshSource {
  private readonly listeners = new Set<(m: MeshModel) => void>();
  constructor(private model: MeshModel) {}
  current(): MeshModel {
    return this.model;
  }
  onChange(listener: (m: MeshModel) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(model: MeshModel): void {
    this.model = model;
    for (const l of this.listeners) l(model);
  }
  close(): void {
    this.listeners.clear();
  }
}

const svc = (name: string, namespace: string, ip: string, endpoints: string[], sa = name): ServiceModel => ({
  name,
  namespace,
  clusterIPs: [ip],
  ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: 8080 }],
  endpoints: endpoints.map((address) => ({ address, identity: id(namespace, sa).spiffeId, ready: true })),
});

/** A mesh of Services in two namespaces; shop/api has a producer route (shop) and a consumer route (edge). */
function mesh(o: { apiEndpoints?: string[]; extra?: boolean; consumerBackend?: string; authz?: boolean; mtls?: 'STRICT' | 'PERMISSIVE'; noRoutes?: boolean } = {}): MeshModel {
  const route = (namespace: string, name: string, backend: string) => ({
    kind: 'HTTPRoute' as const,
    namespace,
    name,
    createdAt: '2026-01-01T00:00:00Z',
    parents: [{ service: 'api', namespace: 'shop', port: 80 }],
    entries: [{ route: { name, match: { pathPrefix: '/v2' }, backends: [{ service: backend, weight: 1 }] }, rank: [0, 0, 3], rule: 0, match: 0 }],
  });
  return {
    mesh: { trustDomain: 'cluster.local', mtlsMode: o.mtls ?? 'STRICT' },
    services: [
      svc('api', 'shop', '10.96.0.10', o.apiEndpoints ?? ['10.244.1.5']),
      svc('web', 'shop', '10.96.0.11', ['10.244.1.6']),
      svc('api-v2', 'shop', '10.96.0.12', ['10.244.1.7'], 'api'),
      ...(o.extra ? [svc('extra', 'edge', '10.96.0.13', ['10.244.1.8'])] : []),
      svc('client', 'edge', '10.96.0.14', ['10.244.1.9']),
    ],
    trafficPolicies: [],
    authorizationPolicies: o.authz ? [{ name: 'web-from-edge', namespace: 'shop', target: { kind: 'ServiceAccount', name: 'web' }, rules: [{ namespaces: ['edge'] }] }] : [],
    ...(o.noRoutes ? {} : { gatewayRoutes: [route('shop', 'producer', 'api'), route('edge', 'consumer', o.consumerBackend ?? 'api-v2.shop')] }),
  } as unknown as MeshModel;
}

/** What `identity` should hold for `model`: buildProxyConfig's config with the trust bundle, validated as the proxy validates a whole config line. */
function expected(model: MeshModel, identity: ProxyIdentity, version: string, trustBundle: string): ProxyConfig {
  return parseProxyConfig(JSON.parse(JSON.stringify({ ...buildProxyConfig(model, identity, version), trustBundle })));
}
const sorted = (c: ProxyConfig): ProxyConfig => ({ ...c, services: [...c.services].sort((a, b) => serviceKey(a).localeCompare(serviceKey(b))) });

async function until<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A raw reader of the stream: every line as sent, parsed. */
function tap(port: number, tls: { key: string; cert: string; ca: string }, deltas: boolean): { lines: { bytes: number; doc: Record<string, unknown> }[]; headers?: IncomingHttpHeaders; close: () => void } {
  const out: ReturnType<typeof tap> = { lines: [], close: () => undefined };
  const req = httpsRequest({ host: '127.0.0.1', port, path: '/v1/config', ...tls, servername: 'localhost', agent: false, headers: deltas ? { [DELTAS_HEADER]: '1' } : {} }, (res) => {
    out.headers = res.headers;
    let buffered = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim() !== '') out.lines.push({ bytes: Buffer.byteLength(line), doc: JSON.parse(line) as Record<string, unknown> });
      }
    });
    res.on('error', () => undefined);
  });
  req.on('error', () => undefined);
  req.end();
  out.close = () => req.destroy();
  return out;
}

describe('discovery stream deltas (control plane -> proxies, real mTLS)', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let plane: RunningControlPlane;
  let source: MemorySource;
  let port: number;
  const proxies: { identity: ProxyIdentity; stream: StreamConfigSource; seen: ProxyConfig[]; said: string[] }[] = [];
  let taps: { deltas: ReturnType<typeof tap>; whole: ReturnType<typeof tap> };

  before(async () => {
    ({ ca } = await newRootCa());
    source = new MemorySource(mesh());
    port = await freePort();
    plane = await startControlPlane({ authority: ca, authenticator: new TokenFileAuthenticator([]), meshSource: source, log: silentLogger, host: '127.0.0.1', port, adminPort: 0 });
    for (const [identity, deltas] of [
      [WEB, true],
      [CLIENT, true],
      [CLIENT, false],
    ] as const) {
      const creds = issueCredentials(ca, identity.spiffeId);
      const said: string[] = [];
      const log = createLogger('stream', 'debug', (line) => said.push(line));
      const stream = new StreamConfigSource({ address: `127.0.0.1:${port}`, tls: () => ({ key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem }), log, deltas });
      const p = { identity, stream, seen: [] as ProxyConfig[], said };
      stream.onChange((c) => p.seen.push(c));
      stream.start();
      proxies.push(p);
    }
    const creds = issueCredentials(ca, CLIENT.spiffeId);
    const tls = { key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem };
    taps = { deltas: tap(port, tls, true), whole: tap(port, tls, false) };
    await until('every proxy and tap to hold a config', () => (proxies.every((p) => p.stream.current()) && taps.deltas.lines.length > 0 && taps.whole.lines.length > 0) || undefined);
  });
  after(async () => {
    for (const p of proxies) p.stream.close();
    taps?.deltas.close();
    taps?.whole.close();
    source?.close();
    await plane?.close();
  });

  /** Sets the model and waits until every proxy holds buildProxyConfig's config for it. */
  async function change(model: MeshModel): Promise<void> {
    const linesBefore = [taps.deltas.lines.length, taps.whole.lines.length];
    source.set(model);
    const tb = ca.trustBundle.toPem();
    for (const p of proxies) {
      const matches = (): boolean => {
        const c = p.stream.current();
        if (!c) return false;
        try {
          assert.deepEqual(sorted(c), sorted(expected(model, p.identity, c.version, tb)));
          return true;
        } catch {
          return false;
        }
      };
      await until(`${p.identity.spiffeId} to hold the new config`, () => matches() || undefined).catch(() => undefined);
      const c = p.stream.current()!;
      assert.deepEqual(sorted(c), sorted(expected(model, p.identity, c.version, tb)), p.identity.spiffeId);
    }
    await until('both taps to get a line', () => (taps.deltas.lines.length > linesBefore[0]! && taps.whole.lines.length > linesBefore[1]!) || undefined);
  }

  it('answers a proxy that asks for deltas with the header, and one that does not without it', () => {
    assert.equal(taps.deltas.headers?.[DELTAS_HEADER], '1');
    assert.equal(taps.whole.headers?.[DELTAS_HEADER], undefined);
    assert.equal(taps.deltas.lines[0]!.doc.kind, 'ProxyConfig', 'a whole config first');
  });

  it('after an endpoint change, a Service added, a consumer route changed, a Service removed, mesh and inbound changes: each proxy holds what buildProxyConfig makes for it, sent as deltas', async () => {
    const steps: [string, MeshModel][] = [
      ['an endpoint added', mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'] })],
      ['a Service added', mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'], extra: true })],
      ['the consumer route changed', mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'], extra: true, consumerBackend: 'api' })],
      ['a Service removed and an AuthorizationPolicy for web', mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'], authz: true })],
      ['the mesh mTLS mode', mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'], authz: true, mtls: 'PERMISSIVE' })],
      ['every route gone', mesh({ apiEndpoints: ['10.244.1.5'], authz: true, mtls: 'PERMISSIVE', noRoutes: true })],
    ];
    for (const [what, model] of steps) {
      const before = taps.deltas.lines.length;
      await change(model).catch((e: Error) => assert.fail(`${what}: ${e.message}`));
      const line = taps.deltas.lines[before]!;
      const whole = taps.whole.lines.at(-1)!;
      assert.equal(line.doc.kind, DELTA_KIND, `${what}: a delta`);
      assert.equal(whole.doc.kind, 'ProxyConfig', `${what}: a whole config to the stream without the header`);
      assert.ok(line.bytes < whole.bytes, `${what}: the delta (${line.bytes} B) is smaller than the whole config (${whole.bytes} B)`);
    }
    // The endpoint change carried one Service, the one that changed.
    const first = taps.deltas.lines[1]!.doc;
    assert.deepEqual((first.upsert as { name: string }[]).map((s) => s.name), ['api']);
    assert.equal(first.remove, undefined);
    for (const p of proxies) {
      assert.ok(p.seen.length >= steps.length, `${p.identity.spiffeId} took ${p.seen.length} configs`);
      // Every delta applied: no proxy had to reconnect for a whole config.
      assert.equal(p.said.filter((l) => l.includes('discovery stream connected')).length, 1, `${p.identity.spiffeId}: ${p.said.join('\n')}`);
    }
  });

  it('the consumer route reaches only the callers of its namespace', () => {
    const routesSeenBy = (p: (typeof proxies)[number]) => p.seen.map((c) => JSON.stringify(c.services.find((s) => s.name === 'api')?.gatewayRoutes ?? null));
    assert.ok(routesSeenBy(proxies[1]!).some((r) => r.includes('"consumer"')), 'edge/client saw its consumer route');
    assert.ok(!routesSeenBy(proxies[0]!).some((r) => r.includes('"consumer"')), 'shop/web never saw edge\'s consumer route');
  });
});

describe('a proxy sent a delta it cannot apply reconnects for a whole config (real mTLS, lines from the control plane\'s own code)', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let server: Server;
  let stream: StreamConfigSource | undefined;
  /** What the server sends on each connection, in order. */
  let script: string[][] = [];
  const requests: IncomingHttpHeaders[] = [];

  before(async () => {
    ({ ca } = await newRootCa());
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = ca.issue(publicKey.export({ type: 'spki', format: 'der' }), { spiffeId: 'spiffe://cluster.local/ns/tsmesh-system/sa/tsmesh-control-plane', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    server = createHttpsServer({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.certChainPem, ca: ca.trustBundle.toPem(), requestCert: true }, (req, res) => {
      if (req.method === 'POST') {
        req.resume();
        res.writeHead(204).end();
        return;
      }
      requests.push(req.headers);
      res.writeHead(200, { 'content-type': 'application/x-ndjson', [DELTAS_HEADER]: '1' });
      for (const line of script.shift() ?? []) res.write(`${line}\n`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  afterEach(() => {
    stream?.close();
    stream = undefined;
    requests.length = 0;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** Versions 1..3 of a mesh as the control plane's views make them for shop/web, and its delta lines between them. */
  function versions() {
    const tb = ca.trustBundle.toPem();
    const v1 = new ModelView(mesh(), 'e-1', tb, []);
    const v2 = new ModelView(mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'] }), 'e-2', tb, [], v1);
    const v3 = new ModelView(mesh({ apiEndpoints: ['10.244.1.5', '10.244.2.5'], extra: true }), 'e-3', tb, [], v2);
    return {
      snapshot: (v: ModelView) => v.body(WEB),
      d12: deltaLine('e-2', 'e-1', v2.deltaTail(v1, WEB)!),
      d23: deltaLine('e-3', 'e-2', v3.deltaTail(v2, WEB)!),
      v1,
      v3,
      models: { v3: v3.model },
    };
  }

  function start(): { seen: ProxyConfig[] } {
    const creds = issueCredentials(ca, WEB.spiffeId);
    const port = (server.address() as AddressInfo).port;
    stream = new StreamConfigSource({ address: `127.0.0.1:${port}`, tls: () => ({ key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem }), log: silentLogger });
    const seen: ProxyConfig[] = [];
    stream.onChange((c) => seen.push(c));
    stream.start();
    return { seen };
  }

  it('applies deltas in order (the control: the same lines, none lost)', async () => {
    const v = versions();
    script = [[v.snapshot(v.v1), v.d12, v.d23]];
    const { seen } = start();
    await until('version e-3', () => (stream!.current()?.version === 'e-3' ? true : undefined));
    assert.deepEqual(seen.map((c) => c.version), ['e-1', 'e-2', 'e-3']);
    assert.deepEqual(sorted(stream!.current()!), sorted(expected(v.models.v3, WEB, 'e-3', ca.trustBundle.toPem())));
    assert.equal(requests.length, 1);
    assert.equal(requests[0]![DELTAS_HEADER], '1');
  });

  it('a lost delta: the next one names a base it does not hold, so it reconnects and takes a whole config', async () => {
    const v = versions();
    script = [[v.snapshot(v.v1), v.d23], [v.snapshot(v.v3)]];
    const { seen } = start();
    await until('a second connection and version e-3', () => (requests.length === 2 && stream!.current()?.version === 'e-3' ? true : undefined));
    assert.deepEqual(seen.map((c) => c.version), ['e-1', 'e-3']);
    assert.deepEqual(sorted(stream!.current()!), sorted(expected(v.models.v3, WEB, 'e-3', ca.trustBundle.toPem())));
  });

  it('a delta whose result has another digest than the one it carries is not taken: it reconnects', async () => {
    const v = versions();
    const wrong = v.d12.replace(/"digest":"[0-9a-f]+"/, `"digest":"${'0'.repeat(32)}"`);
    assert.notEqual(wrong, v.d12);
    script = [[v.snapshot(v.v1), wrong], [v.snapshot(v.v3)]];
    const { seen } = start();
    await until('a second connection and version e-3', () => (requests.length === 2 && stream!.current()?.version === 'e-3' ? true : undefined));
    assert.deepEqual(seen.map((c) => c.version), ['e-1', 'e-3'], 'e-2 was never taken');
  });

  it('misordered deltas: the later one first ends the stream before either is taken', async () => {
    const v = versions();
    script = [[v.snapshot(v.v1), v.d23, v.d12], [v.snapshot(v.v3)]];
    const { seen } = start();
    await until('a second connection and version e-3', () => (requests.length === 2 && stream!.current()?.version === 'e-3' ? true : undefined));
    assert.deepEqual(seen.map((c) => c.version), ['e-1', 'e-3']);
  });

  it('lines it cannot read (not JSON, Services that are not objects, a malformed delta) are refused without ending the process, and the last good config stays', async () => {
    const v = versions();
    const notObjects = JSON.stringify({ version: 'e-9', services: [1, 'api', null] });
    const malformed = JSON.stringify({ version: 'e-2', kind: 'ProxyConfigDelta', base: 'e-1', digest: 'x', upsert: [7] });
    // After the refused whole config, d12 finds no base: the stream ends, as after the malformed delta.
    script = [[v.snapshot(v.v1), '{"version":', notObjects, v.d12], [v.snapshot(v.v1), malformed], [v.snapshot(v.v3)]];
    const { seen } = start();
    await until('a third connection and version e-3', () => (requests.length === 3 && stream!.current()?.version === 'e-3' ? true : undefined));
    // The whole config whose Services are not objects was refused (e-9 never taken) and left no base for deltas; the malformed delta ended its stream.
    assert.deepEqual(seen.map((c) => c.version), ['e-1', 'e-1', 'e-3']);
  });
});
