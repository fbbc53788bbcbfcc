import assert from 'node:assert/strict';
import { warningEvent } from './events.js';

describe('Warning Events', () => {
  const target = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'tsmesh-system', name: 'tsmesh-config', uid: 'u-1', resourceVersion: '42' };

  it('name the object, its version and the reporting replica', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const e = warningEvent(target, 'InvalidConfig', 'data.mtlsMode: OFF is not STRICT or PERMISSIVE', 'tsmesh-control-plane-0', now);
    assert.deepEqual(e, {
      metadata: { generateName: 'tsmesh-config.', namespace: 'tsmesh-system' },
      involvedObject: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'tsmesh-system', name: 'tsmesh-config', uid: 'u-1', resourceVersion: '42' },
      reason: 'InvalidConfig',
      message: 'data.mtlsMode: OFF is not STRICT or PERMISSIVE',
      type: 'Warning',
      source: { component: 'tsmesh-control-plane', host: 'tsmesh-control-plane-0' },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
  });

  it('cut a long message to 1024 characters, marked', () => {
    const e = warningEvent(target, 'InvalidConfig', 'x'.repeat(5000), 'h');
    assert.equal(e.message!.length, 1024);
    assert.ok(e.message!.endsWith('...'));
  });
});
