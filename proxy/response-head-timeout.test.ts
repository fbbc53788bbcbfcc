// The response head timeout through sidecars on loopback: an outbound
// request, once sent whole, waits at most the timeout for its response's
// head (http/timeout.ts); past it the caller gets 504 with x-tsmesh-error
// response-head-timeout (gRPC callers: DEADLINE_EXCEEDED), the endpoint's
// connection or stream is closed, and the answer is counted as the proxy's
// own. Each path: to a raw app that never answers through one sidecar (A,
// the app without a sidecar) and through a pair (A, then B over mTLS). A
// head that comes in time ends the wait whatever the body then takes; a
// route timeout or a gRPC deadline replaces it. A's timeout is 400 ms here
// instead of its default (TSMESH_RESPONSE_HEAD_TIMEOUT, 60 s).
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { CertificateAuthority } from '../ca/authority.js';
import { waitFor } from '../lib/netns.js';
import { echoClient, runOperation, type CallOptions } from '../test/netns/grpc-calls.js'; // the calls the netns gRPC test makes too
import { startEchoServer, type AppEvent, type EchoClient, type EchoRequest, type EchoServer } from '../test/netns/grpc-service.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';
import { API, SERVICE_IP, WEB } from './testdata/shop.js';
import { PATHS, RawApp, twoPaths, type PathName, type TwoPaths } from './testdata/two-paths.js';

const HEAD_TIMEOUT_MS = 400;
/** A service through B under a 3 s route timeout. */
const SLOW_IP = '10.96.0.12';
const GRPC_DEADLINE_EXCEEDED = 4;

/** What the raw app does with a request head: nothing, or an answer after `delayMs` (with interim responses before it). */
interface Behaviour {
  answer?: string;
  delayMs?: number;
  /** Written at once, before the answer. */
  interim?: string;
}

/** Answers on `s` as `b` says. */
function answer(s: Socket, b: Behaviour): void {
  if (b.interim) s.write(b.interim);
  if (b.answer === undefined) return;
  setTimeout(() => {
    if (!s.destroyed) s.write(b.answer!);
  }, b.delayMs ?? 0);
}

/** One HTTP/1.1 exchange on a connection of its own: everything that came back until the proxy closed it, and when the head came. */
function call(port: number, request: string, pieces: { thenMs: number; text: string }[] = []): Promise<{ raw: string; headAt: number; sentAt: number }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let raw = '';
    let headAt = 0;
    let sentAt = performance.now();
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      raw += d;
      if (headAt === 0 && raw.includes('\r\n\r\n')) headAt = performance.now();
    });
    s.on('error', reject);
    s.on('close', () => resolve({ raw, headAt, sentAt }));
    s.write(request);
    let at = 0;
    for (const p of pieces) {
      at += p.thenMs;
      setTimeout(() => {
        s.write(p.text);
        sentAt = performance.now();
      }, at);
    }
  });
}

const GET = 'GET /orders HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\n\r\n';

describe('the response head timeout through sidecars on loopback', function () {
  this.timeout(60_000);
  let ca: CertificateAuthority;
  const stops: (() => unknown)[] = [];
  let behaviour: Behaviour = {};
  const app = new RawApp((s) => answer(s, behaviour));
  let a: Sidecar;
  let paths: TwoPaths;

  before(async () => {
    ({ ca } = await newRootCa());
    const appPort = await app.listen();
    stops.push(() => app.close());
    paths = await twoPaths(ca, appPort, { a: { responseHeadTimeoutMs: HEAD_TIMEOUT_MS }, through: [{ ip: SLOW_IP, service: { trafficPolicy: { timeout: '3s' } } }] });
    stops.push(() => paths.stop());
    a = paths.a;
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  afterEach(() => app.dropConnections());

  const portOf = (path: PathName): number => paths.port(path);

  async function counted(side: Sidecar, family: string, labels: RegExp): Promise<number> {
    const text = await side.metrics.registry.getSingleMetricAsString(family);
    return text
      .split('\n')
      .filter((l) => labels.test(l))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  }

  for (const path of PATHS) {
    it(`an app that never answers, through ${path}: 504 response-head-timeout after the timeout, the app's connection closed, counted`, async () => {
      behaviour = {};
      const errors = await counted(a, 'tsmesh_http_errors_total', /error="response-head-timeout"/);
      const answered504 = await counted(a, 'tsmesh_requests_total', /direction="outbound".*response_code="504"/);
      const started = performance.now();
      const got = await call(portOf(path), GET);
      const waited = got.headAt - started;
      assert.match(got.raw, /^HTTP\/1\.1 504 /, got.raw);
      assert.match(got.raw, /\r\nx-tsmesh-error: response-head-timeout\r\n/, got.raw);
      assert.match(got.raw, /sent no response head within 400 ms of the request's end \(the response head timeout, TSMESH_RESPONSE_HEAD_TIMEOUT; a route timeout or a gRPC deadline replaces it\)/);
      assert.ok(waited >= HEAD_TIMEOUT_MS - 5 && waited < HEAD_TIMEOUT_MS + 1500, `answered after ${waited.toFixed(0)} ms`);
      await waitFor(`the app's connection to be closed (${app.sockets.size} open)`, async () => (app.sockets.size === 0 ? true : undefined), 5000, 10);
      assert.equal(await counted(a, 'tsmesh_http_errors_total', /error="response-head-timeout"/), errors + 1);
      assert.equal(await counted(a, 'tsmesh_requests_total', /direction="outbound".*response_code="504"/), answered504 + 1);
    });
  }

  it('counts from the request\'s last byte: a request body that takes longer than the timeout to arrive is not cut', async () => {
    behaviour = {};
    const got = await call(portOf('one sidecar'), 'POST /orders HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\ncontent-length: 6\r\n\r\nab', [
      { thenMs: 300, text: 'cd' },
      { thenMs: 300, text: 'ef' },
    ]);
    assert.match(got.raw, /^HTTP\/1\.1 504 /, got.raw);
    const afterLastByte = got.headAt - app.lastRequestByteAt;
    assert.ok(afterLastByte >= HEAD_TIMEOUT_MS - 5, `504 ${afterLastByte.toFixed(0)} ms after the app had the whole request`);
    assert.ok(got.headAt - got.sentAt > HEAD_TIMEOUT_MS - 5);
  });

  for (const path of PATHS) {
    it(`a head in time ends the wait, through ${path}: a body that comes three timeouts later arrives whole (long polls, streams)`, async () => {
      const got = await callWithSlowBody(portOf(path));
      assert.match(got.raw, /^HTTP\/1\.1 200 /, got.raw);
      assert.ok(got.raw.endsWith('\r\n\r\nhello'), got.raw);
    });
  }

  /** The app answers its head at once and its body three timeouts later. */
  async function callWithSlowBody(port: number): Promise<{ raw: string }> {
    behaviour = { answer: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n' };
    const pending = call(port, GET);
    await waitFor('the app to have a connection', async () => (app.sockets.size > 0 ? true : undefined), 5000, 10);
    await new Promise((r) => setTimeout(r, HEAD_TIMEOUT_MS * 3));
    for (const s of app.sockets) s.write('hello');
    return pending;
  }

  it('interim responses start the wait again: a 200 after two 103s, each within the timeout, goes through', async () => {
    behaviour = { interim: 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n' };
    const pending = call(portOf('a sidecar pair'), GET);
    await waitFor('the app to have a connection', async () => (app.sockets.size > 0 ? true : undefined), 5000, 10);
    await new Promise((r) => setTimeout(r, HEAD_TIMEOUT_MS * 0.6));
    for (const s of app.sockets) s.write('HTTP/1.1 103 Early Hints\r\nlink: </b.css>; rel=preload\r\n\r\n');
    await new Promise((r) => setTimeout(r, HEAD_TIMEOUT_MS * 0.6));
    for (const s of app.sockets) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    const got = await pending;
    assert.match(got.raw, /HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/, got.raw);
    assert.equal(got.raw.match(/HTTP\/1\.1 103 /g)?.length, 2, got.raw);
  });

  it("a route's own timeout replaces it: an answer after twice the head timeout, under a 3 s route timeout, goes through", async () => {
    behaviour = { answer: 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow', delayMs: HEAD_TIMEOUT_MS * 2 };
    const got = await call(paths.throughPort(0), GET);
    assert.match(got.raw, /^HTTP\/1\.1 200 /, got.raw);
    assert.ok(got.raw.endsWith('\r\n\r\nslow'), got.raw);
  });
});

describe('the response head timeout for gRPC calls through a sidecar pair on loopback (grpc-js client and server)', function () {
  this.timeout(60_000);
  const stops: (() => unknown)[] = [];
  let app: EchoServer;
  let client: EchoClient;
  const events: AppEvent[] = [];

  before(async () => {
    const { ca } = await newRootCa();
    app = await startEchoServer('api', '127.0.0.1', 0, (e) => events.push(e));
    stops.push(() => app.close());
    const b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: app.port, family: 'IPv4' }),
    });
    stops.push(() => b.drain(0));
    const a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [{ name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 50051, name: 'grpc', protocol: 'http2', targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] }],
      }),
      { responseHeadTimeoutMs: HEAD_TIMEOUT_MS, outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 50051, family: 'IPv4' }) },
    );
    stops.push(() => a.drain(0));
    client = echoClient(`127.0.0.1:${a.outboundPort}`);
    stops.push(() => client.close());
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  const unary = (request: EchoRequest, options?: CallOptions) => runOperation(client, { op: 'unary', request, ...(options ? { options } : {}) });

  it('a call without a deadline that is never answered: DEADLINE_EXCEEDED with x-tsmesh-error response-head-timeout, the app sees it cancelled', async () => {
    const r = await unary({ text: 'hung', hang: true });
    assert.equal(r.code, GRPC_DEADLINE_EXCEEDED, r.details);
    assert.match(r.details, /no response head within 400 ms/);
    assert.equal(r.trailers['x-tsmesh-error'], 'response-head-timeout');
    assert.ok(r.ms >= HEAD_TIMEOUT_MS - 5 && r.ms < HEAD_TIMEOUT_MS + 1500, `${r.ms} ms`);
    await waitFor('the app to see the call cancelled', async () => (events.some((e) => e.event === 'cancelled' && e.text === 'hung') ? true : undefined), 5000, 10);
  });

  it("a call's own deadline replaces it: an answer after twice the timeout, within a 5 s deadline, is OK", async () => {
    const r = await unary({ text: 'slow', delayMs: HEAD_TIMEOUT_MS * 2 }, { deadlineMs: 5000 });
    assert.equal(r.code, 0, r.details);
    assert.equal(r.replies[0]?.text, 'slow');
  });

  it('a server stream whose head came in time goes on: messages three times the timeout apart all arrive', async () => {
    const r = await runOperation(client, { op: 'server-stream', request: { text: 'tick', count: 3, intervalMs: HEAD_TIMEOUT_MS * 1.5 } });
    assert.equal(r.code, 0, r.details);
    assert.equal(r.replies.length, 3);
  });
});
