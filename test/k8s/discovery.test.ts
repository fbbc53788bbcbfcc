// Discovery against a real kube-apiserver with kube-controller-manager: the
// Kubernetes mesh source (control/sources/kubernetes.ts) watches what the
// tests create through the API, and the MeshModel, and the ProxyConfig that
// buildProxyConfig makes from it, change within a second. Most EndpointSlices
// are written by the tests (Services without a selector, as for endpoints
// managed outside Kubernetes), so what is under test is exact; one test lets
// the EndpointSlice controller make them from a selector and a running Pod,
// so the mapping is checked against the real controller's output too.
//
// The source and the trust-bundle sync run with the control plane's own
// ServiceAccount token and the RBAC of manifests/control-plane.yaml.
//
// Also: policies' status conditions (Accepted, InvalidSpec, TargetNotFound,
// Conflict) written through the status subresource, and only on change;
// mesh settings from ConfigMap tsmesh-config; the trust bundle ConfigMap in
// labelled namespaces; watches that recover after the API server connection
// drops (through a loopback TCP relay the test cuts).

import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, KubeConfig, type V1EndpointSlice, type V1Pod, type V1Service, type V1ServicePort } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { newRootCa } from '../../ca/testdata/fixtures.js';
import type { MeshModel, ProxyIdentity, ServiceModel } from '../../control/model.js';
import { buildProxyConfig } from '../../control/snapshot.js';
import { createKubernetesSource, type KubernetesMeshSource } from '../../control/sources/kubernetes.js';
import type { Condition, PolicyObject } from '../../control/sources/kubernetes-policies.js';
import { startTrustBundleSync, type TrustBundleSync } from '../../control/trust-bundle.js';
import { createLogger, type Logger } from '../../lib/log.js';
// The proxy's routing table, to show what a caller's proxy makes of the config (a test reaches across the staircase).
import { buildRoutingTable, lookupTarget } from '../../proxy/config/table.js';
import { createNamespace, createServiceAccount, eventually, isStatus, requestToken, startApiServer, skipWithoutApiServer, type ApiServer } from './apiserver.js';
import { applyOrder, kubeConfigWithToken, readManifests, resolveResource, serverSideApply } from './manifests.js';

/** What "within a second" means for a change made through the API to reach the model. */
const WITHIN_MS = 1000;
const NS = 'shop';
const TD = 'cluster.local';
const GROUP = 'tsmesh.io';
const VERSION = 'v1alpha1';
const MESHED = { 'tsmesh.io/status': '{"version":"0.1.0"}' };

const frontend: ProxyIdentity = { spiffeId: `spiffe://${TD}/ns/${NS}/sa/frontend`, namespace: NS, serviceAccount: 'frontend' };
const paymentsId: ProxyIdentity = { spiffeId: `spiffe://${TD}/ns/${NS}/sa/payments`, namespace: NS, serviceAccount: 'payments' };

/** A logger that keeps its lines, so tests can wait for what the source says. */
function recordingLogger(): { log: Logger; lines: { level: string; msg: string; [k: string]: unknown }[] } {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger('discovery-test', 'debug', (line) => {
    lines.push(JSON.parse(line) as { level: string; msg: string });
    if (process.env['TSMESH_TEST_LOG']) console.log(line);
  });
  return { log, lines };
}

/** Resolves with pick(model) as soon as it is defined, from current() or a later onChange; rejects after timeoutMs. */
function waitForModel<T>(source: KubernetesMeshSource, pick: (m: MeshModel) => T | undefined, what: string, timeoutMs = WITHIN_MS): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const check = (m: MeshModel | undefined): boolean => {
      const v = m ? pick(m) : undefined;
      if (v === undefined) return false;
      clearTimeout(timer);
      off();
      resolvePromise(v);
      return true;
    };
    const off = source.onChange((m) => void check(m));
    const timer = setTimeout(() => {
      off();
      reject(new Error(`not within ${timeoutMs} ms: ${what}\nlast model: ${JSON.stringify(source.current(), null, 1)?.slice(0, 3000)}`));
    }, timeoutMs);
    check(source.current());
  });
}

const serviceIn = (m: MeshModel, name: string, namespace = NS): ServiceModel | undefined => m.services.find((s) => s.name === name && s.namespace === namespace);

/** A loopback TCP relay to the API server that the test can cut (connections reset, new ones refused) and restore. */
class Relay {
  private server: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {
    this.server = this.make();
  }

  private make(): Server {
    return createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolvePromise, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => resolvePromise());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  async cut(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    for (const s of this.sockets) s.resetAndDestroy();
    await closed;
    this.server = this.make();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** The same credentials, reaching the API server at another address. */
function kubeConfigVia(kc: KubeConfig, server: string): KubeConfig {
  const cfg = JSON.parse(kc.exportConfig()) as { clusters: { cluster: { server: string } }[] };
  for (const c of cfg.clusters) c.cluster.server = server;
  const out = new KubeConfig();
  out.loadFromString(JSON.stringify(cfg));
  return out;
}

describe('discovery: the Kubernetes mesh source (real kube-apiserver and controllers)', function () {
  this.timeout(120_000);
  let server: ApiServer | undefined;
  let kc: KubeConfig;
  /** The control plane's ServiceAccount token. */
  let own: KubeConfig;
  let core: CoreV1Api;
  let discovery: DiscoveryV1Api;
  let custom: CustomObjectsApi;
  let source: KubernetesMeshSource | undefined;
  let registry: Registry;
  let recorded: ReturnType<typeof recordingLogger>;

  before(async function () {
    skipWithoutApiServer(this, { controllers: true });
    server = await startApiServer({ controllers: true });
    kc = server.kc;
    core = kc.makeApiClient(CoreV1Api);
    discovery = kc.makeApiClient(DiscoveryV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
    // The namespace, the CRDs, and the control plane's ServiceAccount and RBAC (not its Deployment).
    const wanted = new Set(['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
    for (const d of applyOrder(readManifests().filter((x) => wanted.has(x.object.kind)))) {
      await serverSideApply(kc, d.object);
      if (d.object.kind === 'CustomResourceDefinition') {
        const spec = d.object['spec'] as { group: string; names: { kind: string }; versions: { name: string }[] };
        // The tsmesh.io kinds at VERSION; the Gateway API's at their first version (v1).
        const version = spec.group === GROUP ? VERSION : spec.versions[0]!.name;
        await eventually(() => resolveResource(kc, `${spec.group}/${version}`, spec.names.kind), 20_000, `${spec.names.kind} to be served`);
      }
    }
    await createNamespace(kc, NS, { 'tsmesh.io/inject': 'enabled' });
    for (const sa of ['payments', 'orders']) await createServiceAccount(kc, NS, sa);
    // Pods bound to this node are what the EndpointSlice controller lists (it skips pods on unknown nodes).
    await core.createNode({ body: { metadata: { name: 'node-1' } } });
    // The default ServiceAccount comes from the controller; pods of the namespace need it.
    await eventually(async () => (await core.readNamespacedServiceAccount({ namespace: NS, name: 'default' })) ?? undefined, 20_000, 'the default ServiceAccount');

    // The source and the trust bundle run with the control plane's own token: the manifests' RBAC is enough for them.
    own = kubeConfigWithToken(kc, (await requestToken(kc, 'tsmesh-system', 'tsmesh-control-plane', [], 3600)).token, 'tsmesh-control-plane');
    registry = new Registry();
    recorded = recordingLogger();
    source = createKubernetesSource({ kc: own, trustDomain: TD, registry, log: recorded.log, backoffInitialMs: 100, backoffMaxMs: 1000 });
    const first = await Promise.race([source.synced(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no first model: ${source!.notReady()}`)), 20_000))]);
    assert.equal(first.mesh.mtlsMode, 'STRICT');
  });

  after(async function () {
    source?.close();
    await server?.stop();
  });

  async function createPod(name: string, opts: { sa?: string; meshed?: boolean; labels?: Record<string, string>; ports?: { name: string; containerPort: number }[] } = {}): Promise<V1Pod> {
    return core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name, labels: opts.labels ?? {}, ...(opts.meshed === false ? {} : { annotations: MESHED }) },
        spec: {
          nodeName: 'node-1',
          serviceAccountName: opts.sa ?? 'default',
          containers: [{ name: 'app', image: 'registry.example/app:1', ...(opts.ports ? { ports: opts.ports } : {}) }],
        },
      },
    });
  }

  async function createService(name: string, ports: V1ServicePort[], selector?: Record<string, string>): Promise<V1Service> {
    return core.createNamespacedService({ namespace: NS, body: { metadata: { name }, spec: { ports, ...(selector ? { selector } : {}) } } });
  }

  function slice(name: string, service: string, endpoints: V1EndpointSlice['endpoints'], ports: NonNullable<V1EndpointSlice['ports']>): V1EndpointSlice {
    return {
      metadata: { name, labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'tests.tsmesh.io' } },
      addressType: 'IPv4',
      endpoints,
      ports,
    };
  }

  const podRef = (p: V1Pod) => ({ kind: 'Pod', name: p.metadata!.name!, namespace: NS, uid: p.metadata!.uid! });

  function policy(kind: 'TrafficPolicy' | 'AuthorizationPolicy', name: string, spec: unknown): PolicyObject & { apiVersion: string; kind: string } {
    return { apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name, namespace: NS }, spec };
  }
  const plural = (kind: 'TrafficPolicy' | 'AuthorizationPolicy'): string => (kind === 'TrafficPolicy' ? 'trafficpolicies' : 'authorizationpolicies');
  const createPolicy = (kind: 'TrafficPolicy' | 'AuthorizationPolicy', name: string, spec: unknown): Promise<any> =>
    custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(kind), body: policy(kind, name, spec) });
  const readPolicy = (kind: 'TrafficPolicy' | 'AuthorizationPolicy', name: string): Promise<any> =>
    custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(kind), name });

  /** Waits for the policy's Accepted condition to be the given one, at the policy's current generation. */
  function acceptedCondition(kind: 'TrafficPolicy' | 'AuthorizationPolicy', name: string, want: { status: 'True' | 'False'; reason: string }): Promise<{ obj: any; condition: Condition }> {
    return eventually(
      async () => {
        const obj = await readPolicy(kind, name);
        const c = (obj.status?.conditions as Condition[] | undefined)?.find((x) => x.type === 'Accepted');
        if (!c || c.status !== want.status || c.reason !== want.reason || c.observedGeneration !== obj.metadata.generation || obj.status.observedGeneration !== obj.metadata.generation) return undefined;
        return { obj, condition: c };
      },
      5_000,
      `${kind} ${name}: Accepted=${want.status} ${want.reason}`,
    );
  }

  describe('Services, EndpointSlices and Pods', function () {
    let paymentsPod: V1Pod;
    let clusterIP: string;

    it('a Service, its EndpointSlice and a meshed Pod reach the model and the ProxyConfig within a second', async function () {
      paymentsPod = await createPod('payments-1', { sa: 'payments' });
      const svc = await createService('payments', [{ name: 'http', port: 80, targetPort: 'http' }]);
      clusterIP = svc.spec!.clusterIP!;
      const start = Date.now();
      await discovery.createNamespacedEndpointSlice({
        namespace: NS,
        body: slice('payments-1', 'payments', [{ addresses: ['10.244.1.5'], conditions: { ready: true }, targetRef: podRef(paymentsPod) }], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      });
      const s = await waitForModel(source!, (m) => (serviceIn(m, 'payments')?.endpoints.length ? serviceIn(m, 'payments') : undefined), 'payments with its endpoint');
      const elapsed = Date.now() - start;
      assert.deepEqual(s, {
        name: 'payments',
        namespace: NS,
        clusterIPs: [clusterIP],
        ports: [{ port: 80, name: 'http', protocol: 'http', targetPort: 8080 }],
        endpoints: [{ address: '10.244.1.5', identity: paymentsId.spiffeId, ready: true }],
      });
      const config = buildProxyConfig(source!.current()!, frontend, 'v1');
      const svcConfig = config.services.find((x) => x.name === 'payments');
      assert.deepEqual(svcConfig?.endpoints, [{ address: '10.244.1.5', identity: paymentsId.spiffeId }]);
      assert.deepEqual(svcConfig.clusterIPs, [clusterIP]);
      console.log(`      (EndpointSlice to model: ${elapsed} ms)`);
    });

    it('an endpoint that stops being ready, and a slice that goes away', async function () {
      await discovery.replaceNamespacedEndpointSlice({
        namespace: NS,
        name: 'payments-1',
        body: {
          ...(await discovery.readNamespacedEndpointSlice({ namespace: NS, name: 'payments-1' })),
          endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: false, serving: true, terminating: true }, targetRef: podRef(paymentsPod) }],
        },
      });
      await waitForModel(source!, (m) => (serviceIn(m, 'payments')?.endpoints[0]?.ready === false ? true : undefined), 'the endpoint not ready');
      const config = buildProxyConfig(source!.current()!, frontend, 'v2');
      assert.deepEqual(config.services.find((x) => x.name === 'payments')?.endpoints, [{ address: '10.244.1.5', identity: paymentsId.spiffeId, ready: false }]);

      await discovery.deleteNamespacedEndpointSlice({ namespace: NS, name: 'payments-1' });
      await waitForModel(source!, (m) => (serviceIn(m, 'payments')?.endpoints.length === 0 ? true : undefined), 'no endpoints once the slice is gone');
      // Put it back for the policy tests.
      await discovery.createNamespacedEndpointSlice({
        namespace: NS,
        body: slice('payments-1', 'payments', [{ addresses: ['10.244.1.5'], conditions: { ready: true }, targetRef: podRef(paymentsPod) }], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      });
      await waitForModel(source!, (m) => (serviceIn(m, 'payments')?.endpoints[0]?.ready ? true : undefined), 'the endpoint back');
    });

    it('a plain pod\'s endpoint has no identity until the pod carries tsmesh.io/status', async function () {
      const legacy = await createPod('legacy-1', { meshed: false });
      await createService('legacy', [{ port: 8080 }]);
      await discovery.createNamespacedEndpointSlice({ namespace: NS, body: slice('legacy-1', 'legacy', [{ addresses: ['10.244.1.9'], targetRef: podRef(legacy) }], [{ port: 8080, protocol: 'TCP' }]) });
      const plain = await waitForModel(source!, (m) => serviceIn(m, 'legacy')?.endpoints[0], 'legacy endpoint');
      assert.deepEqual(plain, { address: '10.244.1.9', ready: true });
      const latest = await core.readNamespacedPod({ namespace: NS, name: 'legacy-1' });
      await core.replaceNamespacedPod({ namespace: NS, name: 'legacy-1', body: { ...latest, metadata: { ...latest.metadata, annotations: MESHED } } });
      const meshed = await waitForModel(source!, (m) => serviceIn(m, 'legacy')?.endpoints[0]?.identity, 'legacy endpoint meshed');
      assert.equal(meshed, `spiffe://${TD}/ns/${NS}/sa/default`);
    });

    it('a Service deleted leaves the model', async function () {
      await createService('short-lived', [{ port: 80 }]);
      await waitForModel(source!, (m) => serviceIn(m, 'short-lived'), 'short-lived present');
      await core.deleteNamespacedService({ namespace: NS, name: 'short-lived' });
      await waitForModel(source!, (m) => (serviceIn(m, 'short-lived') ? undefined : true), 'short-lived gone');
    });

    it('the EndpointSlice controller\'s slices for a selector Service and a running Pod map the same way (named targetPort resolved)', async function () {
      const pod = await createPod('orders-1', { sa: 'orders', labels: { app: 'orders' }, ports: [{ name: 'http', containerPort: 8080 }] });
      await createService('orders', [{ name: 'http', port: 80, targetPort: 'http' }], { app: 'orders' });
      const now = new Date();
      await core.replaceNamespacedPodStatus({
        namespace: NS,
        name: 'orders-1',
        body: {
          ...pod,
          status: {
            phase: 'Running',
            podIP: '10.244.2.7',
            podIPs: [{ ip: '10.244.2.7' }],
            conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
          },
        },
      });
      // The controller adds its own delay; the source's part is measured in the tests above.
      const s = await waitForModel(source!, (m) => (serviceIn(m, 'orders')?.endpoints.length ? serviceIn(m, 'orders') : undefined), 'orders endpoint from the controller', 15_000);
      assert.deepEqual(s.ports, [{ port: 80, name: 'http', protocol: 'http', targetPort: 8080 }]);
      assert.deepEqual(s.endpoints, [{ address: '10.244.2.7', identity: `spiffe://${TD}/ns/${NS}/sa/orders`, ready: true }]);
      const controllerSlices = await discovery.listNamespacedEndpointSlice({ namespace: NS, labelSelector: 'kubernetes.io/service-name=orders' });
      assert.equal(controllerSlices.items[0]?.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'], 'endpointslice-controller.k8s.io');
    });

    it('the controller\'s slices for a StatefulSet\'s headless Service, and a headless Service without ports, reach the model; a caller\'s proxy knows each pod by its address', async function () {
      await createServiceAccount(kc, NS, 'db');
      const now = new Date();
      for (const [i, name] of ['db-0', 'db-1'].entries()) {
        const pod = await core.createNamespacedPod({
          namespace: NS,
          body: {
            metadata: { name, labels: { app: 'db' }, annotations: MESHED },
            spec: {
              nodeName: 'node-1',
              serviceAccountName: 'db',
              hostname: name,
              subdomain: 'db',
              // As the injector writes it: this pod's exporter port stays uncaptured.
              initContainers: [{ name: 'tsmesh-init', image: 'ghcr.io/tsmesh/tsmesh:0.1.0', args: ['init', '--proxy-uid=1337', '--skip-inbound-ports=9187'] }],
              containers: [{ name: 'postgres', image: 'postgres:17', ports: [{ name: 'pg', containerPort: 5432 }] }],
            },
          },
        });
        await core.replaceNamespacedPodStatus({
          namespace: NS,
          name,
          body: { ...pod, status: { phase: 'Running', podIP: `10.244.4.${10 + i}`, podIPs: [{ ip: `10.244.4.${10 + i}` }], conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }] } },
        });
      }
      await core.createNamespacedService({
        namespace: NS,
        body: { metadata: { name: 'db' }, spec: { clusterIP: 'None', selector: { app: 'db' }, publishNotReadyAddresses: true, ports: [{ name: 'tcp-pg', port: 5432, targetPort: 'pg' }] } },
      });
      await core.createNamespacedService({ namespace: NS, body: { metadata: { name: 'db-peers' }, spec: { clusterIP: 'None', selector: { app: 'db' } } } });
      const both = await waitForModel(
        source!,
        (m) => (serviceIn(m, 'db')?.endpoints.length === 2 && serviceIn(m, 'db-peers')?.endpoints.length === 2 ? m : undefined),
        'db and db-peers with both pods, from the controller',
        15_000,
      );
      const endpoints = ['10.244.4.10', '10.244.4.11'].map((address) => ({ address, identity: `spiffe://${TD}/ns/${NS}/sa/db`, ready: true, skipInboundPorts: ['9187'] }));
      assert.deepEqual(serviceIn(both, 'db'), { name: 'db', namespace: NS, clusterIPs: [], ports: [{ port: 5432, name: 'tcp-pg', protocol: 'tcp', targetPort: 5432 }], endpoints });
      assert.deepEqual(serviceIn(both, 'db-peers'), { name: 'db-peers', namespace: NS, clusterIPs: [], ports: [], endpoints });
      const slices = await discovery.listNamespacedEndpointSlice({ namespace: NS, labelSelector: 'kubernetes.io/service-name in (db, db-peers)' });
      assert.ok(slices.items.length >= 2 && slices.items.every((x) => x.metadata?.labels?.['service.kubernetes.io/headless'] !== undefined), 'the controller marks headless slices');

      // What a caller's proxy makes of it: db-1.db.shop.svc answers 10.244.4.11, reached on 5432 over mTLS as that pod;
      // any other port of the pods over opaque mTLS, but the uncaptured 9187 in plain TCP.
      const table = buildRoutingTable(buildProxyConfig(both, frontend, 'v'));
      const pinned = lookupTarget(table, '10.244.4.11', 5432);
      assert.equal(pinned?.key, `db.${NS}`);
      assert.deepEqual(pinned?.endpoints.map((e) => `${e.address}:${e.port} ${e.identity}`), [`10.244.4.11:5432 spiffe://${TD}/ns/${NS}/sa/db`]);
      const pod = table.pods.get('10.244.4.10');
      assert.equal(pod?.identity, `spiffe://${TD}/ns/${NS}/sa/db`);
      assert.deepEqual([pod?.opaqueMtls(2380), pod?.opaqueMtls(9187)], [true, false]);
    });

    it('a burst of changes gives a few models, not one per event', async function () {
      const models: MeshModel[] = [];
      const off = source!.onChange((m) => models.push(m));
      try {
        await Promise.all(Array.from({ length: 20 }, (_, i) => createService(`burst-${i}`, [{ port: 80 }])));
        await waitForModel(source!, (m) => (m.services.filter((s) => s.name.startsWith('burst-')).length === 20 ? true : undefined), 'all 20 burst Services');
      } finally {
        off();
      }
      assert.ok(models.length <= 6, `${models.length} models for 20 Services`);
    });
  });

  describe('policies', function () {
    it('a TrafficPolicy reaches the ProxyConfig within a second and is marked Accepted', async function () {
      const spec = {
        targetRef: { kind: 'Service', name: 'payments' },
        routes: [{ name: 'canary', match: { pathPrefix: '/v2' }, backends: [{ service: 'payments', weight: 90 }, { service: 'orders', weight: 10 }] }],
        retries: { attempts: 3, backoff: { base: '25ms', max: '250ms' }, retryOn: ['5xx'] },
      };
      await createPolicy('TrafficPolicy', 'payments-canary', spec);
      const { targetRef: _t, ...rest } = spec;
      const tp = await waitForModel(source!, (m) => buildProxyConfig(m, frontend, 'v').services.find((s) => s.name === 'payments')?.trafficPolicy, 'payments trafficPolicy');
      assert.deepEqual(tp, { name: 'payments-canary', ...rest });
      const { condition } = await acceptedCondition('TrafficPolicy', 'payments-canary', { status: 'True', reason: 'Accepted' });
      assert.equal(condition.message, 'applied to Service payments');
    });

    it('writes status only when it changes', async function () {
      const before = await readPolicy('TrafficPolicy', 'payments-canary');
      // Unrelated events make the source rebuild (and re-check every status) several times.
      for (let i = 0; i < 3; i++) {
        await createService(`noise-${i}`, [{ port: 80 }]);
        await waitForModel(source!, (m) => serviceIn(m, `noise-${i}`), `noise-${i}`);
      }
      await new Promise((r) => setTimeout(r, 300));
      const after = await readPolicy('TrafficPolicy', 'payments-canary');
      assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'the policy was written again');
    });

    it('an edit that passes the schema but not the control plane: InvalidSpec, and the last accepted spec stays in force', async function () {
      const current = await readPolicy('TrafficPolicy', 'payments-canary');
      await custom.replaceNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: 'trafficpolicies',
        name: 'payments-canary',
        body: { ...current, spec: { ...current.spec, retries: { attempts: 3, backoff: { base: '1s', max: '100ms' } } } },
      });
      const { condition } = await acceptedCondition('TrafficPolicy', 'payments-canary', { status: 'False', reason: 'InvalidSpec' });
      assert.equal(condition.message, 'spec.retries.backoff.max: 100ms is shorter than backoff.base 1s; the spec accepted at generation 1 stays in force');
      const tp = buildProxyConfig(source!.current()!, frontend, 'v').services.find((s) => s.name === 'payments')?.trafficPolicy;
      assert.deepEqual(tp?.retries, { attempts: 3, backoff: { base: '25ms', max: '250ms' }, retryOn: ['5xx'] }, 'the generation-1 spec is still the one in force');
    });

    it('a new policy that cannot be applied (every backend at weight 0) is left out: InvalidSpec, not applied', async function () {
      await createPolicy('TrafficPolicy', 'orders-zero', { targetRef: { kind: 'Service', name: 'orders' }, routes: [{ backends: [{ service: 'orders', weight: 0 }] }] });
      const { condition } = await acceptedCondition('TrafficPolicy', 'orders-zero', { status: 'False', reason: 'InvalidSpec' });
      assert.equal(condition.message, 'spec.routes[0].backends: at least one backend needs a weight above 0; the policy is not applied');
      assert.equal(buildProxyConfig(source!.current()!, frontend, 'v').services.find((s) => s.name === 'orders')?.trafficPolicy, undefined);
    });

    it('a policy for a Service that does not exist: TargetNotFound, then Accepted once the Service is created', async function () {
      await createPolicy('TrafficPolicy', 'inventory-timeout', { targetRef: { kind: 'Service', name: 'inventory' }, timeout: '3s' });
      const { condition } = await acceptedCondition('TrafficPolicy', 'inventory-timeout', { status: 'False', reason: 'TargetNotFound' });
      assert.equal(condition.message, 'Service inventory not found in namespace shop; the policy is not applied');
      await createService('inventory', [{ port: 80 }]);
      await waitForModel(source!, (m) => buildProxyConfig(m, frontend, 'v').services.find((s) => s.name === 'inventory')?.trafficPolicy, 'inventory policy applied');
      await acceptedCondition('TrafficPolicy', 'inventory-timeout', { status: 'True', reason: 'Accepted' });
    });

    it('a second policy for a governed Service: Conflict naming the older one, which stays in force', async function () {
      // creationTimestamp counts whole seconds, and equal ones are settled by name: make the second one
      // newer by a second, and name it so that name order alone would pick it.
      const older = await readPolicy('TrafficPolicy', 'inventory-timeout');
      const wait = new Date(older.metadata.creationTimestamp as string).getTime() + 1000 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait + 50));
      await createPolicy('TrafficPolicy', 'inventory-other', { targetRef: { kind: 'Service', name: 'inventory' }, timeout: '9s' });
      const { condition } = await acceptedCondition('TrafficPolicy', 'inventory-other', { status: 'False', reason: 'Conflict' });
      assert.equal(condition.message, 'Service inventory is already governed by TrafficPolicy inventory-timeout; one policy per Service; the policy is not applied');
      assert.equal(buildProxyConfig(source!.current()!, frontend, 'v').services.find((s) => s.name === 'inventory')?.trafficPolicy?.timeout, '3s');
      // The older one goes: the other takes over.
      await custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: 'trafficpolicies', name: 'inventory-timeout' });
      await waitForModel(source!, (m) => (buildProxyConfig(m, frontend, 'v').services.find((s) => s.name === 'inventory')?.trafficPolicy?.timeout === '9s' ? true : undefined), 'inventory-other in force');
      await acceptedCondition('TrafficPolicy', 'inventory-other', { status: 'True', reason: 'Accepted' });
    });

    it('an AuthorizationPolicy on a Service reaches the inbound config of the workloads behind it only', async function () {
      const rules = [{ identities: [frontend.spiffeId] }, { namespaces: ['ops'], ports: [8080] }];
      await createPolicy('AuthorizationPolicy', 'payments-callers', { targetRef: { kind: 'Service', name: 'payments' }, rules });
      const authz = await waitForModel(source!, (m) => buildProxyConfig(m, paymentsId, 'v').inbound.authorization, 'payments inbound authorization');
      assert.deepEqual(authz, [{ name: 'payments-callers', rules }]);
      assert.equal(buildProxyConfig(source!.current()!, frontend, 'v').inbound.authorization, undefined);
      await acceptedCondition('AuthorizationPolicy', 'payments-callers', { status: 'True', reason: 'Accepted' });
    });

    it('an AuthorizationPolicy whose SPIFFE ID passes the schema but not the control plane: InvalidSpec', async function () {
      await createPolicy('AuthorizationPolicy', 'bad-id', { targetRef: { kind: 'ServiceAccount', name: 'orders' }, rules: [{ identities: ['spiffe://Cluster.local/ns/shop/sa/x'] }] });
      const { condition } = await acceptedCondition('AuthorizationPolicy', 'bad-id', { status: 'False', reason: 'InvalidSpec' });
      assert.match(condition.message, /^spec\.rules\[0\]\.identities\[0\]: .*; the policy is not applied$/);
      assert.ok(!source!.current()!.authorizationPolicies.some((p) => p.name === 'bad-id'));
    });
  });

  describe('mesh settings (ConfigMap tsmesh-config)', function () {
    it('are read within a second; a bad value keeps the last good settings', async function () {
      await core.createNamespacedConfigMap({ namespace: 'tsmesh-system', body: { metadata: { name: 'tsmesh-config' }, data: { mtlsMode: 'PERMISSIVE', certificateTtl: '2h', retryBudget: 'ratio: 0.1\n' } } });
      const mesh = await waitForModel(source!, (m) => (m.mesh.mtlsMode === 'PERMISSIVE' ? m.mesh : undefined), 'PERMISSIVE');
      assert.deepEqual(mesh.retryBudget, { ratio: 0.1, minRetriesPerSecond: 10, ttl: '10s' });
      assert.equal(source!.certificateTtlSeconds(), 7200);
      assert.equal(buildProxyConfig(source!.current()!, frontend, 'v').mesh.mtlsMode, 'PERMISSIVE');

      const errorsBefore = recorded.lines.filter((l) => l.level === 'error').length;
      const cm = await core.readNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
      await core.replaceNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config', body: { ...cm, data: { mtlsMode: 'OFF' } } });
      const logged = await eventually(async () => recorded.lines.slice(errorsBefore).find((l) => l.level === 'error' && l.msg.includes('tsmesh-config')), 2_000, 'the error log');
      assert.equal(logged['error'], 'data.mtlsMode: "OFF" is not one of STRICT, PERMISSIVE');
      assert.equal(source!.current()!.mesh.mtlsMode, 'PERMISSIVE');
      assert.equal(source!.certificateTtlSeconds(), 7200);

      await core.deleteNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
      await waitForModel(source!, (m) => (m.mesh.mtlsMode === 'STRICT' ? true : undefined), 'back to the defaults');
    });
  });

  describe('inbound settings (tsmesh-config, Namespace and pod annotations) and AuthorizationPolicy actions', function () {
    // A ServiceAccount of its own: its pods are the workload (those of another would have a say in its settings).
    const ledgerId: ProxyIdentity = { spiffeId: `spiffe://${TD}/ns/${NS}/sa/ledger`, namespace: NS, serviceAccount: 'ledger' };
    const inboundOf = (id: ProxyIdentity) => buildProxyConfig(source!.current()!, id, 'v').inbound;
    async function annotateNamespace(annotations: Record<string, string | undefined>): Promise<void> {
      const ns = await core.readNamespace({ name: NS });
      const merged = Object.entries({ ...ns.metadata!.annotations, ...annotations }).filter((e): e is [string, string] => e[1] !== undefined);
      await core.replaceNamespace({ name: NS, body: { ...ns, metadata: { ...ns.metadata, annotations: Object.fromEntries(merged) } } });
    }

    after(async function () {
      await annotateNamespace({ 'tsmesh.io/default-inbound-policy': undefined });
    });

    it("carry tsmesh-config's defaultInboundPolicy, then the Namespace's and the pod's annotations to the proxy config, the most specific winning", async function () {
      await createServiceAccount(kc, NS, 'ledger');
      await core.createNamespacedConfigMap({ namespace: 'tsmesh-system', body: { metadata: { name: 'tsmesh-config' }, data: { defaultInboundPolicy: 'all-unauthenticated' } } });
      await waitForModel(source!, (m) => (m.mesh.defaultInboundPolicy === 'all-unauthenticated' ? true : undefined), 'the mesh default');
      await annotateNamespace({ 'tsmesh.io/default-inbound-policy': 'deny' });
      await waitForModel(source!, (m) => (buildProxyConfig(m, paymentsId, 'v').inbound.defaultPolicy === 'deny' ? true : undefined), "the namespace's deny on payments");
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: 'ledger-1', annotations: { ...MESHED, 'tsmesh.io/mtls-mode': 'PERMISSIVE', 'tsmesh.io/port-mtls-modes': '9090=STRICT' } },
          spec: { nodeName: 'node-1', serviceAccountName: 'ledger', containers: [{ name: 'app', image: 'registry.example/app:1' }] },
        },
      });
      await waitForModel(source!, (m) => (buildProxyConfig(m, ledgerId, 'v').inbound.mtlsMode === 'PERMISSIVE' ? true : undefined), "the pod's PERMISSIVE on ledger");
      assert.deepEqual(inboundOf(ledgerId), { mtlsMode: 'PERMISSIVE', portMtlsModes: { 9090: 'STRICT' }, defaultPolicy: 'deny' });
      assert.equal(buildProxyConfig(source!.current()!, ledgerId, 'v').mesh.defaultInboundPolicy, 'all-unauthenticated');
      await core.deleteNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
    });

    it('an annotation that does not read is logged, and the last readable settings stay', async function () {
      const warningsBefore = recorded.lines.filter((l) => l.level === 'warn').length;
      await annotateNamespace({ 'tsmesh.io/default-inbound-policy': 'Deny' });
      const logged = await eventually(async () => recorded.lines.slice(warningsBefore).find((l) => l.level === 'warn' && l.msg.startsWith(`Namespace ${NS}:`)), 2_000, 'the warning');
      assert.equal(logged.msg, `Namespace ${NS}: annotation tsmesh.io/default-inbound-policy: "Deny" is not one of all-authenticated, all-unauthenticated, deny; its last readable settings stay in force`);
      assert.equal(inboundOf(paymentsId).defaultPolicy, 'deny');
      await annotateNamespace({ 'tsmesh.io/default-inbound-policy': 'all-authenticated' });
      await waitForModel(source!, (m) => (buildProxyConfig(m, paymentsId, 'v').inbound.defaultPolicy === 'all-authenticated' ? true : undefined), 'the fixed value');
    });

    it("carry tsmesh-config's egress, then the Namespace's mode and the pod's allow-list entries to the proxy config; a bad egress annotation keeps the last readable settings", async function () {
      const courierId: ProxyIdentity = { spiffeId: `spiffe://${TD}/ns/${NS}/sa/courier`, namespace: NS, serviceAccount: 'courier' };
      await createServiceAccount(kc, NS, 'courier');
      const egress = 'allow:\n  - { name: api, hosts: [api.example.com], ports: [443] }\n';
      await core.createNamespacedConfigMap({ namespace: 'tsmesh-system', body: { metadata: { name: 'tsmesh-config' }, data: { egress } } });
      await waitForModel(source!, (m) => m.mesh.egress?.allow?.[0], "tsmesh-config's egress entry");
      await annotateNamespace({ 'tsmesh.io/egress-mode': 'registry-only' });
      await waitForModel(source!, (m) => (buildProxyConfig(m, paymentsId, 'v').egress?.mode === 'registry-only' ? true : undefined), "the namespace's registry-only on payments");
      await core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: { name: 'courier-1', annotations: { ...MESHED, 'tsmesh.io/egress-allow': 'maps.example.com:443, 10.1.0.0/16:5432' } },
          spec: { nodeName: 'node-1', serviceAccountName: 'courier', containers: [{ name: 'app', image: 'registry.example/app:1' }] },
        },
      });
      const config = await waitForModel(source!, (m) => (buildProxyConfig(m, courierId, 'v').egress?.allow ? buildProxyConfig(m, courierId, 'v') : undefined), "the pod's entries on courier");
      assert.deepEqual(config.egress, {
        mode: 'registry-only',
        allow: [
          { name: 'maps.example.com:443', hosts: ['maps.example.com'], ports: [443] },
          { name: '10.1.0.0/16:5432', cidrs: ['10.1.0.0/16'], ports: [5432] },
        ],
      });
      assert.deepEqual(config.mesh.egress, { allow: [{ name: 'api', hosts: ['api.example.com'], ports: [443] }] });

      const warningsBefore = recorded.lines.filter((l) => l.level === 'warn').length;
      await annotateNamespace({ 'tsmesh.io/egress-mode': 'REGISTRY_ONLY' });
      const logged = await eventually(async () => recorded.lines.slice(warningsBefore).find((l) => l.level === 'warn' && l.msg.startsWith(`Namespace ${NS}: annotation tsmesh.io/egress-mode`)), 2_000, 'the warning');
      assert.equal(logged.msg, `Namespace ${NS}: annotation tsmesh.io/egress-mode: "REGISTRY_ONLY" is not one of allow-all, registry-only; its last readable settings stay in force`);
      assert.equal(buildProxyConfig(source!.current()!, paymentsId, 'v').egress?.mode, 'registry-only');
      await annotateNamespace({ 'tsmesh.io/egress-mode': undefined });
      await waitForModel(source!, (m) => (buildProxyConfig(m, paymentsId, 'v').egress === undefined ? true : undefined), 'the namespace without egress settings');
      await core.deleteNamespacedPod({ namespace: NS, name: 'courier-1', gracePeriodSeconds: 0 });
      await core.deleteNamespacedConfigMap({ namespace: 'tsmesh-system', name: 'tsmesh-config' });
    });

    it('a DENY policy with HTTP rules reaches the workload and is Accepted; a path that could never match is InvalidSpec, naming the spelling to use', async function () {
      const rules = [{ pathPrefixes: ['/admin'] }, { methods: ['DELETE'], paths: ['/orders'], headers: { 'x-tenant': 'blue' } }];
      await createPolicy('AuthorizationPolicy', 'ledger-no-admin', { targetRef: { kind: 'ServiceAccount', name: 'ledger' }, action: 'DENY', rules });
      const authz = await waitForModel(source!, (m) => buildProxyConfig(m, ledgerId, 'v').inbound.authorization?.find((a) => a.name === 'ledger-no-admin'), 'the DENY policy on ledger');
      assert.deepEqual(authz, { name: 'ledger-no-admin', action: 'DENY', rules });
      await acceptedCondition('AuthorizationPolicy', 'ledger-no-admin', { status: 'True', reason: 'Accepted' });

      await createPolicy('AuthorizationPolicy', 'ledger-dotted', { targetRef: { kind: 'ServiceAccount', name: 'ledger' }, action: 'DENY', rules: [{ paths: ['/public/../admin'] }] });
      const { condition } = await acceptedCondition('AuthorizationPolicy', 'ledger-dotted', { status: 'False', reason: 'InvalidSpec' });
      assert.match(condition.message, /^spec\.rules\[0\]\.paths\[0\]: "\/public\/\.\.\/admin" is not a normalized path .*; write "\/admin"; the policy is not applied$/);
    });
  });

  describe('trust bundle', function () {
    let sync: TrustBundleSync | undefined;
    afterEach(() => sync?.close());

    const bundleIn = async (namespace: string): Promise<string | undefined> => {
      try {
        return (await core.readNamespacedConfigMap({ namespace, name: 'tsmesh-trust-bundle' })).data?.['root-cert.pem'];
      } catch (e) {
        if (isStatus(e, 404)) return undefined;
        throw e;
      }
    };
    const waitBundle = (namespace: string, pem: string, timeoutMs = WITHIN_MS): Promise<string> =>
      eventually(async () => ((await bundleIn(namespace)) === pem ? pem : undefined), timeoutMs, `the bundle in ${namespace}`);

    it('appears in every labelled namespace, follows new namespaces and a new bundle, and is restored when edited or deleted', async function () {
      const { ca } = await newRootCa();
      const first = ca.trustBundle.toPem();
      await createNamespace(kc, 'plain');
      sync = startTrustBundleSync({ kc: own, log: recorded.log, registry, bundlePem: first, backoffInitialMs: 100, backoffMaxMs: 1000 });
      await sync.synced();
      assert.equal(sync.notReady(), undefined);
      assert.equal(await bundleIn(NS), first);
      assert.equal(await bundleIn('plain'), undefined, 'an unlabelled namespace gets no bundle');
      assert.equal(await bundleIn('tsmesh-system'), undefined);
      const cm = await core.readNamespacedConfigMap({ namespace: NS, name: 'tsmesh-trust-bundle' });
      assert.equal(cm.metadata?.labels?.['app.kubernetes.io/managed-by'], 'tsmesh');

      await createNamespace(kc, 'billing', { 'tsmesh.io/inject': 'enabled' });
      await waitBundle('billing', first);
      const plain = await core.readNamespace({ name: 'plain' });
      await core.replaceNamespace({ name: 'plain', body: { ...plain, metadata: { ...plain.metadata, labels: { ...plain.metadata?.labels, 'tsmesh.io/inject': 'enabled' } } } });
      await waitBundle('plain', first);

      const second = (await newRootCa()).ca.trustBundle.with(first).toPem();
      sync.setBundle(second);
      await Promise.all([NS, 'billing', 'plain'].map((n) => waitBundle(n, second)));

      const edited = await core.readNamespacedConfigMap({ namespace: 'billing', name: 'tsmesh-trust-bundle' });
      await core.replaceNamespacedConfigMap({ namespace: 'billing', name: 'tsmesh-trust-bundle', body: { ...edited, data: { 'root-cert.pem': 'tampered', note: 'kept' } } });
      await eventually(async () => {
        const now = await core.readNamespacedConfigMap({ namespace: 'billing', name: 'tsmesh-trust-bundle' });
        return now.data?.['root-cert.pem'] === second && now.data['note'] === 'kept' ? true : undefined;
      }, WITHIN_MS, 'the edited bundle restored, other keys kept');

      await core.deleteNamespacedConfigMap({ namespace: NS, name: 'tsmesh-trust-bundle' });
      await waitBundle(NS, second);
    });
  });

  describe('watch errors', function () {
    it('are counted per resource, and the watches recover when the API server is reachable again', async function () {
      const url = new URL(kc.getCurrentCluster()!.server);
      const relay = new Relay({ host: url.hostname, port: Number(url.port) });
      await relay.listen();
      const reg = new Registry();
      const rec = recordingLogger();
      const viaRelay = kubeConfigVia(own, `https://127.0.0.1:${relay.port}`);
      const s2 = createKubernetesSource({ kc: viaRelay, trustDomain: TD, registry: reg, log: rec.log, backoffInitialMs: 100, backoffMaxMs: 400, writeStatus: false });
      try {
        await s2.synced();
        const errorsOf = async (): Promise<Record<string, number>> => {
          const metric = await reg.getSingleMetricAsString('tsmesh_control_watch_errors_total');
          return Object.fromEntries([...metric.matchAll(/^tsmesh_control_watch_errors_total\{resource="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
        };
        assert.deepEqual(await errorsOf(), {});

        await relay.cut();
        await createService('made-while-cut', [{ port: 80 }]);
        const counted = await eventually(async () => {
          const e = await errorsOf();
          return (e['services'] ?? 0) >= 2 && (e['pods'] ?? 0) >= 1 ? e : undefined;
        }, 5_000, 'watch errors counted while the API server is unreachable');
        assert.ok(Object.keys(counted).includes('endpointslices'), JSON.stringify(counted));
        assert.ok(rec.lines.some((l) => l.level === 'warn' && l.msg === 'watch failed; retrying' && l['resource'] === 'services'));
        assert.equal(serviceIn(s2.current()!, 'made-while-cut'), undefined);

        await relay.listen();
        await waitForModel(s2, (m) => serviceIn(m, 'made-while-cut'), 'the Service made while cut, after reconnecting', 5_000);
        // And the watch is live again: a new change arrives within a second.
        await createService('made-after', [{ port: 80 }]);
        await waitForModel(s2, (m) => serviceIn(m, 'made-after'), 'a Service made after reconnecting');
      } finally {
        s2.close();
        await relay.close();
      }
    });
  });
});
