// Containers that would run as the proxy's uid or gid. tsmesh-init never
// redirects the traffic of that uid and gid (the proxy's own connections
// must leave the pod), so such a container talks past the proxy: no mTLS, no
// authorization, no metrics. The pod is refused, saying what to change,
// unless it carries ALLOW_PROXY_UID_ANNOTATION "true" (a container that must
// reach the network past the mesh), which admits it with a warning.
import type { V1Container, V1Pod, V1PodSecurityContext, V1SecurityContext } from '@kubernetes/client-node';
import { ALLOW_PROXY_UID_ANNOTATION, PROXY_UID } from '../contract/names.js';
import { InjectionRefused } from './errors.js';

/** One container running as the proxy's uid or gid: what it is, and the field that makes it so. */
function clashes(pod: V1Pod): string[] {
  const spec = pod.spec!;
  const podContext: V1PodSecurityContext = spec.securityContext ?? {};
  const out: string[] = [];
  const check = (c: V1Container, kind: string, path: string): void => {
    const own: V1SecurityContext = c.securityContext ?? {};
    for (const [field, what] of [['runAsUser', 'uid'], ['runAsGroup', 'gid']] as const) {
      const where = own[field] !== undefined && own[field] !== null ? `${path}.securityContext.${field}` : `spec.securityContext.${field}`;
      if ((own[field] ?? podContext[field]) === PROXY_UID) out.push(`${kind} ${c.name} runs as ${what} ${PROXY_UID} (${where})`);
    }
  };
  (spec.initContainers ?? []).forEach((c, i) => check(c, 'init container', `spec.initContainers[${i}]`));
  spec.containers.forEach((c, i) => check(c, 'container', `spec.containers[${i}]`));
  return out;
}

/**
 * Refuses (InjectionRefused proxy-uid) a pod with a container that runs as
 * the proxy's uid or gid, or returns the warnings for one the annotation
 * allows; none for a pod without such a container.
 */
export function proxyUidWarnings(pod: V1Pod): string[] {
  const found = clashes(pod);
  const value = pod.metadata?.annotations?.[ALLOW_PROXY_UID_ANNOTATION];
  if (value !== undefined && value !== 'true' && value !== 'false')
    throw new InjectionRefused('bad-override', `annotation ${ALLOW_PROXY_UID_ANNOTATION}: ${JSON.stringify(value)} is not valid; expected "true" or "false". Fix the annotation or remove it`);
  if (found.length === 0) return [];
  if (value === 'true') return found.map((f) => `${f}, the proxy's: its traffic is not redirected and bypasses mTLS (allowed by ${ALLOW_PROXY_UID_ANNOTATION})`);
  throw new InjectionRefused(
    'proxy-uid',
    `${found.join('; ')}: uid and gid ${PROXY_UID} are the tsmesh proxy's, whose traffic tsmesh-init never redirects, so this traffic would bypass the proxy and mTLS. ` +
      `Set runAsUser and runAsGroup to another id (for example 1000) in the container's or the pod's securityContext, ` +
      `or, if the container must reach the network past the mesh, annotate the pod ${ALLOW_PROXY_UID_ANNOTATION}: "true"`,
  );
}
