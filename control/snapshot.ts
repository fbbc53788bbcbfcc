// Pure: MeshModel + a proxy's identity -> the ProxyConfig that proxy runs on.
// Proxies of one ServiceAccount get the same config, so callers cache by it.
import { CONFIG_API_VERSION, CONFIG_KIND, type AuthorizationPolicySpec, type ProxyConfig, type ServiceConfig } from '../contract/proxy-config.js';
import { layerSettings } from '../contract/annotations.js';
import type { MeshModel, ProxyIdentity, TrafficPolicyModel } from './model.js';

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

export function buildProxyConfig(model: MeshModel, proxy: ProxyIdentity, version: string): ProxyConfig {
  const { byService } = resolveTrafficPolicies(model);
  const services: ServiceConfig[] = model.services.map((s) => {
    const policy = byService.get(`${s.name}.${s.namespace}`);
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
    return out;
  });
  // Services this workload serves: those with an endpoint carrying its identity.
  const served = new Set(model.services.filter((s) => s.namespace === proxy.namespace && s.endpoints.some((e) => e.identity === proxy.spiffeId)).map((s) => s.name));
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
    version,
    mesh: model.mesh,
    services,
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
