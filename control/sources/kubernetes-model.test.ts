// Golden files for the whole mapping, objects in, config out: each folder
// testdata/mapping/CASE/ holds input.yaml, the Kubernetes objects of one
// cluster (Services, EndpointSlices, Pods, TrafficPolicies,
// AuthorizationPolicies, ConfigMap tsmesh-config in tsmesh-system, Namespaces,
// the Gateway API's HTTPRoutes and GRPCRoutes) as
// `kubectl get -o yaml` shows them, and expected.json, what the control plane
// makes of them: the verdict on each policy and route, the endpoints left out, and the
// ProxyConfig that the proxy of each meshed pod's ServiceAccount receives
// (parseMeshConfigMap -> meshModelFromObjects -> buildProxyConfig, the path
// kubernetes.ts and stream.ts take). Refresh with:
//   UPDATE_GOLDEN=1 npx mocha --no-config --import=tsx --require test/mocha-hooks.ts control/sources/kubernetes-model.test.ts
// and read the diff: each output must be what a user would expect.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { V1ConfigMap, V1EndpointSlice, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { MESH_CONFIG_NAME, MESH_NAMESPACE } from '../../contract/names.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { parseProxyConfig } from '../../contract/validate.js';
// The proxy's routing table, to show what a caller's proxy makes of a config (a test reaches across the staircase).
import { buildRoutingTable, lookupTarget, type RoutingTable } from '../../proxy/config/table.js';
import type { ProxyIdentity } from '../model.js';
import { buildProxyConfig } from '../snapshot.js';
import { parseMeshConfigMap, type MeshConfig } from './kubernetes-mesh-config.js';
import { emptyAccepted, type PolicyObject, type Verdict } from './kubernetes-policies.js';
import { podIdentity, type SkippedEndpoint } from './kubernetes-services.js';
import { meshModelFromObjects, type KubernetesObjects } from './kubernetes-model.js';
import { endpointSliceFields, namespaceFields, podFields, serviceFields } from './kubernetes-fields.js';
import type { RouteObject, RouteVerdict } from './kubernetes-routes.js';

const TESTDATA = new URL('./testdata/mapping/', import.meta.url);
const TRUST_DOMAIN = 'cluster.local';
/** The snapshot version every golden config carries (stream.ts numbers them per change). */
const VERSION = 'golden';
const update = process.env.UPDATE_GOLDEN === '1';

interface Objects extends KubernetesObjects {
  pods: V1Pod[];
  namespaces: V1Namespace[];
  configMap: V1ConfigMap | undefined;
}

/** What expected.json holds. */
interface Golden {
  /** Why ConfigMap tsmesh-config was refused (the defaults then apply: there is no last good one). */
  meshConfigRefused?: string;
  /** certificateTtl of tsmesh-config, when it sets one (the CA's concern; proxies do not see it). */
  certificateTtlSeconds?: number;
  verdicts: Verdict[];
  /** Gateway API routes: Accepted and ResolvedRefs per Service parentRef (absent: the case has none). */
  routeVerdicts?: RouteVerdict[];
  skipped: SkippedEndpoint[];
  /** Namespace and pod annotations that could not be read, workloads whose pods disagree (logged by the source). */
  settingsProblems?: string[];
  /** Keyed by the proxy's SPIFFE ID. */
  proxies: Record<string, ProxyConfig>;
}

function caseNames(): string[] {
  return readdirSync(TESTDATA, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

function loadObjects(name: string): Objects {
  const text = readFileSync(new URL(`${name}/input.yaml`, TESTDATA), 'utf8');
  const o: Objects = { services: [], endpointSlices: [], pods: [], namespaces: [], trafficPolicies: [], authorizationPolicies: [], httpRoutes: [], grpcRoutes: [], configMap: undefined, podOf: () => undefined };
  const services = o.services as V1Service[];
  const slices = o.endpointSlices as V1EndpointSlice[];
  const traffic = o.trafficPolicies as PolicyObject[];
  const authorization = o.authorizationPolicies as PolicyObject[];
  for (const doc of parseAllDocuments(text, { version: '1.1' })) {
    if (doc.errors.length > 0) throw new Error(`${name}/input.yaml: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as Record<string, any> | null;
    if (obj === null) continue;
    switch (obj['kind']) {
      case 'Service':
        services.push(obj as V1Service);
        break;
      case 'EndpointSlice':
        slices.push(obj as V1EndpointSlice);
        break;
      case 'Pod':
        o.pods.push(obj as V1Pod);
        break;
      case 'Namespace':
        o.namespaces.push(obj as V1Namespace);
        break;
      case 'TrafficPolicy':
        traffic.push(obj as PolicyObject);
        break;
      case 'AuthorizationPolicy':
        authorization.push(obj as PolicyObject);
        break;
      case 'HTTPRoute':
        (o.httpRoutes as RouteObject[]).push(obj as RouteObject);
        break;
      case 'GRPCRoute':
        (o.grpcRoutes as RouteObject[]).push(obj as RouteObject);
        break;
      case 'ConfigMap':
        // The source watches this one ConfigMap only (a field selector in its namespace).
        if (obj['metadata']?.['name'] === MESH_CONFIG_NAME && obj['metadata']?.['namespace'] === MESH_NAMESPACE) o.configMap = obj as V1ConfigMap;
        break;
      default:
        throw new Error(`${name}/input.yaml: kind ${String(obj['kind'])} is not one the control plane watches`);
    }
  }
  o.podOf = (namespace, podName) => o.pods.find((p) => p.metadata?.namespace === namespace && p.metadata.name === podName);
  return o;
}

/** Each meshed pod's proxy, once per ServiceAccount (they share one config). */
function proxiesOf(pods: readonly V1Pod[]): ProxyIdentity[] {
  const byId = new Map<string, ProxyIdentity>();
  for (const pod of pods) {
    const spiffeId = podIdentity(pod, TRUST_DOMAIN);
    if (spiffeId === undefined) continue;
    byId.set(spiffeId, { spiffeId, namespace: pod.metadata?.namespace ?? 'default', serviceAccount: pod.spec?.serviceAccountName || 'default' });
  }
  return [...byId.values()].sort((a, b) => a.spiffeId.localeCompare(b.spiffeId));
}

function mapObjects(o: Objects): Golden {
  const out: Partial<Golden> = {};
  let meshConfig: MeshConfig;
  try {
    meshConfig = parseMeshConfigMap(o.configMap, TRUST_DOMAIN);
  } catch (e) {
    out.meshConfigRefused = (e as Error).message;
    meshConfig = parseMeshConfigMap(undefined, TRUST_DOMAIN);
  }
  if (meshConfig.certificateTtlSeconds !== undefined) out.certificateTtlSeconds = meshConfig.certificateTtlSeconds;
  const { model, verdicts, skipped, settingsProblems, routeVerdicts } = meshModelFromObjects(o, meshConfig.mesh, TRUST_DOMAIN, emptyAccepted());
  const proxies: Record<string, ProxyConfig> = {};
  for (const p of proxiesOf(o.pods)) proxies[p.spiffeId] = buildProxyConfig(model, p, VERSION);
  if (settingsProblems.length > 0) out.settingsProblems = settingsProblems.map((p) => `${p.kind} ${p.namespace}/${p.name}: ${p.message}`).sort();
  return { ...out, verdicts, ...(routeVerdicts.length > 0 ? { routeVerdicts } : {}), skipped, proxies };
}

function reversed(o: Objects): Objects {
  return {
    ...o,
    services: [...o.services].reverse(),
    endpointSlices: [...o.endpointSlices].reverse(),
    pods: [...o.pods].reverse(),
    namespaces: [...o.namespaces].reverse(),
    trafficPolicies: [...o.trafficPolicies].reverse(),
    authorizationPolicies: [...o.authorizationPolicies].reverse(),
    httpRoutes: [...(o.httpRoutes ?? [])].reverse(),
    grpcRoutes: [...(o.grpcRoutes ?? [])].reverse(),
  };
}

describe('Kubernetes objects -> ProxyConfig golden files (testdata/mapping)', function () {
  const names = caseNames();

  it('has the representative clusters', function () {
    for (const name of [
      'endpoint-conditions',
      'port-protocols',
      'unmeshed-endpoints',
      'headless-service',
      'statefulset',
      'traffic-policy-canary',
      'traffic-policy-invalid',
      'authorization-policy',
      'inbound-settings',
      'egress-settings',
      'mesh-config',
      'mesh-config-invalid',
      'dual-stack',
      'gateway-http-routes',
      'gateway-consumer-routes',
      'gateway-grpc-routes',
    ]) {
      assert.ok(names.includes(name), `testdata/mapping/${name}/`);
    }
  });

  for (const name of names) {
    describe(name, function () {
      let objects: Objects;
      let got: Golden;
      before(function () {
        objects = loadObjects(name);
        got = mapObjects(objects);
      });

      it(`input.yaml -> expected.json`, function () {
        const file = new URL(`${name}/expected.json`, TESTDATA);
        const text = JSON.stringify(got, null, 2) + '\n';
        if (update) writeFileSync(file, text);
        assert.ok(existsSync(file), `testdata/mapping/${name}/expected.json is missing; run with UPDATE_GOLDEN=1 to create it`);
        assert.equal(text, readFileSync(file, 'utf8'), `testdata/mapping/${name}/expected.json changed; if intended, run with UPDATE_GOLDEN=1 and review the diff`);
      });

      it('gives every meshed workload a config its proxy accepts as it is', function () {
        assert.ok(Object.keys(got.proxies).length > 0, 'the case has no meshed pod: nothing shows the config');
        for (const [id, config] of Object.entries(got.proxies)) {
          const parsed = parseProxyConfig(JSON.parse(JSON.stringify(config)));
          assert.deepEqual(parsed, config, `${id}: the proxy's validator changed or refused the config`);
          buildRoutingTable(parsed);
        }
      });

      it('maps the fields the informers keep of each object (kubernetes-fields.ts) as it maps the whole objects', function () {
        const pods = objects.pods.map(podFields);
        const kept: Objects = {
          ...objects,
          services: (objects.services as V1Service[]).map(serviceFields),
          endpointSlices: (objects.endpointSlices as V1EndpointSlice[]).map(endpointSliceFields),
          namespaces: objects.namespaces.map(namespaceFields),
          // Typed as whole pods for proxiesOf, which reads what podIdentity reads.
          pods: pods as V1Pod[],
          podOf: (namespace, podName) => pods.find((p) => p.metadata?.namespace === namespace && p.metadata.name === podName),
        };
        assert.deepEqual(mapObjects(kept), got);
      });

      it('does not depend on the order the informers list the objects in', function () {
        // Only the list of skipped endpoints (for a debug log) follows the order of the Services.
        const bySkipped = (g: Golden): Golden => ({ ...g, skipped: [...g.skipped].sort((a, b) => a.address.localeCompare(b.address)) });
        assert.deepEqual(bySkipped(mapObjects(reversed(objects))), bySkipped(got));
      });
    });
  }

  describe('pods reached by their own addresses: what a caller\'s proxy makes of the config', function () {
    /** What a connection to `at` reaches in the routing table of `proxy`'s config: "service:port -> address:port identity", pinned or not. */
    const reach = (table: RoutingTable, at: string): string | undefined => {
      const [address, port] = [at.slice(0, at.lastIndexOf(':')), Number(at.slice(at.lastIndexOf(':') + 1))];
      const t = lookupTarget(table, address, port);
      if (t === undefined) {
        const pod = table.pods.get(address);
        return pod?.opaqueMtls(port) ? `opaque mTLS ${pod.identity}` : undefined;
      }
      return `${t.key}:${t.port.port}${t.pinned ? ' pinned' : ''} -> ${t.endpoints.map((e) => `${e.address}:${e.port} ${e.identity ?? 'plain'}`).join(', ')}`;
    };
    const tableOf = (name: string, proxy: string): RoutingTable => buildRoutingTable(mapObjects(loadObjects(name)).proxies[proxy]!);

    it('headless-service: a caller\'s proxy knows the pods of a headless Service by their addresses, each with its identity', function () {
      const table = tableOf('headless-service', 'spiffe://cluster.local/ns/shop/sa/orders-db');
      const db = 'spiffe://cluster.local/ns/shop/sa/orders-db';
      assert.equal(reach(table, '10.244.1.40:5432'), `orders-db.shop:5432 pinned -> 10.244.1.40:5432 ${db}`);
      assert.equal(reach(table, '10.244.2.41:5432'), `orders-db.shop:5432 pinned -> 10.244.2.41:5432 ${db}`);
      assert.equal(lookupTarget(table, '10.244.1.40', 5432)!.port.protocol, 'tcp');
    });

    it('statefulset: brokers and clients reach each broker by its address, the not-ready one too; a port-less headless Service\'s pods over opaque mTLS; a pod without a sidecar not at all', function () {
      const kafka = 'spiffe://cluster.local/ns/data/sa/kafka';
      const etcd = 'spiffe://cluster.local/ns/data/sa/etcd';
      for (const proxy of ['spiffe://cluster.local/ns/data/sa/producer', kafka, etcd]) {
        const table = tableOf('statefulset', proxy);
        // The ClusterIP balances over the ready brokers; kafka-2 is not ready in the kafka Service's slice.
        assert.equal(reach(table, '10.96.40.10:9092'), `kafka.data:9092 -> 10.244.1.50:9092 ${kafka}, 10.244.2.51:9092 ${kafka}`);
        // kafka-0.kafka-headless.data answers 10.244.1.50: the headless Service's port, to that broker alone.
        assert.equal(reach(table, '10.244.1.50:9092'), `kafka-headless.data:9092 pinned -> 10.244.1.50:9092 ${kafka}`);
        assert.equal(reach(table, '10.244.3.52:9092'), `kafka-headless.data:9092 pinned -> 10.244.3.52:9092 ${kafka}`);
        assert.equal(reach(table, '10.244.2.51:9093'), `kafka-headless.data:9093 pinned -> 10.244.2.51:9093 ${kafka}`);
        // The exporter port the brokers' init left uncaptured, and their proxies' admin port: plain TCP.
        assert.equal(reach(table, '10.244.1.50:9404'), undefined);
        assert.equal(reach(table, '10.244.1.50:15020'), undefined);
        // A port of a broker no Service lists (JMX), and etcd's peer and client ports: opaque TCP over mTLS.
        assert.equal(reach(table, '10.244.1.50:9999'), `opaque mTLS ${kafka}`);
        assert.equal(reach(table, '10.244.1.60:2380'), `opaque mTLS ${etcd}`);
        assert.equal(reach(table, '10.244.2.61:2379'), `opaque mTLS ${etcd}`);
        // No sidecar: passes through; a client behind no Service is not known either.
        assert.equal(reach(table, '10.244.3.70:3306'), undefined);
        assert.equal(reach(table, '10.244.2.80:8080'), undefined);
      }
    });
  });
});

describe('meshModelFromObjects on successive rebuilds (the informers replace changed objects)', function () {
  const meshed = { 'tsmesh.io/status': '{"version":"0.1.0"}' };
  const svc = (name: string): V1Service => ({ metadata: { name, namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  const slice = (service: string, pods: string[]): V1EndpointSlice => ({
    metadata: { name: `${service}-1`, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: pods.map((p, i) => ({ addresses: [`10.244.0.${i + 1}`], targetRef: { kind: 'Pod', namespace: 'shop', name: p } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });
  const pod = (name: string, sa: string, annotations: Record<string, string> = meshed): V1Pod => ({ metadata: { name, namespace: 'shop', annotations }, spec: { containers: [], serviceAccountName: sa } });
  const build = (services: V1Service[], slices: V1EndpointSlice[], pods: V1Pod[]) =>
    meshModelFromObjects(
      { services, endpointSlices: slices, podOf: (ns, name) => pods.find((p) => p.metadata?.namespace === ns && p.metadata.name === name), trafficPolicies: [], authorizationPolicies: [], pods },
      parseMeshConfigMap(undefined, TRUST_DOMAIN).mesh,
      TRUST_DOMAIN,
      emptyAccepted(),
    ).model.services;

  it('maps again only the Services whose object, slices or pods were replaced, and each as a fresh mapping would', function () {
    const services = [svc('a'), svc('b'), svc('c')];
    const slices = [slice('a', ['a-0']), slice('b', ['b-0']), slice('c', ['c-0'])];
    const pods = [pod('a-0', 'a'), pod('b-0', 'b'), pod('c-0', 'c')];
    const first = build(services, slices, pods);
    // b's slice replaced (an endpoint added); c's pod replaced (no longer meshed); a untouched.
    pods.push(pod('b-1', 'b'));
    slices[1] = slice('b', ['b-0', 'b-1']);
    pods[2] = pod('c-0', 'c', {});
    const second = build(services, slices, pods);
    assert.equal(second[0], first[0], 'a is the same ServiceModel');
    assert.notEqual(second[1], first[1]);
    assert.notEqual(second[2], first[2]);
    assert.deepEqual(second[1]!.endpoints.map((e) => e.identity), [`spiffe://${TRUST_DOMAIN}/ns/shop/sa/b`, `spiffe://${TRUST_DOMAIN}/ns/shop/sa/b`]);
    assert.equal(second[2]!.endpoints[0]!.identity, undefined);
    // Equal to what copies of every object (nothing remembered) give.
    const copy = <T>(o: T): T => structuredClone(o);
    assert.deepEqual(second, build(services.map(copy), slices.map(copy), pods.map(copy)));
  });
});
