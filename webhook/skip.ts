// When a pod is left alone, and why. Every skip has a reason code (the
// `reason` of tsmesh_webhook_skipped_total) and a message the user sees as an
// admission warning.
import type { V1Pod } from '@kubernetes/client-node';
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, STATUS_ANNOTATION, SYSTEM_NAMESPACES } from '../contract/names.js';

export const SKIP_REASONS = ['system-namespace', 'opted-out', 'namespace-not-enabled', 'already-injected', 'host-network', 'other-mesh'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export interface Skip {
  readonly reason: SkipReason;
  readonly message: string;
}

/** The namespace a pod is created in. Labels undefined: the caller already chose it (the webhook's namespaceSelector did). */
export interface NamespaceInfo {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** Containers and annotations that mean another mesh has injected, or will inject, this pod. */
const OTHER_MESH_CONTAINERS = ['istio-proxy', 'istio-init', 'istio-validation', 'linkerd-proxy', 'linkerd-init', 'linkerd-network-validator'];
const OTHER_MESH_MARKS: readonly { key: string; values?: readonly string[]; where: 'annotation' | 'label' | 'both'; mesh: string }[] = [
  { key: 'sidecar.istio.io/status', where: 'annotation', mesh: 'Istio' },
  { key: 'sidecar.istio.io/inject', values: ['true'], where: 'both', mesh: 'Istio' },
  { key: 'istio.io/dataplane-mode', values: ['ambient'], where: 'label', mesh: 'Istio ambient' },
  { key: 'linkerd.io/proxy-version', where: 'annotation', mesh: 'Linkerd' },
  { key: 'linkerd.io/inject', values: ['enabled', 'ingress'], where: 'annotation', mesh: 'Linkerd' },
];

function otherMesh(pod: V1Pod): string | undefined {
  const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
  const container = names.find((n) => OTHER_MESH_CONTAINERS.includes(n));
  if (container !== undefined) return `the pod already has another mesh's container ${container}`;
  const annotations = pod.metadata?.annotations ?? {};
  const labels = pod.metadata?.labels ?? {};
  for (const mark of OTHER_MESH_MARKS) {
    for (const [kind, map] of [['annotation', annotations], ['label', labels]] as const) {
      if (mark.where !== 'both' && mark.where !== kind) continue;
      const value = map[mark.key];
      if (value === undefined || (mark.values && !mark.values.includes(value))) continue;
      return `the pod's ${kind} ${mark.key}: ${JSON.stringify(value)} belongs to ${mark.mesh}; a pod can carry only one mesh's sidecar`;
    }
  }
  return undefined;
}

/** The pod's own inject setting, label first (the webhook's objectSelector reads labels), then annotation. */
export function podInjectSetting(pod: V1Pod): { value: string; from: 'label' | 'annotation' } | undefined {
  const label = pod.metadata?.labels?.[INJECT_LABEL];
  if (label !== undefined) return { value: label, from: 'label' };
  const annotation = pod.metadata?.annotations?.[INJECT_LABEL];
  if (annotation !== undefined) return { value: annotation, from: 'annotation' };
  return undefined;
}

export function skipReason(pod: V1Pod, namespace: NamespaceInfo): Skip | undefined {
  if (SYSTEM_NAMESPACES.includes(namespace.name)) {
    return { reason: 'system-namespace', message: `namespace ${namespace.name} is never meshed (the control plane's and Kubernetes' own)` };
  }
  const setting = podInjectSetting(pod);
  if (setting?.value === INJECT_DISABLED) {
    return { reason: 'opted-out', message: `the pod opted out with ${setting.from} ${INJECT_LABEL}: ${INJECT_DISABLED}` };
  }
  if (namespace.labels && namespace.labels[INJECT_LABEL] !== INJECT_ENABLED && setting?.value !== INJECT_ENABLED) {
    return {
      reason: 'namespace-not-enabled',
      message: `namespace ${namespace.name} is not labelled ${INJECT_LABEL}=${INJECT_ENABLED} and the pod does not ask for injection`,
    };
  }
  if (pod.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined) {
    return { reason: 'already-injected', message: `the pod already carries ${STATUS_ANNOTATION}; injection is done once` };
  }
  if (pod.spec?.hostNetwork === true) {
    return { reason: 'host-network', message: "the pod uses hostNetwork: redirecting its traffic would redirect the node's" };
  }
  const other = otherMesh(pod);
  if (other !== undefined) return { reason: 'other-mesh', message: other };
  return undefined;
}
