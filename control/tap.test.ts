// tsmesh tap end to end on loopback: a control plane in local mode (a mesh
// file) taps real sidecars over mesh mTLS (ALPN tsmesh/tap) and serves the
// merged stream on its admin port; requests go through a sidecar pair
// (web -> api -> app) as in the mesh.
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { TAP_ALPN, TAP_REDACTED, tapCallerIdentity } from '../contract/tap.js';
import { connect as netConnect } from 'node:net';
import { FixedConfig, issueCredentials, loopbackSidecar } from '../proxy/testdata/mesh.js';
import type { Sidecar } from '../proxy/sidecar.js';
import type { RunningControlPlane } from './plane.js';
import { API, API_POD, counterValue, get, startTapMesh, TapClient, until, WEB, type TapMesh } from './testdata/tap-mesh.js';

// The command as an operator runs it (a child process of its own; nothing imported from cli/).
const MAIN = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

describe('tsmesh tap (control plane -> sidecars over tsmesh/tap)', function () {
  this.timeout(30_000);
  let dir: string;
  let ca: CertificateAuthority;
  let mesh: TapMesh;
  let a: Sidecar; // web: the caller's sidecar
  let b: Sidecar; // api: the app's sidecar
  let plane: RunningControlPlane;
  const clients: TapClient[] = [];
  const tap = (query: string, headers?: Record<string, string>): TapClient => {
    const c = new TapClient(plane.adminPort, query, headers);
    clients.push(c);
    return c;
  };
  /** A tap that has reached its proxies (their tap is open). */
  const openTap = async (query: string, proxies: Sidecar[]): Promise<TapClient> => {
    const before = proxies.map((p) => p.telemetry.tap.tapCount);
    const c = tap(query);
    await until('the proxies to open the tap', () => proxies.every((p, i) => p.telemetry.tap.tapCount > before[i]!));
    return c;
  };

  before(async () => {
    ({ ca } = await newRootCa());
    mesh = await startTapMesh(ca);
    ({ a, b, plane, dir } = mesh);
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  after(async () => {
    await mesh?.close();
  });

  it('shows each request of a workload: method, path, status, latency, header names with values redacted', async () => {
    const c = await openTap('target=workload/api&namespace=shop', [b]);
    assert.equal(c.status, 200);
    assert.match(String(c.lines[0]?.['message']), /tapping 1 proxy of workload api in namespace shop/);
    const res = await get(a, '/items?page=2', { authorization: 'Bearer hunter2', 'x-trace-me': 'yes' });
    assert.equal(res.status, 200);
    const end = await until('the end event', () => c.of('end')[0]);
    const [req] = c.of('req');
    const [rsp] = c.of('rsp');
    assert.ok(req && rsp, c.text);
    assert.equal(req['direction'], 'inbound');
    assert.equal(req['method'], 'GET');
    assert.equal(req['path'], '/items?page=2');
    assert.equal(req['authority'], 'api.shop');
    assert.equal(req['source'], WEB);
    assert.equal(req['destination'], API);
    assert.equal(req.proxy?.workload, 'api');
    const reqHeaders = req['headers'] as Record<string, string>;
    assert.equal(reqHeaders['authorization'], TAP_REDACTED);
    assert.equal(reqHeaders['x-trace-me'], TAP_REDACTED);
    assert.ok(!c.text.includes('hunter2') && !c.text.includes('s3cret'), 'no header value leaves the proxy without showHeaders');
    assert.equal(rsp['status'], 200);
    assert.equal((rsp['headers'] as Record<string, string>)['set-cookie'], TAP_REDACTED);
    assert.ok(typeof rsp['latencyMs'] === 'number' && rsp['latencyMs'] >= 0);
    assert.equal(end['responseBytes'], 'hello from api\n'.length);
    assert.ok((end['durationMs'] as number) >= (rsp['latencyMs'] as number));
    assert.equal(req.id, rsp.id);
    assert.equal(req.id, end.id);
  });

  it('shows header values to a tap that asks for them (showHeaders)', async () => {
    const c = await openTap('target=workload/api&namespace=shop&showHeaders=true', [b]);
    await get(a, '/items', { authorization: 'Bearer hunter2' });
    const [req] = await until('the req event', () => c.of('req').length > 0 && c.of('req'));
    assert.equal((req!['headers'] as Record<string, string>)['authorization'], 'Bearer hunter2');
  });

  it('filters by path prefix, method, status class, direction and identity', async () => {
    const failures = await openTap('target=ns/shop&status=5xx&path=/fail', [a, b]);
    const posts = await openTap('target=workload/api&namespace=shop&method=post', [b]);
    const outbound = await openTap('target=ns/shop&direction=outbound', [a, b]);
    const byOther = await openTap(`target=ns/shop&identity=${encodeURIComponent('spiffe://cluster.local/ns/shop/sa/nobody')}`, [a, b]);
    const byWeb = await openTap(`target=workload/api&namespace=shop&identity=${encodeURIComponent(WEB)}`, [b]);
    await get(a, '/ok');
    await get(a, '/fail/1');
    await get(a, '/failing-not', {}, 'POST'); // a 500 with another prefix... /failing-not starts with /fail too
    await get(a, '/other', {}, 'POST');
    await until('every tap to see its ends', () => failures.of('end').length >= 4 && posts.of('end').length >= 2 && outbound.of('end').length >= 4 && byWeb.of('end').length >= 4);
    // Both sidecars see each 5xx under /fail: web's outbound side and api's inbound side.
    assert.deepEqual(failures.of('req').map((r) => `${String(r['direction'])} ${String(r['path'])}`).sort(), ['inbound /fail/1', 'inbound /failing-not', 'outbound /fail/1', 'outbound /failing-not']);
    assert.ok(failures.of('rsp').every((r) => r['status'] === 500));
    assert.deepEqual(posts.of('req').map((r) => r['path']).sort(), ['/failing-not', '/other']);
    assert.ok(outbound.of('req').every((r) => r['direction'] === 'outbound' && r.proxy?.workload === 'web'));
    assert.equal(outbound.of('req').length, 4);
    assert.equal(byWeb.of('req').length, 4);
    assert.equal(byOther.of('req').length, 0, byOther.text);
  });

  it('drops and counts past its rate rather than slowing requests', async () => {
    const droppedBefore = await counterValue(b, 'tsmesh_tap_events_dropped_total', { reason: 'rate-limit' });
    const c = await openTap('target=workload/api&namespace=shop&maxRps=5', [b]);
    const n = 300;
    const started = performance.now();
    const results = [];
    for (let i = 0; i < n; i += 20) results.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => get(a, `/load/${i + j}`)))));
    const seconds = (performance.now() - started) / 1000;
    assert.ok(results.every((r) => r.status === 200));
    await new Promise((r) => setTimeout(r, 200));
    const told = c.of('req').length;
    const dropped = (await counterValue(b, 'tsmesh_tap_events_dropped_total', { reason: 'rate-limit' })) - droppedBefore;
    // A bucket of 5 and 5 a second: at most 5 + 5/s of the run's time.
    assert.ok(told <= 5 + Math.ceil(5 * seconds) + 1, `told ${told} requests in ${seconds.toFixed(2)} s`);
    assert.ok(told >= 1);
    assert.equal(told + dropped, n, `told ${told} + dropped ${dropped}`);
  });

  it('ends the proxies\' streams when the tap client goes away', async () => {
    const c = await openTap('target=ns/shop', [a, b]);
    const before = [a.telemetry.tap.tapCount, b.telemetry.tap.tapCount];
    c.close();
    await until('the proxies to close the tap', () => a.telemetry.tap.tapCount === before[0]! - 1 && b.telemetry.tap.tapCount === before[1]! - 1);
    await until('every tap gone', () => !a.telemetry.tap.active && !b.telemetry.tap.active);
  });

  it('tells a bad query and an unknown target apart, with what to do', async () => {
    const bad = tap('target=deployment/Web');
    await bad.ended;
    assert.equal(bad.status, 400);
    assert.match(bad.text, /target "deployment\/Web" is not ns\/<namespace>/);
    const status = tap('target=ns/shop&status=600');
    await status.ended;
    assert.equal(status.status, 400);
    assert.match(status.text, /status "600" must be a code/);
    const none = tap('target=workload/nobody&namespace=shop');
    await none.ended;
    assert.equal(none.status, 404);
    assert.match(none.text, /no meshed proxy of workload nobody in namespace shop/);
  });

  it('refuses a caller on the tap ALPN that is not the control plane', async () => {
    const refusedBefore = await counterValue(b, 'tsmesh_connections_refused_total', { reason: 'unauthorized' });
    const creds = issueCredentials(ca, WEB);
    const socket = tlsConnect({ host: '127.0.0.1', port: b.inboundPort, key: creds.keyPem, cert: creds.certChainPem, ca: ca.trustBundle.toPem(), ALPNProtocols: [TAP_ALPN], checkServerIdentity: () => undefined });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    assert.equal(socket.alpnProtocol, TAP_ALPN);
    socket.write(`${JSON.stringify({ maxRps: 100, showHeaders: true })}\n`);
    const kept = new Promise((_, reject) => setTimeout(() => reject(new Error('the proxy kept a tap open for a caller that is not the control plane')), 3000).unref());
    await Promise.race([once(socket, 'close'), kept]);
    await get(a, '/after-refusal');
    assert.equal(received, '');
    assert.equal(b.telemetry.tap.tapCount, 0);
    assert.equal((await counterValue(b, 'tsmesh_connections_refused_total', { reason: 'unauthorized' })) - refusedBefore, 1);
  });

  it('tsmesh tap prints a line per request head, response head and end, as linkerd tap does, until ^C', async () => {
    const before = b.telemetry.tap.tapCount;
    // No kubeconfig (HOME is the test's folder): a local mesh needs no token.
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'tap', 'workload/api', '-n', 'shop', '--admin-address', `127.0.0.1:${plane.adminPort}`], {
      env: { ...process.env, HOME: dir, KUBECONFIG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit');
    try {
      await until('the tap to open', () => b.telemetry.tap.tapCount > before, 20_000);
      await get(a, '/cli?x=1', { cookie: 'id=secret' });
      await until('the end line', () => /^end /m.test(out), 5000).catch(() => assert.fail(`stdout: ${out}\nstderr: ${err}`));
    } finally {
      child.kill('SIGINT');
    }
    const [code] = await exited;
    assert.equal(code, 0, err);
    const ids = `id=127\\.0\\.0\\.1:${b.inboundPort}:\\d+ proxy=in src=${WEB} dst=${API}`;
    assert.match(out, /^# tapping 1 proxy of workload api in namespace shop$/m);
    assert.match(out, new RegExp(`^req ${ids} :method=GET :authority=api\\.shop :path=/cli\\?x=1 .*cookie=<redacted>`, 'm'));
    assert.match(out, new RegExp(`^rsp ${ids} :status=200 latency=\\d+µs`, 'm'));
    assert.match(out, new RegExp(`^end ${ids} duration=\\d+µs response-length=15B$`, 'm'));
    assert.ok(!out.includes('secret'));
    await until('the proxy to close the tap', () => b.telemetry.tap.tapCount === before);
  });

  it('takes tap on the inbound port itself (a pod behind no Service) and still refuses anything else there as a loop', async () => {
    // As iptables redirects a connection to podIP:15006: its original destination is the inbound port.
    let own = 0;
    const c = await loopbackSidecar(ca, 'spiffe://cluster.local/ns/shop/sa/client', new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: own, family: 'IPv4' }) });
    own = c.inboundPort;
    try {
      const loops = () => counterValue(c, 'tsmesh_connections_refused_total', { reason: 'loop' });
      const creds = issueCredentials(ca, tapCallerIdentity('cluster.local'));
      const dial = (alpn: string[]) =>
        tlsConnect({ host: '127.0.0.1', port: own, key: creds.keyPem, cert: creds.certChainPem, ca: ca.trustBundle.toPem(), ALPNProtocols: alpn, checkServerIdentity: () => undefined }).on('error', () => {});
      const tapSocket = dial([TAP_ALPN]);
      await once(tapSocket, 'secureConnect');
      tapSocket.write(`${JSON.stringify({ maxRps: 10, showHeaders: false })}\n`);
      await until('the tap to open on the inbound port', () => c.telemetry.tap.tapCount === 1);
      tapSocket.destroy();
      const mixed = dial(['tsmesh/h1', TAP_ALPN]);
      await new Promise((r) => mixed.once('close', r));
      assert.equal(await loops(), 1, 'a mesh connection to the inbound port that offers more than tap is a loop');
      const plain = netConnect(own, '127.0.0.1').on('error', () => {});
      plain.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      await new Promise((r) => plain.once('close', r));
      assert.equal(await loops(), 2);
    } finally {
      await c.drain(0);
    }
  });

  it('taps one pod: only the proxy that is that pod serves it; a pod no proxy is ends with a status that says so', async () => {
    const c = await openTap(`target=pod/${API_POD}&namespace=shop`, [b]);
    await get(a, '/pod');
    const [req] = await until('the req event', () => c.of('req').length > 0 && c.of('req'));
    assert.equal(req!.proxy?.workload, 'api');
    assert.equal(req!['path'], '/pod');
    assert.equal(a.telemetry.tap.tapCount, 0, 'web\'s proxy, another pod, ended the tap');
    const none = tap('target=pod/nope&namespace=shop');
    await none.ended;
    assert.equal(none.status, 200);
    assert.match(String(none.lines.at(-1)?.['message']), /no proxy of namespace shop is pod nope/);
  });
});
