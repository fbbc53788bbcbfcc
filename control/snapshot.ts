// Pure: MeshModel + a proxy's identity -> the ProxyConfig that proxy runs on.
// Proxies of one ServiceAccount get the same config, so callers cache by it.
import { CONFIG_API_VERSION, CONFIG_KIND, type AuthorizationPolicySpec, type GatewayPortRoutes, type ProxyConfig, type ServiceConfig } from '../contract/proxy-config.js';
import { layerSettings } from '../contract/annotations.js';
import type { GatewayRouteEntry, GatewayRouteModel, MeshModel, ProxyIdentity, ServiceModel, TrafficPolicyModel } from './model.js';

export interface PolicyConflict {
  policy: TrafficPolicyModel;
  reason: string;
}

/** Which TrafficPolicy governs each service ("name.namespace"), and which lost to another. */
export function resolveTrafficPolicies(model: MeshModel): { byService: Map<string, TrafficPolicyModel>; conflicts: PolicyConflict[] } {
  const byService = new Map<string, TrafficPolicyModel>();
  const conflicts: PolicyConflict[] = [];
  const ordered = [...model.trafficPolicies].sort(
    (a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
  );
  for (const p of ordered) {
    const key = `${p.targetService}.${p.namespace}`;
    const winner = byService.get(key);
    if (winner) conflicts.push({ policy: p, reason: `Service ${p.targetService} is already governed by TrafficPolicy ${winner.name}; one policy per Service` });
    else byService.set(key, p);
  }
  return { byService, conflicts };
}

/** Higher rank first, element by element. */
function compareRanks(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (b[i] ?? 0) - (a[i] ?? 0);
  return 0;
}

/** Of two routes, the older first, then by namespace/name (the Gateway API's tie-breaks). */
export const olderFirst = (a: GatewayRouteModel, b: GatewayRouteModel): number =>
  (a.createdAt ?? '').localeCompare(b.createdAt ?? '') || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`);

/**
 * The (rule, match) pairs of `routes` in the Gateway API's precedence order:
 * each kind by its own ranks (HTTPRoute and GRPCRoute are never merged: the
 * kind of the oldest route goes first), then the older route, then
 * namespace/name, then rule and match order within a route.
 */
export function orderRouteEntries(routes: readonly GatewayRouteModel[]): GatewayRouteEntry[] {
  const kinds = [...new Set([...routes].sort(olderFirst).map((r) => r.kind))];
  return kinds.flatMap((kind) =>
    routes
      .filter((r) => r.kind === kind)
      .flatMap((r) => r.entries.map((e) => ({ r, e })))
      .sort((x, y) => compareRanks(x.e.rank, y.e.rank) || olderFirst(x.r, y.r) || x.e.rule - y.e.rule || x.e.match - y.e.match)
      .map(({ e }) => e),
  );
}

/**
 * The Gateway API routes of Service `s` as a caller in `callerNamespace`
 * sees them, per port: the consumer routes of the caller's namespace where it
 * has any for that port, else the producer routes (the Service's namespace).
 */
export function gatewayRoutesFor(model: MeshModel, s: ServiceModel, callerNamespace: string): GatewayPortRoutes[] | undefined {
  const attached = (model.gatewayRoutes ?? []).flatMap((r) => r.parents.filter((p) => p.service === s.name && p.namespace === s.namespace).map((p) => ({ r, port: p.port })));
  if (attached.length === 0) return undefined;
  const out: GatewayPortRoutes[] = [];
  for (const port of s.ports) {
    const onPort = [...new Set(attached.filter((a) => a.port === undefined || a.port === port.port).map((a) => a.r))];
    const consumer = callerNamespace === s.namespace ? [] : onPort.filter((r) => r.namespace === callerNamespace);
    const chosen = consumer.length > 0 ? consumer : onPort.filter((r) => r.namespace === s.namespace);
    if (chosen.length > 0) out.push({ port: port.port, routes: orderRouteEntries(chosen).map((e) => e.route) });
  }
  return out.length > 0 ? out : undefined;
}

/** A Service's entry in a config as a caller in `callerNamespace` sees it (only its Gateway API routes depend on the caller). */
export function serviceConfig(model: MeshModel, s: ServiceModel, policy: TrafficPolicyModel | undefined, callerNamespace: string): ServiceConfig {
  const out: ServiceConfig = {
    name: s.name,
    namespace: s.namespace,
    clusterIPs: s.clusterIPs,
    ports: s.ports,
    endpoints: s.endpoints.map((e) => ({
      address: e.address,
      ...(e.identity ? { identity: e.identity } : {}),
      ...(e.ports ? { ports: e.ports } : {}),
      ...(e.ready ? {} : { ready: false }),
      ...(e.skipInboundPorts ? { skipInboundPorts: e.skipInboundPorts } : {}),
    })),
  };
  if (policy) out.trafficPolicy = { name: policy.name, ...policy.spec };
  const gatewayRoutes = gatewayRoutesFor(model, s, callerNamespace);
  if (gatewayRoutes) out.gatewayRoutes = gatewayRoutes;
  return out;
}

/** The fields of a proxy's config beside `version` and `services`, in the order a config carries them. */
export type ProxyConfigTop = Omit<ProxyConfig, 'version' | 'services' | 'trustBundle' | 'retiredRoots'>;

/**
 * What depends on the proxy's identity: its inbound policy (the
 * AuthorizationPolicies of its ServiceAccount and of the Services it serves),
 * its namespace's and workload's settings. `served`: the names of the
 * Services in its namespace with an endpoint of its identity, when the caller
 * has them indexed already.
 */
export function proxyConfigTop(model: MeshModel, proxy: ProxyIdentity, served?: ReadonlySet<string>): ProxyConfigTop {
  // Services this workload serves: those with an endpoint carrying its identity.
  served ??= new Set(model.services.filter((s) => s.namespace === proxy.namespace && s.endpoints.some((e) => e.identity === proxy.spiffeId)).map((s) => s.name));
  const authorization: AuthorizationPolicySpec[] = model.authorizationPolicies
    .filter(
      (p) =>
        p.namespace === proxy.namespace &&
        ((p.target.kind === 'ServiceAccount' && p.target.name === proxy.serviceAccount) || (p.target.kind === 'Service' && served.has(p.target.name))),
    )
    .map((p) => ({ name: p.name, ...(p.action ? { action: p.action } : {}), rules: p.rules }));
  // The namespace's settings, then the workload's over them; the mesh's stay in `mesh`.
  const settings = layerSettings(
    model.namespaceSettings?.find((n) => n.namespace === proxy.namespace)?.settings,
    model.workloadSettings?.find((w) => w.namespace === proxy.namespace && w.serviceAccount === proxy.serviceAccount)?.settings,
  );
  return {
    apiVersion: CONFIG_API_VERSION,
    kind: CONFIG_KIND,
    mesh: model.mesh,
    inbound: {
      ...(settings.mtlsMode ? { mtlsMode: settings.mtlsMode } : {}),
      ...(settings.portMtlsModes ? { portMtlsModes: settings.portMtlsModes } : {}),
      ...(settings.defaultInboundPolicy ? { defaultPolicy: settings.defaultInboundPolicy } : {}),
      ...(authorization.length > 0 ? { authorization } : {}),
    },
    ...(settings.tracing || settings.accessLog
      ? { telemetry: { ...(settings.tracing ? { tracing: settings.tracing } : {}), ...(settings.accessLog ? { accessLog: settings.accessLog } : {}) } }
      : {}),
    ...(settings.egressMode || settings.egressAllow
      ? { egress: { ...(settings.egressMode ? { mode: settings.egressMode } : {}), ...(settings.egressAllow ? { allow: settings.egressAllow } : {}) } }
      : {}),
  };
}

export function buildProxyConfig(model: MeshModel, proxy: ProxyIdentity, version: string): ProxyConfig {
  const { byService } = resolveTrafficPolicies(model);
  const services = model.services.map((s) => serviceConfig(model, s, byService.get(`${s.name}.${s.namespace}`), proxy.namespace));
  const { apiVersion, kind, mesh, ...rest } = proxyConfigTop(model, proxy);
  return { apiVersion, kind, version, mesh, services, ...rest };
}
