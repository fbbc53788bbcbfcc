import assert from 'node:assert/strict';
import type { V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import { isMeshedNamespace, planTrustBundle } from './trust-bundle.js';

const ns = (name: string, labels: Record<string, string> = { 'tsmesh.io/inject': 'enabled' }, extra: Partial<V1Namespace> = {}): V1Namespace => ({ metadata: { name, labels }, ...extra });
const cm = (namespace: string, pem: string, name = 'tsmesh-trust-bundle'): V1ConfigMap => ({ metadata: { name, namespace, resourceVersion: '7' }, data: { 'root-cert.pem': pem, other: 'kept' } });
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('control/trust-bundle', function () {
  it('meshed namespaces: labelled tsmesh.io/inject=enabled, not a system namespace, not terminating', function () {
    assert.equal(isMeshedNamespace(ns('shop')), true);
    assert.equal(isMeshedNamespace(ns('shop', { 'tsmesh.io/inject': 'disabled' })), false);
    assert.equal(isMeshedNamespace(ns('shop', {})), false);
    assert.equal(isMeshedNamespace(ns('kube-system')), false);
    assert.equal(isMeshedNamespace(ns('tsmesh-system')), false);
    assert.equal(isMeshedNamespace(ns('gone', undefined, { status: { phase: 'Terminating' } })), false);
    assert.equal(isMeshedNamespace({ metadata: { name: 'gone', labels: { 'tsmesh.io/inject': 'enabled' }, deletionTimestamp: new Date() } }), false);
  });

  it('creates where the ConfigMap is missing, updates where root-cert.pem differs, leaves the rest', function () {
    const plan = planTrustBundle([ns('c-new'), ns('b-stale'), ns('a-current'), ns('plain', {})], [cm('a-current', PEM), cm('b-stale', 'old'), cm('plain', 'old'), cm('c-new', PEM, 'something-else')], PEM);
    assert.deepEqual(plan, [
      { op: 'update', namespace: 'b-stale', configMap: cm('b-stale', 'old') },
      { op: 'create', namespace: 'c-new' },
    ]);
  });

  it('has nothing to do when every meshed namespace holds the bundle', function () {
    assert.deepEqual(planTrustBundle([ns('shop')], [cm('shop', PEM)], PEM), []);
    assert.deepEqual(planTrustBundle([], [], PEM), []);
  });
});
