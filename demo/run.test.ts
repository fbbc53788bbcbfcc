// `tsmesh demo` end to end: every edge carries mTLS identities, the canary
// takes its share, and retries hide the flaky service from its callers.
import assert from 'node:assert/strict';
import { silentLogger } from '../lib/log.js';
import { startDemo, type RunningDemo } from './run.js';
import { RATINGS_FAILURE_SHARE } from './topology.js';

async function outbound(demo: RunningDemo, workload: string): Promise<{ service: string; identity: string; code: string; tls: string; value: number }[]> {
  const metric = (await demo.sidecars.get(workload)!.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tsmesh_requests_total');
  return ((metric?.values ?? []) as { labels: Record<string, string>; value: number }[])
    .filter((v) => v.labels.direction === 'outbound')
    .map((v) => ({ service: v.labels.destination_service!, identity: v.labels.destination_identity!, code: v.labels.response_code!, tls: v.labels.tls!, value: v.value }));
}

const sum = (rows: { value: number }[]): number => rows.reduce((n, r) => n + r.value, 0);

describe('tsmesh demo (loopback mode)', function () {
  this.timeout(120_000);
  let demo: RunningDemo | undefined;
  before(async () => {
    demo = await startDemo({ log: silentLogger, rps: 100 });
    // 1,000 requests, however long a busy machine takes to send them.
    const deadline = Date.now() + 90_000;
    while (demo.load.counts.ok + demo.load.counts.failed < 1000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    demo.load.stop();
    await new Promise((r) => setTimeout(r, 500));
  });
  after(async () => demo?.stop());

  it('carries traffic on every edge over mTLS, with the callee\'s SPIFFE ID', async () => {
    const expect: [string, string, string[]][] = [
      ['loadgen', 'web.demo', ['web']],
      ['web', 'api.demo', ['api', 'api-v2']],
      ['api', 'ratings.demo', ['ratings']],
      ['api-v2', 'ratings.demo', ['ratings']],
    ];
    for (const [caller, service, accounts] of expect) {
      const rows = (await outbound(demo!, caller)).filter((r) => r.service === service);
      assert.ok(sum(rows) > 0, `${caller} -> ${service} carried no request`);
      assert.ok(rows.every((r) => r.tls === 'true'), `${caller} -> ${service} not all over mTLS`);
      assert.deepEqual([...new Set(rows.map((r) => r.identity))].sort(), accounts.map((a) => `spiffe://cluster.local/ns/demo/sa/${a}`).sort());
    }
  });

  it('sends 10% +- 3% of api\'s requests to the canary api-v2', async () => {
    const rows = (await outbound(demo!, 'web')).filter((r) => r.service === 'api.demo');
    const total = sum(rows);
    const canary = sum(rows.filter((r) => r.identity.endsWith('/sa/api-v2')));
    assert.ok(total >= 1000, `only ${total} requests`);
    const share = canary / total;
    assert.ok(Math.abs(share - 0.1) <= 0.03, `canary share ${(share * 100).toFixed(1)}% of ${total}`);
  });

  it('keeps the client-visible success rate above 99% while ratings fails far more often', async () => {
    const { ok, failed } = demo!.load.counts;
    assert.ok(ok / (ok + failed) > 0.99, `loadgen saw ${ok} ok, ${failed} failed`);
    // What ratings itself answered, as the api sidecar's retries saw it.
    const retries = (await demo!.sidecars.get('api')!.metrics.registry.getSingleMetricAsString('tsmesh_retries_total')).match(/reason="500"\} (\d+)/);
    const calls = sum((await outbound(demo!, 'api')).filter((r) => r.service === 'ratings.demo'));
    assert.ok(retries && Number(retries[1]) / calls > RATINGS_FAILURE_SHARE / 2, `ratings failed ${retries?.[1]} times for ${calls} calls`);
  });
});
