// Protocol detection never downgrades a port declared http or http2 to
// opaque TCP: through a sidecar pair on loopback, bytes that cannot begin a
// request get 400 and a close from the client's sidecar and never reach the
// app; an unusual but valid request (PROPFIND, a lowercase method, a head
// paused mid-method) goes through the HTTP path; a head that never ends gets
// 408 at the header timeout. On a detected (auto) port the rule of
// net/sniff.ts holds: the same requests are HTTP, bytes that break a request
// line go as opaque TCP. The app is raw TCP and records the bytes it gets:
// through the HTTP path the proxies rewrite the head (names lowercased), as
// opaque TCP the bytes arrive as sent.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
// Never dialled: the test's explicit outbound listeners stand for them.
const PORT_IPS = { http: '10.96.0.20', http2: '10.96.0.21', auto: '10.96.0.22' } as const;
type Declared = keyof typeof PORT_IPS;
/** The permissive sidecar's pod address, never dialled: its inbound listener is told it is the original destination. */
const POD_IP = '10.244.0.7';
/** The outbound listener's sniff timeout and the HTTP server's header timeout (their defaults). */
const SNIFF_TIMEOUT_MS = 1000;
const HEADERS_TIMEOUT_MS = 10_000;

/** A raw TCP app: records what each connection brings, answers 200 to each head it sees. */
class RawApp {
  readonly server: Server;
  /** What each connection brought since the last reset (the proxies keep their connections to it across tests). */
  private readonly bytes = new Map<Socket, string>();

  constructor() {
    this.server = createServer((s) => {
      this.bytes.set(s, '');
      s.on('error', () => undefined);
      let pending = '';
      s.setEncoding('latin1').on('data', (d: string) => {
        this.bytes.set(s, (this.bytes.get(s) ?? '') + d);
        pending += d;
        while (pending.includes('\r\n\r\n')) {
          pending = pending.slice(pending.indexOf('\r\n\r\n') + 4);
          s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        }
      });
    });
  }

  /** What each connection that brought anything since the last reset brought. */
  get received(): string[] {
    return [...this.bytes.values()].filter((b) => b !== '');
  }

  reset(): void {
    for (const s of this.bytes.keys()) this.bytes.set(s, '');
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  close(): void {
    for (const s of this.bytes.keys()) s.destroy();
    this.server.close();
  }
}

/**
 * Writes the pieces (`gapMs` apart) and reads until the proxy closes, the
 * app's 200 has come whole (the connection stays open then), or `untilMs`;
 * destroys the socket after.
 */
async function rawCall(port: number, pieces: (string | Buffer)[], opts: { gapMs?: number; untilMs?: number } = {}): Promise<{ raw: string; closed: boolean }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  let raw = '';
  let closed = false;
  const done = new Promise<void>((resolve) => {
    s.setEncoding('latin1').on('data', (d: string) => {
      raw += d;
      if (/\r\n\r\nok$/.test(raw)) resolve();
    });
    s.once('close', () => {
      closed = true;
      resolve();
    });
    setTimeout(resolve, opts.untilMs ?? 5000).unref();
  });
  await once(s, 'connect');
  for (const [i, piece] of pieces.entries()) {
    if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
    if (!s.destroyed) s.write(piece);
  }
  await done;
  s.destroy();
  return { raw, closed };
}

/** The first bytes of a real TLS client: its ClientHello. */
async function clientHello(): Promise<Buffer> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection') as Promise<[Socket]>;
  const client = tlsConnect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, servername: 'api.shop', rejectUnauthorized: false });
  client.on('error', () => undefined);
  const [server] = await accepted;
  const [hello] = (await once(server, 'data')) as [Buffer];
  client.destroy();
  server.destroy();
  srv.close();
  return hello;
}

async function waitFor(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('protocol detection and ports declared http or http2, through a sidecar pair on loopback', function () {
  this.timeout(60_000);
  const app = new RawApp();
  const stops: (() => unknown)[] = [];
  let a: Sidecar;
  /** A PERMISSIVE sidecar whose own port (the app's) the config declares http: its inbound port takes plain callers. */
  let permissive: Sidecar;
  const portOf = (declared: Declared): number => a.explicitOutboundPorts[Object.keys(PORT_IPS).indexOf(declared)]!;

  before(async () => {
    const { ca } = await newRootCa();
    const appPort = await app.listen();
    stops.push(() => app.close());
    const b = await loopbackSidecar(ca, API, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
    stops.push(() => b.drain(0));
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: Object.entries(PORT_IPS).map(([protocol, ip]) => ({
          name: `api-${protocol}`,
          namespace: 'shop',
          clusterIPs: [ip],
          ports: [{ port: 80, protocol, targetPort: b.inboundPort }],
          endpoints: [{ address: '127.0.0.1', identity: API }],
        })),
      }),
      { explicitOutbound: Object.values(PORT_IPS).map((address) => ({ port: 0, destination: { address, port: 80, family: 'IPv4' as const } })) },
    );
    stops.push(() => a.drain(0));
    // Its endpoint's address is a pod's (the routing table takes no loopback address for one): the inbound port knows its port is http.
    permissive = await loopbackSidecar(
      ca,
      API,
      new FixedConfig({
        mesh: { mtlsMode: 'PERMISSIVE' },
        services: [{ name: 'api', namespace: 'shop', clusterIPs: ['10.96.0.30'], ports: [{ port: 80, protocol: 'http', targetPort: appPort }], endpoints: [{ address: POD_IP, identity: API }] }],
      }),
      { inboundOriginalDestination: () => ({ address: POD_IP, port: appPort, family: 'IPv4' }) },
    );
    stops.push(() => permissive.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  beforeEach(() => app.reset());

  /** The proxies carried the request as HTTP: the app got its head rewritten (names lowercased), with this request line. */
  function assertHttpPath(requestLine: string): void {
    assert.equal(app.received.length, 1, `one connection to the app: ${JSON.stringify(app.received)}`);
    const got = app.received[0]!;
    assert.ok(got.startsWith(`${requestLine}\r\n`), `the app got ${JSON.stringify(got)}`);
    assert.match(got, /\r\nx-case: Kept\r\n/, `names lowercased by the HTTP path: ${JSON.stringify(got)}`);
  }

  const head = (line: string): string => `${line}\r\nHost: api.shop\r\nX-Case: Kept\r\n\r\n`;

  for (const declared of ['http', 'http2'] as const) {
    describe(`a port declared ${declared}`, function () {
      for (const [name, bytes, why] of [
        ['a method with a byte that is no token character (G@T)', head('G@T /path HTTP/1.1'), /bad method|not an HTTP\/1\.1 request/],
        ['binary bytes', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x10, 0x20]), /not an HTTP\/1\.1 request/],
        ['Redis inline PING', 'PING\r\n', /not an HTTP\/1\.1 request/],
      ] as const) {
        it(`${name}: 400 saying why and a close, never opaque TCP to the app`, async () => {
          const answer = await rawCall(portOf(declared), [bytes]);
          assert.match(answer.raw, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*x-tsmesh-error: bad-request\r\n/, answer.raw);
          assert.match(answer.raw, why, answer.raw);
          assert.ok(answer.closed, 'the proxy closed the connection');
          assert.deepEqual(app.received, [], 'the app got nothing');
        });
      }

      it("a TLS ClientHello (the app's own TLS on a port declared HTTP): 400 and a close at its first bytes", async () => {
        const started = performance.now();
        const answer = await rawCall(portOf(declared), [await clientHello()]);
        assert.match(answer.raw, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*not an HTTP\/1\.1 request/, answer.raw);
        assert.ok(answer.closed);
        assert.ok(performance.now() - started < SNIFF_TIMEOUT_MS, 'at once, not at a timeout');
        assert.deepEqual(app.received, []);
      });

      for (const line of ['PROPFIND /files/ HTTP/1.1', 'get /lower HTTP/1.1', 'ABCDEFGHIJKLMNOPQRST /long-method HTTP/1.1']) {
        it(`${line.split(' ')[0]}: a valid method goes through the HTTP path to the app`, async () => {
          const answer = await rawCall(portOf(declared), [head(line)]);
          assert.match(answer.raw, /^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/, answer.raw);
          assertHttpPath(line);
        });
      }
    });
  }

  describe('a detected (auto) port', function () {
    for (const line of ['PROPFIND /files/ HTTP/1.1', 'get /lower HTTP/1.1', 'ABCDEFGHIJKLMNOPQRST /long-method HTTP/1.1']) {
      it(`${line.split(' ')[0]}: detected as HTTP/1.1, through the HTTP path`, async () => {
        const answer = await rawCall(portOf('auto'), [head(line)]);
        assert.match(answer.raw, /^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/, answer.raw);
        assertHttpPath(line);
      });
    }

    it('bytes that break a request line (G@T) go as opaque TCP, as sent', async () => {
      const sent = head('G@T /path HTTP/1.1');
      const answer = await rawCall(portOf('auto'), [sent]);
      assert.match(answer.raw, /^HTTP\/1\.1 200 OK\r\n/, answer.raw);
      await waitFor(() => app.received[0] === sent);
    });
  });

  describe('a plain caller on the inbound port of a PERMISSIVE workload, the port declared http', function () {
    it('bytes that break a request line (G@T): 400 saying why and a close, never spliced to the app', async () => {
      const answer = await rawCall(permissive.inboundPort, [head('G@T /path HTTP/1.1')]);
      assert.match(answer.raw, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*x-tsmesh-error: bad-request\r\n[\s\S]*bad method/, answer.raw);
      assert.ok(answer.closed);
      assert.deepEqual(app.received, []);
    });

    it('PROPFIND goes through the HTTP path', async () => {
      const answer = await rawCall(permissive.inboundPort, [head('PROPFIND /files/ HTTP/1.1')]);
      assert.match(answer.raw, /^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/, answer.raw);
      assertHttpPath('PROPFIND /files/ HTTP/1.1');
    });
  });

  for (const declared of ['http', 'auto'] as const) {
    it(`a head paused mid-method past the sniff timeout, on ${declared === 'auto' ? 'a detected port' : 'a port declared http'}: HTTP, through the HTTP path`, async () => {
      const answer = await rawCall(portOf(declared), ['GE', head('T /paused HTTP/1.1')], { gapMs: SNIFF_TIMEOUT_MS + 500 });
      assert.match(answer.raw, /^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/, answer.raw);
      assertHttpPath('GET /paused HTTP/1.1');
    });
  }

  it('a head that stops mid-method on a port declared http: 408 at the header timeout, and a close', async () => {
    const started = performance.now();
    const answer = await rawCall(portOf('http'), ['GE'], { untilMs: SNIFF_TIMEOUT_MS + HEADERS_TIMEOUT_MS + 3000 });
    const after = performance.now() - started;
    assert.match(answer.raw, /^HTTP\/1\.1 408 Request Timeout\r\n/, answer.raw);
    assert.ok(answer.closed);
    assert.ok(after >= HEADERS_TIMEOUT_MS && after < SNIFF_TIMEOUT_MS + HEADERS_TIMEOUT_MS + 2000, `after ${after.toFixed(0)} ms`);
    assert.deepEqual(app.received, []);
  });
});
