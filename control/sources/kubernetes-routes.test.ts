// What the golden files (testdata/mapping/gateway-*) do not show: a route
// that cannot be applied keeps its last accepted model (the invariant of
// ARCHITECTURE.md) while its status says why, and a fixed one replaces it.
import assert from 'node:assert/strict';
import type { ServiceModel } from '../model.js';
import { evaluateRoutes, type AcceptedRoutes, type RouteObject } from './kubernetes-routes.js';

const services: ServiceModel[] = [
  { name: 'echo', namespace: 'mesh', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, protocol: 'http', targetPort: 8080 }], endpoints: [] },
  { name: 'echo-v1', namespace: 'mesh', clusterIPs: ['10.96.0.11'], ports: [{ port: 8080, protocol: 'http', targetPort: 8080 }], endpoints: [] },
];

const route = (generation: number, path: { type: string; value: string }): RouteObject => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'echo', namespace: 'mesh', uid: 'u1', generation },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [{ matches: [{ path }], backendRefs: [{ name: 'echo-v1', port: 8080 }] }] },
});

describe('control/sources/kubernetes-routes evaluateRoutes', function () {
  it('keeps the last accepted model of a route whose new version cannot be applied, says why, and takes the next good one', function () {
    const first = evaluateRoutes({ httpRoutes: [route(1, { type: 'PathPrefix', value: '/v1' })], grpcRoutes: [], services, accepted: new Map() });
    assert.equal(first.routes[0]!.entries[0]!.route.match?.pathPrefix, '/v1');

    const bad = evaluateRoutes({ httpRoutes: [route(2, { type: 'RegularExpression', value: '/(' })], grpcRoutes: [], services, accepted: first.accepted });
    assert.deepEqual(bad.routes, first.routes, 'generation 1 stays in force');
    const accepted = bad.verdicts[0]!.parents[0]!.accepted;
    assert.equal(accepted.status, false);
    assert.equal(accepted.reason, 'UnsupportedValue');
    assert.match(accepted.message, /^spec\.rules\[0\]\.matches\[0\]\.match\.pathRegex: "\/\(" is not a regular expression/);
    assert.equal(bad.verdicts[0]!.generation, 2);

    const fixed = evaluateRoutes({ httpRoutes: [route(3, { type: 'Exact', value: '/v3' })], grpcRoutes: [], services, accepted: bad.accepted });
    assert.equal(fixed.routes[0]!.entries[0]!.route.match?.pathExact, '/v3');
    assert.equal(fixed.verdicts[0]!.parents[0]!.accepted.status, true);
  });

  it('has nothing in force for a route that was never accepted, and forgets a deleted one', function () {
    const bad = evaluateRoutes({ httpRoutes: [route(1, { type: 'RegularExpression', value: '/(' })], grpcRoutes: [], services, accepted: new Map() });
    assert.deepEqual(bad.routes, []);
    const good = evaluateRoutes({ httpRoutes: [route(1, { type: 'PathPrefix', value: '/' })], grpcRoutes: [], services, accepted: new Map() });
    const gone = evaluateRoutes({ httpRoutes: [], grpcRoutes: [], services, accepted: good.accepted as AcceptedRoutes });
    assert.deepEqual([gone.routes, gone.verdicts, gone.accepted.size], [[], [], 0]);
  });

  it('does not mix HTTPRoutes and GRPCRoutes on one Service port: the older route\'s kind is accepted there', function () {
    const two: ServiceModel[] = [{ ...services[0]!, ports: [{ port: 80, protocol: 'http', targetPort: 8080 }, { port: 81, protocol: 'http2', targetPort: 8081 }] }, services[1]!];
    const http = (created: string): RouteObject => ({ ...route(1, { type: 'PathPrefix', value: '/' }), metadata: { name: 'web', namespace: 'mesh', uid: 'h', generation: 1, creationTimestamp: new Date(created) } });
    const grpc = (created: string): RouteObject => ({
      kind: 'GRPCRoute',
      metadata: { name: 'rpc', namespace: 'mesh', uid: 'g', generation: 1, creationTimestamp: new Date(created) },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 81 }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 8080 }] }] },
    });
    // The HTTPRoute (every port) is older: the GRPCRoute is refused on port 81.
    let r = evaluateRoutes({ httpRoutes: [http('2025-01-01T00:00:00Z')], grpcRoutes: [grpc('2025-02-01T00:00:00Z')], services: two, accepted: new Map() });
    const rpc = r.verdicts.find((v) => v.kind === 'GRPCRoute')!.parents[0]!.accepted;
    assert.deepEqual([rpc.status, rpc.reason], [false, 'Conflicted']);
    assert.match(rpc.message, /^HTTPRoute mesh\/web is older on Service mesh\/echo port 81/);
    assert.deepEqual(r.routes.find((x) => x.kind === 'GRPCRoute')!.parents, []);
    assert.deepEqual(r.routes.find((x) => x.kind === 'HTTPRoute')!.parents, [{ service: 'echo', namespace: 'mesh' }]);
    // The GRPCRoute is older: the HTTPRoute keeps port 80 only, and says so.
    r = evaluateRoutes({ httpRoutes: [http('2025-03-01T00:00:00Z')], grpcRoutes: [grpc('2025-02-01T00:00:00Z')], services: two, accepted: new Map() });
    assert.deepEqual(r.routes.find((x) => x.kind === 'HTTPRoute')!.parents, [{ service: 'echo', namespace: 'mesh', port: 80 }]);
    const web = r.verdicts.find((v) => v.kind === 'HTTPRoute')!.parents[0]!.accepted;
    assert.equal(web.status, true);
    assert.match(web.message, /; not on port 81: GRPCRoute mesh\/rpc is older/);
    assert.deepEqual(r.routes.find((x) => x.kind === 'GRPCRoute')!.parents, [{ service: 'echo', namespace: 'mesh', port: 81 }]);
  });
});
