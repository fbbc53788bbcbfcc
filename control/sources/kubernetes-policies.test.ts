import assert from 'node:assert/strict';
import { emptyAccepted, evaluatePolicies, type AcceptedPolicies, type PolicyObject } from './kubernetes-policies.js';

describe('control/sources/kubernetes-policies', function () {
  describe('evaluatePolicies', function () {
    const services = new Set(['shop/payments', 'shop/orders']);
    let t = 0;
    function tp(name: string, spec: unknown, opts: { generation?: number; created?: string; uid?: string } = {}): PolicyObject {
      return {
        metadata: { name, namespace: 'shop', uid: opts.uid ?? `uid-${name}`, generation: opts.generation ?? 1, creationTimestamp: (opts.created ?? `2030-01-01T00:00:${String(++t).padStart(2, '0')}Z`) as unknown as Date },
        spec,
      };
    }
    const target = (name = 'payments') => ({ targetRef: { kind: 'Service', name } });
    const run = (trafficPolicies: PolicyObject[], accepted: AcceptedPolicies = emptyAccepted(), authorizationPolicies: PolicyObject[] = []) =>
      evaluatePolicies({ trafficPolicies, authorizationPolicies, services, accepted });

    it('accepts a valid policy for an existing Service', function () {
      const r = run([tp('canary', { ...target(), timeout: '2s' }, { created: '2030-01-01T00:00:00Z' })]);
      assert.deepEqual(r.trafficPolicies, [{ name: 'canary', namespace: 'shop', targetService: 'payments', spec: { timeout: '2s' }, createdAt: '2030-01-01T00:00:00Z' }]);
      assert.deepEqual(r.verdicts, [{ kind: 'TrafficPolicy', namespace: 'shop', name: 'canary', uid: 'uid-canary', generation: 1, accepted: true, reason: 'Accepted', message: 'applied to Service payments' }]);
      assert.equal(r.accepted.traffic.get('uid-canary')?.generation, 1);
    });

    it('refuses a spec validate.ts refuses (InvalidSpec, with the field), and leaves it out', function () {
      const r = run([tp('slow', { ...target(), retries: { attempts: 2, backoff: { base: '1s', max: '10ms' } } })]);
      assert.deepEqual(r.trafficPolicies, []);
      assert.equal(r.verdicts[0]!.reason, 'InvalidSpec');
      assert.equal(r.verdicts[0]!.message, 'spec.retries.backoff.max: 10ms is shorter than backoff.base 1s; the policy is not applied');
      assert.equal(r.accepted.traffic.size, 0);
    });

    it('passes limits through to the model as written', function () {
      const limits = { maxRequestsPerEndpoint: 64, maxPendingRequests: 128, pendingTimeout: '250ms' };
      const r = run([tp('bounded', { ...target(), circuitBreaker: { consecutiveFailures: 5 }, limits })]);
      assert.deepEqual(r.trafficPolicies.map((p) => p.spec), [{ circuitBreaker: { consecutiveFailures: 5 }, limits }]);
      assert.equal(r.verdicts[0]!.reason, 'Accepted');
    });

    it('refuses limits validate.ts refuses (InvalidSpec, with the field under spec.limits)', function () {
      const cases: [unknown, string][] = [
        [{ maxPendingRequests: 0 }, 'spec.limits.maxPendingRequests: 0 is not a whole number (1-1000000)'],
        [{ maxRequestsPerEndpoint: 2.5 }, 'spec.limits.maxRequestsPerEndpoint: 2.5 is not a whole number (1-1000000)'],
        [{ pendingTimeout: '2h' }, 'spec.limits.pendingTimeout: "2h" is not a duration from 1ms to 1h'],
        [{ maxConnections: 10 }, 'spec.limits.maxConnections: unknown field; expected one of maxRequestsPerEndpoint, maxPendingRequests, pendingTimeout'],
      ];
      for (const [limits, message] of cases) {
        const r = run([tp('bounded', { ...target(), limits })]);
        assert.deepEqual(r.trafficPolicies, []);
        assert.deepEqual([r.verdicts[0]!.reason, r.verdicts[0]!.message], ['InvalidSpec', `${message}; the policy is not applied`]);
      }
    });

    it('keeps the last accepted spec of the same policy in force when an edit breaks it', function () {
      const first = run([tp('canary', { ...target(), timeout: '2s' })]);
      const broken = tp('canary', { ...target(), routes: [{ backends: [{ service: 'payments', weight: 0 }] }] }, { generation: 2 });
      const r = run([broken], first.accepted);
      assert.deepEqual(r.trafficPolicies.map((p) => p.spec), [{ timeout: '2s' }]);
      assert.equal(r.verdicts[0]!.reason, 'InvalidSpec');
      assert.equal(r.verdicts[0]!.generation, 2);
      assert.match(r.verdicts[0]!.message, /^spec\.routes\[0\]\.backends: at least one backend needs a weight above 0; the spec accepted at generation 1 stays in force$/);
      // Still remembered at the next round; forgotten once the policy is gone.
      assert.equal(r.accepted.traffic.get('uid-canary')?.generation, 1);
      assert.equal(run([], r.accepted).accepted.traffic.size, 0);
    });

    it('reports a missing target Service (TargetNotFound), and accepts the policy once it exists', function () {
      const policy = tp('ghost', target('inventory'));
      const r = run([policy]);
      assert.deepEqual(r.trafficPolicies, []);
      assert.deepEqual([r.verdicts[0]!.reason, r.verdicts[0]!.message], ['TargetNotFound', 'Service inventory not found in namespace shop; the policy is not applied']);
      const later = evaluatePolicies({ trafficPolicies: [policy], authorizationPolicies: [], services: new Set([...services, 'shop/inventory']), accepted: r.accepted });
      assert.equal(later.verdicts[0]!.reason, 'Accepted');
    });

    it('settles two policies for one Service in favour of the older (Conflict for the newer)', function () {
      const older = tp('b-older', { ...target(), timeout: '1s' }, { created: '2030-01-01T00:00:00Z' });
      const newer = tp('a-newer', { ...target(), timeout: '9s' }, { created: '2030-01-02T00:00:00Z' });
      const r = run([newer, older]);
      assert.deepEqual(r.trafficPolicies.map((p) => p.name), ['b-older']);
      const v = r.verdicts.find((x) => x.name === 'a-newer')!;
      assert.equal(v.reason, 'Conflict');
      assert.equal(v.message, 'Service payments is already governed by TrafficPolicy b-older; one policy per Service; the policy is not applied');
      // Deleting the older one lets the newer apply.
      assert.equal(run([newer], r.accepted).verdicts[0]!.reason, 'Accepted');
    });

    it('a policy retargeted onto a governed Service keeps governing its old Service with its last accepted spec', function () {
      const older = tp('older', { ...target('payments'), timeout: '1s' }, { created: '2030-01-01T00:00:00Z' });
      const mover = tp('mover', { ...target('orders'), timeout: '3s' }, { created: '2030-01-02T00:00:00Z' });
      const first = run([older, mover]);
      assert.deepEqual(first.trafficPolicies.map((p) => `${p.name}->${p.targetService}`), ['mover->orders', 'older->payments']);
      const moved = tp('mover', { ...target('payments'), timeout: '5s' }, { created: '2030-01-02T00:00:00Z', generation: 2 });
      const r = run([older, moved], first.accepted);
      assert.deepEqual(r.trafficPolicies.map((p) => `${p.name}->${p.targetService}:${p.spec.timeout}`), ['mover->orders:3s', 'older->payments:1s']);
      assert.match(r.verdicts.find((v) => v.name === 'mover')!.message, /already governed by TrafficPolicy older.*generation 1 stays in force/);
    });

    it('an older policy\'s remembered spec still wins against a newer policy', function () {
      const older = tp('older', { ...target(), timeout: '1s' }, { created: '2030-01-01T00:00:00Z' });
      const first = run([older]);
      const brokenOlder = tp('older', { ...target(), retries: { attempts: 1, retryOn: ['5xx'], backoff: { base: '2s', max: '1s' } } }, { created: '2030-01-01T00:00:00Z', generation: 2 });
      const newer = tp('newer', { ...target(), timeout: '9s' }, { created: '2030-01-03T00:00:00Z' });
      const r = run([brokenOlder, newer], first.accepted);
      assert.deepEqual(r.trafficPolicies.map((p) => `${p.name}:${p.spec.timeout}`), ['older:1s']);
      assert.deepEqual(r.verdicts.map((v) => `${v.name}:${v.reason}`), ['newer:Conflict', 'older:InvalidSpec']);
    });

    it('AuthorizationPolicy: accepted, InvalidSpec with the last accepted rules kept, TargetNotFound for a missing Service only', function () {
      const ap = (name: string, spec: unknown, generation = 1): PolicyObject => ({ metadata: { name, namespace: 'shop', uid: `uid-${name}`, generation }, spec });
      const good = ap('only-frontend', { targetRef: { kind: 'Service', name: 'payments' }, rules: [{ identities: ['spiffe://cluster.local/ns/shop/sa/frontend'] }] });
      const bySa = ap('by-sa', { targetRef: { kind: 'ServiceAccount', name: 'not-created-yet' }, rules: [{ namespaces: ['ops'] }] });
      const ghost = ap('ghost', { targetRef: { kind: 'Service', name: 'inventory' }, rules: [{}] });
      const first = run([], emptyAccepted(), [good, bySa, ghost]);
      assert.deepEqual(first.authorizationPolicies.map((p) => p.name), ['by-sa', 'only-frontend']);
      assert.deepEqual(first.verdicts.map((v) => `${v.name}:${v.reason}`), ['by-sa:Accepted', 'ghost:TargetNotFound', 'only-frontend:Accepted']);
      const broken = ap('only-frontend', { targetRef: { kind: 'Service', name: 'payments' }, rules: [{ identities: ['spiffe://Cluster.local/ns/shop/sa/frontend'] }] }, 2);
      const r = run([], first.accepted, [broken, bySa]);
      assert.deepEqual(r.authorizationPolicies.find((p) => p.name === 'only-frontend')?.rules, [{ identities: ['spiffe://cluster.local/ns/shop/sa/frontend'] }]);
      const v = r.verdicts.find((x) => x.name === 'only-frontend')!;
      assert.equal(v.reason, 'InvalidSpec');
      assert.match(v.message, /^spec\.rules\[0\]\.identities\[0\]: .*; the spec accepted at generation 1 stays in force$/);
    });
  });
});
