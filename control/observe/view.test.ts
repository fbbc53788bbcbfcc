import assert from 'node:assert/strict';
import { parseMetrics } from '../../lib/prom-text.js';
import type { MeshModel } from '../model.js';
import { modelScrapeTargets, scrapeTargets } from './targets.js';
import { buildMeshView, type TargetState } from './view.js';

const ID = (sa: string): string => `spiffe://cluster.local/ns/demo/sa/${sa}`;

/** A proxy's exposition with `n` outbound calls to `service` answered by `answeredBy` (code -> count), all in the 5 ms bucket. */
function outbound(self: string, service: string, calls: { by: string; code: string; n: number; tls?: string }[]): string {
  const lines = calls.map(
    (c) =>
      `tsmesh_requests_total{direction="outbound",source_identity="${ID(self)}",destination_identity="${ID(c.by)}",destination_service="${service}",response_code="${c.code}",tls="${c.tls ?? 'true'}"} ${c.n}`,
  );
  const n = calls.reduce((a, c) => a + c.n, 0);
  lines.push(`tsmesh_request_duration_seconds_bucket{le="0.005",direction="outbound",destination_service="${service}",response_code="200"} ${n}`);
  lines.push(`tsmesh_request_duration_seconds_bucket{le="+Inf",direction="outbound",destination_service="${service}",response_code="200"} ${n}`);
  return lines.join('\n');
}

function inbound(self: string, from: string, ok: number, failed: number): string {
  const line = (code: string, n: number): string =>
    `tsmesh_requests_total{direction="inbound",source_identity="${ID(from)}",destination_identity="${ID(self)}",destination_service="",response_code="${code}",tls="true"} ${n}`;
  return [
    line('200', ok),
    line('500', failed),
    `tsmesh_request_duration_seconds_bucket{le="0.01",direction="inbound",destination_service="",response_code="200"} ${ok + failed}`,
    `tsmesh_request_duration_seconds_bucket{le="+Inf",direction="inbound",destination_service="",response_code="200"} ${ok + failed}`,
  ].join('\n');
}

const CERT = 'tsmesh_identity_cert_expiration_timestamp_seconds 1700003600';
const T0 = 1_700_000_000_000;

function state(workload: string, texts: [number, string][], error?: string): TargetState {
  return {
    target: { workload, namespace: 'demo', url: `http://127.0.0.1/${workload}` },
    scrapes: texts.map(([at, text]) => ({ at, samples: parseMetrics(text) })),
    ...(error ? { error } : {}),
  };
}

describe('buildMeshView', () => {
  const view = buildMeshView(
    [
      state('web', [
        [T0, `${outbound('web', 'api.demo', [{ by: 'api', code: '200', n: 100 }])}\n${CERT}`],
        [
          T0 + 10_000,
          `${outbound('web', 'api.demo', [
            { by: 'api', code: '200', n: 190 },
            { by: 'api-v2', code: '200', n: 10 },
          ])}\n${CERT}`,
        ],
      ]),
      // Two pods of ratings: one scraped twice over 5 s, one down.
      state('ratings', [
        [T0 + 5_000, inbound('ratings', 'api', 0, 0)],
        [T0 + 10_000, inbound('ratings', 'api', 40, 10)],
      ]),
      state('ratings', [], 'connect ECONNREFUSED'),
      state('legacy', [
        [T0, outbound('legacy', 'ratings.demo', [{ by: 'ratings', code: '200', n: 1 }])],
        [T0 + 10_000, outbound('legacy', 'ratings.demo', [{ by: 'ratings', code: '200', n: 1, tls: 'false' }])],
      ]),
    ].map((s, i) => (i === 2 ? { ...s, target: { ...s.target, url: 'http://127.0.0.1/ratings-2' } } : s)),
    T0 + 10_000,
  );

  it('gives each edge its rate, success, latency, mTLS and both identities', () => {
    const edge = view.edges.find((e) => e.source === 'web')!;
    assert.equal(edge.destination, 'api.demo');
    assert.equal(edge.requests, 100);
    assert.equal(edge.rps, 10);
    assert.equal(edge.successRate, 1);
    assert.equal(edge.p50Ms, 2.5); // half of 100 observations under 5 ms, interpolated from 0
    assert.equal(edge.mtls, true);
    assert.deepEqual(edge.sourceIdentities, [ID('web')]);
    assert.deepEqual(edge.destinationIdentities, [ID('api'), ID('api-v2')]);
    assert.deepEqual(
      edge.split.map((s) => [s.workload, s.share]),
      [
        ['demo/api', 0.9],
        ['demo/api-v2', 0.1],
      ],
    );
  });

  it('marks an edge plain when a request in the window was not mTLS', () => {
    const edge = view.edges.find((e) => e.source === 'legacy')!;
    assert.equal(edge.mtls, false);
    assert.equal(edge.mtlsShare, 0);
    assert.equal(edge.rps, 0.1);
  });

  it('gives each workload what its pods answered, and how many of its proxies answered the scrape', () => {
    const ratings = view.workloads.find((w) => w.name === 'ratings')!;
    assert.equal(ratings.pods, 2);
    assert.equal(ratings.meshedPods, 1);
    assert.equal(ratings.rps, 10); // 50 requests over that pod's 5 s
    assert.equal(ratings.successRate, 0.8);
    assert.ok(Math.abs(ratings.p99Ms! - 9.9) < 1e-9, `p99 ${ratings.p99Ms}`); // 49.5 of 50 under 10 ms
    const web = view.workloads.find((w) => w.name === 'web')!;
    assert.equal(web.successRate, null, 'web answered nothing: no success rate rather than 0%');
    assert.equal(view.windowSeconds, 10);
  });

  it('reports each proxy: its certificate expiry, or why it could not be scraped', () => {
    const web = view.proxies.find((p) => p.workload === 'web')!;
    assert.equal(web.up, true);
    assert.equal(web.certExpiresAt, '2023-11-14T23:13:20.000Z');
    assert.equal(web.certExpiresInSeconds, 3600 - 10);
    const down = view.proxies.find((p) => p.url.endsWith('ratings-2'))!;
    assert.equal(down.up, false);
    assert.equal(down.error, 'connect ECONNREFUSED');
    assert.equal(down.certExpiresAt, null);
  });

  it('has no rates for a proxy scraped only once', () => {
    const once = buildMeshView([state('web', [[T0, outbound('web', 'api.demo', [{ by: 'api', code: '200', n: 5 }])]])], T0);
    assert.deepEqual(once.edges, []);
    assert.equal(once.workloads[0]!.requests, 0);
    assert.equal(once.proxies[0]!.up, true);
  });
});

describe('buildMeshView: both sides of an edge', () => {
  const ratingsIn = (from: string, code: string, n: number): string =>
    `tsmesh_requests_total{direction="inbound",source_identity="${ID(from)}",destination_identity="${ID('ratings')}",destination_service="ratings.demo",response_code="${code}",tls="true",grpc_status="",route=""} ${n}`;
  const apiProxy = (c: { ok: number; retries: number; exhausted: number; ejections: number; ejected: number; overloaded: number; faults: number }): string =>
    [
      // A label this view does not know (route) is summed over like the others.
      `tsmesh_requests_total{direction="outbound",source_identity="${ID('api')}",destination_identity="${ID('ratings')}",destination_service="ratings.demo",response_code="200",tls="true",grpc_status="",route="r1"} ${c.ok}`,
      `tsmesh_retries_total{destination_service="ratings.demo",reason="500"} ${c.retries}`,
      `tsmesh_retries_total{destination_service="web.demo",reason="500"} 999`,
      `tsmesh_retry_budget_exhausted_total{destination_service="ratings.demo"} ${c.exhausted}`,
      `tsmesh_endpoint_ejections_total{destination_service="ratings.demo"} ${c.ejections}`,
      `tsmesh_endpoints_ejected{destination_service="ratings.demo"} ${c.ejected}`,
      `tsmesh_overload_rejections_total{direction="outbound",destination_service="ratings.demo",limit="pending"} ${c.overloaded}`,
      `tsmesh_overload_rejections_total{direction="inbound",destination_service="ratings.demo",limit="pending"} 500`,
      `tsmesh_faults_injected_total{destination_service="ratings.demo",kind="abort"} ${c.faults}`,
    ].join('\n');
  const view = buildMeshView(
    [
      state('api', [
        [T0, apiProxy({ ok: 0, retries: 0, exhausted: 0, ejections: 0, ejected: 0, overloaded: 0, faults: 0 })],
        [T0 + 10_000, apiProxy({ ok: 100, retries: 30, exhausted: 2, ejections: 1, ejected: 1, overloaded: 3, faults: 4 })],
      ]),
      state('ratings', [
        [T0, [ratingsIn('api', '200', 0), ratingsIn('api', '500', 0), ratingsIn('api-v2', '500', 0)].join('\n')],
        [T0 + 10_000, [ratingsIn('api', '200', 100), ratingsIn('api', '500', 30), ratingsIn('api-v2', '500', 10)].join('\n')],
      ]),
    ],
    T0 + 10_000,
  );
  const edge = view.edges.find((e) => e.source === 'api')!;

  it("gives what the caller saw beside what the backend answered that caller (not another caller's calls)", () => {
    assert.equal(edge.successRate, 1);
    assert.deepEqual(edge.backend, { requests: 130, rps: 13, successRate: 100 / 130 });
  });

  it("counts what the caller's proxy did for this service only: retries, budget exhaustion, ejections, overload, faults", () => {
    assert.deepEqual(edge.resilience, { retries: 30, retryBudgetExhausted: 2, ejections: 1, endpointsEjected: 1, overloadRejections: 3, faultsInjected: 4 });
    assert.equal(edge.mtlsShare, 1);
    assert.deepEqual(edge.split, [{ identity: ID('ratings'), workload: 'demo/ratings', share: 1 }]);
    assert.deepEqual(view.workloads.find((w) => w.name === 'ratings')!.services, ['ratings.demo']);
  });
});

/** A mesh model with these services and nothing else. */
const modelOf = (services: MeshModel['services']): MeshModel => ({
  mesh: { trustDomain: 'cluster.local', mtlsMode: 'STRICT' } as MeshModel['mesh'],
  trafficPolicies: [],
  authorizationPolicies: [],
  services,
});

describe('modelScrapeTargets', () => {
  it('scrapes each meshed endpoint once, at the proxy admin port, as the workload its identity names', () => {
    const model = modelOf([
      {
        name: 'api',
        namespace: 'demo',
        clusterIPs: [],
        ports: [],
        endpoints: [
          { address: '10.244.1.5', identity: ID('api'), ready: true },
          { address: 'fd00::7', identity: ID('api'), ready: true },
          { address: '10.244.1.9', ready: true },
        ],
      },
      { name: 'api-all', namespace: 'demo', clusterIPs: [], ports: [], endpoints: [{ address: '10.244.1.5', identity: ID('api'), ready: true }] },
    ]);
    assert.deepEqual(modelScrapeTargets(model), [
      { workload: 'api', namespace: 'demo', url: 'http://10.244.1.5:15020/metrics' },
      { workload: 'api', namespace: 'demo', url: 'http://[fd00::7]:15020/metrics' },
    ]);
    assert.deepEqual(modelScrapeTargets(undefined), []);
  });
});

describe('scrapeTargets', () => {
  it('adds the proxies on the discovery stream that no Service has as an endpoint (a pure client), once each', () => {
    const model = modelOf([{ name: 'api', namespace: 'demo', clusterIPs: [], ports: [], endpoints: [{ address: '10.244.1.5', identity: ID('api'), ready: true }] }]);
    const connected = [
      { identity: { spiffeId: 'spiffe://cluster.local/ns/demo/sa/api', namespace: 'demo', serviceAccount: 'api' }, address: '10.244.1.5' },
      { identity: { spiffeId: 'spiffe://cluster.local/ns/demo/sa/loadgen', namespace: 'demo', serviceAccount: 'loadgen' }, address: '10.244.1.8' },
      { identity: { spiffeId: 'spiffe://cluster.local/ns/jobs/sa/batch', namespace: 'jobs', serviceAccount: 'batch' }, address: 'fd00::9' },
      { identity: { spiffeId: 'spiffe://cluster.local/ns/demo/sa/loadgen', namespace: 'demo', serviceAccount: 'loadgen' }, address: '10.244.1.8' },
    ];
    assert.deepEqual(scrapeTargets(model, connected), [
      { workload: 'api', namespace: 'demo', url: 'http://10.244.1.5:15020/metrics' },
      { workload: 'loadgen', namespace: 'demo', url: 'http://10.244.1.8:15020/metrics' },
      { workload: 'batch', namespace: 'jobs', url: 'http://[fd00::9]:15020/metrics' },
    ]);
    assert.deepEqual(scrapeTargets(undefined, []), []);
  });
});
