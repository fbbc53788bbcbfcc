// gRPC between two meshed pods in network namespaces (real kernel, the real
// CLI): @grpc/grpc-js on both ends (test/netns/grpc-service.ts), the client
// as uid 1000 in pod "client" (test/netns/grpc-client.ts: its connections
// take the redirect to its proxy), the server as uid 1000 in pod "server"
// (test/netns/grpc-app.ts), the proxies on the control plane's discovery
// stream (test/netns/stream-lab.ts), mTLS with tsmesh/h2 between them.
//
//   client  10.244.40.11  sa client
//   server  10.244.40.21  sa echo      Echo and Health on 50051
//
// Service "echo" (10.96.40.10:50051, protocol http2 as appProtocol grpc
// gives) and "echo-auto" (10.96.40.11:50051, protocol auto: HTTP/2 told by
// its preface) both go to the server pod. Skipped, with the reason printed,
// where network namespaces cannot be created.
import assert from 'node:assert/strict';
import { total } from '../../lib/prom-text.js';
import type { CallResult, Operation } from './grpc-calls.js';
import type { AppEvent } from './grpc-service.js';
import { ADMIN_PORT, APP_USER, K8S_NAMESPACE, waitFor, type Managed } from './mesh-lab.js';
import { netnsUnavailable, run } from './netns.js';
import { StreamLab, type MeshDocument } from './stream-lab.js';

const NS = K8S_NAMESPACE;
const GRPC_PORT = 50051;
const ECHO = { ip: '10.96.40.10', name: 'echo' };
const ECHO_AUTO = { ip: '10.96.40.11', name: 'echo-auto' };
const CODE = { OK: 0, CANCELLED: 1, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, INTERNAL: 13, UNAVAILABLE: 14 };

type Result = CallResult & { id: number; replies: (CallResult['replies'][number] & { padLength?: number })[] };

describe('gRPC between meshed pods in network namespaces (grpc-js client and server, real kernel)', function () {
  this.timeout(180_000);
  let lab: StreamLab | undefined;
  let app: Managed | undefined;
  const clients = new Map<string, Managed>();
  let nextId = 0;

  function meshDocument(extra: Omit<MeshDocument, 'services'> = {}): MeshDocument {
    return {
      ...extra,
      services: [ECHO, ECHO_AUTO].map((s) => ({
        name: s.name,
        namespace: NS,
        clusterIPs: [s.ip],
        ports: [{ port: GRPC_PORT, name: 'grpc', protocol: s === ECHO ? 'http2' : 'auto', targetPort: GRPC_PORT }],
        endpoints: [lab!.endpoint('server')],
      })),
    };
  }

  /** A grpc-client.ts in pod "client" with a channel to `ip`, started once per target. */
  async function clientFor(ip: string): Promise<Managed> {
    let c = clients.get(ip);
    if (c?.running) return c;
    c = lab!.spawnIn(`grpc-client-${ip}`, 'client', [process.execPath, '--import', 'tsx', 'test/netns/grpc-client.ts', `${ip}:${GRPC_PORT}`], APP_USER);
    clients.set(ip, c);
    await c.line((l) => l.includes('"ready":true'), 30_000);
    return c;
  }

  /** Makes one call from pod "client" and waits for its result. */
  async function call(o: Operation, ip = ECHO.ip): Promise<Result> {
    const c = await clientFor(ip);
    const id = ++nextId;
    c.child.stdin!.write(JSON.stringify({ ...o, id }) + '\n');
    const line = await c.line((l) => l.startsWith(`{"id":${id},`), 60_000);
    return JSON.parse(line) as Result;
  }

  const events = (): AppEvent[] =>
    (app?.stdout ?? '')
      .split('\n')
      .filter((l) => l.includes('"event":'))
      .map((l) => JSON.parse(l) as AppEvent);

  async function applyMesh(extra: Omit<MeshDocument, 'services'>, what: string, test: (c: NonNullable<Awaited<ReturnType<StreamLab['config']>>>) => boolean): Promise<void> {
    await lab!.writeMesh(meshDocument(extra));
    await lab!.waitConfig('client', what, test);
  }

  before(async function () {
    const reason = await netnsUnavailable();
    if (reason !== undefined) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    lab = await StreamLab.create({
      tag: 'g',
      subnet: '10.244.40',
      serviceCidr: '10.96.40.0/24',
      pods: [
        { name: 'client', host: 11, serviceAccount: 'client' },
        { name: 'server', host: 21, serviceAccount: 'echo' },
      ],
      mesh: { services: [] },
    });
    app = lab.spawnIn('grpc-app', 'server', [process.execPath, '--import', 'tsx', 'test/netns/grpc-app.ts', String(GRPC_PORT), 'echo'], APP_USER);
    await app.line((l) => l.includes('"ready":true'), 30_000);
    await applyMesh({}, 'services echo and echo-auto', (c) => c.services.filter((s) => s.name.startsWith('echo') && s.endpoints.length === 1).length === 2);
    console.log(`      the mesh is up in ${lab.setupMs} ms`);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && lab) console.log(lab.logs());
  });

  after(async function () {
    await lab?.destroy();
  });

  it('carries unary calls over mTLS (service port http2, and auto-detected), with metadata both ways and OK in the trailers', async function () {
    for (const ip of [ECHO.ip, ECHO_AUTO.ip]) {
      const r = await call({ op: 'unary', request: { text: `hello ${ip}` }, options: { metadata: { 'x-caller': 'client-pod' } } }, ip);
      assert.equal(r.code, CODE.OK, `${ip}: ${r.details}`);
      assert.equal(r.replies[0]?.text, `hello ${ip}`);
      assert.equal(r.replies[0]?.metadata['x-caller'], 'client-pod');
      assert.equal(r.headers['content-type'], 'application/grpc+proto');
    }
    const m = await lab!.metrics('server');
    assert.ok(total(m, 'tsmesh_requests_total', { direction: 'inbound', source_identity: lab!.identity('client'), tls: 'true', grpc_status: '0' }) >= 2, 'the server proxy saw mTLS calls from the client identity');
  });

  it('carries status codes, messages and trailing metadata of failed calls (trailers-only answers)', async function () {
    const r = await call({ op: 'unary', request: { fail: { code: CODE.NOT_FOUND, message: 'no order 42 (ünïcode, 100%)', trailers: { 'x-order': '42' } } } });
    assert.equal(r.code, CODE.NOT_FOUND);
    assert.equal(r.details, 'no order 42 (ünïcode, 100%)');
    assert.equal(r.trailers['x-order'], '42');
  });

  it('carries server, client and bidirectional streams, and a stream that fails after its messages', async function () {
    const s = await call({ op: 'server-stream', request: { text: 's', count: 20, intervalMs: 5 } });
    assert.equal(s.code, CODE.OK, s.details);
    assert.deepEqual(
      s.replies.map((x) => x.n),
      Array.from({ length: 20 }, (_, i) => i),
    );
    const c = await call({ op: 'client-stream', requests: ['a', 'b', 'c', 'd'].map((text) => ({ text })) });
    assert.equal(c.code, CODE.OK, c.details);
    assert.equal(c.replies[0]?.n, 4);
    assert.equal(c.replies[0]?.text, 'a,b,c,d');
    const b = await call({ op: 'bidi', requests: Array.from({ length: 10 }, (_, i) => ({ text: `m${i}` })) });
    assert.equal(b.code, CODE.OK, b.details);
    assert.deepEqual(
      b.replies.map((x) => x.text),
      Array.from({ length: 10 }, (_, i) => `m${i}`),
    );
    const f = await call({ op: 'server-stream', request: { count: 3, fail: { code: CODE.INTERNAL, message: 'broke after 3' } } });
    assert.equal(f.code, CODE.INTERNAL);
    assert.equal(f.details, 'broke after 3');
    assert.equal(f.replies.length, 3);
  });

  it('carries 4 MB messages both ways', async function () {
    const size = 4 * 1024 * 1024;
    const r = await call({ op: 'unary', request: { text: 'x'.repeat(size), pad: size } });
    assert.equal(r.code, CODE.OK, r.details);
    assert.equal(r.replies[0]?.received, size);
    assert.equal(r.replies[0]?.padLength, size);
  });

  it('sends the deadline on less the time spent in the mesh, and a call past it ends DEADLINE_EXCEEDED, cancelled at the server', async function () {
    const ok = await call({ op: 'unary', request: { text: 'deadline' }, options: { deadlineMs: 5000 } });
    assert.equal(ok.code, CODE.OK, ok.details);
    const left = ok.replies[0]!.deadlineMs!;
    assert.ok(left > 3000 && left < 5000, `the server had ${left} ms of the client's 5000`);
    const late = await call({ op: 'unary', request: { text: 'too-late', hang: true }, options: { deadlineMs: 500 } });
    assert.equal(late.code, CODE.DEADLINE_EXCEEDED);
    await waitFor('the server to see the late call cancelled', async () => (events().some((e) => e.event === 'cancelled' && e.text === 'too-late') ? true : undefined), 10_000, 50);
  });

  it('resets a stream the client cancels, up to the server', async function () {
    const r = await call({ op: 'server-stream', request: { text: 'cancel-me', count: 10_000, intervalMs: 10 }, options: { cancelAfterMs: 100 } });
    assert.equal(r.code, CODE.CANCELLED);
    assert.ok(r.replies.length >= 1);
    await waitFor('the server to see the stream cancelled', async () => (events().some((e) => e.event === 'cancelled' && e.text === 'cancel-me') ? true : undefined), 10_000, 50);
  });

  it("answers the mesh's own errors as gRPC statuses: no endpoint UNAVAILABLE, a denial PERMISSION_DENIED, with grpc-message and x-tsmesh-error", async function () {
    await lab!.writeMesh({ ...meshDocument(), services: meshDocument().services.map((s) => ({ ...s, endpoints: s.name === ECHO.name ? [] : s.endpoints })) });
    await lab!.waitConfig('client', 'echo without endpoints', (c) => c.services.find((s) => s.name === ECHO.name)?.endpoints.length === 0);
    const none = await call({ op: 'unary', request: { text: 'nowhere' } });
    assert.equal(none.code, CODE.UNAVAILABLE);
    assert.match(none.details, /echo\.demo has no ready endpoints/);
    assert.equal(none.trailers['x-tsmesh-error'], 'no-endpoints');
    await lab!.writeMesh(
      meshDocument({
        authorizationPolicies: [{ name: 'nobody', namespace: NS, targetRef: { kind: 'Service', name: ECHO.name }, rules: [{ serviceAccounts: [`${NS}/someone-else`] }] }],
      }),
    );
    await lab!.waitConfig('server', 'authorization policy nobody', (c) => (c.inbound.authorization ?? []).some((a) => a.name === 'nobody'));
    await lab!.waitConfig('client', 'echo with its endpoint', (c) => c.services.find((s) => s.name === ECHO.name)?.endpoints.length === 1);
    try {
      const denied = await call({ op: 'unary', request: { text: 'denied' } });
      assert.equal(denied.code, CODE.PERMISSION_DENIED);
      assert.match(denied.details, /may not call port 50051/);
      assert.equal(denied.trailers['x-tsmesh-error'], 'denied');
    } finally {
      await lab!.writeMesh(meshDocument());
      await lab!.waitConfig('server', 'no authorization policy', (c) => (c.inbound.authorization ?? []).length === 0);
    }
  });

  const retryPolicy = { name: 'echo-retries', namespace: NS, targetRef: { kind: 'Service', name: ECHO.name }, spec: { retries: { attempts: 3, retryOn: ['unavailable'], backoff: { base: '1ms', max: '5ms' } } } };

  it('retries UNAVAILABLE under a TrafficPolicy with retryOn unavailable: the client sees only the success', async function () {
    await applyMesh({ trafficPolicies: [retryPolicy] }, 'policy echo-retries', (c) => c.services.some((s) => s.name === ECHO.name && s.trafficPolicy?.name === 'echo-retries'));
    const r = await call({ op: 'unary', request: { text: 'flaky', failFirst: { key: 'flaky', times: 2, code: CODE.UNAVAILABLE } } });
    assert.equal(r.code, CODE.OK, r.details);
    assert.equal(r.replies[0]?.attempt, 3);
    const other = await call({ op: 'unary', request: { text: 'not-found', failFirst: { key: 'not-found', times: 1, code: CODE.NOT_FOUND } } });
    assert.equal(other.code, CODE.NOT_FOUND, 'a status the policy does not name goes back as it is');
  });

  it('holds those retries inside the retry budget when every call fails', async function () {
    // The budget: retries <= 20% of the calls over a sliding 10 s, plus a floor of 1 retry a second.
    await applyMesh({ mesh: { retryBudget: { ratio: 0.2, minRetriesPerSecond: 1, ttl: '10s' } }, trafficPolicies: [retryPolicy] }, 'policy echo-retries and a budget floor of 1/s', (c) =>
      c.services.some((s) => s.name === ECHO.name && s.trafficPolicy?.name === 'echo-retries') && c.mesh.retryBudget.minRetriesPerSecond === 1,
    );
    const n = 300;
    const before = events().filter((e) => e.event === 'call' && e.text?.startsWith('down-')).length;
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: n }, (_, i) => call({ op: 'unary', request: { text: `down-${i}`, failFirst: { key: `down-${i}`, times: 10, code: CODE.UNAVAILABLE } } })));
    const seconds = (Date.now() - t0) / 1000;
    assert.ok(results.every((x) => x.code === CODE.UNAVAILABLE));
    const tries = events().filter((e) => e.event === 'call' && e.text?.startsWith('down-')).length - before;
    const retried = total(await lab!.metrics('client'), 'tsmesh_retries_total', { destination_service: `${ECHO.name}.${NS}`, reason: 'unavailable' });
    console.log(`      ${n} failing calls in ${seconds.toFixed(1)} s: the server saw ${tries} tries (${(tries / n).toFixed(2)}x); ${retried} retries of UNAVAILABLE in all`);
    assert.ok(tries >= n, 'every call reached the server');
    assert.ok(tries <= n * 1.2 + 2 + seconds * 1 + 10, `the server saw ${tries} tries for ${n} calls: more than the budget allows`);
    assert.ok(tries > n, 'some calls were retried');
    await applyMesh({}, 'no traffic policy', (c) => !c.services.some((s) => s.trafficPolicy) && c.mesh.retryBudget.minRetriesPerSecond === 10);
  });

  it('counts calls by grpc_status on both proxies, and /metrics passes promtool check metrics', async function () {
    for (const [pod, direction] of [
      ['client', 'outbound'],
      ['server', 'inbound'],
    ] as const) {
      const m = await lab!.metrics(pod);
      const of = (grpc_status: string): number => total(m, 'tsmesh_requests_total', { direction, grpc_status });
      assert.ok(of('0') >= 5, `${pod}: OK calls ${of('0')}`);
      assert.ok(of('5') >= 1, `${pod}: NOT_FOUND (trailers-only)`);
      assert.ok(of('13') >= 1, `${pod}: INTERNAL (in the trailers after messages)`);
      assert.ok(of('14') >= 1, `${pod}: UNAVAILABLE`);
      assert.ok(of('1') >= 1, `${pod}: CANCELLED`);
      const text = (await lab!.curl(pod, [`http://127.0.0.1:${ADMIN_PORT}/metrics`])).body;
      const check = await run('promtool', ['check', 'metrics'], { input: text });
      if (check.code === 127) assert.fail('promtool is not installed (apt-get install prometheus)');
      assert.equal(check.code, 0, `promtool check metrics on ${pod}'s /metrics:\n${check.stdout}${check.stderr}`);
      assert.match(text, /tsmesh_requests_total\{[^}]*grpc_status="0"\}/);
    }
    assert.ok(total(await lab!.metrics('client'), 'tsmesh_requests_total', { direction: 'outbound', grpc_status: '14', response_code: '200' }) >= 1, "the client proxy's own UNAVAILABLE (no endpoints), HTTP 200");
  });
});
