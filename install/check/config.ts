// The settings the mesh runs with, which later checks measure against: the
// control plane's --trust-domain and --cert-ttl (from its Deployment), and
// ConfigMap tsmesh-config, read as the control plane reads it (a refused
// ConfigMap fails: the control plane keeps its last good settings).
import { MESH_CONFIG_NAME } from '../../contract/names.js';
import { parseMeshConfigMap } from '../../control/sources/kubernetes-mesh-config.js';
import { parseDuration } from '../../lib/duration.js';
import { NS, type CheckContext } from './context.js';
import type { Container } from './objects.js';

/** The value of --flag=value (or --flag value) in a container's args, else of env var `env`. */
function flagValue(c: Container | undefined, flag: string, env: string): string | undefined {
  const args = c?.args ?? [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
    if (a === flag) return args[i + 1];
  }
  return c?.env?.find((e) => e.name === env)?.value;
}

/** Takes the trust domain and the certificate lifetime from the control plane's container. */
export function readControlPlaneFlags(ctx: CheckContext, container: Container | undefined): void {
  ctx.trustDomain = flagValue(container, '--trust-domain', 'TSMESH_TRUST_DOMAIN') ?? ctx.trustDomain;
  const ttl = flagValue(container, '--cert-ttl', 'TSMESH_CERT_TTL');
  if (ttl) {
    try {
      ctx.certTtlMs = parseDuration(ttl, '--cert-ttl');
    } catch {
      // the control plane refuses it itself; its state shows below
    }
  }
}

/** ConfigMap tsmesh-config: absent (defaults), accepted (its certificateTtl wins over --cert-ttl), or refused. */
export async function checkMeshConfig(ctx: CheckContext): Promise<void> {
  const cm = await ctx.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${NS}/configmaps/${MESH_CONFIG_NAME}`);
  if (!cm) ctx.ok(`ConfigMap ${MESH_CONFIG_NAME} is absent: default mesh settings`);
  else {
    try {
      const parsed = parseMeshConfigMap(cm as never, ctx.trustDomain);
      if (parsed.certificateTtlSeconds) ctx.certTtlMs = parsed.certificateTtlSeconds * 1000;
      ctx.ok(`ConfigMap ${MESH_CONFIG_NAME}: mtlsMode ${parsed.mesh.mtlsMode}, trust domain ${ctx.trustDomain}`);
    } catch (e) {
      ctx.fail(`ConfigMap ${MESH_CONFIG_NAME} is refused (the last good settings stay in force): ${(e as Error).message}`, `kubectl -n ${NS} edit configmap ${MESH_CONFIG_NAME}`);
    }
  }
}
