import assert from 'node:assert/strict';
import type { V1Endpoint, V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { compareAddresses, podIdentity, podSkippedInboundPorts, portProtocol, serviceModel, type SkippedEndpoint } from './kubernetes-services.js';

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

describe('control/sources/kubernetes-services', function () {
  describe('portProtocol', function () {
    it('reads appProtocol first, then the port name\'s prefix, else auto', function () {
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/h2c', name: 'tcp-x' }), 'http2');
      assert.equal(portProtocol({ appProtocol: 'HTTP' }), 'http');
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/wss' }), 'tcp');
      // WebSocket begins as an HTTP/1.1 Upgrade, which the HTTP path carries, as Istio maps it.
      assert.equal(portProtocol({ appProtocol: 'kubernetes.io/ws' }), 'http');
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

  describe('podSkippedInboundPorts', function () {
    const withInit = (...args: string[]): V1Pod => ({ ...pod('a'), spec: { containers: [{ name: 'app' }], initContainers: [{ name: 'tsmesh-init', args: ['init', ...args] }] } });
    it('reads the inbound ports tsmesh-init left uncaptured from its arguments, as the injector writes them', function () {
      assert.deepEqual(podSkippedInboundPorts(withInit('--proxy-uid=1337', '--skip-inbound-ports=9187,9400:9500,25')), ['9187', '9400-9500', '25']);
      assert.deepEqual(podSkippedInboundPorts(withInit('--skip-inbound-ports', '5432')), ['5432']);
      assert.equal(podSkippedInboundPorts(withInit('--proxy-uid=1337')), undefined);
      assert.equal(podSkippedInboundPorts(pod('a')), undefined);
      // A value init would refuse: the pod never ran with it.
      assert.equal(podSkippedInboundPorts(withInit('--skip-inbound-ports=abc')), undefined);
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

    it('keeps a headless Service without TCP ports, with no ports, for its pods\' addresses and identities', function () {
      const governing = svc('peers', { clusterIP: 'None', clusterIPs: ['None'] });
      // The EndpointSlice controller's slice for a port-less headless Service has no ports.
      const { ports: _none, ...peers } = slice('peers', 'peers', [ep('10.244.3.1', 'peer-0'), ep('10.244.3.2', 'peer-1')], []);
      const m = serviceModel(governing, [peers], lookup(pod('peer-0', { sa: 'peer' }), pod('peer-1', { sa: 'peer' })), TD)!;
      assert.deepEqual(m, {
        name: 'peers',
        namespace: 'shop',
        clusterIPs: [],
        ports: [],
        endpoints: [
          { address: '10.244.3.1', identity: 'spiffe://cluster.local/ns/shop/sa/peer', ready: true },
          { address: '10.244.3.2', identity: 'spiffe://cluster.local/ns/shop/sa/peer', ready: true },
        ],
      });
      const udp = svc('gossip', { clusterIP: 'None', clusterIPs: ['None'], ports: [{ name: 'gossip', port: 7946, protocol: 'UDP' }] });
      assert.deepEqual(serviceModel(udp, [], lookup(), TD)!.ports, []);
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
});
