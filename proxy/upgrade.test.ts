// WebSocket through a sidecar pair on loopback: the `ws` package's client
// calls service api.shop through sidecar a, which carries the upgrade over
// mTLS to sidecar b, in front of an app that serves plain HTTP and `ws`'s
// server on one port (as most do). Port 80 of the service is detected (auto),
// port 81 declared http.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, request, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket, WebSocketServer } from 'ws';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { MAX_STREAMS } from './net/mux.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const SERVICE_IP = '10.96.0.10';

describe('WebSocket through a sidecar pair on loopback (mTLS between them)', function () {
  this.timeout(30_000);
  let app: HttpServer;
  let wss: WebSocketServer;
  let a: Sidecar;
  let b: Sidecar;
  let aConfig: FixedConfig;
  let bConfig: FixedConfig;
  /** The app's side of each WebSocket, as it was accepted. */
  const accepted: WebSocket[] = [];
  const appRequests: string[] = [];
  let auto: number;
  let http: number;

  const service = (trafficPolicy?: object): object => ({
    services: [
      {
        name: 'api',
        namespace: 'shop',
        clusterIPs: [SERVICE_IP],
        ports: [
          { port: 80, name: 'web', protocol: 'auto', targetPort: b.inboundPort },
          { port: 81, name: 'http-ws', protocol: 'http', targetPort: b.inboundPort },
        ],
        endpoints: [{ address: '127.0.0.1', identity: API }],
        ...(trafficPolicy ? { trafficPolicy } : {}),
      },
    ],
  });

  async function requestsTotal(s: Sidecar, labels: Record<string, string>): Promise<number> {
    const family = (await s.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tsmesh_requests_total');
    const values = (family as { values?: { value: number; labels: Record<string, string | number> }[] } | undefined)?.values ?? [];
    return values.filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)).reduce((n, v) => n + v.value, 0);
  }

  before(async () => {
    const { ca } = await newRootCa();
    app = createHttpServer((req, res) => {
      appRequests.push(req.url ?? '');
      res.end('plain');
    });
    wss = new WebSocketServer({ noServer: true });
    app.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (req.url !== '/raw') {
        wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
        return;
      }
      // A protocol of its own, to show a half-close: once the client has ended its side, the app still answers, then ends.
      socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\n');
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.once('end', () => setTimeout(() => socket.end(`after your end, I got ${JSON.stringify(got)}`), 50));
    });
    wss.on('connection', (ws, req) => {
      appRequests.push(`ws ${req.url}`);
      accepted.push(ws);
      ws.on('message', (m: Buffer, binary) => {
        if (!binary && m.toString() === 'close-me') ws.close(4002, 'server says bye');
        else ws.send(m, { binary });
      });
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const appPort = (app.address() as AddressInfo).port;
    bConfig = new FixedConfig({});
    b = await loopbackSidecar(ca, API, bConfig, {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    aConfig = new FixedConfig(service());
    a = await loopbackSidecar(ca, WEB, aConfig, {
      explicitOutbound: [
        { port: 0, destination: { address: SERVICE_IP, port: 80, family: 'IPv4' } },
        { port: 0, destination: { address: SERVICE_IP, port: 81, family: 'IPv4' } },
      ],
    });
    [auto, http] = a.explicitOutboundPorts as [number, number];
  });

  after(async () => {
    wss?.close();
    app?.closeAllConnections();
    app?.close();
    await a?.drain(0);
    await b?.drain(0);
  });

  async function open(port: number, path = '/chat'): Promise<WebSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.on('error', () => undefined);
    await once(ws, 'open');
    return ws;
  }

  for (const [kind, port] of [
    ['detected (auto)', () => auto],
    ['declared http', () => http],
  ] as const) {
    it(`carries a WebSocket on a port ${kind}: 1,000 echoed messages, binary frames, ping and pong, close codes both ways, counted as a 101 by both proxies`, async () => {
      const before = { a: await requestsTotal(a, { direction: 'outbound', response_code: '101' }), b: await requestsTotal(b, { direction: 'inbound', response_code: '101' }) };
      const ws = await open(port(), `/chat-${kind.split(' ')[0]}`);
      const echoed: string[] = [];
      await new Promise<void>((resolve) => {
        ws.on('message', (m: Buffer) => {
          echoed.push(m.toString());
          if (echoed.length === 1000) resolve();
          else ws.send(`message ${echoed.length}`);
        });
        ws.send('message 0');
      });
      assert.deepEqual(echoed, Array.from({ length: 1000 }, (_, i) => `message ${i}`));
      ws.removeAllListeners('message');
      const blob = Buffer.from(Array.from({ length: 512 * 1024 }, (_, i) => (i * 31) & 0xff));
      ws.send(blob);
      const [back, binary] = (await once(ws, 'message')) as [Buffer, boolean];
      assert.ok(binary && back.equals(blob), 'the binary frame came back intact');
      ws.ping('ping from the client');
      assert.equal(String(((await once(ws, 'pong')) as [Buffer])[0]), 'ping from the client');
      const server = accepted.at(-1)!;
      server.ping('ping from the app');
      assert.equal(String(((await once(server, 'pong')) as [Buffer])[0]), 'ping from the app');
      ws.send('close-me');
      const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
      assert.deepEqual([code, String(reason)], [4002, 'server says bye']);
      const ws2 = await open(port());
      const server2 = accepted.at(-1)!;
      const closed = once(server2, 'close');
      ws2.close(4001, 'client says bye');
      const [code2, reason2] = (await closed) as [number, Buffer];
      assert.deepEqual([code2, String(reason2)], [4001, 'client says bye']);
      assert.equal(await requestsTotal(a, { direction: 'outbound', response_code: '101', destination_service: 'api.shop' }), before.a + 2);
      assert.equal(await requestsTotal(b, { direction: 'inbound', response_code: '101', source_identity: WEB }), before.b + 2);
    });
  }

  it('carries each WebSocket on a tsmesh/mux stream beside the plain requests, and opens another mux connection once one holds MAX_STREAMS', async function () {
    this.timeout(60_000);
    const get = (): Promise<string> =>
      new Promise((resolve, reject) => {
        request({ host: '127.0.0.1', port: auto, path: '/plain' }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(body));
        })
          .on('error', reject)
          .end();
      });
    assert.equal(await get(), 'plain');
    const base = b.openConnections();
    const sockets = [await open(auto), await open(auto), await open(http)];
    assert.equal(b.openConnections(), base, 'no connection of their own at the server\'s proxy');
    assert.equal(await get(), 'plain', 'plain requests go on meanwhile');
    // As many WebSockets as one mux connection takes streams, and more: they go on a second connection.
    while (sockets.length < MAX_STREAMS + 20) sockets.push(...(await Promise.all(Array.from({ length: 50 }, () => open(auto)))));
    assert.equal(b.openConnections(), base + 1);
    const last = sockets.at(-1)!;
    last.send('on the second connection');
    assert.equal(String(((await once(last, 'message')) as [Buffer])[0]), 'on the second connection');
    assert.equal(await get(), 'plain');
    for (const ws of sockets) ws.close();
    await Promise.all(sockets.map((ws) => once(ws, 'close')));
  });

  it('measures the heap the two proxies hold per idle WebSocket (printed), under 32 KiB', async function () {
    this.timeout(60_000);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = async (): Promise<number> => {
      for (let i = 0; i < 4; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 50));
      }
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const N = 500;
    const openMany = async (port: number): Promise<WebSocket[]> => {
      const sockets: WebSocket[] = [];
      while (sockets.length < N) sockets.push(...(await Promise.all(Array.from({ length: 50 }, () => open(port)))));
      return sockets;
    };
    const appPort = (app.address() as AddressInfo).port;
    /** Heap per WebSocket held open to `port`, after a round that lets pools and caches grow. */
    const perSocket = async (port: number): Promise<number> => {
      for (const ws of await openMany(port)) ws.terminate();
      await new Promise((r) => setTimeout(r, 300));
      const before = await heap();
      const sockets = await openMany(port);
      await new Promise((r) => setTimeout(r, 300));
      const held = (await heap()) - before;
      for (const ws of sockets) ws.terminate();
      await new Promise((r) => setTimeout(r, 300));
      return held / N / 1024;
    };
    const direct = await perSocket(appPort);
    const through = await perSocket(auto);
    console.log(`      heap per idle WebSocket: ${direct.toFixed(1)} KiB client and app alone, ${through.toFixed(1)} KiB through the pair: ${(through - direct).toFixed(1)} KiB in the two proxies`);
    assert.ok(through - direct < 32, `${(through - direct).toFixed(1)} KiB per WebSocket in the proxies`);
  });

  it('passes a half-close across the mTLS hop: the client ends its side, the app\'s answer still arrives', async () => {
    const raw = connect({ port: auto, host: '127.0.0.1', allowHalfOpen: true });
    raw.write('GET /raw HTTP/1.1\r\nhost: api.shop\r\nconnection: Upgrade\r\nupgrade: x-raw\r\n\r\n');
    let got = '';
    raw.on('data', (d: Buffer) => (got += d.toString('latin1')));
    while (!got.includes('\r\n\r\n')) await once(raw, 'data');
    assert.match(got, /^HTTP\/1.1 101 Switching Protocols\r\n[\s\S]*upgrade: x-raw\r\n\r\n$/);
    raw.end('last words');
    await once(raw, 'close');
    assert.ok(got.endsWith('\r\n\r\nafter your end, I got "last words"'), JSON.stringify(got));
  });

  it('answers 403 before upgrading when an authorization policy denies the caller: the app never sees the WebSocket', async () => {
    bConfig.set({ inbound: { authorization: [{ name: 'only-admin', rules: [{ serviceAccounts: ['shop/admin'] }] }] } });
    try {
      const seen = appRequests.length;
      const ws = new WebSocket(`ws://127.0.0.1:${auto}/denied`);
      ws.on('error', () => undefined);
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number; headers: Record<string, string> }];
      assert.equal(res.statusCode, 403);
      assert.equal(res.headers['x-tsmesh-error'], 'denied');
      ws.terminate();
      assert.equal(appRequests.length, seen);
    } finally {
      bConfig.set({});
    }
    const ws = await open(auto);
    ws.close();
  });

  it('leaves an open WebSocket alone past the route timeout, and the circuit breaker counts its upgrade as one success', async () => {
    aConfig.set(service({ name: 'strict', timeout: '300ms', circuitBreaker: { consecutiveFailures: 1, maxEjectionPercent: 100 } }));
    try {
      const ws = await open(auto);
      await new Promise((r) => setTimeout(r, 1000));
      ws.send('still open');
      const [m] = (await once(ws, 'message')) as [Buffer];
      assert.equal(m.toString(), 'still open');
      ws.close();
      await once(ws, 'close');
      const ejections = (await a.metrics.registry.getMetricsAsJSON()).find((f) => f.name === 'tsmesh_endpoint_ejections_total') as { values?: { value: number }[] } | undefined;
      assert.equal((ejections?.values ?? []).reduce((n, v) => n + v.value, 0), 0);
      const again = await open(auto);
      again.close();
    } finally {
      aConfig.set(service());
    }
  });
});
