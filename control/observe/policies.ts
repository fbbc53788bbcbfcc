// The policies in force on a workload, as the dashboard's policy panel shows
// them: read from the control plane's model through buildProxyConfig, the
// same function that makes the proxies' configs, so the panel shows what the
// workload's proxy runs on and not a second reading of the policies.
import type { AuthorizationPolicySpec, MtlsMode, TrafficPolicySpec } from '../../contract/proxy-config.js';
import { workloadSpiffeId } from '../../contract/spiffe.js';
import type { MeshModel } from '../model.js';
import { buildProxyConfig, resolveTrafficPolicies } from '../snapshot.js';

export interface ServicePolicies {
  /** `name.namespace` */
  service: string;
  /** The TrafficPolicy in force (routes, split, retries, timeout, breaker, faults, limits); null without one. */
  trafficPolicy: (TrafficPolicySpec & { name: string }) | null;
  /** TrafficPolicies for the same Service that lost to the one in force, and why. */
  conflicts: { name: string; reason: string }[];
}

export interface WorkloadPolicies {
  /** `namespace/name` */
  workload: string;
  identity: string;
  /** The services its pods serve, with their TrafficPolicy (what its callers' proxies apply). */
  serves: ServicePolicies[];
  /** The services it calls (from the mesh view) that have a TrafficPolicy: what its own proxy applies. */
  calls: ServicePolicies[];
  inbound: {
    /** The mTLS mode of its inbound ports, and where it was set. */
    mtlsMode: MtlsMode;
    mtlsModeFrom: 'mesh' | 'namespace or workload';
    portMtlsModes: Record<string, MtlsMode>;
    defaultInboundPolicy: string | null;
    authorizationPolicies: AuthorizationPolicySpec[];
  };
}

/** The workload's policies, or a message saying why there are none to show. */
export function workloadPolicies(model: MeshModel | undefined, workload: string, calls: readonly string[] = []): WorkloadPolicies | { error: string } {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(workload);
  if (!m) return { error: `workload must be namespace/name, got ${JSON.stringify(workload)}` };
  if (!model) return { error: 'the control plane has no mesh model yet (its source has not synced)' };
  const [, namespace, serviceAccount] = m as unknown as [string, string, string];
  const identity = workloadSpiffeId(model.mesh.trustDomain, namespace, serviceAccount);
  const config = buildProxyConfig(model, { spiffeId: identity, namespace, serviceAccount }, 'dashboard');
  const { conflicts } = resolveTrafficPolicies(model);
  const policiesOf = (service: string): ServicePolicies => {
    const s = config.services.find((c) => `${c.name}.${c.namespace}` === service);
    return {
      service,
      trafficPolicy: s?.trafficPolicy ? { ...s.trafficPolicy, name: s.trafficPolicy.name ?? '' } : null,
      conflicts: conflicts.filter((c) => `${c.policy.targetService}.${c.policy.namespace}` === service).map((c) => ({ name: c.policy.name, reason: c.reason })),
    };
  };
  const serves = config.services.filter((s) => s.endpoints.some((e) => e.identity === identity)).map((s) => `${s.name}.${s.namespace}`);
  return {
    workload,
    identity,
    serves: serves.sort().map(policiesOf),
    calls: [...new Set(calls)].sort().map(policiesOf).filter((p) => p.trafficPolicy !== null),
    inbound: {
      mtlsMode: config.inbound?.mtlsMode ?? model.mesh.mtlsMode,
      mtlsModeFrom: config.inbound?.mtlsMode ? 'namespace or workload' : 'mesh',
      portMtlsModes: config.inbound?.portMtlsModes ?? {},
      defaultInboundPolicy: config.inbound?.defaultPolicy ?? model.mesh.defaultInboundPolicy ?? null,
      authorizationPolicies: config.inbound?.authorization ?? [],
    },
  };
}
