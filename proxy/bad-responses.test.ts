// Malformed responses through sidecars on loopback: an app (a raw
// node:net server) that answers each request with bytes the test scripts,
// behind one sidecar (the caller in plain HTTP to its inbound listener) and
// behind a pair (the caller to A's outbound listener, tsmesh/mux over mTLS
// to B, B to the app). Whatever the app sends, the caller's exchange ends
// within a bounded time: a 502 when the response head had not gone on yet,
// else a message cut short (HTTP/1.1: the connection closed before the body's
// end; HTTP/2: RST_STREAM), so that it can never be taken for a whole one;
// and the app's connection is closed, never kept for another request.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect, constants, createServer as createH2cServer } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { waitFor } from '../lib/netns.js';
import type { Sidecar } from './sidecar.js';
import { PATHS, RawApp, twoPaths, type PathName, type TwoPaths } from './testdata/two-paths.js';

/** How long a caller waits for the end of its exchange before the test calls it hung. */
const HUNG_MS = 5000;

/** What the app sends for a request: pieces written one after another, `pauseMs` apart; then it closes or keeps the connection. */
interface Script {
  writes: string[];
  pauseMs?: number;
  close?: boolean | undefined;
}

/** Plays `script` on `s`: its pieces one after another, `pauseMs` apart; then it closes or keeps the connection. */
async function play(s: Socket, script: Script): Promise<void> {
  for (const [i, w] of script.writes.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, script.pauseMs ?? 100));
    if (s.destroyed) return;
    s.write(w, 'latin1');
  }
  if (script.close) s.end();
}

interface Outcome {
  /** Everything the caller received. */
  raw: string;
  /** How the exchange ended: the proxy closed or reset the connection, or nothing happened for HUNG_MS. */
  end: 'closed' | 'hung';
}

/** An HTTP/1.1 request on a connection of its own to `port`; what came back, until the proxy ends the connection (or HUNG_MS). */
function h1Call(port: number, request = 'GET /order HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\n\r\n'): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let raw = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (raw += d));
    s.on('error', () => undefined);
    const t = setTimeout(() => {
      s.destroy();
      resolve({ raw, end: 'hung' });
    }, HUNG_MS);
    s.once('close', () => {
      clearTimeout(t);
      resolve({ raw, end: 'closed' });
    });
    s.write(request);
  });
}

/**
 * Asserts that `raw`, all a caller got before its connection closed, cannot
 * be taken for a whole response: nothing at all (the head had gone to the
 * server, which writes it with the body's first bytes, when the body broke),
 * a 502 of the proxy's (with `reason`, when given), or a head whose body is
 * cut short (a chunked one without its last chunk, or fewer bytes than its
 * Content-Length).
 */
function assertNotWhole(raw: string, reason?: string): 'nothing' | 'a 502' | 'cut short' {
  if (raw === '') return 'nothing';
  const end = raw.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no whole response head: ${JSON.stringify(raw)}`);
  const head = raw.slice(0, end);
  const body = raw.slice(end + 4);
  if (/^HTTP\/1\.1 502 /.test(head)) {
    assert.match(head, new RegExp(`\r\nx-tsmesh-error: ${reason ?? '[a-z-]+'}(\r\n|$)`), head);
    return 'a 502';
  }
  assert.match(head, /^HTTP\/1\.1 200 /, head);
  const length = /\r\ncontent-length: (\d+)/i.exec(head);
  if (length) assert.ok(body.length < Number(length[1]), `a whole body of ${length[1]} bytes: ${JSON.stringify(raw)}`);
  else {
    assert.match(head, /\r\ntransfer-encoding: chunked/i, head);
    assert.doesNotMatch(body, /(^|\r\n)0\r\n(?:[^\r]*\r\n)*\r\n$/, `a whole chunked body: ${JSON.stringify(raw)}`);
  }
  return 'cut short';
}

const CHUNKED_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n';

/** Malformed responses, as the head and the body that follows it. */
const BAD_BODIES: Record<string, { head: string; body: string; close?: boolean }> = {
  'a bad chunk size': { head: CHUNKED_HEAD, body: '5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n' },
  'a chunk size that overflows': { head: CHUNKED_HEAD, body: '5\r\nhello\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n' },
  'a chunk not followed by CRLF': { head: CHUNKED_HEAD, body: '5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n' },
  'a bare CR in a chunk extension': { head: CHUNKED_HEAD, body: '5;a\rb\r\nhello\r\n0\r\n\r\n' },
  'a close in the middle of a chunk': { head: CHUNKED_HEAD, body: '5\r\nhello\r\n10\r\nonly a part', close: true },
  'a body shorter than its Content-Length, then a close': { head: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n', body: 'forty bytes, not a hundred.............', close: true },
};

describe('malformed responses through sidecars on loopback', function () {
  this.timeout(60_000);
  let ca: CertificateAuthority;
  const stops: (() => unknown)[] = [];
  let script: Script = { writes: [] };
  const app = new RawApp((s) => void play(s, script));
  let paths: TwoPaths;
  let a: Sidecar;

  before(async () => {
    ({ ca } = await newRootCa());
    const appPort = await app.listen();
    stops.push(() => app.close());
    paths = await twoPaths(ca, appPort);
    stops.push(() => paths.stop());
    a = paths.a;
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  // A test that failed may leave the app's connection open: the next one starts without it.
  afterEach(() => app.dropConnections());

  const portOf = (path: PathName): number => paths.port(path);

  async function appLetGo(): Promise<void> {
    await waitFor(`the app's connections to be closed (${app.sockets.size} open)`, async () => (app.sockets.size === 0 ? true : undefined), HUNG_MS, 10);
  }

  /** The count of tsmesh_http_errors_total{error=`reason`} of `side`. */
  async function errorsCounted(side: Sidecar, reason: string): Promise<number> {
    const text = await side.metrics.registry.getSingleMetricAsString('tsmesh_http_errors_total');
    return [...text.matchAll(new RegExp(`error="${reason}"\\} (\\d+)`, 'g'))].reduce((n, m) => n + Number(m[1]), 0);
  }

  /** Heads the proxy refuses, each in one write or in pieces; the app keeps its connection open after them. */
  const BAD_HEADS: Record<string, string[]> = {
    'a head whose lines end in bare LFs': ['HTTP/1.1 200 OK\ncontent-length: 5\n\nhello'],
    'a head whose status line ends in a bare LF (a parser that wants CRLF reads its next field as the reason phrase)': ['HTTP/1.1 200 OK\ncontent-length: 5\r\n\r\nhello'],
    'a head with a bare LF at the end of a later piece': ['HTTP/1.1 200 OK\r\nx-a: 1\r', '\n', 'content-length: 5\n\nhello'],
    'a bare LF at the start of a piece': ['HTTP/1.1 200 OK\r\nx-a: 1', '\ncontent-length: 5\r\n\r\nhello'],
    'a 101 to a request that asked for no upgrade': ['HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi'],
  };

  for (const [name, writes] of Object.entries(BAD_HEADS)) {
    for (const path of PATHS) {
      it(`${name}, through ${path}: 502 at once, the app's connection closed`, async () => {
        const before = await errorsCounted(a, 'bad-response');
        script = { writes, pauseMs: 50 };
        const started = performance.now();
        const got = await h1Call(portOf(path));
        assert.equal(got.end, 'closed', `the caller was left waiting: ${JSON.stringify(got.raw)}`);
        assert.equal(assertNotWhole(got.raw, 'bad-response'), 'a 502', got.raw);
        assert.match(got.raw, name.startsWith('a 101') ? /101 Switching Protocols to a request that asked for no upgrade/ : /malformed response head: a line ends in a bare LF, not CRLF \(RFC 9112 2\.2\)/);
        assert.ok(performance.now() - started < 1000, 'answered as soon as the bad bytes came');
        await appLetGo();
        // The proxy the caller dialled counts its own 502 (through the pair, B's is passed on as B's).
        if (path === 'one sidecar') assert.equal(await errorsCounted(a, 'bad-response'), before + 1);
      });
    }
  }

  for (const [name, bad] of Object.entries(BAD_BODIES)) {
    for (const path of PATHS) {
      it(`${name}, the body after the head has gone on, through ${path}: the caller's message cut short, the app's connection closed`, async () => {
        script = { writes: [bad.head, bad.body], pauseMs: 150, close: bad.close };
        const got = await h1Call(portOf(path));
        assert.equal(got.end, 'closed', `the caller was left waiting: ${JSON.stringify(got.raw)}`);
        // Whatever of it the caller got: nothing (through the pair the break can reach A with the head), a 502 (B had sent A nothing), or a head and part of the body.
        assertNotWhole(got.raw);
        await appLetGo();
      });

      it(`${name}, head and body in one write, through ${path}: ${bad.close ? 'cut short' : '502'}, the app's connection closed`, async () => {
        script = { writes: [bad.head + bad.body], close: bad.close };
        const got = await h1Call(portOf(path));
        assert.equal(got.end, 'closed', `the caller was left waiting: ${JSON.stringify(got.raw)}`);
        // A close comes after the read with the head, which has gone on by then.
        assert.equal(assertNotWhole(got.raw, 'bad-response'), bad.close ? 'cut short' : 'a 502', got.raw);
        await appLetGo();
      });
    }
  }
});

describe('a response cut short to an HTTP/1.0 client, through a sidecar on loopback', function () {
  this.timeout(30_000);
  const stops: (() => unknown)[] = [];
  let port = 0;

  before(async () => {
    const { ca } = await newRootCa();
    // The app answers in chunks and stops in the middle of its second one.
    const app = createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => {
        s.write(`${CHUNKED_HEAD}5\r\nhello\r\n`);
        setTimeout(() => s.end('10\r\nonly a part'), 100);
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    stops.push(() => new Promise<void>((r) => app.close(() => r())));
    const paths = await twoPaths(ca, (app.address() as AddressInfo).port);
    stops.push(() => paths.stop());
    port = paths.port('one sidecar');
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  it('resets the connection: its body ends with the connection, and a plain close would pass for the whole body', async () => {
    const got = await new Promise<{ raw: string; end: string }>((resolve) => {
      const s = connect(port, '127.0.0.1');
      let raw = '';
      let end = 'closed';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (raw += d));
      s.on('error', (e: NodeJS.ErrnoException) => (end = e.code ?? e.message));
      s.on('close', () => resolve({ raw, end }));
      s.write('GET /old HTTP/1.0\r\nhost: legacy.shop\r\n\r\n');
    });
    assert.match(got.raw, /^HTTP\/1\.1 200 /, got.raw);
    assert.doesNotMatch(got.raw, /content-length|transfer-encoding/i, 'an HTTP/1.0 client reads this body to the end of the connection');
    assert.equal(got.end, 'ECONNRESET', `the connection ended with ${got.end} after ${JSON.stringify(got.raw)}`);
  });
});

/** What an HTTP/2 client saw of one request: the response's status, the bytes of its body, and how the stream ended. */
interface H2Outcome {
  status: number | undefined;
  body: string;
  /** 'end': the body ended cleanly (END_STREAM); 'reset': RST_STREAM with `code`; 'hung': nothing for HUNG_MS. */
  end: 'end' | 'reset' | 'hung';
  code: number | undefined;
}

function h2Call(port: number): Promise<H2Outcome> {
  return new Promise((resolve) => {
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const out: H2Outcome = { status: undefined, body: '', end: 'hung', code: undefined };
    const stream = session.request({ ':path': '/order', ':authority': 'api.shop' });
    stream.setEncoding('latin1');
    stream.on('response', (h) => (out.status = Number(h[':status'])));
    stream.on('data', (d: string) => (out.body += d));
    stream.on('error', () => undefined);
    let ended = false;
    stream.on('end', () => (ended = true));
    const t = setTimeout(() => {
      session.destroy();
      resolve(out);
    }, HUNG_MS);
    stream.on('close', () => {
      clearTimeout(t);
      out.code = stream.rstCode;
      out.end = ended && stream.rstCode === constants.NGHTTP2_NO_ERROR ? 'end' : 'reset';
      session.close();
      resolve(out);
    });
  });
}

/** How the HTTP/2 app breaks its answer, after its head and a first piece of the body. */
type H2Break = 'reset' | 'close' | 'short';

describe('HTTP/2 responses that break after their head, through sidecars on loopback', function () {
  this.timeout(60_000);
  const stops: (() => unknown)[] = [];
  let paths: TwoPaths;
  let how: H2Break = 'reset';

  before(async () => {
    const { ca } = await newRootCa();
    // The app: a head, a first piece of the body, then the break.
    const app = createH2cServer();
    app.on('session', (s) => s.on('error', () => undefined));
    app.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, 'content-type': 'text/plain', ...(how === 'short' ? { 'content-length': '100' } : {}) });
      stream.write('the first piece, ');
      setTimeout(() => {
        // (close(code) would end the stream first: node sends END_STREAM before a RST_STREAM when the stream has not ended.)
        if (how === 'reset') stream.destroy(new Error('the app gave up on its answer'));
        else if (how === 'close') stream.session?.destroy();
        else stream.end('and no more');
      }, 150);
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    stops.push(() => new Promise<void>((r) => app.close(() => r())));
    paths = await twoPaths(ca, appPort);
    stops.push(() => paths.stop());
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  const BREAKS: Record<H2Break, string> = {
    reset: 'the app resets its stream',
    close: "the app's connection closes",
    short: 'the body ends short of its Content-Length',
  };
  for (const [kind, name] of Object.entries(BREAKS) as [H2Break, string][]) {
    for (const path of PATHS) {
      it(`${name} in the middle of the body, through ${path}: the client's stream is reset (RST_STREAM), not ended`, async () => {
        how = kind;
        const got = await h2Call(paths.port(path));
        assert.equal(got.status, 200, JSON.stringify(got));
        assert.equal(got.end, 'reset', JSON.stringify(got));
        assert.notEqual(got.code, constants.NGHTTP2_NO_ERROR, JSON.stringify(got));
        assert.ok(got.body.startsWith('the first piece'), JSON.stringify(got));
      });
    }
  }
});
