// HTTP/1.1 request rules through sidecars on loopback, from a raw client:
// what the proxy refuses (RFC 9112 3.2's Host rules, HTTP/1.0 with
// Transfer-Encoding, a malformed chunked body, a body that trickles) gets a
// 400 or 408 that says why, and the connection closes; an absolute-form
// target is routed and forwarded by its authority. Each through one sidecar
// (to an app without one) and through a sidecar pair (mTLS between them).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
// Never dialled: the test's explicit outbound listeners stand for them.
const PAIR_IP = '10.96.0.10';
const ONE_IP = '10.96.0.11';
const CANARY_IP = '10.96.0.12';
/** The sidecars' TSMESH_REQUEST_BODY_TIMEOUT here. */
const BODY_TIMEOUT_MS = 2500;

/** What a raw client got: everything the proxy sent, and whether the proxy closed the connection (not the test). */
interface Answer {
  raw: string;
  closed: boolean;
}

/** Sends `bytes` (pieces `gapMs` apart when several) and reads until the proxy closes, or `untilMs`. */
async function rawCall(port: number, bytes: string | string[], opts: { gapMs?: number; untilMs?: number } = {}): Promise<Answer> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  let raw = '';
  s.setEncoding('latin1').on('data', (d: string) => (raw += d));
  const closed = new Promise<boolean>((resolve) => {
    s.once('close', () => resolve(true));
    setTimeout(() => resolve(false), opts.untilMs ?? 5000).unref();
  });
  await once(s, 'connect');
  for (const piece of typeof bytes === 'string' ? [bytes] : bytes) {
    if (s.destroyed || raw !== '') break;
    s.write(piece);
    if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
  }
  const answer = { raw, closed: await closed };
  answer.raw = raw;
  s.destroy();
  return answer;
}

/** An app that reads each request's whole body, then answers with what it saw; it keeps each request's line. */
function recordingApp(name: string, seen: string[]): Server {
  return createServer((req: IncomingMessage, res) => {
    let length = 0;
    req.on('data', (d: Buffer) => (length += d.length));
    req.on('end', () => {
      const line = `${name} ${req.method} ${req.url} host=${req.headers.host ?? '(none)'} body=${length}`;
      seen.push(line);
      res.end(line);
    });
    req.on('error', () => undefined);
  });
}

const listening = async (s: Server): Promise<number> => {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
};

describe('HTTP/1.1 request rules through sidecars on loopback', function () {
  this.timeout(60_000);
  const stops: (() => unknown)[] = [];
  const seen: string[] = [];
  let a: Sidecar;
  /** Explicit outbound ports of A: through B to the app, to the app alone. */
  const PATHS = { 'a sidecar pair': 0, 'one sidecar': 1 } as const;
  const portOf = (path: keyof typeof PATHS): number => a.explicitOutboundPorts[PATHS[path]]!;

  before(async () => {
    const { ca } = await newRootCa();
    const app = recordingApp('app', seen);
    const canary = recordingApp('canary', seen);
    const appPort = await listening(app);
    stops.push(() => app.close());
    const canaryPort = await listening(canary);
    stops.push(() => canary.close());
    const b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
      requestBodyTimeoutMs: BODY_TIMEOUT_MS,
    });
    stops.push(() => b.drain(0));
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [
          { name: 'api', namespace: 'shop', clusterIPs: [PAIR_IP], ports: [{ port: 80, protocol: 'http', targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }] },
          {
            name: 'web',
            namespace: 'shop',
            clusterIPs: [ONE_IP],
            ports: [{ port: 80, protocol: 'http', targetPort: appPort }],
            endpoints: [{ address: '127.0.0.1' }],
            // Requests for canary.example go to the canary: a route that matches on Host.
            trafficPolicy: { routes: [{ name: 'by-host', match: { headers: { host: 'canary.example' } }, backends: [{ service: 'canary', weight: 1 }] }] },
          },
          { name: 'canary', namespace: 'shop', clusterIPs: [CANARY_IP], ports: [{ port: 80, protocol: 'http', targetPort: canaryPort }], endpoints: [{ address: '127.0.0.1' }] },
        ],
      }),
      {
        explicitOutbound: [PAIR_IP, ONE_IP].map((address) => ({ port: 0, destination: { address, port: 80, family: 'IPv4' as const } })),
        requestBodyTimeoutMs: BODY_TIMEOUT_MS,
      },
    );
    stops.push(() => a.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  beforeEach(() => seen.splice(0));

  /** A refusal: this status, x-tsmesh-error bad-request, a body that says why, the connection closed by the proxy. */
  function assertRefused(answer: Answer, status: string, why: RegExp): void {
    assert.match(answer.raw, new RegExp(`^HTTP/1\\.1 ${status}\\r\\n`), answer.raw);
    assert.match(answer.raw, /\r\nx-tsmesh-error: bad-request\r\n/, answer.raw);
    assert.match(answer.raw, /\r\nconnection: close\r\n/, answer.raw);
    assert.match(answer.raw.slice(answer.raw.indexOf('\r\n\r\n')), why, answer.raw);
    assert.ok(answer.closed, `the proxy left the connection open after ${JSON.stringify(answer.raw)}`);
  }

  const HOST_RULES: [name: string, head: string, why: RegExp][] = [
    ['two Host lines', 'GET / HTTP/1.1\r\nhost: api.shop\r\nhost: evil.example\r\n\r\n', /two Host header lines/],
    ['an HTTP/1.1 request without Host', 'GET / HTTP/1.1\r\nx-a: 1\r\n\r\n', /without a Host header/],
    ['a Host that is a list', 'GET / HTTP/1.1\r\nhost: api.shop, evil.example\r\n\r\n', /invalid Host/],
    ['a Host with userinfo', 'GET / HTTP/1.1\r\nhost: user@api.shop\r\n\r\n', /invalid Host/],
    ['a Host with a path', 'GET / HTTP/1.1\r\nhost: api.shop/x\r\n\r\n', /invalid Host/],
    ['an HTTP/1.0 request with Transfer-Encoding', 'POST / HTTP/1.0\r\nhost: api.shop\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', /HTTP\/1\.0 request with Transfer-Encoding/],
    ['a fragment in the target', 'GET /a#b HTTP/1.1\r\nhost: api.shop\r\n\r\n', /"#" or a byte above 0x7e/],
    ['a byte above 0x7e in the target', 'GET /caf\xe9 HTTP/1.1\r\nhost: api.shop\r\n\r\n', /"#" or a byte above 0x7e/],
  ];

  /** Heads that never end (no CRLF CRLF ever comes), refused at their first bad byte rather than at the header timeout. */
  const UNFINISHED: [name: string, head: string, why: RegExp][] = [
    ['a head whose lines end in a bare LF', 'GET / HTTP/1.1\nhost: api.shop\n\n', /bare LF/],
    ['a bare CR ending the request line', 'GET / HTTP/1.1\rhost: api.shop\r\n', /bare CR/],
    ['a folded header line', 'GET / HTTP/1.1\r\nhost: api.shop\r\n folded\r\n', /not "name: value"/],
    ['whitespace before a colon', 'GET / HTTP/1.1\r\nhost : api.shop\r\n', /not "name: value"/],
    ['a request line with a byte that is no token character', 'G@T / HTTP/1.1\r\n', /not an HTTP\/1\.1 request/],
  ];

  /** Chunked bodies the decoder refuses, after a good head. */
  const BAD_BODIES: [name: string, body: string, why: RegExp][] = [
    ['a bad chunk size', '5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n', /chunk size/],
    ['a bare CR in a chunk extension', '5;a\rb\r\nhello\r\n0\r\n\r\n', /extension|CR/],
    ['a trailer line without a colon', '5\r\nhello\r\n0\r\nx-checksum\r\n\r\n', /colon/],
  ];

  for (const path of Object.keys(PATHS) as (keyof typeof PATHS)[]) {
    for (const [name, head, why] of HOST_RULES) {
      it(`${name}, through ${path}: 400 saying why, the connection closed, the app never reached`, async () => {
        assertRefused(await rawCall(portOf(path), head), '400 Bad Request', why);
        assert.deepEqual(seen, []);
      });
    }

    for (const [name, head, why] of UNFINISHED) {
      it(`${name}, in a head that never ends, through ${path}: 400 saying why at once, not at the header timeout`, async () => {
        const started = performance.now();
        const answer = await rawCall(portOf(path), head);
        assertRefused(answer, '400 Bad Request', why);
        assert.ok(performance.now() - started < 2000, `answered after ${(performance.now() - started).toFixed(0)} ms`);
        assert.deepEqual(seen, []);
      });
    }

    it(`CONNECT, through ${path}: 501 saying what to do instead, and a close`, async () => {
      assertRefused(await rawCall(portOf(path), 'CONNECT db.shop:5432 HTTP/1.1\r\nhost: db.shop:5432\r\n\r\n'), '501 Not Implemented', /declare its port tcp/);
      assert.deepEqual(seen, []);
    });

    for (const [name, body, why] of BAD_BODIES) {
      it(`${name} in a request body, through ${path}: 400 saying why before the connection closes`, async () => {
        const answer = await rawCall(portOf(path), `POST /upload HTTP/1.1\r\nhost: api.shop\r\ntransfer-encoding: chunked\r\n\r\n${body}`);
        assertRefused(answer, '400 Bad Request', why);
        assert.deepEqual(seen, [], 'the app answered no request: its body never ended');
      });
    }

    it(`a body that trickles a byte a second, through ${path}: 408 at the body timeout, though never a second without a byte`, async () => {
      const started = performance.now();
      const pieces = ['POST /slow HTTP/1.1\r\nhost: api.shop\r\ncontent-length: 10\r\n\r\n', ...'0123456789'];
      const answer = await rawCall(portOf(path), pieces, { gapMs: 1000, untilMs: 15_000 });
      const after = performance.now() - started;
      assertRefused(answer, '408 Request Timeout', /stalled or trickling/);
      assert.ok(after >= BODY_TIMEOUT_MS - 100 && after < BODY_TIMEOUT_MS + 2000, `refused after ${after.toFixed(0)} ms; the body timeout is ${BODY_TIMEOUT_MS} ms and the whole body would take 10 s`);
      assert.deepEqual(seen, []);
    });
  }

  it('an absolute-form target is routed and forwarded by its authority, whatever Host says (RFC 9112 3.2.2)', async () => {
    const one = portOf('one sidecar');
    // The route matches Host canary.example: the target's authority decides, not the Host line.
    assert.match((await rawCall(one, 'GET http://canary.example/x?y=1 HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\n\r\n')).raw, /\r\n\r\ncanary GET \/x\?y=1 host=canary\.example body=0$/);
    assert.match((await rawCall(one, 'GET http://api.shop/z HTTP/1.1\r\nhost: canary.example\r\nconnection: close\r\n\r\n')).raw, /\r\n\r\napp GET \/z host=api\.shop body=0$/);
    assert.match((await rawCall(one, 'GET HTTP://Canary.example HTTP/1.0\r\n\r\n')).raw, /\r\n\r\napp GET \/ host=Canary\.example body=0$/, 'route matches compare values exactly');
    // Through the pair, the app sees the origin-form target and the authority as Host.
    assert.match((await rawCall(portOf('a sidecar pair'), 'POST http://api.shop:80/p HTTP/1.1\r\nhost: other.example\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi')).raw, /\r\n\r\napp POST \/p host=api\.shop:80 body=2$/);
    assert.deepEqual(seen, ['canary GET /x?y=1 host=canary.example body=0', 'app GET /z host=api.shop body=0', 'app GET / host=Canary.example body=0', 'app POST /p host=api.shop:80 body=2']);
  });
});
