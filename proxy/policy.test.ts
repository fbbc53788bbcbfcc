// Traffic policy end to end on loopback: a client-side sidecar (web) calls
// the service "api" whose endpoints are real apps behind their own sidecars,
// over real mTLS. Each test sets the policy it exercises.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { CertificateAuthority } from '../ca/authority.js';
import { newRootCa } from '../ca/testdata/fixtures.js';
import { silentLogger } from '../lib/log.js';
import { startSidecar, type Sidecar } from './sidecar.js';
import { FixedConfig, FixedIdentity, issueCredentials, loopbackSidecar, metricValue } from './testdata/mesh.js';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const SERVICE_IPS: Record<string, string> = { api: '10.96.0.10', 'api-canary': '10.96.0.11' };

type AppHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** An app behind its own sidecar: one endpoint of a service. */
interface Backend {
  name: string;
  identity: string;
  sidecar: Sidecar;
  config: FixedConfig;
  /** Requests the app received. */
  hits: number;
  /** What the app answers; tests replace it. */
  handle: AppHandler;
  /** Headers of the last request the app received. */
  lastHeaders: IncomingMessage['headers'];
}

const ok: AppHandler = (_req, res) => res.end('ok');


describe('traffic policy between sidecars on loopback', function () {
  this.timeout(60_000);
  let ca: CertificateAuthority;
  let client: Sidecar;
  let clientConfig: FixedConfig;
  const backends = new Map<string, Backend>();
  const servers: Server[] = [];
  const agent = new Agent({ connections: 32 });

  async function startBackend(name: string, sa: string): Promise<Backend> {
    const identity = `spiffe://cluster.local/ns/shop/sa/${sa}`;
    const app = createServer((req, res) => {
      b.hits++;
      b.lastHeaders = req.headers;
      b.handle(req, res);
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    servers.push(app);
    const appPort = (app.address() as AddressInfo).port;
    const config = new FixedConfig({});
    const sidecar = await startSidecar({
      identity: new FixedIdentity(issueCredentials(ca, identity)),
      config,
      log: silentLogger,
      host: '127.0.0.1',
      outboundPort: 0,
      inboundPort: 0,
      inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
    });
    const b: Backend = { name, identity, sidecar, config, hits: 0, handle: ok, lastHeaders: {} };
    backends.set(name, b);
    return b;
  }

  /** Points the client at the services, each with its endpoints (backends by name) and optional policy. */
  function setServices(services: { name: string; endpoints: string[]; trafficPolicy?: object }[], mesh: object = {}): void {
    clientConfig.set({
      mesh,
      services: services.map((s) => ({
        name: s.name,
        namespace: 'shop',
        clusterIPs: [SERVICE_IPS[s.name]],
        ports: [{ port: 80, name: 'http', targetPort: 1 }],
        endpoints: s.endpoints.map((n) => {
          const b = backends.get(n)!;
          return { address: '127.0.0.1', identity: b.identity, ports: { http: b.sidecar.inboundPort } };
        }),
        ...(s.trafficPolicy ? { trafficPolicy: s.trafficPolicy } : {}),
      })),
    });
  }

  async function call(headers: Record<string, string> = {}) {
    const res = await request(`http://127.0.0.1:${client.outboundPort}/orders`, { dispatcher: agent, headers: { host: 'api.shop', ...headers } });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  }

  /** `n` requests, `concurrency` at a time; returns the statuses. */
  async function load(n: number, concurrency: number, headers: Record<string, string> = {}): Promise<number[]> {
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++;
          statuses.push((await call(headers)).status);
        }
      }),
    );
    return statuses;
  }

  const resetHits = (): void => {
    for (const b of backends.values()) {
      b.hits = 0;
      b.handle = ok;
    }
  };

  before(async () => {
    ({ ca } = await newRootCa());
    clientConfig = new FixedConfig({});
    client = await loopbackSidecar(ca, WEB, clientConfig, {
      // Every connection from "the app" is to the api service.
      outboundOriginalDestination: () => ({ address: SERVICE_IPS.api!, port: 80, family: 'IPv4' }),
    });
    for (const [name, sa] of [
      ['api-1', 'api'],
      ['api-2', 'api'],
      ['api-3', 'api'],
      ['canary', 'api-canary'],
    ] as const)
      await startBackend(name, sa);
  });

  beforeEach(resetHits);

  after(async () => {
    await agent.close();
    await client?.drain(0);
    for (const b of backends.values()) await b.sidecar.drain(0);
    for (const s of servers) s.close();
  });

  it('splits 90/10 to a canary over 2000 requests, and routes by header (A/B)', async () => {
    setServices([
      {
        name: 'api',
        endpoints: ['api-1'],
        trafficPolicy: {
          routes: [
            { name: 'testers', match: { headers: { 'x-canary': 'yes' } }, backends: [{ service: 'api-canary', weight: 1 }] },
            { name: 'split', backends: [{ service: 'api', weight: 90 }, { service: 'api-canary', weight: 10 }] },
          ],
        },
      },
      { name: 'api-canary', endpoints: ['canary'] },
    ]);
    const statuses = await load(2000, 20);
    assert.ok(statuses.every((s) => s === 200));
    const share = backends.get('canary')!.hits / 2000;
    assert.ok(share > 0.075 && share < 0.125, `canary share ${share}`);
    assert.equal(backends.get('api-1')!.hits + backends.get('canary')!.hits, 2000);

    resetHits();
    await load(50, 5, { 'x-canary': 'yes' });
    assert.equal(backends.get('canary')!.hits, 50);
    assert.equal(backends.get('api-1')!.hits, 0);
  });

  it('masks a backend failing 30% of requests with retries', async () => {
    const b = backends.get('api-1')!;
    let n = 0;
    // Three failures in every ten, never two in a row: one retry always succeeds.
    b.handle = (_req, res) => {
      res.statusCode = [0, 3, 6].includes(n++ % 10) ? 503 : 200;
      res.end();
    };
    // 30% of tries failing takes retries of 3/7 of the requests: more than the default 20% budget gives at any real rate.
    const retries = { attempts: 3, retryOn: ['5xx'], backoff: { base: '1ms', max: '5ms' }, budget: { ratio: 0.5, minRetriesPerSecond: 10, ttl: '10s' } };
    setServices([{ name: 'api', endpoints: ['api-1'], trafficPolicy: { retries } }]);
    const statuses = await load(500, 1);
    assert.deepEqual([...new Set(statuses)], [200]);
    assert.ok(b.hits >= 714 && b.hits <= 715, `the backend saw ${b.hits} tries`);
    assert.equal(await metricValue(client, 'tsmesh_retries_total', { destination_service: 'api.shop', reason: '503' }), b.hits - 500);
  });

  it('holds the retry budget with a backend failing every request and attempts 3: the backend sees at most 1.25x', async () => {
    const b = backends.get('api-1')!;
    b.handle = (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    // The mesh budget (no policy budget), with a floor of 1 retry per second.
    setServices(
      [{ name: 'api', endpoints: ['api-1'], trafficPolicy: { retries: { attempts: 3, retryOn: ['5xx'], backoff: { base: '1ms', max: '2ms' } } } }],
      { retryBudget: { ratio: 0.2, minRetriesPerSecond: 1, ttl: '10s' } },
    );
    const before = await metricValue(client, 'tsmesh_retry_budget_exhausted_total', { destination_service: 'api.shop' });
    const statuses = await load(1000, 10);
    assert.ok(statuses.every((s) => s === 503));
    assert.ok(b.hits <= 1250, `the backend saw ${b.hits} requests for 1000`);
    assert.ok(b.hits >= 1150, `retries should use the budget: ${b.hits}`);
    assert.ok((await metricValue(client, 'tsmesh_retry_budget_exhausted_total', { destination_service: 'api.shop' })) - before > 500);
  });

  it('ejects a failing endpoint, and takes it back through a probe once it recovers', async () => {
    // Endpoints the balancer has not measured yet: none starts out slower than the others.
    const bad = backends.get('api-2')!;
    bad.handle = (_req, res) => {
      res.statusCode = 500;
      res.end();
    };
    setServices([{ name: 'api', endpoints: ['api-2', 'api-3', 'canary'], trafficPolicy: { circuitBreaker: { consecutiveFailures: 3, ejectionTime: '1s' } } }]);
    const ejectionsBefore = await metricValue(client, 'tsmesh_endpoint_ejections_total', { destination_service: 'api.shop' });
    // A few requests at a time, so the balancer's in-flight counts spread them.
    await load(300, 4);
    const atEjection = bad.hits;
    assert.ok(atEjection >= 3 && atEjection <= 3 + 4, `three failures in a row (plus what was already in flight): ${atEjection}`);
    assert.equal((await metricValue(client, 'tsmesh_endpoint_ejections_total', { destination_service: 'api.shop' })) - ejectionsBefore, 1);
    await load(100, 4);
    assert.equal(bad.hits, atEjection, 'no traffic while ejected');

    bad.handle = ok;
    bad.hits = 0;
    await new Promise((r) => setTimeout(r, 1100));
    const statuses = await load(300, 4);
    assert.ok(statuses.every((s) => s === 200));
    assert.ok(bad.hits >= 20, `back in service: ${bad.hits} of 300 requests`);
  });

  it('aborts the configured share of requests, counted as injected faults', async () => {
    setServices([{ name: 'api', endpoints: ['api-1'], trafficPolicy: { faults: { abort: { percent: 20, status: 500 } } } }]);
    const statuses = await load(1000, 20);
    const aborted = statuses.filter((s) => s === 500).length;
    assert.ok(aborted > 150 && aborted < 250, `${aborted} of 1000 aborted`);
    assert.equal(backends.get('api-1')!.hits, 1000 - aborted);
    assert.equal(await metricValue(client, 'tsmesh_faults_injected_total', { destination_service: 'api.shop', kind: 'abort' }), aborted);
    const one = await call();
    if (one.status === 500) assert.equal(one.headers['x-tsmesh-error'], 'fault-injected');
  });

  it('delays requests by the configured duration', async () => {
    setServices([{ name: 'api', endpoints: ['api-1'], trafficPolicy: { faults: { delay: { percent: 100, duration: '300ms' } } } }]);
    const started = performance.now();
    const r = await call();
    assert.equal(r.status, 200);
    assert.ok(performance.now() - started >= 295, `answered after ${performance.now() - started} ms`);
    assert.ok((await metricValue(client, 'tsmesh_faults_injected_total', { destination_service: 'api.shop', kind: 'delay' })) >= 1);
  });

  it('answers 504 when the route timeout passes', async () => {
    backends.get('api-1')!.handle = (_req, res) => void setTimeout(() => res.end('late'), 1000);
    setServices([{ name: 'api', endpoints: ['api-1'], trafficPolicy: { timeout: '200ms' } }]);
    const started = performance.now();
    const r = await call();
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tsmesh-error'], 'timeout');
    assert.ok(performance.now() - started < 900);
  });

  it('denies callers no rule allows with 403 and a reason, and allows them once a rule does', async () => {
    const b = backends.get('api-1')!;
    setServices([{ name: 'api', endpoints: ['api-1'] }]);
    b.config.set({ inbound: { authorization: [{ name: 'only-frontend', rules: [{ serviceAccounts: ['shop/frontend'] }] }] } });
    try {
      const denied = await call();
      assert.equal(denied.status, 403);
      assert.equal(denied.headers['x-tsmesh-error'], 'denied');
      assert.match(denied.text, /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web may not call port \d+: no rule of the authorization policies \(only-frontend\) allows it/);
      assert.equal(b.hits, 0);
      assert.equal(await metricValue(b.sidecar, 'tsmesh_authz_denials_total', { source_identity: WEB, protocol: 'http' }), 1);

      b.config.set({ inbound: { authorization: [{ name: 'shop-callers', rules: [{ namespaces: ['shop'] }] }] } });
      const allowed = await call();
      assert.equal(allowed.status, 200);
      assert.equal(b.hits, 1);
    } finally {
      b.config.set({});
    }
  });

  it('passes traceparent and tracestate on untouched without span export, and starts no trace when there is none', async () => {
    const b = backends.get('api-1')!;
    setServices([{ name: 'api', endpoints: ['api-1'] }]);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await call({ traceparent, tracestate: 'shop=1' });
    assert.equal(b.lastHeaders.traceparent, traceparent);
    assert.equal(b.lastHeaders.tracestate, 'shop=1');

    await call();
    assert.equal(b.lastHeaders.traceparent, undefined);
  });
});
