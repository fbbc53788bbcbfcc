// ConfigMap tsmesh-config -> the mesh-wide settings (MeshSettings) and the
// certificate lifetime. Pure; kubernetes.ts keeps the last good result, and
// tsmesh check (install/check/config.ts) reads the ConfigMap the same way.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { MAX_TTL_SECONDS, MIN_TTL_SECONDS } from '../../ca/authority.js';
import { parseDuration } from '../../lib/duration.js';
import { ValidationError, describe, object, string } from '../../lib/schema.js';
import { parseMeshSettings } from '../../contract/validate.js';
import type { MeshSettings } from '../../contract/proxy-config.js';
import { MESH_CONFIG_KEYS } from '../../contract/names.js';

/**
 * Keys of ConfigMap tsmesh-config (all optional):
 *
 * | key | value | default |
 * | --- | --- | --- |
 * | `mtlsMode` | `STRICT` or `PERMISSIVE`: what proxies do with plain inbound traffic | `STRICT` |
 * | `defaultInboundPolicy` | `all-authenticated`, `all-unauthenticated` or `deny`: who may call a workload no ALLOW AuthorizationPolicy selects | `all-authenticated` (`all-unauthenticated` where PERMISSIVE) |
 * | `retryBudget` | YAML or JSON mapping `{ratio: 0-1, minRetriesPerSecond: 0-10000, ttl: duration}`: the budget of retries a policy sets none for | `{ratio: 0.2, minRetriesPerSecond: 10, ttl: 10s}` |
 * | `tracing` | YAML or JSON mapping `{export: true or false, collector: OTLP/HTTP URL, sampling: 0-1}`, or `on` / `off`: span export (a collector is needed once export is on) | `{export: false, sampling: 0.01}` |
 * | `accessLog` | `off`, `all`, `errors` or `sampled`, or a YAML or JSON mapping `{mode, sampling: 0-1, query: true or false}`: a JSON line per request on each proxy's stdout | `{mode: off, sampling: 0.01, query: false}` |
 * | `egress` | YAML or JSON mapping `{mode: allow-all or registry-only, allow: [{name, hosts: [api.example.com, "*.example.com"], cidrs: [10.1.0.0/16], ports: [443], originateTls: {port: 443, caBundle: PEM}}]}`: outbound traffic to destinations outside the mesh | `{mode: allow-all}` |
 * | `certificateTtl` | duration, 1m to 30d: lifetime of the certificates the CA issues from then on; wins over `--cert-ttl` (control/cert-ttl.ts) | the CA's `--cert-ttl` |
 * | `trustDomain` | must equal the control plane's `--trust-domain` (identities come from the CA, which cannot change it at run time) | that |
 *
 * Any other key is refused, as is a bad value: the whole ConfigMap is then
 * ignored and the last good settings stay in force.
 */

export interface MeshConfig {
  mesh: MeshSettings;
  /** Seconds; undefined: the CA's own default. */
  certificateTtlSeconds?: number;
}

/** ConfigMap tsmesh-config (or its absence) -> settings; throws ValidationError naming `data.<key>`. */
export function parseMeshConfigMap(cm: V1ConfigMap | undefined, trustDomain: string): MeshConfig {
  const data = object(cm?.data ?? {}, 'data', MESH_CONFIG_KEYS);
  if (data.trustDomain !== undefined && data.trustDomain !== trustDomain)
    throw new ValidationError('data.trustDomain', `${describe(data.trustDomain)} differs from the control plane's trust domain ${JSON.stringify(trustDomain)}; change --trust-domain instead, or remove the key`);
  const yamlOf = (key: 'retryBudget' | 'tracing' | 'accessLog' | 'egress'): unknown => {
    if (data[key] === undefined) return undefined;
    try {
      return parseYaml(String(data[key]));
    } catch (e) {
      throw new ValidationError(`data.${key}`, `not YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  const retryBudget = yamlOf('retryBudget');
  const tracing = yamlOf('tracing');
  const accessLog = yamlOf('accessLog');
  const egress = yamlOf('egress');
  const mesh = parseMeshSettings(
    {
      trustDomain,
      ...(data.mtlsMode !== undefined ? { mtlsMode: data.mtlsMode } : {}),
      ...(data.defaultInboundPolicy !== undefined ? { defaultInboundPolicy: data.defaultInboundPolicy } : {}),
      ...(retryBudget !== undefined ? { retryBudget } : {}),
      ...(tracing !== undefined ? { tracing } : {}),
      ...(accessLog !== undefined ? { accessLog } : {}),
      ...(egress !== undefined ? { egress } : {}),
    },
    'data',
  );
  const out: MeshConfig = { mesh };
  if (data.certificateTtl !== undefined) {
    const text = string(data.certificateTtl, 'data.certificateTtl');
    let ms: number;
    try {
      ms = parseDuration(text, 'certificateTtl');
    } catch (e) {
      throw new ValidationError('data.certificateTtl', (e as Error).message);
    }
    const seconds = Math.floor(ms / 1000);
    if (seconds < MIN_TTL_SECONDS || seconds > MAX_TTL_SECONDS)
      throw new ValidationError('data.certificateTtl', `${text} is outside ${MIN_TTL_SECONDS}s to ${MAX_TTL_SECONDS / 86_400}d`);
    out.certificateTtlSeconds = seconds;
  }
  return out;
}
