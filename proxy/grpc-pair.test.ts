// gRPC through a sidecar pair on loopback: @grpc/grpc-js client and server
// (test/netns/grpc-service.ts), h2c from the client to A's outbound side,
// tsmesh/h2 (mTLS) between the sidecars, h2c from B to the app. The same
// calls run between network namespaces in test/netns/grpc.test.ts.
import assert from 'node:assert/strict';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { CertificateAuthority } from '../ca/authority.js';
import { total } from '../lib/prom-text.js';
import { parseMetrics } from '../lib/prom-text.js';
import { echoClient, runOperation, type CallOptions, type Operation } from '../test/netns/grpc-calls.js'; // the calls the netns test makes too
import { startEchoServer, type AppEvent, type EchoClient, type EchoRequest, type EchoServer } from '../test/netns/grpc-service.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';
const GRPC_CODE = { OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, INTERNAL: 13, UNAVAILABLE: 14 };

// Between the sidecars over tsmesh/h2 (node:http2), and over tsmesh/h2f (frames of the proxy's own, TSMESH_H2_FRAMES).
for (const h2Frames of [false, true])
describe(`gRPC through a sidecar pair on loopback (grpc-js client and server)${h2Frames ? ', tsmesh/h2f between them' : ''}`, function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  let app: EchoServer;
  let a: Sidecar;
  let b: Sidecar;
  let aConfig: FixedConfig;
  let bConfig: FixedConfig;
  let client: EchoClient;
  const events: AppEvent[] = [];

  const service = (over: object = {}) => ({
    name: 'api',
    namespace: 'shop',
    clusterIPs: [SERVICE_IP],
    ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: app.port }],
    endpoints: [{ address: '127.0.0.1', identity: API }],
    ...over,
  });

  before(async () => {
    ({ ca } = await newRootCa());
    app = await startEchoServer('api', '127.0.0.1', 0, (e) => events.push(e));
    bConfig = new FixedConfig({});
    b = await loopbackSidecar(ca, API, bConfig, {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: app.port, family: 'IPv4' }),
    });
    aConfig = new FixedConfig({ services: [service()] });
    a = await loopbackSidecar(ca, WEB, aConfig, {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 50051, family: 'IPv4' }),
      h2Frames,
    });
    // The endpoint's port is B's inbound port: the test has no redirect to take 50051 there.
    aConfig.set({ services: [service({ ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: b.inboundPort }] })] });
    client = echoClient(`127.0.0.1:${a.outboundPort}`);
  });

  after(async () => {
    client?.close();
    await a?.drain(0);
    await b?.drain(0);
    await app?.close();
  });

  const unary = (request: EchoRequest, options?: CallOptions) => runOperation(client, { op: 'unary', request, ...(options ? { options } : {}) });
  const run = (o: Operation) => runOperation(client, o);

  it('carries a unary call: OK in the trailers, the reply, metadata both ways', async () => {
    const r = await unary({ text: 'hello' }, { metadata: { 'x-caller': 'web' } });
    assert.equal(r.code, GRPC_CODE.OK, r.details);
    assert.equal(r.replies[0]?.text, 'hello');
    assert.equal(r.replies[0]?.metadata['x-caller'], 'web');
  });

  it('carries status codes, messages and trailing metadata of errors (trailers-only answers)', async () => {
    const r = await unary({ fail: { code: GRPC_CODE.NOT_FOUND, message: 'no such order: 42 – gone', trailers: { 'x-order': '42' } } });
    assert.equal(r.code, GRPC_CODE.NOT_FOUND);
    assert.equal(r.details, 'no such order: 42 – gone');
    assert.equal(r.trailers['x-order'], '42');
  });

  it('carries server, client and bidirectional streams', async () => {
    const s = await run({ op: 'server-stream', request: { text: 's', count: 5 } });
    assert.equal(s.code, GRPC_CODE.OK, s.details);
    assert.deepEqual(s.replies.map((x) => x.n), [0, 1, 2, 3, 4]);
    const c = await run({ op: 'client-stream', requests: [{ text: 'a' }, { text: 'b' }, { text: 'c' }] });
    assert.equal(c.code, GRPC_CODE.OK, c.details);
    assert.equal(c.replies[0]?.n, 3);
    assert.equal(c.replies[0]?.text, 'a,b,c');
    const d = await run({ op: 'bidi', requests: [{ text: 'x' }, { text: 'y' }, { text: 'z' }] });
    assert.equal(d.code, GRPC_CODE.OK, d.details);
    assert.deepEqual(d.replies.map((x) => x.text), ['x', 'y', 'z']);
    const failed = await run({ op: 'server-stream', request: { count: 2, fail: { code: GRPC_CODE.INTERNAL, message: 'broke mid-stream' } } });
    assert.equal(failed.code, GRPC_CODE.INTERNAL);
    assert.equal(failed.details, 'broke mid-stream');
    assert.equal(failed.replies.length, 2);
  });

  it('carries 4 MB messages both ways', async () => {
    const size = 4 * 1024 * 1024;
    const r = await unary({ text: 'x'.repeat(size), pad: size });
    assert.equal(r.code, GRPC_CODE.OK, r.details);
    assert.equal(r.replies[0]?.received, size);
    assert.equal(r.replies[0]?.pad?.length, size);
  });

  it('sends the deadline on, less the time spent, and answers DEADLINE_EXCEEDED when it passes, cancelling the call at the app', async () => {
    const ok = await unary({ text: 'deadline' }, { deadlineMs: 5000 });
    assert.equal(ok.code, GRPC_CODE.OK, ok.details);
    const left = ok.replies[0]!.deadlineMs!;
    assert.ok(left > 4000 && left < 5000, `the app had ${left} ms of the caller's 5000`);
    events.length = 0;
    const late = await unary({ text: 'late', hang: true }, { deadlineMs: 300 });
    assert.equal(late.code, GRPC_CODE.DEADLINE_EXCEEDED);
    await waitFor(() => events.some((e) => e.event === 'cancelled' && e.text === 'late'), 'the app to see the call cancelled');
  });

  it('resets a stream the client cancels, up to the app', async () => {
    events.length = 0;
    const r = await run({ op: 'server-stream', request: { text: 'cancel-me', count: 1000, intervalMs: 20 }, options: { cancelAfterMs: 50 } });
    assert.equal(r.code, GRPC_CODE.CANCELLED);
    await waitFor(() => events.some((e) => e.event === 'cancelled' && e.text === 'cancel-me'), 'the app to see the stream cancelled');
  });

  it("answers the proxy's own errors as gRPC statuses: no endpoint is UNAVAILABLE with a message", async () => {
    aConfig.set({ services: [service({ ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: b.inboundPort }], endpoints: [] })] });
    try {
      const r = await unary({ text: 'nowhere' });
      assert.equal(r.code, GRPC_CODE.UNAVAILABLE);
      assert.match(r.details, /api\.shop has no ready endpoints/);
      assert.equal(r.trailers['x-tsmesh-error'], 'no-endpoints');
    } finally {
      aConfig.set({ services: [service({ ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: b.inboundPort }] })] });
    }
  });

  /** One call made with node:http2, which (unlike grpc-js) enforces no deadline of its own: what the mesh answers. */
  function rawCall(method: string, message: object, headers: Record<string, string>): Promise<{ head: IncomingHttpHeaders; endStream: boolean; data: number; trailers: IncomingHttpHeaders | undefined }> {
    return new Promise((resolve, reject) => {
      const session = h2connect(`http://127.0.0.1:${a.outboundPort}`);
      session.on('error', reject);
      const json = Buffer.from(JSON.stringify(message));
      const frame = Buffer.alloc(5 + json.length);
      frame.writeUInt32BE(json.length, 1);
      json.copy(frame, 5);
      const s = session.request({ ':method': 'POST', ':path': `/tsmesh.test.Echo/${method}`, 'content-type': 'application/grpc', te: 'trailers', ...headers });
      s.end(frame);
      let head: IncomingHttpHeaders = {};
      let endStream = false;
      let trailers: IncomingHttpHeaders | undefined;
      let data = 0;
      s.on('response', (h, flags) => {
        head = h;
        endStream = (flags & 0x1) !== 0;
      });
      s.on('trailers', (t) => (trailers = t));
      s.on('data', (d: Buffer) => (data += d.length));
      s.on('end', () => {
        session.close();
        resolve({ head, endStream, data, trailers });
      });
      s.on('error', (e) => {
        session.close();
        reject(e);
      });
    });
  }

  it("holds a call to its grpc-timeout itself: DEADLINE_EXCEEDED before the answer (trailers-only), or in the trailers of an answer that streams past it", async () => {
    events.length = 0;
    const before = await rawCall('Unary', { text: 'raw-late', hang: true }, { 'grpc-timeout': '200m' });
    assert.equal(before.head[':status'], 200);
    assert.equal(before.endStream, true, 'trailers-only');
    assert.equal(before.head['grpc-status'], '4');
    assert.equal(before.head['x-tsmesh-error'], 'timeout');
    assert.match(decodeURIComponent(String(before.head['grpc-message'])), /grpc-timeout/);
    await waitFor(() => events.some((e) => e.event === 'cancelled' && e.text === 'raw-late'), 'the app to see the call cancelled');
    const midway = await rawCall('ServerStream', { text: 'raw-stream', count: 100, intervalMs: 50 }, { 'grpc-timeout': '300m' });
    assert.equal(midway.head[':status'], 200);
    assert.equal(midway.endStream, false);
    assert.ok(midway.data > 0, 'messages came before the deadline');
    assert.equal(midway.trailers?.['grpc-status'], '4');
    await waitFor(() => events.some((e) => e.event === 'cancelled' && e.text === 'raw-stream'), 'the app to see the stream cancelled');
  });

  it("answers B's authorization denial as PERMISSION_DENIED", async () => {
    bConfig.set({ inbound: { authorization: [{ name: 'admins-only', rules: [{ identities: ['spiffe://cluster.local/ns/shop/sa/admin'] }] }] } });
    try {
      const r = await unary({ text: 'denied' });
      assert.equal(r.code, GRPC_CODE.PERMISSION_DENIED);
      assert.equal(r.trailers['x-tsmesh-error'], 'denied');
      assert.match(r.details, /may not call port/);
    } finally {
      bConfig.set({});
    }
  });

  /** A's config with this traffic policy on service api (none: undefined). */
  const policy = (trafficPolicy: object | undefined) =>
    aConfig.set({ services: [service({ ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: b.inboundPort }], ...(trafficPolicy ? { trafficPolicy } : {}) })] });

  it('retries UNAVAILABLE under a policy with retryOn unavailable, and not without one', async () => {
    const none = await unary({ failFirst: { key: 'no-policy', times: 1, code: GRPC_CODE.UNAVAILABLE } });
    assert.equal(none.code, GRPC_CODE.UNAVAILABLE, 'no policy: the mesh does not retry a status');
    policy({ name: 'retry-unavailable', retries: { attempts: 3, retryOn: ['unavailable'] } });
    try {
      const r = await unary({ text: 'again', failFirst: { key: 'with-policy', times: 2, code: GRPC_CODE.UNAVAILABLE } });
      assert.equal(r.code, GRPC_CODE.OK, r.details);
      assert.equal(r.replies[0]?.attempt, 3);
      const notFound = await unary({ failFirst: { key: 'not-found', times: 1, code: GRPC_CODE.NOT_FOUND } });
      assert.equal(notFound.code, GRPC_CODE.NOT_FOUND, 'a status the policy does not name is not retried');
      const retried = parseMetrics(await a.metrics.registry.metrics());
      assert.equal(total(retried, 'tsmesh_retries_total', { reason: 'unavailable' }), 2);
    } finally {
      policy(undefined);
    }
  });

  it('ejects an endpoint by its gRPC statuses: UNAVAILABLE counts as a failure, NOT_FOUND does not', async () => {
    policy({ name: 'breaker', circuitBreaker: { consecutiveFailures: 2, maxEjectionPercent: 100, ejectionTime: '30s' } });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await unary({ fail: { code: GRPC_CODE.NOT_FOUND, message: 'nope' } })).code, GRPC_CODE.NOT_FOUND);
      assert.equal((await unary({ text: 'still in' })).code, GRPC_CODE.OK);
      for (let i = 0; i < 2; i++) assert.equal((await unary({ fail: { code: GRPC_CODE.UNAVAILABLE, message: 'sick' } })).code, GRPC_CODE.UNAVAILABLE);
      const open = await unary({ text: 'ejected' });
      assert.equal(open.code, GRPC_CODE.UNAVAILABLE);
      assert.equal(open.trailers['x-tsmesh-error'], 'circuit-open');
    } finally {
      policy(undefined);
    }
  });

  it('answers RESOURCE_EXHAUSTED when the limits turn a call away', async () => {
    policy({ name: 'limits', limits: { maxRequestsPerEndpoint: 1, maxPendingRequests: 1, pendingTimeout: '100ms' } });
    try {
      const held = unary({ text: 'held', hang: true }, { deadlineMs: 2000 });
      await new Promise((r) => setTimeout(r, 100));
      const r = await unary({ text: 'over' });
      assert.equal(r.code, GRPC_CODE.RESOURCE_EXHAUSTED);
      assert.equal(r.trailers['x-tsmesh-error'], 'overloaded');
      assert.match(r.details, /overloaded/);
      await held;
    } finally {
      policy(undefined);
    }
  });

  it('counts calls by grpc_status in tsmesh_requests_total, on both sides', async () => {
    await unary({ fail: { code: GRPC_CODE.RESOURCE_EXHAUSTED, message: 'quota' } });
    await run({ op: 'server-stream', request: { count: 1, fail: { code: GRPC_CODE.INTERNAL, message: 'late failure' } } });
    const outbound = parseMetrics(await a.metrics.registry.metrics());
    const inbound = parseMetrics(await b.metrics.registry.metrics());
    for (const [side, samples, direction] of [
      ['A', outbound, 'outbound'],
      ['B', inbound, 'inbound'],
    ] as const) {
      assert.ok(total(samples, 'tsmesh_requests_total', { direction, grpc_status: '0', response_code: '200' }) >= 3, `${side}: OK calls`);
      assert.ok(total(samples, 'tsmesh_requests_total', { direction, grpc_status: '8', response_code: '200' }) >= 1, `${side}: RESOURCE_EXHAUSTED (trailers-only)`);
      assert.ok(total(samples, 'tsmesh_requests_total', { direction, grpc_status: '13', response_code: '200' }) >= 1, `${side}: INTERNAL (in the trailers)`);
    }
    assert.ok(total(outbound, 'tsmesh_requests_total', { direction: 'outbound', grpc_status: '14' }) >= 1, 'the local UNAVAILABLE');
  });
});

async function waitFor(test: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!test()) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
