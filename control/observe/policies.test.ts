import assert from 'node:assert/strict';
import { parse } from 'yaml';
// eslint-disable-next-line no-restricted-imports -- the demo's mesh file: the policies the dashboard shows in `tsmesh demo`
import { meshFile, NAMESPACE, WORKLOADS } from '../../demo/topology.js';
import { parseMeshFile } from '../sources/file.js';
import { workloadPolicies, type WorkloadPolicies } from './policies.js';

const model = parseMeshFile(parse(meshFile(Object.fromEntries(WORKLOADS.map((w, i) => [w.name, { address: `10.244.0.${10 + i}`, port: 8080 }])))));

function policies(workload: string, calls: string[] = []): WorkloadPolicies {
  const p = workloadPolicies(model, workload, calls);
  assert.ok(!('error' in p), JSON.stringify(p));
  return p;
}

describe('workloadPolicies', () => {
  it("shows a backend's inbound side: mTLS mode, the AuthorizationPolicies that select it, the TrafficPolicy of the service it serves", () => {
    const ratings = policies(`${NAMESPACE}/ratings`);
    assert.equal(ratings.identity, `spiffe://cluster.local/ns/${NAMESPACE}/sa/ratings`);
    assert.deepEqual(ratings.inbound.mtlsMode, 'STRICT');
    assert.equal(ratings.inbound.mtlsModeFrom, 'mesh');
    assert.deepEqual(
      ratings.inbound.authorizationPolicies.map((a) => a.name),
      ['ratings-callers'],
    );
    assert.deepEqual(
      ratings.serves.map((s) => [s.service, s.trafficPolicy?.name]),
      [[`ratings.${NAMESPACE}`, 'ratings-resilience']],
    );
    assert.equal(ratings.serves[0]!.trafficPolicy!.retries!.attempts, 4);
    assert.deepEqual(ratings.calls, []);
  });

  it("shows a caller's side: the TrafficPolicies its own proxy applies to the services it calls", () => {
    const api = policies(`${NAMESPACE}/api`, [`ratings.${NAMESPACE}`, `web.${NAMESPACE}`]);
    assert.deepEqual(
      api.serves.map((s) => s.trafficPolicy?.name),
      ['api-canary'],
    );
    assert.deepEqual(
      api.calls.map((s) => s.trafficPolicy?.name),
      ['ratings-resilience'],
      'web has no TrafficPolicy: left out',
    );
    assert.deepEqual(api.inbound.authorizationPolicies, []);
  });

  it('says what is wrong with a bad workload name, and when there is no model yet', () => {
    assert.deepEqual(workloadPolicies(model, 'ratings'), { error: 'workload must be namespace/name, got "ratings"' });
    assert.match((workloadPolicies(undefined, 'demo/ratings') as { error: string }).error, /no mesh model yet/);
  });
});
