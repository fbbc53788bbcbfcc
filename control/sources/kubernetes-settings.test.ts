// The mapping of namespaces' and pods' annotations beside the golden case
// testdata/mapping/inbound-settings: what happens over time (a value that
// stops reading) and which pods count.
import assert from 'node:assert/strict';
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { DEFAULT_RETRY_BUDGET, type MeshSettings } from '../../contract/proxy-config.js';
import { emptyLastGood, settingsFromObjects } from './kubernetes-settings.js';

const MESH: MeshSettings = { trustDomain: 'cluster.local', mtlsMode: 'STRICT', retryBudget: DEFAULT_RETRY_BUDGET };
const namespace = (name: string, annotations: Record<string, string>): V1Namespace => ({ metadata: { name, annotations } });
const pod = (name: string, sa: string, annotations: Record<string, string>, over: { meshed?: boolean; phase?: string } = {}): V1Pod => ({
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, annotations: { ...(over.meshed === false ? {} : { 'tsmesh.io/status': '{}' }), ...annotations } },
  spec: { serviceAccountName: sa, containers: [] },
  status: { phase: over.phase ?? 'Running' },
});

describe('namespaces and workloads settings from their annotations', () => {
  it('keeps the last readable settings of an object whose annotation stops reading, and says so', () => {
    const first = settingsFromObjects([namespace('shop', { 'tsmesh.io/default-inbound-policy': 'deny' })], [pod('api-0', 'api', { 'tsmesh.io/mtls-mode': 'PERMISSIVE' })], MESH, emptyLastGood());
    assert.deepEqual(first.namespaceSettings, [{ namespace: 'shop', settings: { defaultInboundPolicy: 'deny' } }]);
    assert.deepEqual(first.workloadSettings, [{ namespace: 'shop', serviceAccount: 'api', settings: { mtlsMode: 'PERMISSIVE' } }]);
    assert.deepEqual(first.problems, []);

    const broken = settingsFromObjects([namespace('shop', { 'tsmesh.io/default-inbound-policy': 'denied' })], [pod('api-0', 'api', { 'tsmesh.io/mtls-mode': 'permissive' })], MESH, first.lastGood);
    assert.deepEqual(broken.namespaceSettings, first.namespaceSettings);
    assert.deepEqual(broken.workloadSettings, first.workloadSettings);
    assert.deepEqual(
      broken.problems.map((p) => `${p.kind} ${p.name}: ${p.message}`),
      [
        'Namespace shop: annotation tsmesh.io/default-inbound-policy: "denied" is not one of all-authenticated, all-unauthenticated, deny; its last readable settings stay in force',
        'Pod api-0: annotation tsmesh.io/mtls-mode: "permissive" is not one of STRICT, PERMISSIVE; its last readable settings stay in force',
      ],
    );
  });

  it('counts meshed pods that run: not a pod without a sidecar, not a finished one', () => {
    const r = settingsFromObjects(
      [],
      [pod('plain', 'api', { 'tsmesh.io/mtls-mode': 'PERMISSIVE' }, { meshed: false }), pod('done', 'api', { 'tsmesh.io/mtls-mode': 'PERMISSIVE' }, { phase: 'Succeeded' }), pod('api-0', 'api', {})],
      MESH,
      emptyLastGood(),
    );
    assert.deepEqual(r.workloadSettings, []);
    assert.deepEqual(r.problems, []);
  });

  it('gives disagreeing pods the stricter of what each would get, port by port, counting what the namespace gives the others', () => {
    const r = settingsFromObjects(
      [namespace('shop', { 'tsmesh.io/mtls-mode': 'PERMISSIVE' })],
      [pod('a', 'api', { 'tsmesh.io/port-mtls-modes': '9090=PERMISSIVE' }), pod('b', 'api', { 'tsmesh.io/mtls-mode': 'STRICT', 'tsmesh.io/default-inbound-policy': 'all-unauthenticated' })],
      MESH,
      emptyLastGood(),
    );
    // a: PERMISSIVE (its namespace's), 9090 PERMISSIVE, all-unauthenticated (derived); b: STRICT everywhere, all-unauthenticated.
    assert.deepEqual(r.workloadSettings, [{ namespace: 'shop', serviceAccount: 'api', settings: { mtlsMode: 'STRICT', portMtlsModes: { 9090: 'STRICT' }, defaultInboundPolicy: 'all-unauthenticated' } }]);
    assert.equal(r.problems.length, 1);
  });

  it('gives disagreeing pods the most telemetry of what each would get: export on, the highest sampling', () => {
    const r = settingsFromObjects(
      [namespace('shop', { 'tsmesh.io/tracing': 'sampling=0.2' })],
      [pod('a', 'api', { 'tsmesh.io/tracing': 'off' }), pod('b', 'api', { 'tsmesh.io/tracing': 'on,collector=http://otel:4318' }), pod('c', 'api', {})],
      { ...MESH, tracing: { export: false, sampling: 0.01 } },
      emptyLastGood(),
    );
    assert.deepEqual(r.workloadSettings, [{ namespace: 'shop', serviceAccount: 'api', settings: { tracing: { export: true, sampling: 0.2, collector: 'http://otel:4318/v1/traces' } } }]);
    assert.equal(r.problems.length, 1);
  });

  it('gives disagreeing pods the fullest access log mode and the highest sampling, and strips the query unless every pod keeps it', () => {
    const r = settingsFromObjects(
      [namespace('shop', {})],
      [pod('a', 'api', { 'tsmesh.io/access-log': 'errors,query=on' }), pod('b', 'api', { 'tsmesh.io/access-log': 'sampled,sampling=0.3' }), pod('c', 'api', { 'tsmesh.io/access-log': 'off,query=on' })],
      MESH,
      emptyLastGood(),
    );
    assert.deepEqual(r.workloadSettings, [{ namespace: 'shop', serviceAccount: 'api', settings: { accessLog: { mode: 'sampled', sampling: 0.3, query: false } } }]);
  });

  it('gives disagreeing pods registry-only egress if any would have it, and only the allow-list entries every pod lists', () => {
    const r = settingsFromObjects(
      [namespace('shop', {})],
      [
        pod('a', 'api', { 'tsmesh.io/egress-mode': 'registry-only', 'tsmesh.io/egress-allow': 'api.example.com:443,10.1.0.0/16:5432' }),
        pod('b', 'api', { 'tsmesh.io/egress-allow': 'api.example.com:443' }),
      ],
      MESH,
      emptyLastGood(),
    );
    assert.deepEqual(r.workloadSettings, [
      { namespace: 'shop', serviceAccount: 'api', settings: { egressMode: 'registry-only', egressAllow: [{ name: 'api.example.com:443', hosts: ['api.example.com'], ports: [443] }] } },
    ]);
    assert.equal(r.problems.length, 1);
  });
});
