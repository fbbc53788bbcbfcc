// The labels of tsmesh_requests_total and tsmesh_request_duration_seconds
// through a real sidecar pair on loopback (real mTLS, real HTTP/1.1 and
// HTTP/2 clients): the TrafficPolicy route an outbound request took (default
// when none matched, empty inbound), the identities on both families, and
// every kind of outcome counted with them: answers, overload rejections,
// cancellations, upgraded connections (WebSocket), HTTP/2 requests and gRPC
// calls with their status.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, createServer as createH2cServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { parseMetrics, total, type Sample } from '../lib/prom-text.js';
import { waitFor } from '../lib/netns.js';
import type { Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar } from './testdata/mesh.js';
import { API, SERVICE_IP, startApiSidecar, WEB } from './testdata/shop.js';

const REQUESTS = 'tsmesh_requests_total';
const DURATION_COUNT = 'tsmesh_request_duration_seconds_count';
const SERVICE = 'api.shop';

/** api.shop on port 80 (protocol as given) at B's inbound port, with the TrafficPolicy given. */
const apiConfig = (inboundPort: number, protocol: string, trafficPolicy: object): object => ({
  services: [
    { name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IP], ports: [{ port: 80, protocol, targetPort: inboundPort }], endpoints: [{ address: '127.0.0.1', identity: API }], trafficPolicy },
  ],
});

describe('request metrics: route and identity labels through a sidecar pair on loopback', function () {
  this.timeout(30_000);
  let ca: CertificateAuthority;
  const stops: (() => unknown)[] = [];

  before(async () => {
    ({ ca } = await newRootCa());
  });

  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function listen(server: Server): Promise<number> {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    stops.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as AddressInfo).port;
  }

  async function pair(appPort: number, protocol: string, trafficPolicy: object): Promise<{ a: Sidecar; b: Sidecar }> {
    const b = await startApiSidecar(ca, appPort);
    stops.push(() => b.drain(0));
    const a = await loopbackSidecar(ca, WEB, new FixedConfig(apiConfig(b.inboundPort, protocol, trafficPolicy)), {
      outboundOriginalDestination: () => ({ address: SERVICE_IP, port: 80, family: 'IPv4' }),
    });
    stops.push(() => a.drain(0));
    return { a, b };
  }

  const samples = async (side: Sidecar): Promise<Sample[]> => parseMetrics(await side.metrics.registry.metrics());

  function get(port: number, path: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      });
      req.once('error', reject);
      req.end();
    });
  }

  it('HTTP/1.1: the route taken (default when none matched), the identities on both families, overload rejections and cancellations', async () => {
    const held: ServerResponse[] = [];
    const app = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.url?.startsWith('/slow')) {
        held.push(res);
        return;
      }
      res.end('ok');
    });
    stops.push(() => held.forEach((r) => r.destroy()));
    const appPort = await listen(app as unknown as Server);
    const { a, b } = await pair(appPort, 'http', {
      routes: [{ name: 'slow', match: { pathPrefix: '/slow' } }, { name: 'v1', match: { pathPrefix: '/v1' } }],
      limits: { maxRequestsPerEndpoint: 1, maxPendingRequests: 1, pendingTimeout: '50ms' },
    });

    for (let i = 0; i < 3; i++) assert.equal(await get(a.outboundPort, '/v1/items'), 200);
    for (let i = 0; i < 2; i++) assert.equal(await get(a.outboundPort, '/other'), 200);

    // One slow request takes the endpoint's one slot; the next waits 50 ms for it and is turned away; a third finds the queue full.
    const slow = httpRequest({ host: '127.0.0.1', port: a.outboundPort, path: '/slow/1' });
    slow.on('error', () => undefined);
    slow.end();
    await waitFor('the app to hold the slow request', async () => (held.length === 1 ? true : undefined), 5000, 10);
    const rejected = await Promise.all([get(a.outboundPort, '/slow/2'), get(a.outboundPort, '/slow/3')]);
    assert.deepEqual(rejected, [503, 503]);
    // The slow request's caller goes away: cancelled, counted with its route.
    slow.destroy();
    await waitFor('the cancellation to be counted', async () => (total(await samples(a), REQUESTS, { response_code: '0' }) === 1 ? true : undefined), 5000, 10);

    const out = await samples(a);
    const outbound = { direction: 'outbound', source_identity: WEB, destination_service: SERVICE };
    assert.equal(total(out, REQUESTS, { ...outbound, destination_identity: API, route: 'v1', response_code: '200', tls: 'true' }), 3);
    assert.equal(total(out, REQUESTS, { ...outbound, destination_identity: API, route: 'default', response_code: '200', tls: 'true' }), 2);
    assert.equal(total(out, REQUESTS, { ...outbound, route: 'slow', response_code: '503' }), 2, 'overload rejections carry their route');
    assert.equal(total(out, REQUESTS, { ...outbound, route: 'slow', response_code: '0' }), 1, 'a cancellation carries its route');
    // The histogram has the same labels but grpc_status and tls.
    assert.equal(total(out, DURATION_COUNT, { ...outbound, destination_identity: API, route: 'v1', response_code: '200' }), 3);
    assert.equal(total(out, DURATION_COUNT, { ...outbound, destination_identity: API, route: 'default', response_code: '200' }), 2);
    assert.equal(total(out, DURATION_COUNT, { ...outbound, route: 'slow', response_code: '503' }), 2);
    assert.equal(total(out, DURATION_COUNT, { ...outbound, route: 'slow', response_code: '0' }), 1);
    assert.equal(total(out, 'tsmesh_overload_rejections_total', { direction: 'outbound', destination_service: SERVICE }), 2);
    for (const s of out.filter((s) => s.name === REQUESTS || s.name === DURATION_COUNT)) assert.ok(s.value > 0, `no series without a request: ${JSON.stringify(s)}`);

    // Inbound: no route (routes are the caller's), the caller's and this workload's identities on both families.
    const inbound = { direction: 'inbound', source_identity: WEB, destination_identity: API, route: '', response_code: '200' };
    await waitFor('the server sidecar to count 5 answers', async () => (total(await samples(b), REQUESTS, inbound) === 5 ? true : undefined), 5000, 10);
    assert.equal(total(await samples(b), DURATION_COUNT, inbound), 5);
  });

  it('an upgraded connection (WebSocket): its 101 counted with its route and identities, then as the TCP connection it becomes', async () => {
    const app = createHttpServer((_req, res) => res.end('ok'));
    app.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d) => socket.write(d));
      socket.on('end', () => socket.end());
    });
    const appPort = await listen(app as unknown as Server);
    const { a, b } = await pair(appPort, 'http', { routes: [{ name: 'chat', match: { pathPrefix: '/chat' } }] });
    const socket = await new Promise<Socket>((ok, fail) => {
      const req = httpRequest({ host: '127.0.0.1', port: a.outboundPort, path: '/chat/room-1', headers: { connection: 'Upgrade', upgrade: 'websocket' } });
      req.once('upgrade', (_res, s: Socket) => ok(s));
      req.once('response', (res) => fail(new Error(`no upgrade: ${res.statusCode}`)));
      req.once('error', fail);
      req.end();
    });
    socket.write('hello');
    const [echo] = (await once(socket, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'hello');
    socket.end();
    await once(socket, 'close');

    const outbound = { direction: 'outbound', source_identity: WEB, destination_identity: API, destination_service: SERVICE, route: 'chat', response_code: '101' };
    const out = await samples(a);
    assert.equal(total(out, REQUESTS, { ...outbound, tls: 'true' }), 1);
    assert.equal(total(out, DURATION_COUNT, outbound), 1);
    await waitFor('the tunnel to be counted closed', async () => (total(await samples(a), 'tsmesh_tcp_connections_closed_total', { direction: 'outbound', destination_service: SERVICE, tls: 'true' }) === 1 ? true : undefined), 5000, 10);
    assert.equal(total(await samples(a), 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: SERVICE, tls: 'true' }), 1);
    const inbound = { direction: 'inbound', source_identity: WEB, destination_identity: API, route: '', response_code: '101' };
    await waitFor('the server sidecar to count the upgrade', async () => (total(await samples(b), DURATION_COUNT, inbound) === 1 ? true : undefined), 5000, 10);
    assert.equal(total(await samples(b), REQUESTS, { ...inbound, tls: 'true' }), 1);
  });

  it('HTTP/2 and gRPC: counted with their route, identities and grpc_status', async () => {
    const app = createH2cServer();
    app.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.resume();
      if (String(headers['content-type']).startsWith('application/grpc')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '5', 'grpc-message': 'not found' }));
        stream.end();
      } else {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      }
    });
    const appPort = await listen(app as unknown as Server);
    const { a, b } = await pair(appPort, 'auto', { routes: [{ name: 'lookup', match: { pathPrefix: '/shop.Api' } }] });
    const client = h2connect(`http://127.0.0.1:${a.outboundPort}`);
    stops.push(() => void client.close());
    client.on('error', () => undefined);
    const call = async (path: string, grpc: boolean): Promise<number> => {
      const s = client.request({ ':method': 'POST', ':path': path, ...(grpc ? { 'content-type': 'application/grpc', te: 'trailers' } : {}) });
      s.end(grpc ? Buffer.from([0, 0, 0, 0, 0]) : 'x');
      const [head] = (await once(s, 'response')) as [Record<string, unknown>];
      s.resume();
      await once(s, 'close');
      return Number(head[':status']);
    };
    for (let i = 0; i < 2; i++) assert.equal(await call('/shop.Api/Find', true), 200);
    assert.equal(await call('/plain', false), 200);

    const outbound = { direction: 'outbound', source_identity: WEB, destination_identity: API, destination_service: SERVICE };
    await waitFor('the gRPC calls to be counted', async () => (total(await samples(a), REQUESTS, { ...outbound, route: 'lookup', grpc_status: '5' }) === 2 ? true : undefined), 5000, 10);
    const out = await samples(a);
    assert.equal(total(out, DURATION_COUNT, { ...outbound, route: 'lookup', response_code: '200' }), 2);
    assert.equal(total(out, REQUESTS, { ...outbound, route: 'default', response_code: '200', grpc_status: '' }), 1);
    assert.equal(total(out, DURATION_COUNT, { ...outbound, route: 'default', response_code: '200' }), 1);
    const inbound = { direction: 'inbound', source_identity: WEB, destination_identity: API, route: '' };
    await waitFor('the server sidecar to count the gRPC calls', async () => (total(await samples(b), REQUESTS, { ...inbound, grpc_status: '5' }) === 2 ? true : undefined), 5000, 10);
    assert.equal(total(await samples(b), DURATION_COUNT, inbound), 3);
  });
});
