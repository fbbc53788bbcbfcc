import assert from 'node:assert/strict';
import { BodyDecoder, frame, lastChunk } from './body.js';
import { HOP_BY_HOP } from '../types.js';
import { HeadReader, HttpParseError, parseRequestHead, parseResponseHead, RequestLineScanner } from './head.js';

/** A request head of these lines; one without a Host line gets `host: a` after its request line (HTTP/1.1 requires one). */
const req = (lines: string[]): ReturnType<typeof parseRequestHead> =>
  parseRequestHead((lines.slice(1).some((l) => /^host\s*:/i.test(l)) ? lines : [lines[0]!, 'host: a', ...lines.slice(1)]).join('\r\n'));
const refused = (lines: string[], status: number, message: RegExp): void =>
  assert.throws(
    () => req(lines),
    (e: unknown) => e instanceof HttpParseError && e.status === status && message.test(e.message),
  );

describe('HTTP/1.1 heads', () => {
  it('reads a request: lowercased names, hop-by-hop fields (and those Connection names) left out, repeats joined, set-cookie kept as a list', () => {
    const h = req([
      'POST /api?q=1 HTTP/1.1',
      'Host: api.shop',
      'Content-Length: 5',
      'Connection: keep-alive, X-Hop',
      'X-Hop: secret',
      'Keep-Alive: timeout=5',
      'TE: gzip;q=0.5',
      'Accept: a',
      'accept: b',
      'Set-Cookie: x=1',
      'Set-Cookie: y=2',
      'X-Spaced:   padded value \t',
    ]);
    assert.equal(h.method, 'POST');
    assert.equal(h.target, '/api?q=1');
    assert.deepEqual({ ...h.headers }, { host: 'api.shop', 'content-length': '5', accept: 'a, b', 'set-cookie': ['x=1', 'y=2'], 'x-spaced': 'padded value' });
    assert.deepEqual(h.framing, { kind: 'length', length: 5 });
    assert.equal(h.keepAlive, true);
  });

  it('keeps a request\'s TE only as its "trailers", whether or not Connection names it', () => {
    assert.equal(req(['GET / HTTP/1.1', 'TE: trailers', 'Connection: TE']).headers.te, 'trailers');
    assert.equal(req(['GET / HTTP/1.1', 'te: deflate;q=0.5, Trailers']).headers.te, 'trailers');
    assert.equal(req(['GET / HTTP/1.1', 'te: gzip', 'connection: te']).headers.te, undefined);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nte: trailers\r\ncontent-length: 0', 'GET').headers.te, undefined, 'a response has no TE');
  });

  it('keeps HTTP/1.0 connections only when asked, and HTTP/1.1 ones unless told to close', () => {
    assert.equal(req(['GET / HTTP/1.0', 'host: a']).keepAlive, false);
    assert.equal(req(['GET / HTTP/1.0', 'connection: keep-alive']).keepAlive, true);
    assert.equal(req(['GET / HTTP/1.1', 'connection: close']).keepAlive, false);
    assert.deepEqual(req(['GET / HTTP/1.1', 'content-length: 0']).framing, { kind: 'none' });
    assert.deepEqual(req(['POST / HTTP/1.1', 'transfer-encoding: chunked']).framing, { kind: 'chunked' });
    assert.equal(req(['PUT / HTTP/1.1', 'expect: 100-continue', 'content-length: 3']).expectContinue, true);
  });

  it('reads an upgrade only when Connection names it, and a 101\'s Upgrade; neither field is among the headers', () => {
    const ws = req(['GET /chat HTTP/1.1', 'Host: a', 'Connection: keep-alive, Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Key: k', 'Sec-WebSocket-Version: 13']);
    assert.equal(ws.upgrade, 'websocket');
    assert.deepEqual({ ...ws.headers }, { host: 'a', 'sec-websocket-key': 'k', 'sec-websocket-version': '13' });
    assert.equal(req(['GET / HTTP/1.1', 'upgrade: websocket']).upgrade, undefined, 'an Upgrade the Connection header does not name is no upgrade request');
    assert.equal(req(['GET / HTTP/1.1', 'connection: upgrade', 'upgrade: a/1', 'upgrade: b/2']).upgrade, 'a/1, b/2');
    const switched = parseResponseHead('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x', 'GET');
    assert.deepEqual([switched.status, switched.upgrade, switched.framing, { ...switched.headers }], [101, 'websocket', { kind: 'none' }, { 'sec-websocket-accept': 'x' }]);
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nupgrade: h2c\r\ncontent-length: 0', 'GET').upgrade, undefined, 'only a 101 switches');
  });

  it('keeps Expect: 100-continue for the app only on an HTTP/1.1 request with a body', () => {
    const put = req(['PUT / HTTP/1.1', 'Expect: 100-Continue', 'content-length: 3']);
    assert.deepEqual([put.expectContinue, put.headers.expect], [true, '100-continue']);
    for (const lines of [
      ['GET / HTTP/1.1', 'expect: 100-continue'],
      ['PUT / HTTP/1.0', 'expect: 100-continue', 'content-length: 3'],
    ]) {
      const h = req(lines);
      assert.deepEqual([h.expectContinue, h.headers.expect], [false, undefined], lines.join(' | '));
    }
  });

  it('refuses what lets two parsers disagree on where a request ends, naming the problem', () => {
    refused(['POST / HTTP/1.1', 'content-length: 3', 'transfer-encoding: chunked'], 400, /both Transfer-Encoding and Content-Length/);
    refused(['POST / HTTP/1.1', 'content-length: 3', 'content-length: 4'], 400, /conflicting Content-Length/);
    refused(['POST / HTTP/1.1', 'content-length: -1'], 400, /bad Content-Length/);
    refused(['POST / HTTP/1.1', 'content-length: 1e3'], 400, /bad Content-Length/);
    refused(['POST / HTTP/1.1', 'transfer-encoding: gzip'], 400, /last coding must be chunked/);
    refused(['POST / HTTP/1.1', 'transfer-encoding: gzip, chunked'], 501, /only chunked/);
    // HTTP/1.0 has no chunked framing (RFC 9112 6.1): refused, with or without a length, as nginx does.
    refused(['POST / HTTP/1.0', 'transfer-encoding: chunked'], 400, /HTTP\/1\.0 request with Transfer-Encoding/);
    refused(['POST / HTTP/1.0', 'transfer-encoding: chunked', 'content-length: 3'], 400, /HTTP\/1\.0 request with Transfer-Encoding/);
    refused(['GET / HTTP/1.1', 'host : a'], 400, /bad header name/);
    refused(['GET / HTTP/1.1', 'x-a: 1', ' folded'], 400, /bad header name|no colon/);
    refused(['GET / HTTP/1.1', 'x-a: 1\x00'], 400, /control character/);
    refused(['GET / HTTP/2.0'], 400, /not an HTTP\/1.x|unsupported version/);
    refused(['GET /a b HTTP/1.1'], 400, /bad request line/);
    refused(['G(T / HTTP/1.1'], 400, /bad method/);
    refused(['GET / HTTP/1.1', 'expect: something'], 400, /unsupported Expect/);
  });

  it('keeps field names as data: names of properties every object inherits are fields like any other, repeats joined', () => {
    const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'];
    for (const parse of [(lines: string[]) => req(['GET / HTTP/1.1', 'host: a', ...lines]), (lines: string[]) => parseResponseHead(['HTTP/1.1 200 OK', 'content-length: 0', ...lines].join('\r\n'), 'GET')]) {
      const h = parse(names.flatMap((n) => [`${n}: one ${n}`, `${n}: two`]));
      for (const n of names) {
        const name = n.toLowerCase();
        assert.ok(Object.hasOwn(h.headers, name), `${name} is an own field`);
        assert.equal(h.headers[name], `one ${n}, two`, name);
      }
      // Nothing inherited shows through a lookup of a field that did not come.
      assert.equal(parse([]).headers['constructor'], undefined);
    }
    // A field that Connection names is left out, whatever its name.
    const named = req(['GET / HTTP/1.1', 'host: a', 'connection: __proto__, constructor', '__proto__: x', 'constructor: y', 'x-kept: z']);
    assert.deepEqual(Object.keys(named.headers), ['host', 'x-kept']);
  });

  describe('Host and the request target (RFC 9112 3.2)', () => {
    const parse = (lines: string[]): ReturnType<typeof parseRequestHead> => parseRequestHead(lines.join('\r\n'));
    const refusedRaw = (lines: string[], message: RegExp): void =>
      assert.throws(
        () => parse(lines),
        (e: unknown) => e instanceof HttpParseError && e.status === 400 && message.test(e.message),
        lines.join(' | '),
      );

    it('refuses two Host lines, even alike, and an HTTP/1.1 request without one; HTTP/1.0 may go without', () => {
      refusedRaw(['GET / HTTP/1.1', 'host: a', 'host: b'], /two Host header lines/);
      refusedRaw(['GET / HTTP/1.1', 'Host: a', 'host: a'], /two Host header lines/);
      refusedRaw(['GET / HTTP/1.1', 'x-a: 1'], /without a Host header/);
      refusedRaw(['GET / HTTP/1.1'], /without a Host header/);
      assert.equal(parse(['GET / HTTP/1.0']).headers.host, undefined);
      assert.equal(parse(['GET / HTTP/1.0', 'host: a']).headers.host, 'a');
    });

    it('takes a Host that is one host[:port], and refuses a list or anything else', () => {
      for (const good of ['api.shop', 'api.shop:8080', 'API.Shop', '10.96.0.10:80', '[::1]', '[2001:db8::7]:443', '[v1.fe80::a+en1]', 'a_b~c-d.e', 'caf%C3%A9.example', "a!$&'()*+;=b", 'a:', ''])
        assert.equal(parse(['GET / HTTP/1.1', `host: ${good}`]).headers.host, good, good);
      for (const bad of ['a, b', 'a,b', ',', 'a b', 'user@api.shop', 'api.shop/x', 'a:80:90', 'a:8o', ':80', '[::1', '::1', '[::1]x', 'a%2', 'a%zz', 'a\\b', 'a"b', 'a<b', 'a?', 'a#'])
        refusedRaw(['GET / HTTP/1.1', `host: ${bad}`], /invalid Host/);
    });

    it('takes an absolute-form target as RFC 9112 3.2.2 says: its authority is the Host, and the target goes on in origin-form', () => {
      const cases: [target: string, host: string, path: string][] = [
        ['http://a.example/x?y=1', 'a.example', '/x?y=1'],
        ['http://a.example', 'a.example', '/'],
        ['HTTP://a.example:8080?q=1', 'a.example:8080', '/?q=1'],
        ['https://[::1]:8443/p/', '[::1]:8443', '/p/'],
        ['http://10.96.0.10/', '10.96.0.10', '/'],
      ];
      for (const [target, host, path] of cases) {
        // The Host line is ignored, whatever it says; HTTP/1.0 may send none.
        for (const lines of [[`GET ${target} HTTP/1.1`, 'host: other.example'], [`GET ${target} HTTP/1.0`]]) {
          const h = parse(lines);
          assert.deepEqual([h.target, h.headers.host], [path, host], lines.join(' | '));
        }
      }
      refusedRaw(['GET http://a.example/ HTTP/1.1'], /without a Host header/);
      refusedRaw(['GET http://a.example/ HTTP/1.1', 'host: a, b'], /invalid Host/);
      refusedRaw(['GET ftp://a.example/x HTTP/1.1', 'host: a'], /only http and https/);
      refusedRaw(['GET http://user:pw@a.example/ HTTP/1.1', 'host: a'], /userinfo/);
      for (const bad of ['http:///x', 'http://:80/x', 'http://a,b/', 'http://a:x/'])
        refusedRaw([`GET ${bad} HTTP/1.1`, 'host: a'], /authority is not a host/);
    });

    it('takes origin-form and OPTIONS * as they are; refuses CONNECT (501), "#" and bytes above 0x7e, and any other target', () => {
      assert.equal(parse(['GET /a/b?c HTTP/1.1', 'host: a']).target, '/a/b?c');
      assert.equal(parse(['GET /a/%C3%A9?q=%23 HTTP/1.1', 'host: a']).target, '/a/%C3%A9?q=%23');
      assert.equal(parse(['OPTIONS * HTTP/1.1', 'host: a']).target, '*');
      assert.throws(
        () => parse(['CONNECT db.shop:5432 HTTP/1.1', 'host: db.shop:5432']),
        (e: unknown) => e instanceof HttpParseError && e.status === 501 && /CONNECT is not carried[\s\S]*declare its port tcp/.test(e.message),
      );
      for (const bad of ['GET /a#b HTTP/1.1', 'GET /caf\xe9 HTTP/1.1', 'GET http://a.example/#x HTTP/1.1']) refusedRaw([bad, 'host: a'], /"#" or a byte above 0x7e/);
      for (const bad of ['GET * HTTP/1.1', 'GET foo HTTP/1.1', 'GET ?x HTTP/1.1', 'GET a.example/x HTTP/1.1']) refusedRaw([bad, 'host: a'], /bad request target/);
      // "//x" is a path (origin-form's path may begin with an empty segment).
      assert.equal(parse(['GET //x HTTP/1.1', 'host: a']).target, '//x');
    });
  });

  describe('RequestLineScanner: a head read byte by byte before it has come whole', () => {
    /** The verdict on `text`, fed at once and a byte at a time (the same both ways), with its reason. */
    const verdict = (text: string, wholeHead: boolean): string => {
      const bytes = Buffer.from(text, 'latin1');
      const once = new RequestLineScanner(wholeHead);
      once.scan(bytes, 0, bytes.length);
      const bytewise = new RequestLineScanner(wholeHead);
      for (let i = 0; i < bytes.length; i++) bytewise.scan(bytes, i, i + 1);
      assert.deepEqual([bytewise.verdict, bytewise.reason], [once.verdict, once.reason], text);
      return once.verdict === 'not-request' ? `not-request: ${once.reason}` : once.verdict;
    };
    const TABLE: [text: string, line: RegExp, head: RegExp][] = [
      ['GET / HTTP/1.1', /^request$/, /^partial$/],
      ['\r\nPROPFIND /x HTTP/1.1\r\nhost: a\r\ndepth: 1', /^request$/, /^partial$/],
      ['GET / HTTP/1.1\r\nhost: a\r\n\r\n', /^request$/, /^request$/],
      ['GET / HTTP/1.1\r\nx-empty:\r\nx-obs: caf\xe9\t!\r\n\r', /^request$/, /^partial$/],
      ['G@T / HTTP/1.1\r\n', /not an HTTP\/1\.1 request/, /not an HTTP\/1\.1 request/],
      ['\x16\x03\x01\x02\x00', /not an HTTP\/1\.1 request/, /not an HTTP\/1\.1 request/],
      ['GET / HTTP/1.1 \r\n', /^request$/, /not an HTTP\/1\.1 request/],
      ['GET / HTTP/1.1\nhost: a\n\n', /^request$/, /bare LF/],
      ['GET / HTTP/1.1\r\nhost: a\nx: b', /^request$/, /bare LF/],
      ['GET / HTTP/1.1\r\nhost: a\r\n\n', /^request$/, /bare LF/],
      ['GET / HTTP/1.1\rhost: a', /^request$/, /bare CR/],
      ['GET / HTTP/1.1\r\nhost: a\r\n\rx', /^request$/, /bare CR/],
      ['GET / HTTP/1.1\r\nhost: a\r\n folded', /^request$/, /not "name: value"/],
      ['GET / HTTP/1.1\r\nhost : a', /^request$/, /not "name: value"/],
      ['GET / HTTP/1.1\r\n: a', /^request$/, /not "name: value"/],
      ['GET / HTTP/1.1\r\nx-a: 1\x00', /^request$/, /control character/],
    ];
    for (const [text, line, head] of TABLE) {
      it(`${JSON.stringify(text)}: as a request line ${line.source}, as a head ${head.source}`, () => {
        assert.match(verdict(text, false), line);
        assert.match(verdict(text, true), head);
      });
    }
  });

  it('leaves out every hop-by-hop field the proxy knows, however it is spelled', () => {
    for (const name of HOP_BY_HOP) {
      const spelled = name.toUpperCase();
      const h = req(['GET / HTTP/1.1', 'host: a', `${spelled}: ${name === 'transfer-encoding' ? 'chunked' : 'v'}`, 'x-after: 1']);
      assert.deepEqual({ ...h.headers }, { host: 'a', 'x-after': '1' }, `${spelled} is not forwarded`);
    }
  });

  it('checks every character of a field: tokens in names, no controls in values, lines end in CRLF', () => {
    assert.deepEqual({ ...req(['GET / HTTP/1.1', "X-Ok!#$%&'*+.^_`|~09: \tv\x80\xff v\t"]).headers }, { host: 'a', "x-ok!#$%&'*+.^_`|~09": 'v\x80\xff v' });
    assert.deepEqual({ ...req(['GET / HTTP/1.1', 'x-empty:', 'x-b:   ']).headers }, { host: 'a', 'x-empty': '', 'x-b': '' });
    for (const bad of ['x(a): 1', 'x/a: 1', 'x a: 1', 'x\x80: 1', ': 1', 'x\ta: 1']) refused(['GET / HTTP/1.1', bad], 400, /bad header name|no colon/);
    for (const bad of ['x: a\rb', 'x: a\nb', 'x: a\x7fb', 'x: \x01']) refused(['GET / HTTP/1.1', bad, 'y: 1'], 400, /control character/);
    refused(['GET / HTTP/1.1', 'x: a\r'], 400, /control character/);
    refused(['POST / HTTP/1.1', 'content-length: '], 400, /Content-Length/);
    refused(['POST / HTTP/1.1', 'content-length: 1234567890123456'], 400, /bad Content-Length/);
    assert.deepEqual(req(['POST / HTTP/1.1', 'content-length: 123456789012345']).framing, { kind: 'length', length: 123456789012345 });
    assert.throws(() => parseResponseHead('HTTP/1.1 200 OK\r\nx: a\x00', 'GET'), (e: unknown) => e instanceof HttpParseError && e.status === 502);
  });

  it('frames responses: HEAD, 1xx, 204 and 304 have no body; chunked; Content-Length; else until close', () => {
    const head = parseResponseHead('HTTP/1.1 200 OK\r\ncontent-length: 10', 'HEAD');
    assert.deepEqual(head.framing, { kind: 'none' });
    assert.equal(head.headers['content-length'], '10', 'a HEAD response keeps the length of the body it describes');
    assert.deepEqual(parseResponseHead('HTTP/1.1 204 No Content\r\ncontent-length: 10', 'GET').framing, { kind: 'none' });
    assert.deepEqual(parseResponseHead('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked', 'GET').framing, { kind: 'chunked' });
    assert.deepEqual(parseResponseHead('HTTP/1.1 200 OK\r\ncontent-length: 7', 'GET').framing, { kind: 'length', length: 7 });
    const close = parseResponseHead('HTTP/1.1 200 OK', 'GET');
    assert.deepEqual(close.framing, { kind: 'close' });
    assert.equal(close.keepAlive, false);
    assert.equal(parseResponseHead('HTTP/1.1 100 Continue', 'POST').status, 100);
    assert.equal(parseResponseHead('HTTP/1.1 503', 'GET').status, 503, 'the reason phrase is optional');
    assert.throws(() => parseResponseHead('HTTP/1.1 2000 OK', 'GET'), /bad status line/);
    assert.throws(() => parseResponseHead('ICY 200 OK', 'GET'), (e: unknown) => e instanceof HttpParseError && e.status === 502);
  });

  it('collects a head that arrives a byte at a time, and refuses one over the limit', () => {
    const text = 'GET / HTTP/1.1\r\nhost: a\r\n\r\nNEXT';
    const reader = new HeadReader(1024, 431);
    let got: ReturnType<HeadReader['feed']>;
    for (const ch of text) {
      got = reader.feed(Buffer.from(ch), 0);
      if (got) break;
    }
    assert.equal(got!.text, 'GET / HTTP/1.1\r\nhost: a');
    const big = new HeadReader(100, 431);
    assert.throws(
      () => big.feed(Buffer.from(`GET / HTTP/1.1\r\nx: ${'a'.repeat(200)}`), 0),
      (e: unknown) => e instanceof HttpParseError && e.status === 431,
    );
  });
});

describe('HTTP/1.1 bodies', () => {
  const decodeAll = (wire: Buffer, piece: number): { data: string; rest: string } => {
    const d = new BodyDecoder({ kind: 'chunked' }, 400);
    const out: Buffer[] = [];
    let rest = '';
    for (let i = 0; i < wire.length; i += piece) {
      const chunk = wire.subarray(i, i + piece);
      const stop = d.feed(chunk, 0, (b) => out.push(Buffer.from(b)));
      if (d.done) {
        rest = chunk.subarray(stop).toString() + wire.subarray(i + piece).toString();
        break;
      }
    }
    assert.ok(d.done, 'the decoder saw the last chunk');
    return { data: Buffer.concat(out).toString(), rest };
  };

  it('decodes chunked bodies with extensions and trailers, however the bytes are split', () => {
    const wire = Buffer.from('5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\nGET /next');
    for (const piece of [1, 2, 3, 7, wire.length]) assert.deepEqual(decodeAll(wire, piece), { data: 'hello world', rest: 'GET /next' }, `pieces of ${piece}`);
  });

  it('round-trips what the proxy frames', () => {
    const wire = Buffer.concat([frame('HEAD\r\n', Buffer.from('abc'), true).subarray(6), frame(undefined, Buffer.from('defgh'), true), Buffer.from(lastChunk(undefined))]);
    assert.deepEqual(decodeAll(wire, 4), { data: 'abcdefgh', rest: '' });
    assert.equal(frame('H\r\n', Buffer.from('xy'), false).toString(), 'H\r\nxy');
  });

  it('refuses a bad chunk size and a chunk without its CRLF', () => {
    assert.throws(() => new BodyDecoder({ kind: 'chunked' }, 400).feed(Buffer.from('zz\r\n'), 0, () => undefined), /bad chunk size/);
    assert.throws(() => new BodyDecoder({ kind: 'chunked' }, 502).feed(Buffer.from('1\r\nab'), 0, () => undefined), /not followed by CRLF/);
  });

  it('stops a Content-Length body at its length and hands back the rest', () => {
    const d = new BodyDecoder({ kind: 'length', length: 3 }, 400);
    const out: string[] = [];
    const stop = d.feed(Buffer.from('abcdef'), 1, (b) => out.push(b.toString()));
    assert.deepEqual([out, stop, d.done], [['bcd'], 4, true]);
  });
});
