// Protocol detection from a connection's first bytes (sniff.ts), and the
// ClientHello read that follows a TLS guess (client-hello-read.ts): tables of
// inputs -> what classify() makes of them, on a detected (auto) port and on
// a port declared HTTP, and what the bytes are taken for when no more come;
// then sniff() and readClientHello() on loopback sockets for what only time
// and segments show (bytes split across reads, silence, a close, the bytes
// given back to the next reader).
//
// On a detected port, classify() decides on the first byte for TLS (0x16),
// after the whole 24-byte HTTP/2 preface, and for HTTP/1 at the version's
// last digit of a request line (`token SP target SP HTTP/d.d`); the first
// byte that breaks that line makes it opaque. A proper prefix of either
// waits; bytes still waiting when the sniff timeout passes are HTTP/1. On a
// port declared HTTP nothing is opaque.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { MESH_ALPN, MESH_ALPN_LIST } from '../tls/alpn.js';
import { parseClientHello, type ClientHelloResult } from '../tls/client-hello.js';
import { readClientHello } from './client-hello-read.js';
import { Detector, HTTP2_PREFACE, MAX_REQUEST_LINE_SNIFF, classify, sniff, type Protocol, type Sniffed } from './sniff.js';

/** What classify() answers; 'wait' stands for undefined (more bytes needed). */
type Verdict = Protocol | 'wait';

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
const verdictOf = (head: Buffer): Verdict => classify(head) ?? 'wait';

/** RFC 9110 §9.3 defines eight methods; PATCH is RFC 5789's. */
const RFC_9110_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE'];

const REQUEST_TARGETS: Record<string, string> = { CONNECT: 'payments.shop.svc:443', OPTIONS: '*' };

function requestLine(method: string): string {
  return `${method} ${REQUEST_TARGETS[method] ?? '/api/v1/items?id=7'} HTTP/1.1\r\nhost: payments\r\n\r\n`;
}

/** The rule of a detected (auto) port, row by row: first bytes -> verdict. */
const TABLE: { name: string; input: Buffer; want: Verdict }[] = [
  // Nothing yet.
  { name: 'no bytes', input: Buffer.alloc(0), want: 'wait' },

  // HTTP/1.x: a request line, decided at its version's last digit.
  ...[...RFC_9110_METHODS, 'PATCH'].map((m) => ({ name: `${m} request`, input: latin1(requestLine(m)), want: 'http1' as const })),
  ...[...RFC_9110_METHODS, 'PATCH'].map((m) => ({ name: `"${m} " alone (the line goes on)`, input: latin1(`${m} `), want: 'wait' as const })),
  { name: 'a request line up to its version', input: latin1('GET / HTTP/1.1'), want: 'http1' },
  { name: 'a request line less its last digit', input: latin1('GET / HTTP/1.'), want: 'wait' },
  { name: 'an extension method: PROPFIND (WebDAV, RFC 4918)', input: latin1('PROPFIND /files/ HTTP/1.1\r\nhost: dav\r\ndepth: 1\r\n\r\n'), want: 'http1' },
  ...['MKCOL', 'REPORT', 'PURGE', 'SEARCH'].map((m) => ({ name: `an extension method: ${m}`, input: latin1(`${m} / HTTP/1.1\r\n\r\n`), want: 'http1' as const })),
  { name: 'a method in lower case (a method of its own; the app answers it)', input: latin1('get / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'a method of 20 letters', input: latin1('ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'a method of 100 token characters (no length limit but the line\'s)', input: latin1(`${"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz".repeat(2).slice(0, 100)} / HTTP/1.1\r\n`), want: 'http1' },
  { name: 'a method run on into another word', input: latin1('GETS / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'PRI as an HTTP/1.1 method', input: latin1('PRI / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'a lone CRLF before the request line (RFC 9112 2.2)', input: latin1('\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n'), want: 'http1' },
  { name: 'an absolute-form target', input: latin1('GET http://a.example/x HTTP/1.1\r\n'), want: 'http1' },
  { name: 'obs-text in the target', input: latin1('GET /caf\xe9 HTTP/1.1\r\n'), want: 'http1' },
  { name: 'HTTP/1.0 request', input: latin1('GET / HTTP/1.0\r\n\r\n'), want: 'http1' },
  { name: 'a version the server will refuse (it answers 400)', input: latin1('GET / HTTP/3.7\r\n'), want: 'http1' },
  { name: 'an HTTP/1.1 upgrade to h2c', input: latin1('GET / HTTP/1.1\r\nhost: a\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n\r\n'), want: 'http1' },
  { name: 'a request line longer than the sniff reads, still a request line', input: latin1(`GET /${'a'.repeat(MAX_REQUEST_LINE_SNIFF)}`), want: 'http1' },
  { name: 'G', input: latin1('G'), want: 'wait' },
  { name: 'GE (a method paused in its middle: HTTP/1 at the timeout, SETTLED below)', input: latin1('GE'), want: 'wait' },
  { name: 'OPTIONS less its last letter', input: latin1('OPTION'), want: 'wait' },
  { name: 'a target paused before its version', input: latin1('GET /api/v1/items?id'), want: 'wait' },

  // Not a request line: opaque at the first byte that breaks it.
  { name: 'a byte that is no token character in the method: G@T', input: latin1('G@T /path HTTP/1.1\r\n'), want: 'opaque' },
  { name: 'G@ (decided at the @)', input: latin1('G@'), want: 'opaque' },
  { name: 'a method followed by a tab, not a space', input: latin1('GET\t/ HTTP/1.1\r\n'), want: 'opaque' },
  { name: 'a space first', input: latin1(' GET / HTTP/1.1\r\n'), want: 'opaque' },
  { name: 'two spaces: an empty target', input: latin1('GET  HTTP/1.1\r\n'), want: 'opaque' },
  { name: 'a control byte in the target', input: latin1('GET /a\x01b HTTP/1.1\r\n'), want: 'opaque' },
  { name: 'HTTP/0.9: a line without a version', input: latin1('GET /\r\n'), want: 'opaque' },
  { name: 'a version in lower case', input: latin1('GET / http/1.1\r\n'), want: 'opaque' },
  { name: 'a version without its dot', input: latin1('GET / HTTP/11\r\n'), want: 'opaque' },
  { name: 'memcached\'s text protocol: get <key>', input: latin1('get user:42\r\n'), want: 'opaque' },
  { name: 'Redis inline command with arguments', input: latin1('SET a b\r\n'), want: 'opaque' },
  { name: 'Redis inline PING', input: latin1('PING\r\n'), want: 'opaque' },
  { name: 'Redis RESP array', input: latin1('*1\r\n$4\r\nPING\r\n'), want: 'opaque' },
  { name: 'SSH banner', input: latin1('SSH-2.0-OpenSSH_9.6\r\n'), want: 'opaque' },
  { name: 'STOMP CONNECT frame', input: latin1('CONNECT\naccept-version:1.2\nhost:broker\n\n\x00'), want: 'opaque' },
  { name: 'AMQP protocol header', input: latin1('AMQP\x00\x00\x09\x01'), want: 'opaque' },
  { name: 'PostgreSQL SSLRequest', input: Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]), want: 'opaque' },
  { name: 'Kafka request (a length first)', input: Buffer.from([0, 0, 0, 0x2a, 0, 0x12, 0, 3]), want: 'opaque' },
  { name: 'MQTT CONNECT', input: Buffer.from([0x10, 0x16, 0, 4, 0x4d, 0x51, 0x54, 0x54]), want: 'opaque' },
  { name: 'a NUL byte', input: Buffer.from([0]), want: 'opaque' },
  { name: 'binary bytes', input: Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]), want: 'opaque' },
  { name: 'an SSLv2-style ClientHello (long obsolete)', input: Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01]), want: 'opaque' },
  { name: 'a TLS alert record, not a handshake', input: Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), want: 'opaque' },

  // HTTP/2 prior knowledge: the whole 24-byte preface, nothing less.
  { name: 'the HTTP/2 preface', input: HTTP2_PREFACE, want: 'http2' },
  { name: 'the HTTP/2 preface and a SETTINGS frame', input: Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]), want: 'http2' },
  { name: 'the preface less its last byte', input: HTTP2_PREFACE.subarray(0, 23), want: 'wait' },
  { name: "the preface's first line (a whole request line, but maybe the preface)", input: latin1('PRI * HTTP/2.0\r\n'), want: 'wait' },
  { name: 'PRI', input: latin1('PRI'), want: 'wait' },
  { name: 'a preface with the wrong ending (SM replaced): its first line was a request line', input: latin1('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n'), want: 'http1' },
  { name: 'a preface naming HTTP/3 (a request line begun)', input: latin1('PRI * HTTP/3'), want: 'wait' },

  // TLS: a handshake record's first byte is enough (client-hello.ts reads the rest).
  { name: "a TLS handshake record's first byte", input: Buffer.from([0x16]), want: 'tls' },
  { name: 'a TLS 1.2 record header', input: Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), want: 'tls' },
];

/** What undecided bytes are taken for when no more come: the sniff timeout passed, or the client half-closed. */
const SETTLED: { name: string; input: Buffer; want: Protocol | 'silent' }[] = [
  { name: 'nothing (a server-first protocol)', input: Buffer.alloc(0), want: 'silent' },
  { name: 'a request head paused mid-method: GE', input: latin1('GE'), want: 'http1' },
  { name: 'a request line paused in its target', input: latin1('POST /orders?id='), want: 'http1' },
  { name: 'the HTTP/2 preface cut short', input: HTTP2_PREFACE.subarray(0, 10), want: 'http1' },
  { name: 'empty lines only', input: latin1('\r\n\r\n'), want: 'http1' },
];

/** On a port declared http or http2: the preface is HTTP/2, everything else HTTP/1.1, never opaque. */
const DECLARED: { name: string; input: Buffer; want: Verdict }[] = [
  { name: 'a request', input: latin1(requestLine('GET')), want: 'http1' },
  { name: 'PROPFIND', input: latin1('PROPFIND / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'a lowercase method', input: latin1('get / HTTP/1.1\r\n'), want: 'http1' },
  { name: 'G@T (the HTTP/1.1 server answers 400)', input: latin1('G@T /path HTTP/1.1\r\n'), want: 'http1' },
  { name: 'GE (decided at once: not the preface)', input: latin1('GE'), want: 'http1' },
  { name: 'binary bytes', input: Buffer.from([0xde, 0xad, 0xbe, 0xef]), want: 'http1' },
  { name: "a TLS hello's first byte (the HTTP/1.1 server answers 400)", input: Buffer.from([0x16, 0x03, 0x01]), want: 'http1' },
  { name: 'Redis inline PING', input: latin1('PING\r\n'), want: 'http1' },
  { name: 'P (maybe the preface)', input: latin1('P'), want: 'wait' },
  { name: 'the preface', input: HTTP2_PREFACE, want: 'http2' },
  { name: 'a preface with the wrong ending', input: latin1('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n'), want: 'http1' },
];

async function listening(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A connected pair on loopback: `client` writes, `server` is the accepted socket under test. */
async function pair(cleanup: (() => void)[]): Promise<{ client: Socket; server: Socket }> {
  const srv = createServer({ allowHalfOpen: true });
  const port = await listening(srv);
  const accepted = once(srv, 'connection') as Promise<[Socket]>;
  const client = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
  client.on('error', () => {});
  const [server] = await accepted;
  server.on('error', () => {});
  cleanup.push(() => {
    client.destroy();
    server.destroy();
    srv.close();
  });
  await once(client, 'connect').catch(() => {});
  return { client, server };
}

/** Everything the socket gives from now until `bytes` have arrived. */
async function readBytes(socket: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  socket.resume();
  for await (const chunk of socket as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    n += chunk.length;
    if (n >= bytes) break;
  }
  return Buffer.concat(chunks);
}

/** The first flight of a real Node TLS client: its ClientHello record(s). */
async function captureClientHello(opts: { alpn?: string[]; servername?: string }): Promise<Buffer> {
  const srv = createServer();
  const port = await listening(srv);
  try {
    const accepted = once(srv, 'connection') as Promise<[Socket]>;
    const client = tlsConnect({ host: '127.0.0.1', port, ...(opts.servername ? { servername: opts.servername } : {}), ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}), rejectUnauthorized: false });
    client.on('error', () => {});
    const [server] = await accepted;
    let buf = Buffer.alloc(0);
    for await (const chunk of server as AsyncIterable<Buffer>) {
      buf = Buffer.concat([buf, chunk]);
      if (parseClientHello(buf).kind !== 'incomplete') break;
    }
    client.destroy();
    server.destroy();
    return buf;
  } finally {
    srv.close();
  }
}

const isMesh = (r: ClientHelloResult): boolean => r.kind === 'client-hello' && r.alpn.some((p) => MESH_ALPN_LIST.includes(p));

describe('protocol sniffing (proxy/net/sniff.ts)', function () {
  describe('classify: first bytes -> protocol', function () {
    for (const row of TABLE) {
      it(`${row.name} -> ${row.want}`, function () {
        assert.equal(verdictOf(row.input), row.want);
      });
    }

    for (const row of SETTLED) {
      it(`no more bytes after ${row.name} -> ${row.want}`, function () {
        const d = new Detector('auto');
        assert.equal(d.push(row.input), undefined, 'undecided before');
        assert.equal(d.settle(), row.want);
      });
    }

    for (const row of DECLARED) {
      it(`on a port declared HTTP: ${row.name} -> ${row.want}`, function () {
        assert.equal(classify(row.input, 'declared-http') ?? 'wait', row.want);
      });
    }

    it('answers the same for a head as for any longer head of the same stream, once it has decided, and byte by byte as at once', function () {
      for (const row of TABLE) {
        const full = verdictOf(row.input);
        for (let n = 1; n <= row.input.length; n++) {
          const v = verdictOf(row.input.subarray(0, n));
          if (v !== 'wait') {
            assert.equal(v, full, `${row.name}: ${n} bytes say ${v}, ${row.input.length} say ${full}`);
            break;
          }
        }
        // The detector fed a byte at a time decides at the same byte, the same way.
        const d = new Detector('auto');
        let v: Protocol | undefined;
        for (let n = 0; n < row.input.length && v === undefined; n++) v = d.push(row.input.subarray(n, n + 1));
        assert.equal(v ?? 'wait', full, `${row.name}, byte by byte`);
      }
    });

    it(`decides within ${MAX_REQUEST_LINE_SNIFF} bytes whatever they are`, function () {
      // Every prefix of every known opening, extended with each byte value and then token characters.
      const openings = [HTTP2_PREFACE, latin1('\r\n'), ...[...RFC_9110_METHODS, 'PATCH'].map((m) => latin1(requestLine(m)))];
      for (const o of openings) {
        for (let n = 0; n < Math.min(o.length, 30); n++) {
          for (let b = 0; b < 256; b++) {
            const head = Buffer.concat([o.subarray(0, n), Buffer.from([b]), Buffer.alloc(MAX_REQUEST_LINE_SNIFF, 0x41)]).subarray(0, MAX_REQUEST_LINE_SNIFF);
            assert.notEqual(classify(head), undefined, JSON.stringify(head.toString('latin1', 0, 40)));
          }
        }
      }
      assert.equal(classify(latin1(`GET /${'a'.repeat(MAX_REQUEST_LINE_SNIFF - 6)}`)), undefined, 'one byte short');
    });
  });

  describe('TLS ClientHello: mesh ALPN or the app\'s own TLS (tls/client-hello.ts)', function () {
    const hellos: { name: string; opts: { alpn?: string[]; servername?: string }; alpn: string[]; serverName: string | undefined; mesh: boolean }[] = [
      { name: 'a mesh client (tsmesh/mux, tsmesh/h1)', opts: { alpn: [MESH_ALPN.mux, MESH_ALPN.http1] }, alpn: [MESH_ALPN.mux, MESH_ALPN.http1], serverName: undefined, mesh: true },
      { name: 'a mesh client for L4 (tsmesh/tcp)', opts: { alpn: [MESH_ALPN.tcp] }, alpn: [MESH_ALPN.tcp], serverName: undefined, mesh: true },
      { name: 'an app\'s HTTPS client (h2, http/1.1) with SNI', opts: { alpn: ['h2', 'http/1.1'], servername: 'payments.shop.svc' }, alpn: ['h2', 'http/1.1'], serverName: 'payments.shop.svc', mesh: false },
      { name: 'an app\'s TLS without ALPN', opts: { servername: 'db.example.org' }, alpn: [], serverName: 'db.example.org', mesh: false },
    ];
    for (const h of hellos) {
      it(`${h.name}: tls, ALPN ${JSON.stringify(h.alpn)}, ${h.mesh ? 'terminated by the proxy' : 'not the mesh\'s'}`, async function () {
        const hello = await captureClientHello(h.opts);
        assert.equal(verdictOf(hello), 'tls');
        assert.equal(verdictOf(hello.subarray(0, 1)), 'tls', 'one byte is enough');
        const r = parseClientHello(hello);
        assert.deepEqual(r, { kind: 'client-hello', alpn: h.alpn, serverName: h.serverName });
        assert.equal(isMesh(r), h.mesh);
        // Any cut short of the whole record is incomplete: readClientHello waits for the rest.
        for (const n of [1, 2, 5, 6, hello.length - 1]) assert.deepEqual(parseClientHello(hello.subarray(0, n)), { kind: 'incomplete' }, `${n} bytes`);
      });
    }

    it('a 0x16 that is not followed by TLS version 3 is not TLS, at the second byte', function () {
      assert.equal(verdictOf(Buffer.from([0x16, 0x00])), 'tls');
      assert.deepEqual(parseClientHello(Buffer.from([0x16, 0x00])), { kind: 'not-tls' });
      assert.deepEqual(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0])), { kind: 'not-tls' }, 'a handshake that is not a ClientHello');
    });
  });

  describe('sniff on a socket', function () {
    const cleanup: (() => void)[] = [];
    afterEach(function () {
      for (const fn of cleanup.splice(0)) fn();
    });

    it('decides as soon as the bytes say, without waiting for the timeout, and gives them back', async function () {
      const { client, server } = await pair(cleanup);
      const request = latin1(requestLine('GET'));
      client.write(request);
      const started = Date.now();
      const r = await sniff(server, 10_000);
      assert.ok(Date.now() - started < 5_000, 'decided long before the timeout');
      assert.equal(r.protocol, 'http1');
      assert.ok(server.isPaused(), 'left paused for the next stage');
      assert.deepEqual(await readBytes(server, request.length), request, 'the next reader sees the stream from its start');
    });

    it('waits across segments: the preface in three writes is http2, all 24 bytes given back', async function () {
      const { client, server } = await pair(cleanup);
      const result = sniff(server, 10_000);
      let settled: Sniffed | undefined;
      void result.then((r) => (settled = r));
      for (const [from, to] of [
        [0, 1],
        [1, 16],
        [16, 24],
      ] as const) {
        if (from > 0) {
          await sleep(30);
          assert.equal(settled, undefined, `still waiting after ${from} bytes`);
        }
        client.write(HTTP2_PREFACE.subarray(from, to));
      }
      const r = await result;
      assert.equal(r.protocol, 'http2');
      assert.deepEqual(r.head, HTTP2_PREFACE);
      assert.deepEqual(await readBytes(server, 24), HTTP2_PREFACE);
    });

    it('a client that says nothing is silent at the timeout (a server-first protocol)', async function () {
      const { server } = await pair(cleanup);
      const started = Date.now();
      const r = await sniff(server, 150);
      assert.equal(r.protocol, 'silent');
      assert.equal(r.head.length, 0);
      assert.ok(Date.now() - started >= 140, `after the timeout (${Date.now() - started} ms)`);
    });

    it('a head still undecided at the timeout (a method paused in its middle) is http1, and given back', async function () {
      const { client, server } = await pair(cleanup);
      client.write('GE');
      const r = await sniff(server, 150);
      assert.equal(r.protocol, 'http1');
      assert.equal(r.head.toString('latin1'), 'GE');
      assert.equal((await readBytes(server, 2)).toString('latin1'), 'GE');
    });

    it('a client that closes having sent nothing is closed', async function () {
      const { client, server } = await pair(cleanup);
      client.end();
      const r = await sniff(server, 10_000);
      assert.equal(r.protocol, 'closed');
      assert.equal(r.head.length, 0);
    });

    it('a client that half-closes after an undecided head is classified on what it sent (http1)', async function () {
      const { client, server } = await pair(cleanup);
      client.end('PU');
      const r = await sniff(server, 10_000);
      assert.equal(r.protocol, 'http1');
      assert.equal(r.head.toString('latin1'), 'PU');
    });

    it('a client that sends a whole request and half-closes is http1', async function () {
      const { client, server } = await pair(cleanup);
      client.end(requestLine('DELETE'));
      const r = await sniff(server, 10_000);
      assert.equal(r.protocol, 'http1');
    });
  });

  describe('readClientHello on a socket (net/client-hello-read.ts)', function () {
    const cleanup: (() => void)[] = [];
    afterEach(function () {
      for (const fn of cleanup.splice(0)) fn();
    });

    it('after sniff says tls on the first byte, reads a ClientHello trickled in segments and gives every byte back', async function () {
      const hello = await captureClientHello({ alpn: [MESH_ALPN.http2], servername: 'orders.shop.svc' });
      const { client, server } = await pair(cleanup);
      client.write(hello.subarray(0, 1));
      const sniffed = await sniff(server, 10_000);
      assert.equal(sniffed.protocol, 'tls');
      const reading = readClientHello(server, sniffed.head, 10_000);
      for (let i = 1; i < hello.length; i += 100) {
        await sleep(5);
        client.write(hello.subarray(i, i + 100));
      }
      const r = await reading;
      assert.equal(r.kind, 'client-hello');
      assert.ok(isMesh(r));
      assert.deepEqual(r.head, hello);
      assert.deepEqual(await readBytes(server, hello.length), hello, 'the TLS stack reads the hello from its start');
    });

    it('a ClientHello cut short is not TLS once the deadline passes', async function () {
      const hello = await captureClientHello({ alpn: [MESH_ALPN.http1] });
      const { client, server } = await pair(cleanup);
      client.write(hello.subarray(0, 10));
      const sniffed = await sniff(server, 10_000);
      assert.equal(sniffed.protocol, 'tls');
      const started = Date.now();
      const r = await readClientHello(server, sniffed.head, 150);
      assert.equal(r.kind, 'not-tls');
      assert.ok(Date.now() - started >= 140);
      assert.deepEqual(r.head, hello.subarray(0, 10));
    });
  });
});
