// Egress through a sidecar on loopback: "outside" servers (plain HTTP, TLS
// with a certificate of a CA the test made, a TCP echo) on 127.0.0.1, the
// app's connections to the sidecar's outbound port taken as dialled to them
// (loopback has no redirect; test/netns/egress.test.ts does the same through
// iptables). Real TLS clients and servers, the proxy's real listener.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, request, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import type { Sidecar } from '../sidecar.js';
import { FixedConfig, loopbackSidecar } from '../testdata/mesh.js';
import type { OriginalDestination } from '../orig-dst.js';
import { hostName, hostOfHead, MAX_DESTINATIONS } from './egress.js';
import { answerOverTls, outsideTls, type OutsideTls } from './testdata/outside-tls.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';

async function listening<T extends Server | HttpServer>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function metric(s: Sidecar, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await s.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const values = (m?.values ?? []) as { labels: Record<string, string | number>; value: number }[];
  return values.filter((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)).reduce((a, v) => a + v.value, 0);
}

describe('egress through a sidecar on loopback', function () {
  this.timeout(30_000);
  let sidecar: Sidecar;
  let config: FixedConfig;
  let tls: OutsideTls;
  let otherCa: OutsideTls;
  const servers: Server[] = [];
  let httpPort = 0;
  let tlsPort = 0;
  let echoPort = 0;
  let greeterPort = 0;
  let dialled: OriginalDestination = { address: '127.0.0.1', port: 1, family: 'IPv4' };
  /** What the outside servers saw. */
  const seen = { http: [] as IncomingHttpHeaders[], tls: [] as { servername: string | false | null; path: string }[], tlsConnections: 0 };

  before(async () => {
    tls = outsideTls(['api.example.com', '*.example.org']);
    otherCa = outsideTls(['api.example.com'], 'another CA');
    const http = createHttpServer((req, res) => {
      seen.http.push(req.headers);
      res.end(`plain ${req.headers.host}`);
    });
    httpPort = await listening(http);
    // The TLS server answers HTTP/1.1 itself, so an originated request is seen to arrive as TLS.
    const tlsServer = createTlsServer({ cert: tls.certPem, key: tls.keyPem }, (socket: TLSSocket) => {
      seen.tlsConnections++;
      answerOverTls(socket, ({ servername, path }) => {
        seen.tls.push({ servername, path });
        return `tls ${String(servername)} ${path}`;
      });
    });
    tlsPort = await listening(tlsServer);
    const echo = createNetServer((s) => s.pipe(s));
    echoPort = await listening(echo);
    // Server-first, as SMTP: it speaks as soon as the connection opens.
    const greeter = createNetServer((s) => {
      s.on('error', () => undefined);
      s.end('220 outside ready\r\n');
    });
    greeterPort = await listening(greeter);
    servers.push(http as unknown as Server, tlsServer, echo, greeter);
    const { ca } = await newRootCa();
    config = new FixedConfig({});
    sidecar = await loopbackSidecar(ca, WEB, config, { outboundOriginalDestination: () => dialled });
  });

  after(async () => {
    await sidecar?.drain(0);
    for (const s of servers) s.close();
  });

  beforeEach(() => {
    seen.http.length = 0;
    seen.tls.length = 0;
    seen.tlsConnections = 0;
  });

  const to = (port: number): void => void (dialled = { address: '127.0.0.1', port, family: 'IPv4' });

  function get(host: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: sidecar.outboundPort, path: '/x', headers: { host }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** A TLS handshake through the sidecar with this SNI: whether it completed. */
  function handshake(servername: string): Promise<boolean> {
    return new Promise((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: sidecar.outboundPort, servername, ca: tls.caPem });
      s.once('secureConnect', () => {
        s.end();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.once('close', () => resolve(false));
    });
  }

  /** Writes a line of raw TCP and reads what comes back before the connection closes. */
  function tcp(bytes: Buffer): Promise<string> {
    return new Promise((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port: sidecar.outboundPort });
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.length >= bytes.length) s.end();
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
      s.write(bytes);
    });
  }

  const egress = (e: object): void => config.set({ mesh: { egress: e } });

  it('allow-all passes every destination through and counts it by the Host or SNI it saw', async () => {
    egress({ mode: 'allow-all' });
    to(httpPort);
    const before = await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'api.example.com', decision: 'allowed' });
    const r = await get('api.example.com');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plain api.example.com');
    to(tlsPort);
    assert.equal(await handshake('a.example.org'), true);
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'api.example.com', decision: 'allowed' }), before + 1);
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'a.example.org', decision: 'allowed' }), 1);
  });

  it('allow-all splices at once: a server-first protocol gets its greeting without waiting out the sniff timeout (1 s), counted by address', async () => {
    egress({ mode: 'allow-all' });
    to(greeterPort);
    const before = await metric(sidecar, 'tsmesh_egress_connections_total', { destination: '127.0.0.1', decision: 'allowed' });
    const started = performance.now();
    const greeting = await new Promise<string>((resolve) => {
      const c = netConnect({ host: '127.0.0.1', port: sidecar.outboundPort });
      let got = '';
      c.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\n')) resolve(got);
      });
      c.on('error', () => resolve(got));
      c.on('close', () => resolve(got));
    });
    const ms = performance.now() - started;
    assert.equal(greeting, '220 outside ready\r\n');
    assert.ok(ms < 800, `the greeting took ${ms.toFixed(0)} ms`);
    for (let i = 0; i < 50 && (await metric(sidecar, 'tsmesh_egress_connections_total', { destination: '127.0.0.1', decision: 'allowed' })) === before; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: '127.0.0.1', decision: 'allowed' }), before + 1);
  });

  it('registry-only refuses what no entry names: plain HTTP with 403 egress-denied, TLS closed before any byte leaves, other TCP closed', async () => {
    egress({ mode: 'registry-only' });
    to(httpPort);
    const r = await get('api.example.com');
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-tsmesh-error'], 'egress-denied');
    assert.equal(seen.http.length, 0);
    to(tlsPort);
    assert.equal(await handshake('api.example.com'), false);
    assert.equal(seen.tlsConnections, 0, 'the outside TLS server was never reached');
    to(echoPort);
    assert.equal(await tcp(Buffer.from('\x00\x01garbage\xff\n', 'latin1')), '');
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'api.example.com', decision: 'denied' }), 2);
    assert.equal(await metric(sidecar, 'tsmesh_http_errors_total', { direction: 'outbound', error: 'egress-denied' }), 1);
  });

  it('registry-only allows an entry by exact host (Host and SNI), by wildcard, and by CIDR and port', async () => {
    egress({
      mode: 'registry-only',
      allow: [
        { name: 'api', hosts: ['api.example.com'], ports: [httpPort, tlsPort] },
        { name: 'org', hosts: ['*.example.org'], ports: [tlsPort] },
        { name: 'echo', cidrs: ['127.0.0.0/8'], ports: [echoPort] },
      ],
    });
    to(httpPort);
    assert.equal((await get('api.example.com')).status, 200);
    assert.equal((await get('API.example.com:80')).status, 200, 'a Host is matched without its case and port');
    const other = await get('evil.example.com');
    assert.equal(other.status, 403);
    to(tlsPort);
    assert.equal(await handshake('api.example.com'), true);
    assert.equal(await handshake('b.example.org'), true);
    assert.equal(await handshake('example.org'), false, 'a wildcard does not name its own domain');
    assert.equal(await handshake('api.example.com.evil.net'), false);
    to(echoPort);
    assert.equal(await tcp(Buffer.from('hello\n')), 'hello\n');
    to(httpPort);
    assert.equal(await tcp(Buffer.from('\x00binary\n', 'latin1')), '', 'the CIDR entry names the echo port only');
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'api', decision: 'allowed' }), 3);
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'org', decision: 'allowed' }), 1);
    assert.equal(await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'echo', decision: 'allowed' }), 1);
  });

  it('originates TLS: plain HTTP from the app reaches the outside server as TLS with the SNI of its host, verified against the entry\'s CA', async () => {
    egress({ mode: 'registry-only', allow: [{ name: 'api-tls', hosts: ['api.example.com'], ports: [httpPort], originateTls: { port: tlsPort, caBundle: tls.caPem } }] });
    to(httpPort);
    const r = await get('api.example.com');
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'tls api.example.com /x');
    assert.equal(seen.http.length, 0, 'nothing went to the plain port');
    assert.deepEqual(seen.tls, [{ servername: 'api.example.com', path: '/x' }]);
  });

  it('answers 502 egress-tls-failed when the outside server\'s certificate does not verify, and counts it', async () => {
    egress({ mode: 'allow-all', allow: [{ name: 'api-wrong-ca', hosts: ['api.example.com'], originateTls: { port: tlsPort, caBundle: otherCa.caPem } }] });
    to(httpPort);
    const r = await get('api.example.com');
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-tsmesh-error'], 'egress-tls-failed');
    assert.match(r.body, /certificate/);
    assert.equal(seen.tls.length, 0);
    assert.equal(await metric(sidecar, 'tsmesh_http_errors_total', { destination_service: 'api-wrong-ca', error: 'egress-tls-failed' }), 1);
  });

  it('bounds the destination names it counts, then counts under other', async () => {
    egress({ mode: 'registry-only' });
    to(httpPort);
    for (let i = 0; i < MAX_DESTINATIONS + 5; i++) await get(`h${i}.example.net`);
    const m = (await sidecar.metrics.registry.getMetricsAsJSON()).find((x) => x.name === 'tsmesh_egress_connections_total');
    const names = new Set((m?.values ?? []).map((v) => String(v.labels['destination'])));
    assert.equal(names.size, MAX_DESTINATIONS + 1);
    assert.ok(names.has('other'));
    assert.ok((await metric(sidecar, 'tsmesh_egress_connections_total', { destination: 'other', decision: 'denied' })) >= 5);
  });

  it('reads names as a Host header or an SNI spells them', () => {
    assert.equal(hostName('API.Example.com:8080'), 'api.example.com');
    assert.equal(hostName('example.com.'), 'example.com');
    assert.equal(hostName('[fd00::1]:80'), 'fd00::1');
    assert.equal(hostName(''), undefined);
    assert.equal(hostOfHead(Buffer.from('GET / HTTP/1.1\r\nX: y\r\nHost: a.b\r\n\r\n')), 'a.b');
    assert.equal(hostOfHead(Buffer.from('GET / HTTP/1.1\r\nX-Host: a.b\r\n\r\n')), undefined);
  });
});
