// Header names are data, never object keys: fields named like the properties
// every JavaScript object inherits (constructor, __proto__, toString,
// hasOwnProperty, valueOf) go through byte-exact, request and response,
// head and trailers, HTTP/1.1 and HTTP/2, through one sidecar (to an endpoint without one) and
// through a sidecar pair (mTLS between them). The apps report what arrived
// from node's raw header lists, the clients read the raw answer, so neither
// end's own header objects stand between the test and the bytes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createH1Server, type Server as H1Server } from 'node:http';
import type { ClientHttp2Session, Http2Server, IncomingHttpHeaders as H2Headers, ServerHttp2Stream } from 'node:http2';
import { connect as h2Connect, createServer as createH2Server } from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
// Never dialled: the test's explicit outbound listeners stand for them.
const PAIR_H1_IP = '10.96.0.10';
const PAIR_H2_IP = '10.96.0.11';
const ONE_H1_IP = '10.96.0.12';
const ONE_H2_IP = '10.96.0.13';

/** Names that are properties of every object, as a client may spell them; HTTP/2 sends them lowercased. */
const NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];
/** A value per name with the bytes a header copy could lose: inner spaces, a comma, quotes, a colon. */
const valueOf = (direction: 'request' | 'response', name: string): string => `${direction} ${name}: "a, b";x=1`;

/** The fields a raw header list ([name, value, name, value, ...]) holds under NAMES, lowercased name -> values. */
function named(raw: readonly string[]): Record<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!NAMES.some((n) => n.toLowerCase() === name)) continue;
    const values = out.get(name) ?? [];
    values.push(raw[i + 1]!);
    out.set(name, values);
  }
  // fromEntries defines own properties, '__proto__' among them, as JSON.parse does.
  return Object.fromEntries(out);
}

/** What each field should be on arrival: its one value, byte for byte. */
function expected(direction: 'request' | 'response'): Record<string, string[]> {
  return Object.fromEntries(NAMES.map((n) => [n.toLowerCase(), [valueOf(direction, n)]]));
}

const listening = async <T extends H1Server | Http2Server>(s: T): Promise<number> => {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
};

/** The raw header list ([name, value, ...]) of header lines (`name: value`). */
function rawOfLines(lines: readonly string[]): string[] {
  return lines.flatMap((l) => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon), l.slice(colon + 1).trim()];
  });
}

/**
 * Sends one raw HTTP/1.1 request, chunked with the fields again as trailers,
 * and reads the raw answer until the proxy closes: its head's and its
 * trailers' fields, and its body (one chunk).
 */
function h1Call(port: number): Promise<{ status: string; head: string[]; trailers: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    s.on('error', reject);
    s.on('close', () => {
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return reject(new Error(`no response head: ${JSON.stringify(got)}`));
      const [status, ...lines] = got.slice(0, end).split('\r\n');
      if (!/^transfer-encoding: chunked$/im.test(got.slice(0, end))) return reject(new Error(`not chunked, so without trailers: ${JSON.stringify(got)}`));
      // One chunk holds the app's JSON; the trailer section follows the last chunk.
      const rest = got.slice(end + 4);
      const size = rest.indexOf('\r\n');
      const body = rest.slice(size + 2, size + 2 + parseInt(rest.slice(0, size), 16));
      const last = rest.indexOf('\r\n0\r\n');
      const trailers = rest.slice(last + 5, rest.length - 4).split('\r\n').filter(Boolean);
      resolve({ status: status!, head: rawOfLines(lines), trailers: rawOfLines(trailers), body });
    });
    let fields = '';
    for (const n of NAMES) fields += `${n}: ${valueOf('request', n)}\r\n`;
    s.write(`POST /names HTTP/1.1\r\nhost: api.shop\r\nconnection: close\r\nte: trailers\r\ntransfer-encoding: chunked\r\n${fields}\r\n2\r\nhi\r\n0\r\n${fields}\r\n`);
  });
}

/** node:http2 hands received fields in an object without a prototype: its own keys are the names, as a raw list. */
function rawOfH2(fields: H2Headers): string[] {
  return Object.keys(fields).flatMap((k) => {
    const v = fields[k];
    return Array.isArray(v) ? v.flatMap((one) => [k, one]) : [k, String(v)];
  });
}

/** The NAMES fields as an HTTP/2 header object that inherits nothing, so that '__proto__' is a name like any other. */
function h2Fields(direction: 'request' | 'response', first: Record<string, string>): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  Object.assign(out, first);
  for (const n of NAMES) out[n.toLowerCase()] = valueOf(direction, n);
  return out;
}

/** One HTTP/2 request with the fields in its head and its trailers; the response's head, trailers and body. */
async function h2Call(session: ClientHttp2Session): Promise<{ status: number; head: string[]; trailers: string[]; body: string }> {
  const stream = session.request(h2Fields('request', { ':path': '/names', ':authority': 'api.shop', ':method': 'POST', te: 'trailers' }), { waitForTrailers: true });
  stream.once('wantTrailers', () => stream.sendTrailers(h2Fields('request', {})));
  stream.end('hi');
  const trailers = new Promise<H2Headers>((resolve) => stream.once('trailers', resolve));
  const [response] = (await once(stream, 'response')) as [H2Headers];
  let body = '';
  stream.setEncoding('utf8');
  for await (const chunk of stream) body += chunk as string;
  return { status: Number(response[':status']), head: rawOfH2(response), trailers: rawOfH2(await trailers), body };
}

describe('header names that are properties of JavaScript objects, through sidecars on loopback', function () {
  this.timeout(30_000);
  const stops: (() => unknown)[] = [];
  let a: Sidecar;

  before(async () => {
    const { ca } = await newRootCa();
    // Each app answers with what it received under NAMES, in the head and in the trailers (from its
    // raw lists), and sends the same names back in both.
    const h1App = createH1Server((req, res) => {
      req.resume();
      req.on('end', () => {
        for (const n of NAMES) res.setHeader(n, valueOf('response', n));
        res.write(JSON.stringify({ head: named(req.rawHeaders), trailers: named(req.rawTrailers) }));
        // As a list of pairs: an object would lose '__proto__' before node saw it.
        res.addTrailers(NAMES.map((n): [string, string] => [n, valueOf('response', n)]));
        res.end();
      });
    });
    const h2App = createH2Server();
    h2App.on('stream', (stream: ServerHttp2Stream, _headers: H2Headers, _flags: number, rawHeaders: string[]) => {
      let rawTrailers: string[] = [];
      stream.once('trailers', (_t: H2Headers, _f: number, raw: string[]) => (rawTrailers = raw));
      stream.resume();
      stream.once('end', () => {
        stream.respond(h2Fields('response', { ':status': '200' }), { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers(h2Fields('response', {})));
        stream.end(JSON.stringify({ head: named(rawHeaders), trailers: named(rawTrailers) }));
      });
    });
    const h1Port = await listening(h1App);
    stops.push(() => h1App.close());
    const h2Port = await listening(h2App);
    stops.push(() => h2App.close());
    const b1 = await loopbackSidecar(ca, API, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: h1Port, family: 'IPv4' }) });
    stops.push(() => b1.drain(0));
    const b2 = await loopbackSidecar(ca, API, new FixedConfig({}), { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: h2Port, family: 'IPv4' }) });
    stops.push(() => b2.drain(0));
    const service = (name: string, ip: string, protocol: string, targetPort: number, identity?: string): object => ({
      name,
      namespace: 'shop',
      clusterIPs: [ip],
      ports: [{ port: 80, protocol, targetPort }],
      endpoints: [identity === undefined ? { address: '127.0.0.1' } : { address: '127.0.0.1', identity }],
    });
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [
          service('pair-h1', PAIR_H1_IP, 'http', b1.inboundPort, API),
          service('pair-h2', PAIR_H2_IP, 'http2', b2.inboundPort, API),
          service('one-h1', ONE_H1_IP, 'http', h1Port),
          service('one-h2', ONE_H2_IP, 'http2', h2Port),
        ],
      }),
      { explicitOutbound: [PAIR_H1_IP, PAIR_H2_IP, ONE_H1_IP, ONE_H2_IP].map((address) => ({ port: 0, destination: { address, port: 80, family: 'IPv4' as const } })) },
    );
    stops.push(() => a.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  const paths = [
    { name: 'a sidecar pair', h1: 0, h2: 1 },
    { name: 'one sidecar', h1: 2, h2: 3 },
  ];
  for (const path of paths) {
    it(`HTTP/1.1 through ${path.name}: each field, in the head and in the trailers, reaches the app and the client byte-exact`, async () => {
      const { status, head, trailers, body } = await h1Call(a.explicitOutboundPorts[path.h1]!);
      assert.match(status, /^HTTP\/1\.1 200 /, body);
      assert.deepEqual(JSON.parse(body), { head: expected('request'), trailers: expected('request') }, `what the app received:\n${body}`);
      assert.deepEqual({ head: named(head), trailers: named(trailers) }, { head: expected('response'), trailers: expected('response') }, 'what the client received');
    });

    it(`HTTP/2 through ${path.name}: each field, in the head and in the trailers, reaches the app and the client byte-exact`, async () => {
      const session = h2Connect(`http://127.0.0.1:${a.explicitOutboundPorts[path.h2]!}`);
      session.on('error', () => undefined);
      try {
        const { status, head, trailers, body } = await h2Call(session);
        assert.equal(status, 200, body);
        assert.deepEqual(JSON.parse(body), { head: expected('request'), trailers: expected('request') }, `what the app received:\n${body}`);
        assert.deepEqual({ head: named(head), trailers: named(trailers) }, { head: expected('response'), trailers: expected('response') }, 'what the client received');
      } finally {
        session.close();
      }
    });
  }
});
