// TLS session resumption between sidecars, over real mTLS on loopback: web's
// side dials api's sidecar as the outbound proxy does (connectEndpoint with
// web's MeshTls), api's sidecar terminates it in front of real apps (a TCP
// echo and a node:http app that shows the caller identity it was given). A
// resumed connection must carry the same verified identities as a full one,
// and no session may outlive an identity, a set of roots or a certificate.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { CertificateAuthority } from '../ca/authority.js';
import { createRootCa } from '../ca/root.js';
import { caFromRoot, newRootCa, TD } from '../ca/testdata/fixtures.js';
import { parseMetrics, total } from '../lib/prom-text.js';
import { createLogger } from '../lib/log.js';
import { startSidecar, type Sidecar } from './sidecar.js';
import { FixedConfig, FixedIdentity, issueCredentials } from './testdata/mesh.js';
import { MESH_ALPN, type MeshAlpn } from './tls/alpn.js';
import { MeshTls } from './tls/mesh-tls.js';
import { SessionCache } from './tls/session-cache.js';
import { connectEndpoint, UpstreamConnectError } from './upstream.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const CLIENT_ID_HEADER = 'x-tsmesh-client-id';

const listen = async <S extends HttpServer | NetServer>(server: S): Promise<number> => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
};

/** Reads `socket` to its end. */
async function readAll(socket: TLSSocket): Promise<string> {
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (text += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no end in 5 s (got ${JSON.stringify(text)})`)), 5000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return text;
}

describe('TLS session resumption between sidecars', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let api: Sidecar;
  let apiIdentity: FixedIdentity;
  let apiConfig: FixedConfig;
  let webIdentity: FixedIdentity;
  let web: MeshTls;
  let echo: NetServer;
  let http: HttpServer;
  const ports = { tcp: 0, http: 0 };
  /** The app api's sidecar takes as each inbound connection's original destination. */
  let appPort = 0;
  /** api's sidecar's log lines. */
  const logged: string[] = [];

  before(async () => {
    ({ ca } = await newRootCa());
    echo = createNetServer((s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    ports.tcp = await listen(echo);
    http = createHttpServer((req, res) => res.end(String(req.headers[CLIENT_ID_HEADER] ?? '')));
    ports.http = await listen(http);
    apiIdentity = new FixedIdentity(issueCredentials(ca, API));
    apiConfig = new FixedConfig({});
    api = await startSidecar({
      identity: apiIdentity,
      config: apiConfig,
      log: createLogger('api', 'info', (line) => logged.push(line)),
      host: '127.0.0.1',
      outboundPort: 0,
      inboundPort: 0,
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
  });

  after(async () => {
    await api?.drain(0);
    echo?.close();
    http?.close();
  });

  beforeEach(() => {
    webIdentity = new FixedIdentity(issueCredentials(ca, WEB));
    web = new MeshTls(webIdentity);
    apiConfig.set({});
  });

  afterEach(() => web.close());

  /** A connection from web to api's sidecar as the outbound proxy opens one. */
  const dial = (expected = API, alpn: MeshAlpn = MESH_ALPN.tcp, from = web): Promise<TLSSocket> =>
    connectEndpoint(from, { address: '127.0.0.1', port: api.inboundPort, identity: expected }, alpn) as Promise<TLSSocket>;

  /** A line through api's sidecar to the echo app, on a new connection; whether it was resumed. */
  async function echoed(from = web): Promise<{ reused: boolean; text: string }> {
    appPort = ports.tcp;
    const socket = await dial(API, MESH_ALPN.tcp, from);
    const reused = socket.isSessionReused();
    const text = readAll(socket);
    socket.end('ping\n');
    return { reused, text: await text };
  }

  /** A GET through api's sidecar to the HTTP app, on a new connection: status line and body (the caller identity the app got). */
  async function get(): Promise<{ reused: boolean; status: string; body: string }> {
    appPort = ports.http;
    const socket = await dial(API, MESH_ALPN.http1);
    const reused = socket.isSessionReused();
    const text = readAll(socket);
    socket.write('GET / HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\n\r\n');
    const all = await text;
    return { reused, status: all.split('\r\n')[0] ?? '', body: all.slice(all.indexOf('\r\n\r\n') + 4) };
  }

  /** A full handshake, then a resumed connection: web holds a session that api's sidecar accepts. */
  async function sessionInUse(): Promise<void> {
    assert.equal((await echoed()).reused, false);
    assert.equal((await echoed()).reused, true);
  }

  /** tsmesh_tls_handshakes_total of `sidecar` by direction and resumed. */
  async function handshakes(sidecar: Sidecar, direction: string, resumed: boolean): Promise<number> {
    return total(parseMetrics(await sidecar.metrics.registry.metrics()), 'tsmesh_tls_handshakes_total', { direction, resumed: String(resumed) });
  }

  it('resumes the second connection to the same endpoint, and counts each kind on both ends', async () => {
    const before = { full: await handshakes(api, 'inbound', false), resumed: await handshakes(api, 'inbound', true) };
    const first = await echoed();
    const second = await echoed();
    const third = await echoed();
    assert.deepEqual([first, second, third], [
      { reused: false, text: 'ping\n' },
      { reused: true, text: 'ping\n' },
      { reused: true, text: 'ping\n' },
    ]);
    assert.deepEqual(web.handshakes.outbound, { full: 1, resumed: 2 });
    assert.equal((await handshakes(api, 'inbound', false)) - before.full, 1);
    assert.equal((await handshakes(api, 'inbound', true)) - before.resumed, 2);
  });

  it("gives the app the caller's verified identity on a resumed connection, and authorizes it as on a full one", async () => {
    const full = await get();
    const resumed = await get();
    assert.deepEqual([full, resumed], [
      { reused: false, status: 'HTTP/1.1 200 OK', body: WEB },
      { reused: true, status: 'HTTP/1.1 200 OK', body: WEB },
    ]);
    assert.deepEqual(await echoed(), { reused: false, text: 'ping\n' });
    // A policy that admits another caller only: the resumed connection is web's, and denied.
    apiConfig.set({ inbound: { authorization: [{ name: 'batch-only', rules: [{ serviceAccounts: ['jobs/batch'] }] }] } });
    const denied = await get();
    assert.equal(denied.reused, true);
    assert.equal(denied.status, 'HTTP/1.1 403 Forbidden');
    // Opaque TCP is authorized by caller too: the resumed connection is closed before the app.
    const tcp = await echoed();
    assert.deepEqual(tcp, { reused: true, text: '' });
  });

  it('never resumes a session made for one identity when the same address is expected to be another', async () => {
    await sessionInUse();
    // api's sidecar holds API's certificate: expecting anyone else must fail, as it does on a full handshake.
    const refused = await dial('spiffe://cluster.local/ns/shop/sa/impostor').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof UpstreamConnectError, `expected a refusal, got ${String(refused)}`);
    assert.match(refused.message, /peer presented spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api, expected spiffe:\/\/cluster\.local\/ns\/shop\/sa\/impostor/);
  });

  it("does a full handshake after this proxy's certificate renews", async () => {
    await sessionInUse();
    webIdentity.set(issueCredentials(ca, WEB));
    assert.equal((await echoed()).reused, false);
    assert.equal((await echoed()).reused, true);
  });

  it('does a full handshake after the trusted roots change', async () => {
    await sessionInUse();
    const other = await createRootCa(TD);
    web.setStreamedRoots(web.trustedRootsPem()! + other.certPem);
    assert.equal((await echoed()).reused, false);
    assert.equal((await echoed()).reused, true);
  });

  it("refuses tickets of the server's old key once its certificate renews", async () => {
    await sessionInUse();
    apiIdentity.set(issueCredentials(ca, API));
    // web still offers its ticket; api's sidecar no longer accepts it.
    assert.equal((await echoed()).reused, false);
    assert.equal((await echoed()).reused, true);
  });

  describe('certificates about to expire', () => {
    /** A CA of 60 s certificates whose clock is `msAgo` behind: its certificates expire 60 s - msAgo from now. */
    const pastCa = async (msAgo: number): Promise<CertificateAuthority> => caFromRoot(await createRootCa(TD), { ttlSeconds: 60, now: () => new Date(Date.now() - msAgo) });

    afterEach(() => apiIdentity.set(issueCredentials(ca, API)));

    it("uses no ticket past the peer certificate's remaining lifetime", async () => {
      // api's certificate expires in 5 s (its root is another: web trusts both).
      const short = await pastCa(55_000);
      const both = ca.trustBundle.toPem() + short.trustBundle.toPem();
      api.meshTls.setStreamedRoots(both);
      apiIdentity.set(issueCredentials(short, API));
      web.setStreamedRoots(both);
      await echoed();
      // Kept no longer than the ticket's lifetime, half of what is left of api's certificate.
      const entry = web.sessions.get(SessionCache.key(web.generation, `127.0.0.1:${api.inboundPort}`, API, [MESH_ALPN.tcp]));
      assert.ok(entry, 'no session kept');
      assert.ok(entry.expiresAt <= Date.now() + 2600, `kept until ${new Date(entry.expiresAt).toISOString()}`);
      assert.equal((await echoed()).reused, true);
      // Tickets live at most half the server certificate's remaining life (about 2.5 s here).
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await echoed()).reused, false);
    });

    it("refuses a resumed caller whose certificate expired since the session's full handshake", async () => {
      // web's certificate expires in 3 s.
      const short = await pastCa(57_000);
      const creds = issueCredentials(short, WEB);
      const roots = ca.trustBundle.toPem() + short.trustBundle.toPem();
      api.meshTls.setStreamedRoots(roots);
      appPort = ports.tcp;
      // A client that keeps and offers its session whatever its own certificate says (a tsmesh proxy would not).
      const open = (session?: Buffer): Promise<{ socket: TLSSocket; session: Promise<Buffer> }> =>
        new Promise((resolve, reject) => {
          const socket = tlsConnect({ host: '127.0.0.1', port: api.inboundPort, key: creds.keyPem, cert: creds.certChainPem, ca: roots, ALPNProtocols: [MESH_ALPN.tcp], checkServerIdentity: () => undefined, ...(session ? { session } : {}) });
          const ticket = new Promise<Buffer>((r) => socket.once('session', r));
          socket.once('secureConnect', () => resolve({ socket, session: ticket }));
          socket.once('error', reject);
        });
      const first = await open();
      first.socket.write('ping\n');
      const session = await first.session;
      first.socket.destroy();
      const live = await open(session);
      assert.equal(live.socket.isSessionReused(), true);
      const liveText = readAll(live.socket);
      live.socket.end('ping\n');
      assert.equal(await liveText, 'ping\n');
      logged.length = 0;
      await new Promise((r) => setTimeout(r, 3500));
      const stale = await open(session);
      assert.equal(stale.socket.isSessionReused(), true);
      const staleText = readAll(stale.socket);
      stale.socket.write('ping\n');
      assert.equal(await staleText, '');
      const refusals = logged.filter((l) => l.includes("the caller's certificate of a resumed session has expired"));
      assert.equal(refusals.length, 1);
      assert.equal(JSON.parse(refusals[0]!).identity, WEB);
    });
  });
});
