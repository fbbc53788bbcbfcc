import assert from 'node:assert/strict';
import type { Verdict } from './sources/kubernetes-policies.js';
import { desiredStatus } from './status.js';

const verdict = (over: Partial<Verdict> = {}): Verdict => ({
  kind: 'TrafficPolicy',
  namespace: 'shop',
  name: 'canary',
  uid: 'u1',
  generation: 2,
  accepted: false,
  reason: 'InvalidSpec',
  message: 'spec.timeout: bad; the policy is not applied',
  ...over,
});

describe('control/status desiredStatus', function () {
  const t0 = new Date('2030-01-01T00:00:00.123Z');
  const t1 = new Date('2030-01-01T01:00:00Z');

  it('writes an Accepted condition and observedGeneration on a policy without status (seconds precision, as metav1.Time)', function () {
    assert.deepEqual(desiredStatus(undefined, verdict(), t0), {
      observedGeneration: 2,
      conditions: [{ type: 'Accepted', status: 'False', observedGeneration: 2, lastTransitionTime: '2030-01-01T00:00:00Z', reason: 'InvalidSpec', message: 'spec.timeout: bad; the policy is not applied' }],
    });
  });

  it('writes nothing when the status already says it', function () {
    const once = desiredStatus(undefined, verdict(), t0);
    assert.equal(desiredStatus(once, verdict(), t1), undefined);
  });

  it('keeps lastTransitionTime while the condition\'s status stays, and moves it when it flips', function () {
    const once = desiredStatus(undefined, verdict(), t0)!;
    const sameStatus = desiredStatus(once, verdict({ reason: 'TargetNotFound', message: 'Service x not found' }), t1)!;
    assert.equal(sameStatus.conditions![0]!.lastTransitionTime, '2030-01-01T00:00:00Z');
    assert.equal(sameStatus.conditions![0]!.reason, 'TargetNotFound');
    const flipped = desiredStatus(sameStatus, verdict({ accepted: true, reason: 'Accepted', message: 'applied to Service x' }), t1)!;
    assert.equal(flipped.conditions![0]!.status, 'True');
    assert.equal(flipped.conditions![0]!.lastTransitionTime, '2030-01-01T01:00:00Z');
  });

  it('rewrites on a new generation even when the verdict reads the same', function () {
    const once = desiredStatus(undefined, verdict(), t0)!;
    const next = desiredStatus(once, verdict({ generation: 3 }), t1)!;
    assert.equal(next.observedGeneration, 3);
    assert.equal(next.conditions![0]!.observedGeneration, 3);
  });

  it('leaves other condition types alone', function () {
    const other = { type: 'Ready', status: 'True' as const, lastTransitionTime: '2029-01-01T00:00:00Z', reason: 'Fine', message: '' };
    const out = desiredStatus({ conditions: [other] }, verdict(), t0)!;
    assert.deepEqual(out.conditions!.map((c) => c.type), ['Ready', 'Accepted']);
    assert.deepEqual(out.conditions![0], other);
  });

  it('caps a message at metav1.Condition\'s limit', function () {
    const out = desiredStatus(undefined, verdict({ message: 'x'.repeat(40_000) }), t0)!;
    assert.ok(out.conditions![0]!.message.length <= 32_768);
  });
});
