// Opaque TCP between sidecars as streams of a pooled mTLS connection
// (tsmesh/tcp-mux, net/tcp-mux.ts), through real sidecars on loopback with
// real TLS and real apps: the connections of one app to one endpoint share
// one handshake; a server-first app's greeting arrives with no write from
// the client; half-close passes both ways; an app that refuses, a denied
// caller and a broken pooled connection each close the client's connection;
// a paused reader holds the app back instead of the proxies' memory; and a
// peer that predates tsmesh/tcp-mux is reached with a connection per app
// connection, as before.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { newRootCa } from '../ca/testdata/fixtures.js';
import type { CertificateAuthority } from '../ca/authority.js';
import type { Sidecar } from './sidecar.js';
import { MAX_STREAMS, MuxStream } from './net/mux.js';
import { TcpMuxPool } from './net/tcp-mux.js';
import { MESH_ALPN } from './tls/alpn.js';
import { UpstreamConnectError } from './upstream.js';
import { FixedConfig, issueCredentials, loopbackSidecar, metricValue } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const DB = 'spiffe://cluster.local/ns/shop/sa/db';
const GREETING = 'HELLO from db\r\n';
const BULK_BYTES = 128 * 1024 * 1024;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A connection to `port` on loopback, open. */
async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(s, 'connect');
  return s;
}

/** Everything `s` gives until its end or close, and whether it ended (FIN) rather than closed without one. */
function readAll(s: Socket): Promise<{ text: string; ended: boolean }> {
  const chunks: Buffer[] = [];
  let ended = false;
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', () => s.destroy());
  return new Promise((resolve) => {
    s.once('end', () => {
      ended = true;
      resolve({ text: Buffer.concat(chunks).toString(), ended });
    });
    s.once('close', () => resolve({ text: Buffer.concat(chunks).toString(), ended }));
  });
}

describe('opaque TCP as streams of pooled mTLS connections between sidecars (tsmesh/tcp-mux)', function () {
  this.timeout(60_000);
  const stops: (() => unknown)[] = [];
  let ca: CertificateAuthority;
  let web: Sidecar;
  /** db's sidecars, one per app below (a pooled connection serves one port). */
  const db: Record<string, Sidecar> = {};
  const dbConfig = new FixedConfig({});
  /** What the half-close app read of each connection once the client's FIN came. */
  const readByApp: string[] = [];
  /** Bytes the bulk app has written; the bulk app's connections. */
  let bulkWritten = 0;
  let legacyConnections = 0;
  /** Index in web's explicit outbound ports, per service. */
  const via: Record<string, number> = {};

  before(async () => {
    ({ ca } = await newRootCa());
    // greet: speaks first, then reads what comes and answers how much came once the client ends.
    const greet = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      s.write(GREETING);
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => s.end(`got ${n}\n`));
    });
    // fin: says bye and ends its side at once, then reads on until the client ends.
    const fin = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      const chunks: Buffer[] = [];
      s.end('bye\n');
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('end', () => readByApp.push(Buffer.concat(chunks).toString()));
    });
    // bulk: writes BULK_BYTES as fast as its socket takes them.
    const bulk = createServer((s) => {
      s.on('error', () => s.destroy());
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let left = BULK_BYTES;
      const pump = (): void => {
        while (left > 0) {
          left -= chunk.length;
          bulkWritten += chunk.length;
          if (!s.write(chunk)) {
            s.once('drain', pump);
            return;
          }
        }
        s.end();
      };
      pump();
    });
    const apps = { greet, fin, bulk };
    const appPorts: Record<string, number> = {};
    for (const [name, server] of Object.entries(apps)) {
      appPorts[name] = await listen(server);
      stops.push(() => server.close());
    }
    // refused: a port where nothing listens.
    const closed = createServer();
    appPorts['refused'] = await listen(closed);
    closed.close();
    appPorts['broken'] = appPorts['greet']!;
    appPorts['denied'] = appPorts['greet']!;

    const services = [];
    const explicitOutbound = [];
    for (const [i, name] of ['greet', 'fin', 'bulk', 'refused', 'broken', 'denied'].entries()) {
      const appPort = appPorts[name]!;
      const config = name === 'denied' ? new FixedConfig({ inbound: { defaultPolicy: 'deny' } }) : dbConfig;
      const side = await loopbackSidecar(ca, DB, config, { inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }) });
      db[name] = side;
      stops.push(() => side.drain(0));
      const ip = `10.96.1.${i + 1}`;
      services.push({ name, namespace: 'shop', clusterIPs: [ip], ports: [{ port: 5432, protocol: 'tcp', targetPort: side.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: DB }] });
      explicitOutbound.push({ port: 0, destination: { address: ip, port: 5432, family: 'IPv4' as const } });
      via[name] = i;
    }

    // legacy: a peer that speaks tsmesh/tcp only (a proxy that predates tsmesh/tcp-mux), passing to the greet app.
    const creds = issueCredentials(ca, DB);
    const legacy = createTlsServer({ allowHalfOpen: true, key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: [MESH_ALPN.tcp] }, (tls: TLSSocket) => {
      legacyConnections++;
      assert.equal(tls.alpnProtocol, MESH_ALPN.tcp);
      tls.on('error', () => tls.destroy());
      const app = connect({ host: '127.0.0.1', port: appPorts['greet']!, allowHalfOpen: true });
      app.on('error', () => tls.destroy());
      tls.pipe(app);
      app.pipe(tls);
    });
    const legacyPort = await listen(legacy);
    stops.push(() => legacy.close());
    services.push({ name: 'legacy', namespace: 'shop', clusterIPs: ['10.96.1.99'], ports: [{ port: 5432, protocol: 'tcp', targetPort: legacyPort }], endpoints: [{ address: '127.0.0.1', identity: DB }] });
    explicitOutbound.push({ port: 0, destination: { address: '10.96.1.99', port: 5432, family: 'IPv4' as const } });
    via['legacy'] = explicitOutbound.length - 1;

    web = await loopbackSidecar(ca, WEB, new FixedConfig({ services }), { explicitOutbound });
    stops.unshift(() => web.drain(0));
  });

  after(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  const port = (service: string): number => web.explicitOutboundPorts[via[service]!]!;
  const handshakes = (s: Sidecar, direction: 'inbound' | 'outbound'): number => s.meshTls.handshakes[direction].full + s.meshTls.handshakes[direction].resumed;

  it("a server-first app's greeting arrives with no write from the client; the client's FIN reaches the app and its answer comes back", async () => {
    const s = await dial(port('greet'));
    const all = readAll(s);
    const [first] = (await once(s, 'data')) as [Buffer];
    assert.equal(first.toString(), GREETING);
    s.end('four');
    const { text, ended } = await all;
    assert.equal(text, `${GREETING}got 4\n`);
    assert.ok(ended, 'the answer ends with a FIN');
  });

  it('connections of the app to one endpoint are streams of one mTLS connection, each counted as a TCP connection', async () => {
    const before = handshakes(web, 'outbound');
    const openedIn = await metricValue(db['greet']!, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound' });
    const openedOut = await metricValue(web, 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: 'greet.shop', tls: 'true' });
    const answers = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const s = await dial(port('greet'));
        const all = readAll(s);
        s.end('x'.repeat(i));
        return (await all).text;
      }),
    );
    answers.forEach((a, i) => assert.equal(a, `${GREETING}got ${i}\n`));
    for (let i = 0; i < 5; i++) {
      const s = await dial(port('greet'));
      const all = readAll(s);
      s.end();
      assert.equal((await all).text, `${GREETING}got 0\n`);
    }
    assert.equal(handshakes(web, 'outbound') - before, 0, 'no handshake beyond the first test’s');
    assert.equal(handshakes(db['greet']!, 'inbound'), 1);
    assert.equal((await metricValue(db['greet']!, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound' })) - openedIn, 25);
    assert.equal((await metricValue(web, 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: 'greet.shop', tls: 'true' })) - openedOut, 25);
    assert.equal(await metricValue(web, 'tsmesh_tcp_connections_closed_total', { direction: 'outbound', destination_service: 'greet.shop' }), await metricValue(web, 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: 'greet.shop' }));
    assert.ok((await metricValue(db['greet']!, 'tsmesh_tcp_received_bytes_total', { direction: 'inbound' })) >= 190, 'the bytes the app received are counted');
  });

  it("the app server's FIN reaches the client, which still writes, and the app reads it", async () => {
    const s = await dial(port('fin'));
    const { text, ended } = await readAll(s);
    assert.equal(text, 'bye\n');
    assert.ok(ended);
    s.end('after your bye');
    await once(s, 'close');
    while (readByApp.length === 0) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(readByApp, ['after your bye']);
  });

  it('an app that refuses the connection: the client is closed without a byte, and no inbound connection is counted', async () => {
    const closedBefore = await metricValue(web, 'tsmesh_tcp_connections_closed_total', { direction: 'outbound', destination_service: 'refused.shop' });
    const s = await dial(port('refused'));
    const all = readAll(s);
    s.write('anyone there?');
    assert.equal((await all).text, '');
    assert.equal(await metricValue(db['refused']!, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound' }), 0);
    while ((await metricValue(web, 'tsmesh_tcp_connections_closed_total', { direction: 'outbound', destination_service: 'refused.shop' })) === closedBefore) await new Promise((r) => setTimeout(r, 20));
  });

  it("a caller the inbound policy denies: each stream is refused and counted, the app never sees it, and the pooled connection serves on", async () => {
    for (let i = 1; i <= 3; i++) {
      const s = await dial(port('denied'));
      const all = readAll(s);
      s.write('let me in');
      assert.equal((await all).text, '', 'no greeting: the app was not reached');
      assert.equal(await metricValue(db['denied']!, 'tsmesh_authz_denials_total', { source_identity: WEB, protocol: 'tcp', policy: 'default:deny' }), i);
      assert.equal(await metricValue(db['denied']!, 'tsmesh_connections_refused_total', { direction: 'inbound', reason: 'unauthorized' }), i);
    }
    assert.equal(handshakes(db['denied']!, 'inbound'), 1, 'one mTLS connection carried the three');
    assert.equal(await metricValue(db['denied']!, 'tsmesh_tcp_connections_opened_total', { direction: 'inbound' }), 0);
  });

  it('a paused reader holds the app back (the windows), not the proxies’ memory; every byte arrives once it reads', async () => {
    const s = await dial(port('bulk'));
    s.pause();
    // Wait until the app's writes stop: everything between it and the client is full.
    let last = -1;
    while (bulkWritten !== last) {
      last = bulkWritten;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(bulkWritten < BULK_BYTES / 2, `the app wrote ${bulkWritten} of ${BULK_BYTES} bytes to a reader that reads nothing`);
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    s.resume();
    await once(s, 'end');
    assert.equal(got, BULK_BYTES);
    s.destroy();
  });

  it('a pooled connection that breaks closes every app connection on it, at once', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => dial(port('broken'))));
    const closes = clients.map((c) => {
      const all = readAll(c);
      return all;
    });
    // Each stream is open at the app: its greeting came.
    await Promise.all(clients.map((c) => once(c, 'data')));
    assert.equal(handshakes(db['broken']!, 'inbound'), 1);
    // db's sidecar goes away at once: the one pooled connection is cut under the three streams.
    await db['broken']!.drain(0);
    // Closed, not left hanging (the app would answer only once the client ends).
    const results = await Promise.all(closes);
    for (const r of results) assert.equal(r.text, GREETING);
  });

  it('a caller that predates tsmesh/tcp-mux (tsmesh/tcp only) is served a connection of its own, as before', async () => {
    const creds = issueCredentials(ca, WEB);
    const tls = tlsConnect({ host: '127.0.0.1', port: db['greet']!.inboundPort, key: creds.keyPem, cert: creds.certChainPem, ca: creds.trustBundlePem, ALPNProtocols: [MESH_ALPN.tcp], checkServerIdentity: () => undefined });
    await once(tls, 'secureConnect');
    assert.equal(tls.alpnProtocol, MESH_ALPN.tcp);
    const all = readAll(tls);
    await once(tls, 'data');
    tls.end('abc');
    assert.equal((await all).text, `${GREETING}got 3\n`);
  });

  describe('the pool (TcpMuxPool), against db\'s sidecar', () => {
    /** What a stream gives until its end, having ended its own side. */
    const answer = (stream: MuxStream): Promise<string> => {
      let text = '';
      stream.on('data', (d: Buffer) => (text += d.toString()));
      stream.end();
      return new Promise((resolve, reject) => {
        stream.once('end', () => resolve(text));
        stream.once('error', reject);
      });
    };

    it('a connection without streams ends after its idle time, and the next stream opens a new one', async () => {
      const pool = new TcpMuxPool(web.meshTls, 100);
      const ep = { address: '127.0.0.1', port: db['greet']!.inboundPort, identity: DB };
      const before = handshakes(web, 'outbound');
      try {
        const first = await pool.open(ep);
        assert.ok(first instanceof MuxStream);
        assert.equal(await answer(first), `${GREETING}got 0\n`);
        assert.equal(pool.size, 1);
        while (pool.size > 0) await new Promise((r) => setTimeout(r, 20));
        const second = await pool.open(ep);
        assert.ok(second instanceof MuxStream);
        assert.equal(await answer(second), `${GREETING}got 0\n`);
        assert.equal(handshakes(web, 'outbound') - before, 2);
      } finally {
        pool.close();
      }
    });

    it(`a connection holding MAX_STREAMS (${MAX_STREAMS}) streams takes no more: the next goes on a new one`, async () => {
      const pool = new TcpMuxPool(web.meshTls);
      const ep = { address: '127.0.0.1', port: db['greet']!.inboundPort, identity: DB };
      const before = handshakes(web, 'outbound');
      try {
        const streams = await Promise.all(Array.from({ length: MAX_STREAMS + 1 }, () => pool.open(ep)));
        assert.equal(handshakes(web, 'outbound') - before, 2);
        const answers = await Promise.all(streams.map((s) => answer(s as MuxStream)));
        assert.ok(answers.every((a) => a === `${GREETING}got 0\n`));
      } finally {
        pool.close();
      }
    });

    it('an endpoint whose certificate names another SPIFFE ID than the config gives is not reached', async () => {
      const pool = new TcpMuxPool(web.meshTls);
      try {
        await assert.rejects(pool.open({ address: '127.0.0.1', port: db['greet']!.inboundPort, identity: 'spiffe://cluster.local/ns/shop/sa/other' }), (e: unknown) => e instanceof UpstreamConnectError && e.kind === 'tls');
        assert.equal(pool.size, 0);
      } finally {
        pool.close();
      }
    });
  });

  it('a peer that predates tsmesh/tcp-mux picks tsmesh/tcp: a connection per app connection, as before', async () => {
    for (let i = 0; i < 2; i++) {
      const s = await dial(port('legacy'));
      const all = readAll(s);
      await once(s, 'data');
      s.end('ab');
      assert.equal((await all).text, `${GREETING}got 2\n`);
    }
    assert.equal(legacyConnections, 2);
  });
});
