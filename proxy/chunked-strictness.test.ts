// The chunked decoder's refusals end to end, one direction each, through a
// sidecar on loopback (its outbound listener, the app without a sidecar):
// a client's chunked request body that breaks the framing gets 400 with
// what was wrong, and the app, which had the head and perhaps some of the
// body, sees its request cut off, never ended; an app's chunked response
// that breaks it gets the client a 502 bad-response with what was wrong.
// The table of every rule is proxy/http/h1/body.test.ts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { waitFor } from '../lib/netns.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';
import { WEB } from './testdata/shop.js';

/** Bodies that break the chunked framing, and the words of the refusal. */
const BROKEN: [string, string, RegExp][] = [
  ['a bare CR in a chunk extension', '5;a\rb\r\nhello\r\n0\r\n\r\n', /a bare CR in a chunk-size line/],
  ['a control character in a chunk extension', '5;a\x01b\r\nhello\r\n0\r\n\r\n', /a control character \(0x01\) in a chunk extension/],
  ['whitespace after a chunk size', '5 \r\nhello\r\n0\r\n\r\n', /whitespace after a chunk size with no extension after it/],
  ['a tab before a chunk size', '\t5\r\nhello\r\n0\r\n\r\n', /whitespace before a chunk size/],
  ['a chunk without its CRLF', '5\r\nhelloXX0\r\n\r\n', /a chunk is not followed by CRLF/],
  ['a trailer line without a colon', '5\r\nhello\r\n0\r\nx-no-colon\r\n\r\n', /a trailer line without a colon/],
  ['a chunk-size line that goes on for ever', `5\r\nhello\r\n${'0'.repeat(2000)}`, /a chunk-size line is longer than 1024 bytes/],
];

/** Sends `raw` on a connection of its own to `port`; what came back until the proxy closed it (5 s at most). */
function exchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    s.on('error', () => undefined);
    const t = setTimeout(() => s.destroy(), 5000);
    s.on('close', () => {
      clearTimeout(t);
      resolve(got);
    });
    s.write(raw);
  });
}

describe('chunked bodies that break the framing, end to end through a sidecar on loopback', function () {
  this.timeout(60_000);
  const stops: (() => unknown)[] = [];
  /** What the request app saw of each request: whether its body ended, or was cut off. */
  const seen: { path: string; outcome: 'ended' | 'cut off' | 'open' }[] = [];
  let requestApp: HttpServer;
  let responseApp: Server;
  /** The response the raw app writes, in one write, for the next request. */
  let nextResponse = '';
  let a: Sidecar;

  before(async () => {
    const { ca } = await newRootCa();
    requestApp = createHttpServer((req, res) => {
      const entry: (typeof seen)[number] = { path: req.url ?? '', outcome: 'open' };
      seen.push(entry);
      req.resume();
      req.on('end', () => {
        entry.outcome = 'ended';
        res.end('ok');
      });
      req.on('close', () => {
        if (entry.outcome === 'open') entry.outcome = 'cut off';
      });
    });
    requestApp.listen(0, '127.0.0.1');
    await once(requestApp, 'listening');
    stops.push(() => new Promise<void>((r) => requestApp.close(() => r())));
    responseApp = createServer((s) => {
      s.on('error', () => undefined);
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        got += d;
        if (got.includes('\r\n\r\n')) s.write(nextResponse, 'latin1');
      });
    });
    responseApp.listen(0, '127.0.0.1');
    await once(responseApp, 'listening');
    stops.push(() => {
      responseApp.close();
      // The raw app keeps its connections: they go with it.
      return undefined;
    });
    const service = (name: string, ip: string, port: number): object => ({ name, namespace: 'shop', clusterIPs: [ip], ports: [{ port: 80, protocol: 'http', targetPort: port }], endpoints: [{ address: '127.0.0.1' }] });
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [service('uploads', '10.96.0.21', (requestApp.address() as AddressInfo).port), service('downloads', '10.96.0.22', (responseApp.address() as AddressInfo).port)],
      }),
      { explicitOutbound: ['10.96.0.21', '10.96.0.22'].map((address) => ({ port: 0, destination: { address, port: 80, family: 'IPv4' as const } })) },
    );
    stops.push(() => a.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  for (const [i, [name, body, words]] of BROKEN.entries()) {
    it(`a request with ${name}: 400 saying so, the app's request cut off`, async () => {
      const got = await exchange(a.explicitOutboundPorts[0]!, `POST /upload/${i} HTTP/1.1\r\nhost: uploads.shop\r\ntransfer-encoding: chunked\r\n\r\n${body}`);
      assert.match(got, /^HTTP\/1\.1 400 /, got);
      assert.match(got, words, got);
      // The app may have had the head (the proxy streams a body on as it comes): its request never ended.
      const entry = seen.find((e) => e.path === `/upload/${i}`);
      if (entry) await waitFor(`the app's request to be cut off (${entry.outcome})`, async () => (entry.outcome === 'open' ? undefined : entry.outcome), 5000, 10).then((o) => assert.equal(o, 'cut off'));
    });
  }

  for (const [name, body, words] of BROKEN) {
    it(`a response with ${name}: 502 bad-response saying so`, async () => {
      nextResponse = `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${body}`;
      const got = await exchange(a.explicitOutboundPorts[1]!, 'GET /download HTTP/1.1\r\nhost: downloads.shop\r\nconnection: close\r\n\r\n');
      assert.match(got, /^HTTP\/1\.1 502 /, got);
      assert.match(got, /\r\nx-tsmesh-error: bad-response\r\n/, got);
      assert.match(got, words, got);
    });
  }

  it('a well-framed chunked request and response go through (the same sidecar, the same apps)', async () => {
    const up = await exchange(a.explicitOutboundPorts[0]!, 'POST /upload/good HTTP/1.1\r\nhost: uploads.shop\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5;a=b\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n');
    assert.match(up, /^HTTP\/1\.1 200 /, up);
    assert.equal(seen.find((e) => e.path === '/upload/good')?.outcome, 'ended');
    nextResponse = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n';
    const down = await exchange(a.explicitOutboundPorts[1]!, 'GET /download HTTP/1.1\r\nhost: downloads.shop\r\nconnection: close\r\n\r\n');
    assert.match(down, /^HTTP\/1\.1 200 [^]*\r\n\r\n5\r\nhello\r\n0\r\n\r\n$/, down);
  });
});
