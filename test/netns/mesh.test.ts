// The mesh end to end on the real kernel: `tsmesh control-plane` in its own
// namespace, two pods with `tsmesh init` redirects and `tsmesh proxy` as uid
// 1337, a namespace without a sidecar, all on one bridge
// (test/netns/mesh-lab.ts). The same scenarios as proxy/sidecar.test.ts, but
// through iptables, SO_ORIGINAL_DST, certificates from the CA over the
// network and the real CLI, with curl, h2load and promtool as the outside
// programs. Skipped, with the reason printed, where namespaces cannot be
// created. The rotation soak (about 3 minutes) runs only with
// TSMESH_LONG_TESTS=1 or in CI (CI=true).
import assert from 'node:assert/strict';
import { MESH_HANDSHAKE_TIMEOUT_MS } from '../../proxy/inbound/listener.js';
import type { LoadOptions, LoadSummary, RequestRecord } from './mesh-client.js';
import {
  ADDR,
  ADMIN_PORT,
  APP_ECHO_PORT,
  APP_USER,
  IDENTITY,
  MeshLab,
  SERVICE_B,
  SERVICE_IP,
  sleep,
  type Managed,
} from './mesh-lab.js';
import { netnsUnavailable, run } from './netns.js';
import { find, parseMetrics, type Sample } from '../../lib/prom-text.js';


const sum = (samples: Sample[]): number => samples.reduce((n, s) => n + s.value, 0);

/** Starts mesh-client.ts `load` in pod a as an ordinary uid. */
function startLoad(lab: MeshLab, opts: LoadOptions): Managed {
  return lab.spawnIn('load-a', 'a', [process.execPath, '--import', 'tsx', 'test/netns/mesh-client.ts', 'load', JSON.stringify(opts)], APP_USER);
}

async function loadSummary(load: Managed, timeoutMs: number): Promise<LoadSummary> {
  const line = await load.line((l) => l.startsWith('{"sent":'), timeoutMs);
  return JSON.parse(line) as LoadSummary;
}

const describeFailures = (s: LoadSummary): string => JSON.stringify(s.failures.slice(0, 5));

/** Metric names DESIGN.md fixes for the proxy's /metrics, with their types. */
const DESIGN_METRICS: Record<string, 'counter' | 'histogram' | 'gauge'> = {
  tsmesh_requests_total: 'counter',
  tsmesh_request_duration_seconds: 'histogram',
  tsmesh_retries_total: 'counter',
  tsmesh_retry_budget_exhausted_total: 'counter',
  tsmesh_endpoint_ejections_total: 'counter',
  tsmesh_faults_injected_total: 'counter',
  tsmesh_tcp_connections_opened_total: 'counter',
  tsmesh_tcp_connections_closed_total: 'counter',
  tsmesh_tcp_sent_bytes_total: 'counter',
  tsmesh_tcp_received_bytes_total: 'counter',
  tsmesh_identity_cert_expiration_timestamp_seconds: 'gauge',
  tsmesh_config_updates_total: 'counter',
};

async function skipUnlessNetns(ctx: Mocha.Context): Promise<void> {
  const reason = await netnsUnavailable();
  if (reason !== undefined) {
    console.log(`      skipped: ${reason}`);
    ctx.skip();
  }
}

describe('the mesh in network namespaces: control plane, two meshed pods, a plain client (real kernel)', function () {
  this.timeout(120_000);
  let lab: MeshLab | undefined;

  before(async function () {
    await skipUnlessNetns(this);
    lab = await MeshLab.create({ drainDuration: '10s' });
    console.log(`      the mesh is up in ${lab.setupMs} ms`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it("carries a request from a (curl as uid 1000) to service b's ClusterIP through both proxies", async function () {
    const r = await lab!.curl('a', [`http://${SERVICE_IP}/hello?from=a`], APP_USER);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    const body = JSON.parse(r.body) as { app: string; protocol: string; path: string; peer: string };
    // b's app was reached over loopback: by b's proxy, not by a directly.
    assert.deepEqual({ app: body.app, protocol: body.protocol, path: body.path, peer: body.peer }, { app: 'b', protocol: '1.1', path: '/hello?from=a', peer: '127.0.0.1' });
    assert.equal(lab!.appRequests('/hello').length, 1);
    assert.equal(await lab!.clusterIpLeaks(), 0, 'a packet addressed to the ClusterIP left pod a');
  });

  it("b's /metrics record it inbound, tls=\"true\", from a's SPIFFE ID; a's record it outbound to service b", async function () {
    const b = parseMetrics(await lab!.admin('b', '/metrics'));
    const inbound = find(b, 'tsmesh_requests_total', { direction: 'inbound', source_identity: IDENTITY.a, destination_identity: IDENTITY.b, response_code: '200', tls: 'true' });
    assert.ok(sum(inbound) >= 1, JSON.stringify(find(b, 'tsmesh_requests_total', {})));
    const a = parseMetrics(await lab!.admin('a', '/metrics'));
    const outbound = find(a, 'tsmesh_requests_total', {
      direction: 'outbound',
      source_identity: IDENTITY.a,
      destination_identity: IDENTITY.b,
      destination_service: SERVICE_B,
      response_code: '200',
      tls: 'true',
    });
    assert.ok(sum(outbound) >= 1, JSON.stringify(find(a, 'tsmesh_requests_total', {})));
    assert.ok(find(a, 'tsmesh_request_duration_seconds_count', { direction: 'outbound', destination_service: SERVICE_B }).length > 0);
    // Each proxy got its certificate from the CA over the network.
    for (const samples of [a, b]) {
      assert.ok(sum(find(samples, 'tsmesh_identity_cert_renewals_total', { result: 'success' })) >= 1);
      assert.ok(sum(find(samples, 'tsmesh_identity_cert_expiration_timestamp_seconds', {})) > Date.now() / 1000);
    }
  });

  it('refuses a plain request from the plain namespace to b:8080 in STRICT and serves it in PERMISSIVE', async function () {
    const url = `http://${ADDR.b}:8080/plain`;
    const strict = await lab!.curl('plain', [`${url}?mode=strict`]);
    // The proxy answers plain HTTP itself, saying what the port needs.
    assert.equal(strict.status, 403, `served in STRICT: ${strict.status} ${strict.body}`);
    assert.match(strict.body, /accepts only mutual TLS from a meshed client/);
    assert.equal(lab!.appRequests('/plain?mode=strict').length, 0);
    const refused = parseMetrics(await lab!.admin('b', '/metrics'));
    assert.ok(sum(find(refused, 'tsmesh_connections_refused_total', { direction: 'inbound', reason: 'plaintext' })) >= 1);

    await lab!.applyConfig('b', lab!.bConfig({ mtlsMode: 'PERMISSIVE' }));
    try {
      const permissive = await lab!.curl('plain', [`${url}?mode=permissive`]);
      assert.equal(permissive.status, 200, `${permissive.error} ${permissive.body}`);
      assert.equal((JSON.parse(permissive.body) as { peer: string }).peer, '127.0.0.1');
      assert.equal(lab!.appRequests('/plain?mode=permissive').length, 1);
    } finally {
      await lab!.applyConfig('b', lab!.bConfig({ mtlsMode: 'STRICT' }));
    }
    const again = await lab!.curl('plain', [`${url}?mode=strict-again`]);
    assert.equal(again.status, 403, 'STRICT again after the config went back');
  });

  it('carries HTTP/2 with prior knowledge (curl, then a bounded h2load run) over mTLS with zero failures', async function () {
    const inboundFromA = async (): Promise<number> =>
      sum(find(parseMetrics(await lab!.admin('b', '/metrics')), 'tsmesh_requests_total', { direction: 'inbound', source_identity: IDENTITY.a, tls: 'true', response_code: '200' }));
    const before = await inboundFromA();
    const r = await lab!.curl('a', ['--http2-prior-knowledge', `http://${SERVICE_IP}/h2?from=curl`], APP_USER);
    assert.equal(r.status, 200, `${r.error} ${r.body}`);
    assert.equal(r.httpVersion, '2');
    assert.equal((JSON.parse(r.body) as { protocol: string }).protocol, '2.0');

    const h2load = await lab!.exec('a', ['h2load', '-n', '400', '-c', '4', '-m', '8', '-t', '1', `http://${SERVICE_IP}/h2load`], APP_USER, { timeoutMs: 60_000 });
    if (h2load.code === 127) assert.fail('h2load is not installed (apt-get install nghttp2-client)');
    const out = h2load.stdout;
    assert.match(out, /Application protocol: h2c/, out);
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
    assert.ok(m, out);
    assert.deepEqual(m.slice(1).map(Number), [400, 400, 400, 400, 0, 0, 0], out);
    assert.match(out, /status codes: 400 2xx, 0 3xx, 0 4xx, 0 5xx/, out);
    assert.equal(lab!.appRequests('/h2load').filter((q) => q.protocol === '2.0').length, 400);
    // HTTP/2 is handled at L7 (DESIGN.md, data plane): b counts each request, from a's identity, over mTLS.
    assert.equal((await inboundFromA()) - before, 401);
  });

  it('echoes the opaque TCP port 9000 through the mesh', async function () {
    const payload = 'opaque bytes over the mesh';
    const r = await lab!.exec('a', [process.execPath, '--import', 'tsx', 'test/netns/mesh-client.ts', 'echo', SERVICE_IP, String(APP_ECHO_PORT), payload], APP_USER);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { got: payload });
    assert.ok(lab!.app!.stdout.includes('"event":"echo","peer":"127.0.0.1"'));
    const b = parseMetrics(await lab!.admin('b', '/metrics'));
    assert.ok(sum(find(b, 'tsmesh_tcp_received_bytes_total', { direction: 'inbound' })) >= payload.length);
  });

  it("refuses b's certificate when a expects another identity for the endpoint: 503, and b's app sees nothing", async function () {
    const impostor = IDENTITY.b.replace(/sa\/b$/, 'sa/not-b');
    await lab!.applyConfig('a', lab!.aConfig({ bIdentity: impostor }));
    try {
      const r = await lab!.curl('a', ['-i', `http://${SERVICE_IP}/wrong-identity`], APP_USER);
      assert.equal(r.status, 503, r.body);
      assert.match(r.body, /x-tsmesh-error: connect-failure/i);
      assert.ok(r.body.includes(impostor), r.body);
      assert.equal(lab!.appRequests('/wrong-identity').length, 0);
    } finally {
      await lab!.applyConfig('a', lab!.aConfig());
    }
    const back = await lab!.curl('a', [`http://${SERVICE_IP}/right-identity`], APP_USER);
    assert.equal(back.status, 200, back.body);
  });

  it("/metrics of both proxies passes promtool check metrics and holds DESIGN.md's metric names", async function () {
    for (const pod of ['a', 'b'] as const) {
      const text = await lab!.admin(pod, '/metrics');
      const check = await run('promtool', ['check', 'metrics'], { input: text });
      if (check.code === 127) assert.fail('promtool is not installed (apt-get install prometheus)');
      assert.equal(check.code, 0, `promtool check metrics on ${pod}'s /metrics:\n${check.stdout}${check.stderr}`);
      for (const [name, type] of Object.entries(DESIGN_METRICS)) assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${pod}: no ${type} ${name}`);
    }
  });

  // The inbound listener accepts with allowHalfOpen and hands the raw socket to
  // a TLS server; when the client closes during the handshake (as a does on the
  // wrong identity above), TLS raises no event for the FIN, so the proxy drops
  // an unfinished handshake after MESH_HANDSHAKE_TIMEOUT_MS (and at once on drain).
  it('closes the inbound connection of an mTLS handshake the client gave up on', async function () {
    await lab!.applyConfig('a', lab!.aConfig({ bIdentity: IDENTITY.b.replace(/sa\/b$/, 'sa/not-b') }));
    try {
      assert.equal((await lab!.curl('a', [`http://${SERVICE_IP}/aborted-handshake`], APP_USER)).status, 503);
    } finally {
      await lab!.applyConfig('a', lab!.aConfig());
    }
    await sleep(MESH_HANDSHAKE_TIMEOUT_MS + 1000);
    assert.deepEqual(await lab!.sockets('b', 'close-wait', 15006), []);
  });

  // Last: it stops b's proxy.
  it("SIGTERM to b's proxy with requests in flight: b has left the service first, and every request in flight completes", async function () {
    // In a cluster, a terminating pod's endpoint is removed from the Service
    // while kubelet sends SIGTERM; new requests go to other endpoints, and the
    // proxy's job is to finish the ones it already has. Here: a steady load
    // from a's app (8 workers, each request held 1.5 s by b's app, staggered
    // so that requests end all the time, not in waves); after 2 s
    // the app stops starting requests and b's endpoint is removed from a's
    // config (service b has no other endpoint, so a new request would get a
    // 503 for want of endpoints, not because of the drain); then b's proxy
    // gets SIGTERM. Every request, above all those in flight at the SIGTERM,
    // must succeed; b's proxy must refuse new connections while draining and
    // exit 0 once the last request is done, well before its 10 s drain limit.
    // b's proxy starts afresh, so that nothing left over from the tests above
    // (see the pending test before this one) holds the drain.
    await lab!.restartProxy('b');
    const load = startLoad(lab!, {
      origin: `http://${SERVICE_IP}`,
      path: '/slow?ms=1500&i={i}',
      mode: 'closed',
      concurrency: 8,
      staggerMs: 1500 / 8,
      durationMs: 10_000,
      maxRequests: 200,
      timeoutMs: 15_000,
      timeline: true,
    });
    await load.line((l) => l.startsWith('{"started":'), 30_000);
    await sleep(2000);
    load.child.stdin!.write('stop\n');
    await load.line((l) => l.startsWith('{"stopped":'), 5000);
    await lab!.writeConfig('a', lab!.aConfig({ bEndpoint: false }));
    const proxyB = lab!.proxies.b!;
    const sigtermAt = Date.now();
    proxyB.signal('SIGTERM');

    // While it drains, a new connection to b is refused (the listeners are closed).
    await sleep(200);
    assert.ok(proxyB.running, 'b\'s proxy exited before its requests in flight were done');
    const during = await lab!.curl('plain', [`http://${ADDR.b}:8080/during-drain`]);
    assert.equal(during.status, 0, `b's proxy accepted a new connection while draining: ${during.status}`);
    assert.equal(during.code, 7, `curl: ${during.error}`); // could not connect

    const exit = await Promise.race([proxyB.exited, sleep(9000).then(() => undefined)]);
    const drainedIn = Date.now() - sigtermAt;
    assert.ok(exit, `b's proxy still running ${drainedIn} ms after SIGTERM`);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(proxyB.stderr, /"drained"/);

    const summary = await loadSummary(load, 20_000);
    const timeline: RequestRecord[] = summary.timeline ?? [];
    const inFlight = timeline.filter((q) => q.start <= sigtermAt && q.end >= sigtermAt);
    console.log(`      ${summary.sent} requests, ${summary.failed} failed; ${inFlight.length} in flight at SIGTERM; b's proxy exited ${drainedIn} ms after it`);
    assert.equal(summary.failed, 0, describeFailures(summary));
    assert.ok(inFlight.length >= 4, `only ${inFlight.length} requests in flight at SIGTERM`);
    assert.ok(inFlight.every((q) => q.status === 200));
    assert.ok(drainedIn < 8000, `drain took ${drainedIn} ms`);
  });
});

describe('certificate rotation under continuous load (long: TSMESH_LONG_TESTS=1 or CI)', function () {
  const ROTATION_LOAD_MS = 180_000;
  this.timeout(ROTATION_LOAD_MS + 180_000);
  let lab: MeshLab | undefined;

  before(async function () {
    if (process.env.TSMESH_LONG_TESTS !== '1' && process.env.CI !== 'true') {
      console.log('      skipped: the rotation soak takes about 3 minutes; set TSMESH_LONG_TESTS=1 to run it (CI runs it)');
      this.skip();
    }
    await skipUnlessNetns(this);
    lab = await MeshLab.create({ certTtl: '1m' });
    console.log(`      the mesh is up in ${lab.setupMs} ms`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it('keeps serving a fixed rate for 3 minutes with zero failures while both proxies renew 1-minute certificates', async function () {
    const renewals = async (pod: 'a' | 'b'): Promise<number> =>
      sum(find(parseMetrics(await lab!.admin(pod, '/metrics')), 'tsmesh_identity_cert_renewals_total', { result: 'success' }));
    const expiry = async (pod: 'a' | 'b'): Promise<number> =>
      sum(find(parseMetrics(await lab!.admin(pod, '/metrics')), 'tsmesh_identity_cert_expiration_timestamp_seconds', {}));
    const before = { a: await renewals('a'), b: await renewals('b'), aExpiry: await expiry('a'), bExpiry: await expiry('b') };
    // 20 operations a second: HTTP on keep-alive connections, and every 4th a
    // TCP echo on a new connection, hence a new mTLS handshake between the
    // proxies with whatever certificates are in force at that moment.
    const rate = 20;
    const load = startLoad(lab!, {
      origin: `http://${SERVICE_IP}`,
      path: '/rotation?i={i}',
      mode: 'rate',
      ratePerSecond: rate,
      durationMs: ROTATION_LOAD_MS,
      maxRequests: (rate * ROTATION_LOAD_MS) / 1000,
      timeoutMs: 10_000,
      tcp: { host: SERVICE_IP, port: APP_ECHO_PORT, every: 4 },
    });
    const summary = await loadSummary(load, ROTATION_LOAD_MS + 60_000);
    const after = { a: await renewals('a'), b: await renewals('b'), aExpiry: await expiry('a'), bExpiry: await expiry('b') };
    console.log(
      `      ${summary.sent} operations (${summary.http} HTTP, ${summary.tcp} TCP) in ${((summary.endedAt - summary.startedAt) / 1000).toFixed(0)} s, ${summary.failed} failed; ` +
        `renewals a ${before.a} -> ${after.a}, b ${before.b} -> ${after.b}`,
    );
    assert.equal(summary.failed, 0, describeFailures(summary));
    assert.ok(summary.sent >= rate * (ROTATION_LOAD_MS / 1000) * 0.95, `only ${summary.sent} operations were sent`);
    assert.ok(after.a - before.a >= 2, `a renewed ${after.a - before.a} times`);
    assert.ok(after.b - before.b >= 2, `b renewed ${after.b - before.b} times`);
    assert.ok(after.aExpiry > before.aExpiry && after.bExpiry > before.bExpiry, 'the certificates in force did not change');
    const admin = await lab!.curl('plain', [`http://${ADDR.b}:${ADMIN_PORT}/ready`]);
    assert.equal(admin.status, 200);
  });
});
