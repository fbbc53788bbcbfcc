// Egress on the real kernel: pod a's app (curl and node as uid 1000) calls
// servers outside the mesh, captured by `tsmesh init`'s iptables rules and
// decided by a's proxy (proxy/outbound/egress.ts). The "outside" is the lab's
// plain namespace (10.244.10.13, no sidecar), running
// test/netns/egress-outside.ts: plain HTTP on 8080, TLS on 8443 with a
// certificate for api.example.com and *.example.org from a CA this test made
// (openssl), a TCP echo on 9000. There is no DNS in the lab: curl's --resolve
// gives each name that address. a's config is its --config-file, rewritten per
// case (test/netns/mesh-lab.ts).
//
// Skipped, with the reason printed, where network namespaces cannot be
// created.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { find, parseMetrics, total } from '../../lib/prom-text.js';
import { outsideTls } from '../../proxy/outbound/testdata/outside-tls.js'; // the outside CA, made as the loopback egress test makes it
import { ADDR, APP_USER, GiveUp, MeshLab, SERVICE_IP, TRUST_DOMAIN, waitFor, type Managed } from './mesh-lab.js';
import { netnsUnavailable } from './netns.js';

const OUTSIDE = ADDR.plain;
const HTTP_PORT = 8080;
const TLS_PORT = 8443;
const ECHO_PORT = 9000;

/** Connects to HOST PORT, writes a line, prints what came back (or that the connection closed first). */
const ECHO_CLIENT = `
const [host, port] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port), timeout: 5000 });
let got = '';
s.setEncoding('utf8');
s.on('data', (d) => { got += d; if (got.includes('\\n')) { console.log(JSON.stringify({ echoed: got })); s.end(); } });
s.on('error', () => undefined);
s.on('timeout', () => s.destroy());
s.on('close', () => { if (!got.includes('\\n')) console.log(JSON.stringify({ error: 'closed', echoed: got })); });
s.write('hello\\n');
`;

describe('egress from a meshed pod in network namespaces: allow-all, registry-only, TLS origination (real kernel)', function () {
  this.timeout(120_000);
  let lab: MeshLab | undefined;
  let outside: Managed | undefined;

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await MeshLab.create();
    const tls = outsideTls(['api.example.com', '*.example.org']);
    const other = outsideTls(['api.example.com'], 'another CA');
    await writeFile(lab.path('outside-cert.pem'), tls.certPem, { mode: 0o644 });
    await writeFile(lab.path('outside-key.pem'), tls.keyPem, { mode: 0o644 });
    await writeFile(lab.path('outside-ca.pem'), tls.caPem, { mode: 0o644 });
    await writeFile(lab.path('other-ca.pem'), other.caPem, { mode: 0o644 });
    outside = lab.spawnIn('outside', 'plain', [
      process.execPath,
      '--import',
      'tsx',
      'test/netns/egress-outside.ts',
      String(HTTP_PORT),
      String(TLS_PORT),
      String(ECHO_PORT),
      lab.path('outside-cert.pem'),
      lab.path('outside-key.pem'),
    ]);
    await outside.line((l) => l.includes('"ready":true'), 30_000);
  });

  after(async function () {
    await lab?.destroy();
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  /** Sets a's mesh egress settings and waits for its proxy to take them. */
  const egress = (settings: object): Promise<string> => {
    const config = lab!.aConfig() as { mesh: object };
    return lab!.applyConfig('a', { ...config, mesh: { trustDomain: TRUST_DOMAIN, mtlsMode: 'STRICT', egress: settings } });
  };
  /** curl in a as the app, the outside server's names resolved to its address. */
  const curl = (url: string, extra: string[] = []) => {
    const resolve = ['api.example.com', 'a.example.org', 'other.example.net'].flatMap((h) => [HTTP_PORT, TLS_PORT].flatMap((p) => ['--resolve', `${h}:${p}:${OUTSIDE}`]));
    return lab!.curl('a', [...resolve, '--cacert', lab!.path('outside-ca.pem'), ...extra, url], APP_USER);
  };
  const echo = async (): Promise<{ echoed?: string; error?: string }> => {
    const r = await lab!.exec('a', [process.execPath, '-e', ECHO_CLIENT, OUTSIDE, String(ECHO_PORT)], APP_USER, { timeoutMs: 20_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { echoed?: string; error?: string };
  };
  /** The outside server's log lines of `event`. */
  const seen = (event: string): Record<string, string>[] =>
    (outside?.stdout ?? '')
      .split('\n')
      .filter((l) => l.includes(`"event":"${event}"`))
      .map((l) => JSON.parse(l) as Record<string, string>);
  const egressCount = async (destination: string, decision: string): Promise<number> =>
    total(parseMetrics(await lab!.admin('a', '/metrics')), 'tsmesh_egress_connections_total', { destination, decision });

  it('allow-all (the default): plain HTTP and TLS reach the outside, counted by the Host and the SNI', async function () {
    await egress({});
    const http = await curl(`http://api.example.com:${HTTP_PORT}/open`);
    assert.equal(http.status, 200, `${http.error} ${http.body}`);
    assert.equal((JSON.parse(http.body) as { server: string }).server, 'plain');
    const tls = await curl(`https://a.example.org:${TLS_PORT}/open`);
    assert.equal(tls.status, 200, `${tls.error} ${tls.body}`);
    assert.equal((JSON.parse(tls.body) as { servername: string }).servername, 'a.example.org');
    assert.equal((await echo()).echoed, 'hello\n');
    assert.ok((await egressCount('api.example.com', 'allowed')) >= 1);
    assert.ok((await egressCount('a.example.org', 'allowed')) >= 1);
    assert.ok((await egressCount(OUTSIDE, 'allowed')) >= 1, 'the echo connection, named by its address');
  });

  it('registry-only refuses what no entry names (403 egress-denied, TLS closed unforwarded, TCP closed); service b still answers', async function () {
    await egress({ mode: 'registry-only' });
    const tlsBefore = seen('tls-connection').length;
    const http = await curl(`http://api.example.com:${HTTP_PORT}/denied`, ['-i']);
    assert.equal(http.status, 403, `${http.error} ${http.body}`);
    assert.match(http.body, /x-tsmesh-error: egress-denied/i);
    assert.equal(seen('http').filter((r) => r.path === '/denied').length, 0);
    const tls = await curl(`https://api.example.com:${TLS_PORT}/denied`, ['-k']);
    assert.equal(tls.status, 0, `a TLS connection was served: ${tls.body}`);
    assert.equal(seen('tls-connection').length, tlsBefore, 'the outside TLS server saw a connection');
    assert.equal((await echo()).error, 'closed');
    const meshed = await lab!.curl('a', [`http://${SERVICE_IP}/hello`], APP_USER);
    assert.equal(meshed.status, 200, `service b: ${meshed.error} ${meshed.body}`);
    assert.ok((await egressCount('api.example.com', 'denied')) >= 2);
    assert.ok((await egressCount(OUTSIDE, 'denied')) >= 1);
    const errors = find(parseMetrics(await lab!.admin('a', '/metrics')), 'tsmesh_http_errors_total', { direction: 'outbound', error: 'egress-denied' });
    assert.ok(errors.length > 0);
  });

  it('registry-only allows an entry by exact host (Host, SNI), by wildcard SNI, and by CIDR and port; the rest stays refused', async function () {
    await egress({
      mode: 'registry-only',
      allow: [
        { name: 'api', hosts: ['api.example.com'], ports: [HTTP_PORT, TLS_PORT] },
        { name: 'org', hosts: ['*.example.org'], ports: [TLS_PORT] },
        { name: 'echo', cidrs: [`${OUTSIDE}/32`], ports: [ECHO_PORT] },
      ],
    });
    const before = { api: await egressCount('api', 'allowed'), org: await egressCount('org', 'allowed'), echo: await egressCount('echo', 'allowed') };
    assert.equal((await curl(`http://api.example.com:${HTTP_PORT}/allowed`)).status, 200);
    assert.equal((await curl(`https://api.example.com:${TLS_PORT}/allowed`)).status, 200);
    assert.equal((await curl(`https://a.example.org:${TLS_PORT}/allowed`)).status, 200);
    assert.equal((await echo()).echoed, 'hello\n');
    // Another name at the same address and port: refused.
    assert.equal((await curl(`http://other.example.net:${HTTP_PORT}/other`)).status, 403);
    assert.equal((await curl(`https://other.example.net:${TLS_PORT}/other`, ['-k'])).status, 0);
    // The wildcard entry names port 8443 only.
    assert.equal((await curl(`http://a.example.org:${HTTP_PORT}/other`)).status, 403);
    assert.equal(await egressCount('api', 'allowed'), before.api + 2);
    assert.equal(await egressCount('org', 'allowed'), before.org + 1);
    assert.equal(await egressCount('echo', 'allowed'), before.echo + 1);
    assert.ok((await egressCount('other.example.net', 'denied')) >= 2);
  });

  it('originates TLS: plain HTTP from the app arrives at the outside server as TLS with SNI api.example.com, and the answer comes back', async function () {
    await egress({ mode: 'registry-only', allow: [{ name: 'api-tls', hosts: ['api.example.com'], ports: [HTTP_PORT], originateTls: { port: TLS_PORT, caFile: lab!.path('outside-ca.pem') } }] });
    const r = await curl(`http://api.example.com:${HTTP_PORT}/originated`);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.deepEqual(JSON.parse(r.body), { server: 'tls', servername: 'api.example.com', path: '/originated', host: `api.example.com:${HTTP_PORT}` });
    assert.equal(seen('http').filter((x) => x.path === '/originated').length, 0, 'the plain port was reached');
    await waitFor('the TLS server to log the request', () => Promise.resolve(seen('tls').some((x) => x.path === '/originated') ? true : undefined), 5_000, 50);
  });

  it('answers 502 egress-tls-failed when the outside certificate does not verify against the entry\'s CA, and counts it', async function () {
    await egress({ mode: 'registry-only', allow: [{ name: 'api-wrong-ca', hosts: ['api.example.com'], ports: [HTTP_PORT], originateTls: { port: TLS_PORT, caFile: lab!.path('other-ca.pem') } }] });
    const r = await curl(`http://api.example.com:${HTTP_PORT}/wrong-ca`, ['-i']);
    assert.equal(r.status, 502, `${r.error} ${r.body}`);
    assert.match(r.body, /x-tsmesh-error: egress-tls-failed/i);
    assert.equal(seen('tls').filter((x) => x.path === '/wrong-ca').length, 0);
    const errors = total(parseMetrics(await lab!.admin('a', '/metrics')), 'tsmesh_http_errors_total', { destination_service: 'api-wrong-ca', error: 'egress-tls-failed' });
    assert.equal(errors, 1);
    if (!outside?.running) throw new GiveUp('the outside servers exited');
  });
});
