// An upgraded connection (a WebSocket) is counted in the TCP families as the
// TCP connection it has become, by both proxies of a pair on loopback: opened
// once the 101 reaches the client, closed with its bytes each way when the
// tunnel ends, with the labels an opaque TCP connection gets (direction,
// destination_service, tls). The `ws` package is client and server; the
// figures are read from each sidecar's admin /metrics.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { find, parseMetrics, total, type Sample } from '../lib/prom-text.js';
import { createSidecarAdmin } from './admin/sidecar-admin.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';
const MESSAGES = 200;
const SIZE = 1000;
/** A 1,000-byte frame's head: 2 bytes, 2 of length, and the client's 4-byte mask. */
const CLIENT_FRAME = SIZE + 8;
const SERVER_FRAME = SIZE + 4;

describe('WebSocket bytes in the TCP metrics of a sidecar pair', function () {
  this.timeout(30_000);
  let app: HttpServer;
  let wss: WebSocketServer;
  let a: Sidecar;
  let b: Sidecar;
  const admins: Server[] = [];
  let ws: number;
  let opaque: number;

  async function scrape(s: Sidecar): Promise<Sample[]> {
    const admin = admins[s === a ? 0 : 1]!;
    const res = await fetch(`http://127.0.0.1:${(admin.address() as AddressInfo).port}/metrics`);
    assert.equal(res.status, 200);
    return parseMetrics(await res.text());
  }

  /** The metrics of `s` once `closed` connections are counted closed for `labels` (they close a moment after the client sees the end). */
  async function scrapeOnceClosed(s: Sidecar, labels: Record<string, string>, closed: number): Promise<Sample[]> {
    for (let i = 0; ; i++) {
      const samples = await scrape(s);
      if (total(samples, 'tsmesh_tcp_connections_closed_total', labels) >= closed || i === 100) return samples;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  before(async () => {
    const { ca } = await newRootCa();
    app = createHttpServer((_req, res) => res.end('plain'));
    wss = new WebSocketServer({ noServer: true });
    app.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => wss.handleUpgrade(req, socket, head, (c) => wss.emit('connection', c, req)));
    wss.on('connection', (c) => c.on('message', (m: Buffer, binary) => c.send(m, { binary })));
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    b = await loopbackSidecar(ca, API, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    a = await loopbackSidecar(
      ca,
      WEB,
      new FixedConfig({
        services: [
          {
            name: 'api',
            namespace: 'shop',
            clusterIPs: [SERVICE_IP],
            ports: [
              { port: 80, name: 'web', protocol: 'auto', targetPort: b.inboundPort },
              { port: 82, name: 'tcp', protocol: 'tcp', targetPort: b.inboundPort },
            ],
            endpoints: [{ address: '127.0.0.1', identity: API }],
          },
        ],
      }),
      {
        explicitOutbound: [
          { port: 0, destination: { address: SERVICE_IP, port: 80, family: 'IPv4' } },
          { port: 0, destination: { address: SERVICE_IP, port: 82, family: 'IPv4' } },
        ],
      },
    );
    [ws, opaque] = a.explicitOutboundPorts as [number, number];
    for (const s of [a, b]) {
      const admin = createSidecarAdmin(s, { notReadyReason: () => undefined }, { log: silentLogger });
      admin.listen(0, '127.0.0.1');
      await once(admin, 'listening');
      admins.push(admin);
    }
  });

  after(async () => {
    for (const admin of admins) admin.close();
    wss?.close();
    app?.closeAllConnections();
    app?.close();
    await a?.drain(0);
    await b?.drain(0);
  });

  it('counts a WebSocket as a TCP connection in both proxies, its bytes each way within 1% of the frames', async () => {
    const client = new WebSocket(`ws://127.0.0.1:${ws}/chat`);
    client.on('error', () => undefined);
    await once(client, 'open');
    const payload = Buffer.alloc(SIZE, 0x61);
    let echoed = 0;
    const allBack = new Promise<void>((resolve) =>
      client.on('message', () => {
        if (++echoed === MESSAGES) resolve();
      }),
    );
    for (let i = 0; i < MESSAGES; i++) client.send(payload);
    await allBack;
    client.close(1000);
    await once(client, 'close');

    // The 101 is counted as a request; its labels are the ones the TCP families must carry.
    const outLabels = { direction: 'outbound', destination_service: find(await scrape(a), 'tsmesh_requests_total', { direction: 'outbound', response_code: '101' })[0]?.labels['destination_service'] ?? '?' };
    const inLabels = { direction: 'inbound', destination_service: find(await scrape(b), 'tsmesh_requests_total', { direction: 'inbound', response_code: '101' })[0]?.labels['destination_service'] ?? '?' };
    const out = await scrapeOnceClosed(a, outLabels, 1);
    const inb = await scrapeOnceClosed(b, inLabels, 1);
    const up = MESSAGES * CLIENT_FRAME;
    const down = MESSAGES * SERVER_FRAME;
    const within = (got: number, want: number, what: string): void => assert.ok(got >= want && got <= want * 1.01, `${what}: ${got} bytes, expected ${want} to ${want * 1.01}`);
    for (const [name, samples, labels, sent, received] of [
      ['outbound', out, outLabels, up, down],
      ['inbound', inb, inLabels, down, up],
    ] as const) {
      assert.equal(total(samples, 'tsmesh_tcp_connections_opened_total', { ...labels, tls: 'true' }), 1, `${name}: opened`);
      assert.equal(total(samples, 'tsmesh_tcp_connections_closed_total', { ...labels, tls: 'true' }), 1, `${name}: closed`);
      const [gotSent, gotReceived] = [total(samples, 'tsmesh_tcp_sent_bytes_total', labels), total(samples, 'tsmesh_tcp_received_bytes_total', labels)];
      console.log(`      ${name}: sent ${gotSent} bytes (frames ${sent}), received ${gotReceived} (frames ${received})`);
      within(gotSent, sent, `${name} sent`);
      within(gotReceived, received, `${name} received`);
    }
  });

  it('with the label names and tls value an opaque TCP connection to the same Service gets', async () => {
    const s = connect(opaque, '127.0.0.1');
    s.on('error', () => undefined);
    s.end('GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n');
    s.resume();
    await once(s, 'close');
    for (const [sidecar, direction] of [
      [a, 'outbound'],
      [b, 'inbound'],
    ] as const) {
      const samples = await scrape(sidecar);
      const series = find(samples, 'tsmesh_tcp_connections_opened_total', { direction });
      assert.equal(total(samples, 'tsmesh_tcp_connections_opened_total', { direction }), 2, `${direction}: the WebSocket and the opaque connection`);
      const shapes = new Set(series.map((x) => `${Object.keys(x.labels).sort().join(',')} tls=${x.labels['tls']}`));
      assert.deepEqual([...shapes], ['destination_service,direction,tls tls=true'], `${direction}: one label set for the WebSocket and the opaque connection`);
      assert.equal(series.length, 1, `${direction}: the same series`);
    }
  });
});
