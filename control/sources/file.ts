// The mesh from a local YAML file (tsmesh demo, tests, meshes without
// Kubernetes), re-read when it changes; a bad file keeps the last good model.
//
//   apiVersion: tsmesh.io/v1alpha1
//   kind: Mesh
//   mesh: { trustDomain: cluster.local, mtlsMode: STRICT }
//   services:
//     - name: payments
//       namespace: shop
//       clusterIPs: [10.96.0.20]
//       ports: [{ port: 80, targetPort: 8080 }]
//       endpoints: [{ address: 10.244.1.5, serviceAccount: payments }]   # or identity: spiffe://...
//   trafficPolicies:
//     - { name: payments-canary, namespace: shop, targetRef: { kind: Service, name: payments }, spec: { ... } }
//   authorizationPolicies:
//     - { name: only-frontend, namespace: shop, targetRef: { kind: Service, name: payments }, action: ALLOW, rules: [ ... ] }
//   namespaces:                      # what a Namespace's annotations would set
//     - { name: shop, annotations: { tsmesh.io/default-inbound-policy: deny } }
//   workloads:                       # what a workload's pods' annotations would set (per ServiceAccount)
//     - { namespace: shop, serviceAccount: payments, annotations: { tsmesh.io/mtls-mode: PERMISSIVE } }
//   routes:                          # Gateway API HTTPRoutes and GRPCRoutes, as kubectl shows them
//     - { apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute, metadata: { name: payments, namespace: shop }, spec: { parentRefs: [...], rules: [...] } }
//
// A route that would not be Accepted in a cluster (kubernetes-routes.ts)
// makes the file bad.
//
// Egress as in tsmesh-config: `mesh: { egress: { mode, allow: [...] } }`
// (an entry's originateTls may name a caFile the proxies read), and the
// annotations tsmesh.io/egress-mode and tsmesh.io/egress-allow in
// `namespaces:` and `workloads:`.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import type { Logger } from '../../lib/log.js';
import { ValidationError, join, list, object, oneOf, string, ip } from '../../lib/schema.js';
import { parseAuthorizationPolicy, parseEndpoint, parseMeshSettings, parseServicePort, parseTrafficPolicy } from '../../contract/validate.js';
import { scopedSettings } from '../../contract/annotations.js';
import type { AuthorizationPolicyModel, EndpointModel, MeshModel, NamespaceSettingsModel, ServiceModel, TrafficPolicyModel, WorkloadSettingsModel } from '../model.js';
import type { MeshSource } from './source.js';
import { evaluateRoutes, type RouteObject } from './kubernetes-routes.js';

export const MESH_KIND = 'Mesh';

export function parseMeshFile(doc: unknown): MeshModel {
  const o = object(doc, '', ['apiVersion', 'kind', 'mesh', 'services', 'trafficPolicies', 'authorizationPolicies', 'namespaces', 'workloads', 'routes']);
  if (o.apiVersion !== 'tsmesh.io/v1alpha1') throw new ValidationError('apiVersion', `${JSON.stringify(o.apiVersion)} is not tsmesh.io/v1alpha1`);
  if (o.kind !== MESH_KIND) throw new ValidationError('kind', `${JSON.stringify(o.kind)} is not ${MESH_KIND}`);
  const mesh = parseMeshSettings(o.mesh, 'mesh');
  const services = list(o.services, 'services', (v, path): ServiceModel => {
    const s = object(v, path, ['name', 'namespace', 'clusterIPs', 'ports', 'endpoints']);
    const namespace = string(s.namespace, join(path, 'namespace'));
    return {
      name: string(s.name, join(path, 'name')),
      namespace,
      clusterIPs: list(s.clusterIPs, join(path, 'clusterIPs'), ip),
      ports: list(s.ports, join(path, 'ports'), parseServicePort),
      endpoints: list(s.endpoints, join(path, 'endpoints'), (ev, ep): EndpointModel => {
        const e = object(ev, ep, ['address', 'identity', 'serviceAccount', 'ports', 'weight', 'ready', 'skipInboundPorts']);
        const { serviceAccount, ...rest } = e;
        if (serviceAccount !== undefined && rest.identity !== undefined)
          throw new ValidationError(join(ep, 'serviceAccount'), 'give either identity or serviceAccount, not both');
        const parsed = parseEndpoint(rest, ep);
        const identity = serviceAccount === undefined ? parsed.identity : workloadSpiffeId(mesh.trustDomain, namespace, string(serviceAccount, join(ep, 'serviceAccount')));
        return {
          address: parsed.address,
          ready: parsed.ready !== false,
          ...(identity ? { identity } : {}),
          ...(parsed.ports ? { ports: parsed.ports } : {}),
          ...(identity && parsed.skipInboundPorts ? { skipInboundPorts: parsed.skipInboundPorts } : {}),
        };
      }),
    };
  });
  const targetRef = (v: unknown, path: string, kinds: readonly ('Service' | 'ServiceAccount')[]) => {
    const t = object(v, path, ['kind', 'name']);
    return { kind: oneOf(t.kind, join(path, 'kind'), kinds), name: string(t.name, join(path, 'name')) };
  };
  const trafficPolicies = list(o.trafficPolicies, 'trafficPolicies', (v, path): TrafficPolicyModel => {
    const p = object(v, path, ['name', 'namespace', 'targetRef', 'spec']);
    return {
      name: string(p.name, join(path, 'name')),
      namespace: string(p.namespace, join(path, 'namespace')),
      targetService: targetRef(p.targetRef, join(path, 'targetRef'), ['Service']).name,
      spec: parseTrafficPolicy(p.spec ?? {}, join(path, 'spec')),
    };
  });
  const authorizationPolicies = list(o.authorizationPolicies, 'authorizationPolicies', (v, path): AuthorizationPolicyModel => {
    const p = object(v, path, ['name', 'namespace', 'targetRef', 'action', 'rules']);
    const { action, rules } = parseAuthorizationPolicy({ name: p.name, action: p.action, rules: p.rules }, path);
    return {
      name: string(p.name, join(path, 'name')),
      namespace: string(p.namespace, join(path, 'namespace')),
      target: targetRef(p.targetRef, join(path, 'targetRef'), ['Service', 'ServiceAccount']),
      ...(action ? { action } : {}),
      rules,
    };
  });
  const annotations = (v: unknown, path: string): Record<string, string> => {
    const a = object(v ?? {}, path, Object.keys(v ?? {}));
    return Object.fromEntries(Object.entries(a).map(([k, x]) => [k, string(x, join(path, k))]));
  };
  const unique = <T>(items: T[], key: (t: T) => string, what: string, path: string): T[] => {
    const seen = new Set<string>();
    for (const [i, t] of items.entries()) {
      if (seen.has(key(t))) throw new ValidationError(`${path}[${i}]`, `${what} ${key(t)} is listed twice`);
      seen.add(key(t));
    }
    return items;
  };
  const namespaceSettings = unique(
    list(o.namespaces, 'namespaces', (v, path): NamespaceSettingsModel => {
      const n = object(v, path, ['name', 'annotations']);
      return { namespace: string(n.name, join(path, 'name')), settings: scopedSettings(annotations(n.annotations, join(path, 'annotations')), join(path, 'annotations')) };
    }),
    (n) => n.namespace,
    'namespace',
    'namespaces',
  );
  const workloadSettings = unique(
    list(o.workloads, 'workloads', (v, path): WorkloadSettingsModel => {
      const w = object(v, path, ['namespace', 'serviceAccount', 'annotations']);
      return {
        namespace: string(w.namespace, join(path, 'namespace')),
        serviceAccount: string(w.serviceAccount, join(path, 'serviceAccount')),
        settings: scopedSettings(annotations(w.annotations, join(path, 'annotations')), join(path, 'annotations')),
      };
    }),
    (w) => `${w.namespace}/${w.serviceAccount}`,
    'workload',
    'workloads',
  );
  const routeObjects = list(o.routes, 'routes', (v, path): RouteObject => {
    const r = object(v, path, ['apiVersion', 'kind', 'metadata', 'spec']);
    oneOf(r.kind, join(path, 'kind'), ['HTTPRoute', 'GRPCRoute']);
    const meta = object(r.metadata, join(path, 'metadata'), ['name', 'namespace', 'creationTimestamp']);
    return { kind: r.kind as string, metadata: { name: string(meta.name, join(path, 'metadata.name')), namespace: string(meta.namespace, join(path, 'metadata.namespace')), ...(typeof meta.creationTimestamp === 'string' ? { creationTimestamp: new Date(meta.creationTimestamp) } : {}) }, spec: r.spec };
  });
  const routes = evaluateRoutes({ httpRoutes: routeObjects.filter((r) => r.kind === 'HTTPRoute'), grpcRoutes: routeObjects.filter((r) => r.kind === 'GRPCRoute'), services, accepted: new Map() });
  for (const v of routes.verdicts) {
    const refused = v.parents.find((p) => !p.accepted.status);
    if (refused) throw new ValidationError(`routes[${routeObjects.findIndex((r) => r.kind === v.kind && r.metadata?.name === v.name && r.metadata.namespace === v.namespace)}]`, `${v.kind} ${v.namespace}/${v.name}: ${refused.accepted.message}`);
  }
  return {
    mesh,
    services,
    trafficPolicies,
    authorizationPolicies,
    ...(namespaceSettings.length > 0 ? { namespaceSettings } : {}),
    ...(workloadSettings.length > 0 ? { workloadSettings } : {}),
    ...(routes.routes.length > 0 ? { gatewayRoutes: routes.routes } : {}),
  };
}

export function readMeshFile(path: string): MeshModel {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read mesh file ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return parseMeshFile(doc);
  } catch (e) {
    throw new Error(`mesh file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export class FileMeshSource implements MeshSource {
  private model: MeshModel;
  private readonly listeners = new Set<(m: MeshModel) => void>();

  constructor(
    private readonly path: string,
    private readonly log: Logger,
    pollMs = 250,
  ) {
    this.model = readMeshFile(path);
    watchFile(path, { interval: pollMs, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) this.reload();
    });
  }

  current(): MeshModel {
    return this.model;
  }

  onChange(listener: (m: MeshModel) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private reload(): void {
    try {
      this.model = readMeshFile(this.path);
      this.log.info('mesh file reloaded', { services: this.model.services.length });
      for (const l of this.listeners) l(this.model);
    } catch (e) {
      this.log.error('mesh file reload failed; keeping the last good mesh', { error: (e as Error).message });
    }
  }

  close(): void {
    unwatchFile(this.path);
    this.listeners.clear();
  }
}
