import assert from 'node:assert/strict';
import type { V1ConfigMap, V1Endpoint, V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { ValidationError } from '../../lib/schema.js';
import { DEFAULT_RETRY_BUDGET } from '../../contract/proxy-config.js';
import {
  compareAddresses,
  emptyAccepted,
  evaluatePolicies,
  parseMeshConfigMap,
  podIdentity,
  portProtocol,
  serviceModel,
  type AcceptedPolicies,
  type PolicyObject,
  type SkippedEndpoint,
} from './kubernetes-map.js';

const TD = 'cluster.local';

function svc(name: string, spec: NonNullable<V1Service['spec']>, namespace = 'shop'): V1Service {
  return { metadata: { name, namespace }, spec };
}

function pod(name: string, opts: { sa?: string; meshed?: boolean; uid?: string; namespace?: string } = {}): V1Pod {
  return {
    metadata: {
      name,
      namespace: opts.namespace ?? 'shop',
      uid: opts.uid ?? `uid-${name}`,
      ...(opts.meshed === false ? {} : { annotations: { 'tsmesh.io/status': '{"version":"0.1.0"}' } }),
    },
    spec: { containers: [{ name: 'app' }], ...(opts.sa ? { serviceAccountName: opts.sa } : {}) },
  };
}

function ep(address: string, podName?: string, conditions?: V1Endpoint['conditions']): V1Endpoint {
  return { addresses: [address], ...(podName ? { targetRef: { kind: 'Pod', name: podName, namespace: 'shop', uid: `uid-${podName}` } } : {}), ...(conditions ? { conditions } : {}) };
}

function slice(name: string, service: string, endpoints: V1Endpoint[], ports: { name?: string; port: number; protocol?: string }[], addressType = 'IPv4'): V1EndpointSlice {
  return { metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } }, addressType, endpoints, ports };
}

function lookup(...pods: V1Pod[]) {
  return (namespace: string, name: string): V1Pod | undefined => pods.find((p) => p.metadata?.name === name && p.metadata.namespace === namespace);
}

describe('control/sources/kubernetes-map', function () {
  describe('portProtocol', function () {
    it('reads appProtocol first, then the port name\'s prefix, else auto', function () {
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/h2c', name: 'tcp-x' }), 'http2');
      assert.equal(portProtocol({ appProtocol: 'HTTP' }), 'http');
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/wss' }), 'tcp');
      // WebSocket is carried as TCP: the HTTP/1.1 path answers Upgrade with 501.
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/ws' }), 'tcp');
      assert.equal(portProtocol({ name: 'grpc-api' }), 'http2');
      assert.equal(portProtocol({ name: 'http' }), 'http');
      assert.equal(portProtocol({ name: 'tcp-postgres' }), 'tcp');
      assert.equal(portProtocol({ name: 'https' }), 'tcp');
      assert.equal(portProtocol({ appProtocol: 'mysql-custom', name: 'web' }), 'auto');
      assert.equal(portProtocol({ name: 'httpish' }), 'auto');
      assert.equal(portProtocol({ name: 'constructor' }), 'auto');
      assert.equal(portProtocol({}), 'auto');
    });
  });

  describe('podIdentity', function () {
    it('is the SPIFFE ID of the pod\'s ServiceAccount when the injector marked the pod', function () {
      assert.equal(podIdentity(pod('a', { sa: 'payments' }), TD), 'spiffe://cluster.local/ns/shop/sa/payments');
      assert.equal(podIdentity(pod('a'), 'example.org'), 'spiffe://example.org/ns/shop/sa/default');
      assert.equal(podIdentity(pod('a', { meshed: false, sa: 'payments' }), TD), undefined);
    });
  });

  describe('serviceModel (Service + EndpointSlices + Pods)', function () {
    const payments = svc('payments', { type: 'ClusterIP', clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] });

    it('maps addresses, identities of meshed pods, plain endpoints and readiness', function () {
      const s = slice('payments-abc', 'payments', [ep('10.244.1.5', 'payments-1', { ready: true, serving: true, terminating: false }), ep('10.244.1.6', 'legacy-1'), ep('10.244.1.7')], [{ name: 'http', port: 8080 }]);
      const m = serviceModel(payments, [s], lookup(pod('payments-1', { sa: 'payments' }), pod('legacy-1', { meshed: false })), TD);
      assert.deepEqual(m, {
        name: 'payments',
        namespace: 'shop',
        clusterIPs: ['10.96.0.20'],
        ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: 8080 }],
        endpoints: [
          { address: '10.244.1.5', identity: 'spiffe://cluster.local/ns/shop/sa/payments', ready: true },
          { address: '10.244.1.6', ready: true },
          { address: '10.244.1.7', ready: true },
        ],
      });
    });

    it('keeps not-ready and terminating endpoints with ready false (unset means ready)', function () {
      const s = slice('payments-abc', 'payments', [ep('10.244.1.5', 'p1', { ready: false }), ep('10.244.1.6', 'p2', { ready: false, serving: true, terminating: true }), ep('10.244.1.7', 'p3', {})], [{ name: 'http', port: 8080 }]);
      const m = serviceModel(payments, [s], lookup(pod('p1'), pod('p2'), pod('p3')), TD)!;
      assert.deepEqual(
        m.endpoints.map((e) => [e.address, e.ready]),
        [
          ['10.244.1.5', false],
          ['10.244.1.6', false],
          ['10.244.1.7', true],
        ],
      );
    });

    it('leaves out an endpoint whose pod is not known yet, or is another pod of the same name', function () {
      const skipped: SkippedEndpoint[] = [];
      const s = slice('payments-abc', 'payments', [ep('10.244.1.5', 'p1'), ep('10.244.1.6', 'p2')], [{ name: 'http', port: 8080 }]);
      const m = serviceModel(payments, [s], lookup(pod('p2', { uid: 'recreated' })), TD, skipped)!;
      assert.deepEqual(m.endpoints, []);
      assert.deepEqual(skipped, [
        { address: '10.244.1.5', reason: 'pod-unknown' },
        { address: '10.244.1.6', reason: 'pod-unknown' },
      ]);
    });

    it('merges an address listed by two slices (ready if either says so) and sorts addresses', function () {
      const a = slice('a', 'payments', [ep('10.244.1.10', 'p1', { ready: false }), ep('10.244.1.9', 'p2')], [{ name: 'http', port: 8080 }]);
      const b = slice('b', 'payments', [ep('10.244.1.10', 'p1', { ready: true })], [{ name: 'http', port: 8080 }]);
      const m = serviceModel(payments, [a, b], lookup(pod('p1'), pod('p2')), TD)!;
      assert.deepEqual(
        m.endpoints.map((e) => [e.address, e.ready]),
        [
          ['10.244.1.9', true],
          ['10.244.1.10', true],
        ],
      );
    });

    it('resolves a named targetPort per endpoint: the common port becomes targetPort, the others override by port name', function () {
      const web = svc('web', { clusterIPs: ['10.96.0.30'], ports: [{ name: 'http', port: 80, targetPort: 'web' }, { port: 9090, targetPort: 'metrics' }] });
      // The unnamed second port is not valid Kubernetes for a two-port Service, but a one-port Service's port is unnamed: keyed by number.
      const s1 = slice('w1', 'web', [ep('10.244.2.1', 'w1'), ep('10.244.2.2', 'w2')], [{ name: 'http', port: 8080 }, { port: 9100 }]);
      const s2 = slice('w2', 'web', [ep('10.244.2.3', 'w3')], [{ name: 'http', port: 8081 }, { port: 9100 }]);
      const m = serviceModel(web, [s1, s2], lookup(pod('w1'), pod('w2'), pod('w3')), TD)!;
      assert.deepEqual(m.ports, [
        { port: 80, name: 'http', protocol: 'http', targetPort: 8080 },
        { port: 9090, protocol: 'auto', targetPort: 9100 },
      ]);
      assert.deepEqual(m.endpoints[2], { address: '10.244.2.3', identity: 'spiffe://cluster.local/ns/shop/sa/default', ports: { http: 8081 }, ready: true });
      assert.equal(m.endpoints[0]!.ports, undefined);
    });

    it('keys an unnamed port\'s override by its number, as the proxy\'s routing table reads it', function () {
      const one = svc('one', { clusterIPs: ['10.96.0.31'], ports: [{ port: 80, targetPort: 'web' }] });
      const s1 = slice('o1', 'one', [ep('10.244.2.1', 'a'), ep('10.244.2.2', 'b')], [{ port: 8080 }]);
      const s2 = slice('o2', 'one', [ep('10.244.2.3', 'c')], [{ port: 9000 }]);
      const m = serviceModel(one, [s1, s2], lookup(pod('a'), pod('b'), pod('c')), TD)!;
      assert.equal(m.ports[0]!.targetPort, 8080);
      assert.deepEqual(m.endpoints[2]!.ports, { '80': 9000 });
    });

    it('defaults targetPort to the port; a numeric string targetPort is a number', function () {
      const m = serviceModel(svc('x', { clusterIPs: ['10.96.0.40'], ports: [{ port: 80 }, { name: 'b', port: 81, targetPort: '8081' }] }), [], lookup(), TD)!;
      assert.deepEqual(
        m.ports.map((p) => p.targetPort),
        [80, 8081],
      );
    });

    it('keeps TCP ports only, and leaves out ExternalName Services and Services with no TCP port', function () {
      const mixed = svc('dns', { clusterIPs: ['10.96.0.10'], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] });
      assert.deepEqual(serviceModel(mixed, [], lookup(), TD)!.ports, [{ port: 53, name: 'dns-tcp', protocol: 'auto', targetPort: 53 }]);
      assert.equal(serviceModel(svc('udp', { clusterIPs: ['10.96.0.11'], ports: [{ port: 53, protocol: 'UDP' }] }), [], lookup(), TD), undefined);
      assert.equal(serviceModel(svc('ext', { type: 'ExternalName', externalName: 'example.org', ports: [{ port: 80 }] }), [], lookup(), TD), undefined);
      assert.equal(serviceModel(svc('noports', { clusterIPs: ['10.96.0.12'] }), [], lookup(), TD), undefined);
    });

    it('takes a headless Service with no clusterIPs, its endpoints and identities kept', function () {
      const headless = svc('db', { clusterIP: 'None', clusterIPs: ['None'], ports: [{ name: 'tcp-pg', port: 5432 }] });
      const m = serviceModel(headless, [slice('db', 'db', [ep('10.244.3.1', 'db-0')], [{ name: 'tcp-pg', port: 5432 }])], lookup(pod('db-0', { sa: 'db' })), TD)!;
      assert.deepEqual(m.clusterIPs, []);
      assert.equal(m.ports[0]!.protocol, 'tcp');
      assert.equal(m.endpoints[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/db');
    });

    it('on a dual-stack Service, uses the slices of the primary family only; FQDN slices are skipped', function () {
      const dual = svc('dual', { clusterIPs: ['fd00::20', '10.96.0.20'], ipFamilies: ['IPv6', 'IPv4'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
      const v4 = slice('v4', 'dual', [ep('10.244.1.5', 'p1')], [{ name: 'http', port: 8080 }], 'IPv4');
      const v6 = slice('v6', 'dual', [ep('fd00:10:244::5', 'p1')], [{ name: 'http', port: 8080 }], 'IPv6');
      const fqdn = slice('f', 'dual', [ep('db.example.org')], [{ name: 'http', port: 8080 }], 'FQDN');
      const skipped: SkippedEndpoint[] = [];
      const m = serviceModel(dual, [v4, v6, fqdn], lookup(pod('p1')), TD, skipped)!;
      assert.deepEqual(m.clusterIPs, ['fd00::20', '10.96.0.20']);
      assert.deepEqual(
        m.endpoints.map((e) => e.address),
        ['fd00:10:244::5'],
      );
      assert.deepEqual(skipped, [{ address: 'db.example.org', reason: 'fqdn' }]);
    });

    it('orders IPv4 before IPv6, numerically', function () {
      assert.deepEqual(['fd00::1', '10.0.0.10', '10.0.0.9'].sort(compareAddresses), ['10.0.0.9', '10.0.0.10', 'fd00::1']);
    });
  });

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

  describe('parseMeshConfigMap (ConfigMap tsmesh-config)', function () {
    const cm = (data: Record<string, string>): V1ConfigMap => ({ metadata: { name: 'tsmesh-config', namespace: 'tsmesh-system' }, data });

    it('defaults when the ConfigMap is absent or empty', function () {
      const want = { mesh: { trustDomain: TD, mtlsMode: 'STRICT', retryBudget: DEFAULT_RETRY_BUDGET } };
      assert.deepEqual(parseMeshConfigMap(undefined, TD), want);
      assert.deepEqual(parseMeshConfigMap(cm({}), TD), want);
    });

    it('reads mtlsMode, retryBudget (YAML) and certificateTtl; trustDomain only when it matches', function () {
      const out = parseMeshConfigMap(cm({ mtlsMode: 'PERMISSIVE', retryBudget: 'ratio: 0.1\nminRetriesPerSecond: 5\nttl: 30s\n', certificateTtl: '2h', trustDomain: 'example.org' }), 'example.org');
      assert.deepEqual(out, { mesh: { trustDomain: 'example.org', mtlsMode: 'PERMISSIVE', retryBudget: { ratio: 0.1, minRetriesPerSecond: 5, ttl: '30s' } }, certificateTtlSeconds: 7200 });
      assert.deepEqual(parseMeshConfigMap(cm({ retryBudget: '{"ratio": 0.5}' }), TD).mesh.retryBudget, { ...DEFAULT_RETRY_BUDGET, ratio: 0.5 });
    });

    const refused: [string, Record<string, string>, RegExp][] = [
      ['an unknown mtlsMode', { mtlsMode: 'strict' }, /^data\.mtlsMode: "strict" is not one of STRICT, PERMISSIVE$/],
      ['an unknown key', { mtlsmode: 'STRICT' }, /^data\.mtlsmode: unknown field; expected one of mtlsMode, retryBudget, certificateTtl, trustDomain$/],
      ['a retry budget out of range', { retryBudget: 'ratio: 2' }, /^data\.retryBudget\.ratio: 2 is not a number from 0 to 1$/],
      ['a retry budget that is not a mapping', { retryBudget: '[1, 2]' }, /^data\.retryBudget: expected an object/],
      ['a retry budget that is not YAML', { retryBudget: 'ratio: [' }, /^data\.retryBudget: not YAML/],
      ['a certificate TTL without a unit', { certificateTtl: '3600' }, /^data\.certificateTtl: .*not a duration/],
      ['a certificate TTL under a minute', { certificateTtl: '30s' }, /^data\.certificateTtl: 30s is outside 60s to 30d$/],
      ['another trust domain', { trustDomain: 'example.org' }, /^data\.trustDomain: "example\.org" differs from the control plane's trust domain "cluster\.local"/],
    ];
    for (const [what, data, message] of refused) {
      it(`refuses ${what}, naming the key`, function () {
        assert.throws(() => parseMeshConfigMap(cm(data), TD), (e: unknown) => e instanceof ValidationError && message.test(e.message));
      });
    }
  });
});
