import assert from 'node:assert/strict';
import { ValidationError } from '../../lib/schema.js';
import { parseProxyConfig } from '../../contract/validate.js';
import { buildProxyConfig } from '../snapshot.js';
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

  it('takes Gateway API routes as kubectl shows them into each caller\'s config, and refuses a route a cluster would not accept', function () {
    const route = (path: object) => ({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'payments', namespace: 'shop' },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'payments', port: 80 }], rules: [{ matches: [{ path }], backendRefs: [{ name: 'payments', port: 80 }] }] },
    });
    const m = parseMeshFile({ ...meshWithPolicy({}), routes: [route({ type: 'Exact', value: '/pay' })] });
    const config = buildProxyConfig(m, { spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', namespace: 'shop', serviceAccount: 'web' }, '1');
    assert.deepEqual(config.services[0]!.gatewayRoutes, [{ port: 80, routes: [{ name: 'httproute/shop/payments/rule-0', backends: [{ service: 'payments.shop', weight: 1, port: 80 }], match: { pathExact: '/pay' } }] }]);
    parseProxyConfig(JSON.parse(JSON.stringify(config)));
    assert.throws(
      () => parseMeshFile({ ...meshWithPolicy({}), routes: [route({ type: 'RegularExpression', value: '/(' })] }),
      (e: unknown) => e instanceof ValidationError && /^routes\[0\]: HTTPRoute shop\/payments: spec\.rules\[0\]\.matches\[0\]\.match\.pathRegex: "\/\(" is not a regular expression/.test(e.message),
    );
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

  describe('inbound policy: the mesh section, namespaces and workloads as their annotations set it', function () {
    const doc = (over: object) => ({ apiVersion: 'tsmesh.io/v1alpha1', kind: 'Mesh', services: [], ...over });
    const proxy = (namespace: string, serviceAccount: string) => ({ spiffeId: `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`, namespace, serviceAccount });

    it('carries each level to the proxies, the most specific winning field by field', function () {
      const m = parseMeshFile(
        doc({
          mesh: { defaultInboundPolicy: 'all-authenticated' },
          namespaces: [
            { name: 'shop', annotations: { 'tsmesh.io/default-inbound-policy': 'deny', 'tsmesh.io/mtls-mode': 'PERMISSIVE', 'app.kubernetes.io/part-of': 'shop' } },
          ],
          workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/mtls-mode': 'STRICT', 'tsmesh.io/port-mtls-modes': '9090=PERMISSIVE' } }],
          authorizationPolicies: [{ name: 'no-admin', namespace: 'shop', targetRef: { kind: 'ServiceAccount', name: 'api' }, action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] }],
        }),
      );
      assert.equal(m.mesh.defaultInboundPolicy, 'all-authenticated');
      assert.deepEqual(buildProxyConfig(m, proxy('shop', 'api'), 'v').inbound, {
        mtlsMode: 'STRICT',
        portMtlsModes: { 9090: 'PERMISSIVE' },
        defaultPolicy: 'deny',
        authorization: [{ name: 'no-admin', action: 'DENY', rules: [{ pathPrefixes: ['/admin'] }] }],
      });
      assert.deepEqual(buildProxyConfig(m, proxy('shop', 'web'), 'v').inbound, { mtlsMode: 'PERMISSIVE', defaultPolicy: 'deny' });
      assert.deepEqual(buildProxyConfig(m, proxy('jobs', 'batch'), 'v').inbound, {});
    });

    it('carries span export from the mesh section, with a namespace\'s and a workload\'s tracing over it, to each proxy', function () {
      const m = parseMeshFile(
        doc({
          mesh: { tracing: { export: true, collector: 'http://otel:4318/v1/traces', sampling: 0.01 } },
          namespaces: [{ name: 'shop', annotations: { 'tsmesh.io/tracing': 'sampling=0.5' } }],
          workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/tracing': 'off' } }],
        }),
      );
      const web = buildProxyConfig(m, proxy('shop', 'web'), 'v');
      assert.deepEqual(web.mesh.tracing, { export: true, collector: 'http://otel:4318/v1/traces', sampling: 0.01 });
      assert.deepEqual(web.telemetry, { tracing: { sampling: 0.5 } });
      assert.deepEqual(buildProxyConfig(m, proxy('shop', 'api'), 'v').telemetry, { tracing: { sampling: 0.5, export: false } });
      assert.equal(buildProxyConfig(m, proxy('jobs', 'batch'), 'v').telemetry, undefined);
      // Access logs the same way: the mesh's errors, the namespace's sampled, the workload's query.
      const logs = parseMeshFile(
        doc({
          mesh: { accessLog: 'errors' },
          namespaces: [{ name: 'shop', annotations: { 'tsmesh.io/access-log': 'sampled,sampling=0.2' } }],
          workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/access-log': 'query=on' } }],
        }),
      );
      assert.deepEqual(logs.mesh.accessLog, { mode: 'errors', sampling: 0.01, query: false });
      assert.deepEqual(buildProxyConfig(logs, proxy('shop', 'api'), 'v').telemetry, { accessLog: { mode: 'sampled', sampling: 0.2, query: true } });
      // What the proxy reads back is what was streamed.
      assert.deepEqual(parseProxyConfig(JSON.parse(JSON.stringify(web))).telemetry, { tracing: { sampling: 0.5 } });
    });

    it('refuses a value it cannot read, naming the entry and the annotation', function () {
      const refused = (over: object, message: string) => assert.throws(() => parseMeshFile(doc(over)), (e: unknown) => e instanceof ValidationError && e.message === message);
      refused({ mesh: { defaultInboundPolicy: 'Deny' } }, 'mesh.defaultInboundPolicy: "Deny" is not one of all-authenticated, all-unauthenticated, deny');
      refused({ namespaces: [{ name: 'shop', annotations: { 'tsmesh.io/mtls-mode': 'OFF' } }] }, 'namespaces[0].annotations.tsmesh.io/mtls-mode: "OFF" is not one of STRICT, PERMISSIVE');
      refused(
        { workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/port-mtls-modes': '9090' } }] },
        'workloads[0].annotations.tsmesh.io/port-mtls-modes: "9090" is not a port and an mTLS mode; expected comma-separated port=MODE pairs like 8080=PERMISSIVE,9090=STRICT',
      );
      refused({ namespaces: [{ name: 'shop' }, { name: 'shop' }] }, 'namespaces[1]: namespace shop is listed twice');
      refused({ workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/tracing': 'sampling=half' } }] }, 'workloads[0].annotations.tsmesh.io/tracing.sampling: NaN is not a number from 0 to 1');
      refused({ namespaces: [{ name: 'shop', annotations: { 'tsmesh.io/access-log': 'loud' } }] }, 'namespaces[0].annotations.tsmesh.io/access-log: "loud" is not an access log setting; expected off, all, errors or sampled, and comma-separated sampling=0-1, query=on|off, like "sampled,sampling=0.05"');
      refused({ mesh: { accessLog: { mode: 'all', query: 'yes' } } }, 'mesh.accessLog.query: expected true or false, found "yes"');
      refused({ mesh: { tracing: { export: true } } }, 'mesh.tracing.collector: is needed when export is on: the URL of a collector\'s OTLP/HTTP receiver, such as http://otel-collector.observability:4318/v1/traces');
      refused({ authorizationPolicies: [{ name: 'p', namespace: 'shop', targetRef: { kind: 'Service', name: 'api' }, action: 'REJECT', rules: [{}] }] }, 'authorizationPolicies[0].action: "REJECT" is not one of ALLOW, DENY, AUDIT');
    });

    it('carries egress from the mesh section, a namespace\'s mode and a workload\'s entries (added to the mesh\'s) to each proxy; refuses a bad one', function () {
      const m = parseMeshFile(
        doc({
          mesh: { egress: { allow: [{ name: 'api', hosts: ['api.example.com'], ports: [80], originateTls: { port: 443, caFile: '/etc/outside-ca.pem' } }] } },
          namespaces: [{ name: 'shop', annotations: { 'tsmesh.io/egress-mode': 'registry-only' } }],
          workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/egress-allow': '*.payments.example:443' } }],
        }),
      );
      const api = buildProxyConfig(m, proxy('shop', 'api'), 'v');
      assert.deepEqual(api.mesh.egress, { allow: [{ name: 'api', hosts: ['api.example.com'], ports: [80], originateTls: { port: 443, caFile: '/etc/outside-ca.pem' } }] });
      assert.deepEqual(api.egress, { mode: 'registry-only', allow: [{ name: '*.payments.example:443', hosts: ['*.payments.example'], ports: [443] }] });
      assert.deepEqual(buildProxyConfig(m, proxy('shop', 'web'), 'v').egress, { mode: 'registry-only' });
      assert.equal(buildProxyConfig(m, proxy('jobs', 'batch'), 'v').egress, undefined);
      assert.deepEqual(parseProxyConfig(JSON.parse(JSON.stringify(api))).egress, api.egress);
      const refused = (over: object, message: string) => assert.throws(() => parseMeshFile(doc(over)), (e: unknown) => e instanceof ValidationError && e.message.startsWith(message));
      refused({ mesh: { egress: { mode: 'REGISTRY_ONLY' } } }, 'mesh.egress.mode: "REGISTRY_ONLY" is not one of allow-all, registry-only');
      refused({ mesh: { egress: { allow: [{ name: 'x', hosts: ['a.com'], originateTls: { caBundle: 'not a PEM' } }] } } }, 'mesh.egress.allow[0].originateTls.caBundle: expected PEM certificates');
      refused({ workloads: [{ namespace: 'shop', serviceAccount: 'api', annotations: { 'tsmesh.io/egress-allow': 'api.example.com:http' } }] }, 'workloads[0].annotations.tsmesh.io/egress-allow: "api.example.com:http"');
    });
  });
});
