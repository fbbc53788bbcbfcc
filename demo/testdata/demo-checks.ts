// What every `tsmesh demo` test checks, whatever the mode: the console table
// from the control plane's view, the traffic, the mTLS identities on every
// edge, the canary's share, retries hiding the flaky service; and the same
// edges through Prometheus. Read from the sidecars' /metrics, as a scraper
// would.
import assert from 'node:assert/strict';
import { parseMetrics, total, type Sample } from '../../lib/prom-text.js';
import type { RunningDemo } from '../run.js';
import { formatDemoTable } from '../stats.js';
import { NAMESPACE, RATINGS_FAILURE_SHARE, WORKLOADS } from '../topology.js';

const spiffe = (account: string): string => `spiffe://cluster.local/ns/${NAMESPACE}/sa/${account}`;

/** Every call between workloads: caller, the service it calls, the accounts that answer. */
export const EDGES: readonly [string, string, string[]][] = [
  ['loadgen', `web.${NAMESPACE}`, ['web']],
  ['web', `api.${NAMESPACE}`, ['api', 'api-v2']],
  ['api', `ratings.${NAMESPACE}`, ['ratings']],
  ['api-v2', `ratings.${NAMESPACE}`, ['ratings']],
];

export async function sidecarMetrics(demo: RunningDemo, workload: string): Promise<Sample[]> {
  const res = await fetch(`${demo.adminUrls.get(workload)}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, `${workload}'s sidecar /metrics`);
  return parseMetrics(await res.text());
}

async function outbound(demo: RunningDemo, workload: string): Promise<{ service: string; identity: string; tls: string; value: number }[]> {
  return (await sidecarMetrics(demo, workload))
    .filter((s) => s.name === 'tsmesh_requests_total' && s.labels.direction === 'outbound')
    .map((s) => ({ service: s.labels.destination_service!, identity: s.labels.destination_identity!, tls: s.labels.tls!, value: s.value }));
}

const sum = (rows: { value: number }[]): number => rows.reduce((n, r) => n + r.value, 0);

/**
 * Enough requests that the canary's +-3% is more than 4 standard deviations
 * of a 10% share (sqrt(0.1 * 0.9 / 2000) = 0.67%): a check that fails by
 * chance about once in 100,000 runs, not about once in 600 as with 1,000.
 */
export const DEMO_REQUESTS = 2000;

/** Lets the traffic generator send `requests` requests (however long a busy machine takes), then stops it. */
export async function driveTraffic(demo: RunningDemo, requests = DEMO_REQUESTS, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (demo.load.counts.ok + demo.load.counts.failed < requests && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  demo.load.stop();
  await new Promise((r) => setTimeout(r, 1000));
}

/** The mesh's promises, as `it`s over the demo that `demo()` returns once traffic has run. */
export function itKeepsTheDemoPromises(demo: () => RunningDemo): void {
  // First, while the control plane's 10 s window still holds the traffic that driveTraffic stopped.
  it("prints the console table from the control plane's view: every call, over mTLS, and what each app answered", () => {
    const view = demo().controlPlane.meshView();
    assert.ok(view, 'the demo control plane has a mesh view');
    const table = formatDemoTable(view);
    const [head, ...rows] = table.split('\n').map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(head, ['EDGE', 'RPS', 'SUCCESS', 'P50', 'P95', 'P99', 'SECURITY'], table);
    const row = (edge: string): string[] => rows.find((r) => r[0] === edge) ?? assert.fail(`no row ${edge} in\n${table}`);
    for (const [caller, service, accounts] of EDGES) {
      const [, rps, success, p50, , p99, security] = row(`${caller} -> ${service}`);
      assert.ok(parseFloat(rps!) > 0, `${caller} -> ${service} at ${rps} rps\n${table}`);
      assert.match(success!, /^\d+\.\d\d%$/);
      assert.ok(parseFloat(p50!) <= parseFloat(p99!), `${caller} -> ${service} p50 ${p50} > p99 ${p99}`);
      assert.equal(security, `mTLS ${accounts.map((a) => `sa/${a}`).join(', ')}`);
    }
    const callees = WORKLOADS.filter((w) => w.service !== undefined).map((w) => w.name);
    for (const name of callees) assert.ok(parseFloat(row(`* -> ${name} (as answered)`)[1]!) > 0, `${name} answered nothing\n${table}`);
    assert.equal(rows.length, EDGES.length + callees.length, table);
  });

  it("carries traffic on every edge over mTLS, with the callee's SPIFFE ID", async () => {
    for (const [caller, service, accounts] of EDGES) {
      const rows = (await outbound(demo(), caller)).filter((r) => r.service === service);
      assert.ok(sum(rows) > 0, `${caller} -> ${service} carried no request`);
      assert.ok(rows.every((r) => r.tls === 'true'), `${caller} -> ${service} not all over mTLS`);
      assert.deepEqual([...new Set(rows.map((r) => r.identity))].sort(), accounts.map(spiffe).sort());
    }
  });

  it("sends 10% +- 3% of api's requests to the canary api-v2", async () => {
    const rows = (await outbound(demo(), 'web')).filter((r) => r.service === `api.${NAMESPACE}`);
    const all = sum(rows);
    const canary = sum(rows.filter((r) => r.identity === spiffe('api-v2')));
    assert.ok(all >= DEMO_REQUESTS, `only ${all} requests`);
    const share = canary / all;
    console.log(`      canary share: ${(share * 100).toFixed(1)}% of ${all} requests`);
    assert.ok(Math.abs(share - 0.1) <= 0.03, `canary share ${(share * 100).toFixed(1)}% of ${all}`);
  });

  it('keeps the client-visible success rate above 99% while ratings fails far more often', async () => {
    const { ok, failed } = demo().load.counts;
    console.log(`      traffic generator: ${ok} ok, ${failed} failed`);
    assert.ok(ok / (ok + failed) > 0.99, `loadgen saw ${ok} ok, ${failed} failed`);
    // What ratings itself answered, as the api sidecar's retries saw it.
    const api = await sidecarMetrics(demo(), 'api');
    const retried = total(api, 'tsmesh_retries_total', { reason: '500' });
    const calls = sum((await outbound(demo(), 'api')).filter((r) => r.service === `ratings.${NAMESPACE}`));
    assert.ok(retried / calls > RATINGS_FAILURE_SHARE / 2, `ratings failed ${retried} times for ${calls} calls`);
  });
}

/**
 * Each edge as the caller's sidecar reports it to Prometheus: source account,
 * destination_service, the account that answered (the canary api-v2 is a
 * backend of service api).
 */
export const PROMETHEUS_EDGES: readonly [string, string, string][] = [
  ['loadgen', `web.${NAMESPACE}`, 'web'],
  ['web', `api.${NAMESPACE}`, 'api'],
  ['web', `api.${NAMESPACE}`, 'api-v2'],
  ['api', `ratings.${NAMESPACE}`, 'ratings'],
  ['api-v2', `ratings.${NAMESPACE}`, 'ratings'],
];

interface VectorResult {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

/** An instant query to the demo's Prometheus. */
export async function promQuery(demo: RunningDemo, query: string): Promise<VectorResult['data']['result']> {
  const res = await fetch(`${demo.prometheus!.url}/api/v1/query?query=${encodeURIComponent(query)}`, { signal: AbortSignal.timeout(10_000) });
  const body = (await res.json()) as VectorResult;
  assert.equal(body.status, 'success', JSON.stringify(body));
  return body.data.result;
}

/** Waits until Prometheus has a tsmesh_requests_total series with requests on every edge; returns the edges it saw. */
export async function waitForPrometheusEdges(demo: RunningDemo, timeoutMs = 60_000): Promise<string[]> {
  const query = 'sum by (source_identity, destination_service, destination_identity) (tsmesh_requests_total{direction="outbound", tls="true"})';
  const edge = (from: string, service: string, by: string): string => `${from} -> ${service} (${by})`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = (await promQuery(demo, query))
      .filter((r) => Number(r.value[1]) > 0)
      .map((r) => edge(r.metric.source_identity!, r.metric.destination_service!, r.metric.destination_identity!));
    const missing = PROMETHEUS_EDGES.filter(([from, service, by]) => !seen.includes(edge(spiffe(from), service, spiffe(by))));
    if (missing.length === 0) return seen;
    if (Date.now() > deadline) assert.fail(`Prometheus has no tsmesh_requests_total series for ${missing.map((e) => edge(...e)).join(', ')}; it has ${seen.join(', ')}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
