// Calls to a meshed pod's own address (a headless Service's DNS answer, a
// StatefulSet pod's name) between sidecars on loopback, over real mTLS: the
// caller's proxy pins them to that endpoint with the L7 handling of its
// Service's port, so a policy's retries go back to the pod the caller chose,
// the circuit breaker does not take it out and a route does not send the call
// to another service; an endpoint without a sidecar is passed through. Each
// endpoint is 127.0.0.1 on its sidecar's inbound port; the "app" of the
// client dials what `dialled` says (test/netns/pod-address.test.ts does the
// same through iptables with pod addresses of their own).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { type Sidecar } from './sidecar.js';
import { FixedConfig, loopbackSidecar, metricValue } from './testdata/mesh.js';
import type { OriginalDestination } from './orig-dst.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const CANARY = 'spiffe://cluster.local/ns/shop/sa/api-canary';
const SERVICE_IPS = { api: '10.96.0.10', 'api-canary': '10.96.0.11', legacy: '10.96.0.12' } as const;

type AppHandler = (req: IncomingMessage, res: ServerResponse) => void;
const ok: AppHandler = (_req, res) => res.end('ok');

interface Backend {
  identity: string;
  sidecar: Sidecar;
  hits: number;
  handle: AppHandler;
}


describe('calls to a meshed pod\'s own address, between sidecars on loopback', function () {
  this.timeout(60_000);
  let ca: CertificateAuthority;
  let client: Sidecar;
  let clientConfig: FixedConfig;
  let dialled: OriginalDestination = { address: SERVICE_IPS.api, port: 80, family: 'IPv4' };
  const backends: Record<string, Backend> = {};
  const servers: Server[] = [];
  let plain: { server: Server; hits: number; headers: IncomingMessage['headers'][] };

  async function listen(handler: AppHandler): Promise<Server> {
    const app = createServer(handler);
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    servers.push(app);
    return app;
  }

  async function startBackend(name: string, identity: string): Promise<void> {
    const app = await listen((req, res) => {
      b.hits++;
      b.handle(req, res);
    });
    const appPort = (app.address() as AddressInfo).port;
    const sidecar = await loopbackSidecar(ca, identity, new FixedConfig({}), {
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    const b: Backend = { identity, sidecar, hits: 0, handle: ok };
    backends[name] = b;
  }

  /** The pod address of a backend: where its sidecar takes connections. */
  const podOf = (name: string): OriginalDestination => ({ address: '127.0.0.1', port: backends[name]!.sidecar.inboundPort, family: 'IPv4' });
  const endpointOf = (name: string) => ({ address: '127.0.0.1', identity: backends[name]!.identity, ports: { http: backends[name]!.sidecar.inboundPort } });

  /** Service api (api-1, api-2) with `trafficPolicy`, api-canary (canary), legacy (a pod without a sidecar). */
  function setConfig(trafficPolicy?: object): void {
    const port = { port: 80, name: 'http', protocol: 'http', targetPort: 1 };
    clientConfig.set({
      services: [
        { name: 'api', namespace: 'shop', clusterIPs: [SERVICE_IPS.api], ports: [port], endpoints: [endpointOf('api-1'), endpointOf('api-2')], ...(trafficPolicy ? { trafficPolicy } : {}) },
        { name: 'api-canary', namespace: 'shop', clusterIPs: [SERVICE_IPS['api-canary']], ports: [port], endpoints: [endpointOf('canary')] },
        { name: 'legacy', namespace: 'shop', clusterIPs: [SERVICE_IPS.legacy], ports: [port], endpoints: [{ address: '127.0.0.1', ports: { http: (plain.server.address() as AddressInfo).port } }] },
      ],
    });
  }

  /** `n` requests, one at a time, each on a new connection to `to` (the outbound listener reads the destination per connection). */
  async function calls(to: OriginalDestination, n: number): Promise<{ status: number; error: string | undefined }[]> {
    dialled = to;
    const agent = new Agent({ pipelining: 0 });
    const out: { status: number; error: string | undefined }[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const res = await request(`http://127.0.0.1:${client.outboundPort}/orders`, { dispatcher: agent, headers: { host: 'api.shop' } });
        await res.body.dump();
        out.push({ status: res.statusCode, error: res.headers['x-tsmesh-error'] as string | undefined });
      }
    } finally {
      await agent.close();
    }
    return out;
  }

  before(async () => {
    ({ ca } = await newRootCa());
    clientConfig = new FixedConfig({});
    client = await loopbackSidecar(ca, WEB, clientConfig, {
      outboundOriginalDestination: () => dialled,
    });
    await startBackend('api-1', API);
    await startBackend('api-2', API);
    await startBackend('canary', CANARY);
    plain = { server: undefined as unknown as Server, hits: 0, headers: [] };
    plain.server = await listen((req, res) => {
      plain.hits++;
      plain.headers.push(req.headers);
      res.end('plain');
    });
  });

  beforeEach(() => {
    for (const b of Object.values(backends)) {
      b.hits = 0;
      b.handle = ok;
    }
  });

  after(async () => {
    await client?.drain(0);
    for (const b of Object.values(backends)) await b.sidecar.drain(0);
    for (const s of servers) s.close();
  });

  it('sends every call to the pod dialled, over mTLS, counted under its Service with both identities', async () => {
    setConfig();
    const before = await metricValue(client, 'tsmesh_requests_total', { direction: 'outbound', destination_service: 'api.shop', destination_identity: API, tls: 'true', response_code: '200' });
    const inboundBefore = await metricValue(backends['api-2']!.sidecar, 'tsmesh_requests_total', { direction: 'inbound', source_identity: WEB, tls: 'true' });
    const results = await calls(podOf('api-2'), 30);
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
    assert.deepEqual([backends['api-1']!.hits, backends['api-2']!.hits], [0, 30]);
    assert.equal((await metricValue(client, 'tsmesh_requests_total', { direction: 'outbound', destination_service: 'api.shop', destination_identity: API, tls: 'true', response_code: '200' })) - before, 30);
    assert.equal((await metricValue(backends['api-2']!.sidecar, 'tsmesh_requests_total', { direction: 'inbound', source_identity: WEB, tls: 'true' })) - inboundBefore, 30);
    // The same calls to the ClusterIP spread over both pods.
    await calls({ address: SERVICE_IPS.api, port: 80, family: 'IPv4' }, 30);
    assert.ok(backends['api-1']!.hits > 0, 'the ClusterIP balances over both endpoints');
  });

  it('retries go back to the pod the caller chose', async () => {
    setConfig({ retries: { attempts: 3, retryOn: ['503'], backoff: { base: '1ms', max: '2ms' } } });
    let n = 0;
    // Two failures, then success: the third try must find the same pod.
    backends['api-2']!.handle = (_req, res) => {
      res.statusCode = n++ % 3 < 2 ? 503 : 200;
      res.end();
    };
    const retriesBefore = await metricValue(client, 'tsmesh_retries_total', { destination_service: 'api.shop' });
    const results = await calls(podOf('api-2'), 10);
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
    assert.deepEqual([backends['api-1']!.hits, backends['api-2']!.hits], [0, 30]);
    assert.equal((await metricValue(client, 'tsmesh_retries_total', { destination_service: 'api.shop' })) - retriesBefore, 20);
  });

  it('the circuit breaker does not take the chosen pod out: its answers reach the caller', async () => {
    // maxEjectionPercent 100: the breaker could eject a service's only endpoint.
    setConfig({ circuitBreaker: { consecutiveFailures: 2, ejectionTime: '30s', maxEjectionPercent: 100 } });
    let n = 0;
    backends['api-2']!.handle = (_req, res) => {
      res.statusCode = n++ < 5 ? 500 : 200;
      res.end();
    };
    const results = await calls(podOf('api-2'), 10);
    assert.deepEqual(results.map((r) => r.status), [500, 500, 500, 500, 500, 200, 200, 200, 200, 200]);
    assert.equal(backends['api-2']!.hits, 10);
    assert.ok(results.every((r) => r.error === undefined), 'no answer of the proxy\'s own');
  });

  it('a route that sends the service\'s calls to another service leaves a call to a pod with that pod', async () => {
    setConfig({ routes: [{ name: 'all-to-canary', backends: [{ service: 'api-canary', weight: 1 }] }] });
    await calls({ address: SERVICE_IPS.api, port: 80, family: 'IPv4' }, 5);
    assert.deepEqual([backends['api-1']!.hits + backends['api-2']!.hits, backends['canary']!.hits], [0, 5]);
    await calls(podOf('api-1'), 5);
    assert.deepEqual([backends['api-1']!.hits, backends['canary']!.hits], [5, 5]);
  });

  it('the Service\'s timeout applies to a call to a pod', async () => {
    setConfig({ timeout: '200ms' });
    backends['api-1']!.handle = (_req, res) => void setTimeout(() => res.end('late'), 2000);
    const [r] = await calls(podOf('api-1'), 1);
    assert.deepEqual(r, { status: 504, error: 'timeout' });
  });

  it('a pod without a sidecar is passed through untouched, in plain HTTP', async () => {
    setConfig();
    const hits = plain.hits;
    const opened = await metricValue(client, 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: 'passthrough', tls: 'false' });
    const [r] = await calls({ address: '127.0.0.1', port: (plain.server.address() as AddressInfo).port, family: 'IPv4' }, 1);
    assert.equal(r!.status, 200);
    assert.equal(plain.hits - hits, 1);
    // No header of the proxy's own: the bytes went through as they were.
    assert.equal(plain.headers.at(-1)!['traceparent'], undefined);
    assert.equal((await metricValue(client, 'tsmesh_tcp_connections_opened_total', { direction: 'outbound', destination_service: 'passthrough', tls: 'false' })) - opened, 1);
  });
});
