import assert from 'node:assert/strict';
import { MESH_CONTROLLER_NAME } from '../contract/names.js';
import { desiredRouteStatus } from './route-status.js';
import type { RouteStatus, RouteVerdict } from './sources/kubernetes-routes.js';

const verdict = (accepted = true, generation = 1): RouteVerdict => ({
  kind: 'HTTPRoute',
  namespace: 'mesh',
  name: 'echo',
  uid: 'u1',
  generation,
  parents: [
    {
      parentRef: { group: '', kind: 'Service', name: 'echo', port: 80 },
      accepted: accepted ? { status: true, reason: 'Accepted', message: 'attached to Service mesh/echo port 80' } : { status: false, reason: 'UnsupportedValue', message: 'bad regex' },
      resolvedRefs: { status: false, reason: 'BackendNotFound', message: 'Service mesh/missing does not exist' },
    },
  ],
});

describe('control/route-status desiredRouteStatus', function () {
  const t0 = new Date('2030-01-01T00:00:00.123Z');
  const t1 = new Date('2030-01-01T01:00:00Z');
  const gateway = { parentRef: { name: 'public' }, controllerName: 'example.com/gateway', conditions: [{ type: 'Accepted', status: 'True' as const, lastTransitionTime: '2029-01-01T00:00:00Z', reason: 'Accepted', message: '' }] };

  it('adds one parent entry per Service parentRef, under the mesh controller, with Accepted and ResolvedRefs, and keeps other controllers\' entries', function () {
    const got = desiredRouteStatus({ parents: [gateway] }, verdict(), t0)!;
    assert.deepEqual(got.parents![0], gateway);
    assert.deepEqual(got.parents![1], {
      parentRef: { group: '', kind: 'Service', name: 'echo', port: 80 },
      controllerName: MESH_CONTROLLER_NAME,
      conditions: [
        { type: 'Accepted', status: 'True', observedGeneration: 1, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'Accepted', message: 'attached to Service mesh/echo port 80' },
        { type: 'ResolvedRefs', status: 'False', observedGeneration: 1, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'BackendNotFound', message: 'Service mesh/missing does not exist' },
      ],
    });
  });

  it('writes nothing when the status already says it', function () {
    const once = desiredRouteStatus(undefined, verdict(), t0);
    assert.equal(desiredRouteStatus(once, verdict(), t1), undefined);
  });

  it('keeps lastTransitionTime of a condition whose status stays, moves it for one that flips, and follows the generation', function () {
    const once = desiredRouteStatus(undefined, verdict(true, 1), t0) as RouteStatus;
    const next = desiredRouteStatus(once, verdict(false, 2), t1)!;
    const [acc, refs] = next.parents![0]!.conditions!;
    assert.deepEqual([acc!.status, acc!.reason, acc!.lastTransitionTime, acc!.observedGeneration], ['False', 'UnsupportedValue', '2030-01-01T01:00:00Z', 2]);
    assert.deepEqual([refs!.status, refs!.lastTransitionTime, refs!.observedGeneration], ['False', '2030-01-01T00:00:00Z', 2]);
  });

  it('drops its entry for a parentRef the route no longer has', function () {
    const once = desiredRouteStatus({ parents: [gateway] }, verdict(), t0) as RouteStatus;
    const none = desiredRouteStatus(once, { ...verdict(), parents: [] }, t1)!;
    assert.deepEqual(none.parents, [gateway]);
  });
});
