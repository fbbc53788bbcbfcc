import assert from 'node:assert/strict';
import { ValidationError } from '../../lib/schema.js';
import { parseMeshFile } from './file.js';

/** A `kind: Mesh` document with one TrafficPolicy of this spec on Service payments. */
const meshWithPolicy = (spec: object) => ({
  apiVersion: 'tsmesh.io/v1alpha1',
  kind: 'Mesh',
  services: [{ name: 'payments', namespace: 'shop', clusterIPs: ['10.96.0.20'], ports: [{ port: 80 }], endpoints: [] }],
  trafficPolicies: [{ name: 'bounded', namespace: 'shop', targetRef: { kind: 'Service', name: 'payments' }, spec }],
});

describe('control/sources/file (kind: Mesh)', function () {
  it('passes a traffic policy\'s limits through as written', function () {
    const spec = { circuitBreaker: { consecutiveFailures: 5 }, limits: { maxRequestsPerEndpoint: 64, maxPendingRequests: 128, pendingTimeout: '250ms' } };
    const m = parseMeshFile(meshWithPolicy(spec));
    assert.deepEqual(m.trafficPolicies, [{ name: 'bounded', namespace: 'shop', targetService: 'payments', spec }]);
  });

  it('keeps a meshed endpoint\'s skipInboundPorts, and a headless Service without ports', function () {
    const m = parseMeshFile({
      apiVersion: 'tsmesh.io/v1alpha1',
      kind: 'Mesh',
      services: [
        { name: 'db', namespace: 'shop', clusterIPs: [], ports: [], endpoints: [{ address: '10.244.1.10', serviceAccount: 'db', skipInboundPorts: ['9187', '9400-9500'] }, { address: '10.244.1.11', skipInboundPorts: ['9187'] }] },
      ],
    });
    assert.deepEqual(m.services[0]!.endpoints, [
      { address: '10.244.1.10', ready: true, identity: 'spiffe://cluster.local/ns/shop/sa/db', skipInboundPorts: ['9187', '9400-9500'] },
      // Without a sidecar every port is plain: nothing to skip.
      { address: '10.244.1.11', ready: true },
    ]);
  });

  it('refuses bad limits, naming the field', function () {
    assert.throws(
      () => parseMeshFile(meshWithPolicy({ limits: { maxPendingRequests: 0 } })),
      (e: unknown) => e instanceof ValidationError && e.message === 'trafficPolicies[0].spec.limits.maxPendingRequests: 0 is not a whole number (1-1000000)',
    );
    assert.throws(
      () => parseMeshFile(meshWithPolicy({ limits: { pendingTimeout: '0s' } })),
      (e: unknown) => e instanceof ValidationError && e.message === 'trafficPolicies[0].spec.limits.pendingTimeout: "0s" is not a duration from 1ms to 1h',
    );
  });
});
