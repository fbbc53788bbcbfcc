// The lifetime of the certificates the CA issues (workload certificates and
// the control plane's own serving certificate). ConfigMap tsmesh-config's
// `certificateTtl` is the mesh-wide runtime setting, so when it sets one it
// wins over the control plane's --cert-ttl (TSMESH_CERT_TTL), which is the
// default in force while the ConfigMap sets none (1h without the flag either).
// A change applies to the certificates issued after it: proxies get it at
// their next renewal (half-life of what they hold). A ConfigMap with a bad
// value is refused by the source (sources/kubernetes.ts logs the key, the
// value and the settings kept), so the last good lifetime stays in force; the
// issuer's NotAfter still caps every certificate (ca/authority.ts).
import type { CertificateAuthority } from '../ca/authority.js';
import { formatDuration } from '../lib/duration.js';
import type { Logger } from '../lib/log.js';
import { type MeshConfig } from './sources/kubernetes-mesh-config.js';
import { MESH_CONFIG_NAME } from '../contract/names.js';

export interface CertificateTtl {
  seconds: number;
  /** Where it comes from, for logs: the ConfigMap's key, or the default's origin. */
  from: string;
}

export const CONFIG_MAP_TTL_ORIGIN = `ConfigMap ${MESH_CONFIG_NAME} certificateTtl`;

/** Pure: the lifetime in force given the default (and where it came from) and the ConfigMap's value, if any. */
export function certificateTtlInForce(defaultTtl: CertificateTtl, configMapSeconds: number | undefined): CertificateTtl {
  return configMapSeconds === undefined ? defaultTtl : { seconds: configMapSeconds, from: CONFIG_MAP_TTL_ORIGIN };
}

export interface FollowCertificateTtlOptions {
  authority: CertificateAuthority;
  /** Where accepted mesh settings arrive (the Kubernetes source). */
  source: { onMeshConfig(listener: (config: MeshConfig) => void): () => void };
  /** Where the CA's default lifetime came from, e.g. `--cert-ttl` or `the built-in default`. */
  defaultFrom: string;
  log: Logger;
}

/** Keeps `authority`'s lifetime equal to the one in force; returns a function that stops following. */
export function followMeshCertificateTtl(opts: FollowCertificateTtlOptions): () => void {
  const { authority, log } = opts;
  const fallback: CertificateTtl = { seconds: authority.defaultTtlSeconds, from: opts.defaultFrom };
  let current: CertificateTtl = fallback;
  return opts.source.onMeshConfig((config) => {
    const next = certificateTtlInForce(fallback, config.certificateTtlSeconds);
    if (next.seconds === current.seconds && next.from === current.from) return;
    try {
      authority.setTtlSeconds(next.seconds);
    } catch (e) {
      // The source checks the same bounds; should they ever differ, the lifetime in force stays.
      log.error('certificate lifetime refused; keeping the one in force', { error: (e as Error).message, ttl: formatDuration(current.seconds * 1000), from: current.from });
      return;
    }
    current = next;
    log.info('certificate lifetime for certificates issued from now on', { ttl: formatDuration(next.seconds * 1000), from: next.from });
  });
}
