// Test fixtures for the proxy: real certificates from a real CA, given to the
// proxy through the same IdentitySource interface the CA client implements.
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { CA_FILES } from '../../ca/material.js';
import { readProxySettings } from '../env.js';
import { startProxy, type RunningProxy } from '../process.js';
import type { CertificateAuthority } from '../../ca/authority.js';
import { buildCsrPem } from '../../ca/csr.js';
import type { ConfigSource } from '../config/source.js';
import { startSidecar, type Sidecar, type SidecarOptions } from '../sidecar.js';
import type { ProxyConfig } from '../../contract/proxy-config.js';
import { parseProxyConfig } from '../../contract/validate.js';
import { silentLogger } from '../../lib/log.js';
import type { IdentitySource, WorkloadCredentials } from '../identity/types.js';

export function issueCredentials(ca: CertificateAuthority, spiffeId: string, ttlSeconds?: number): WorkloadCredentials {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const issued = ca.signWorkloadCsr(buildCsrPem(key, spiffeId), spiffeId, ttlSeconds);
  return {
    spiffeId,
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    certChainPem: issued.certChainPem,
    trustBundlePem: issued.trustBundlePem,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
}

/** Credentials set by the test; `set` plays a rotation. */
export class FixedIdentity implements IdentitySource {
  private readonly listeners = new Set<(c: WorkloadCredentials) => void>();
  constructor(private creds: WorkloadCredentials | undefined) {}
  current(): WorkloadCredentials | undefined {
    return this.creds;
  }
  onChange(l: (c: WorkloadCredentials) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(creds: WorkloadCredentials): void {
    this.creds = creds;
    for (const l of this.listeners) l(creds);
  }
}

/** A config the test changes by calling `set`. */
export class FixedConfig implements ConfigSource {
  private readonly listeners = new Set<(c: ProxyConfig) => void>();
  private config: ProxyConfig;
  constructor(doc: object) {
    this.config = parseProxyConfig({ apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', ...doc });
  }
  current(): ProxyConfig {
    return this.config;
  }
  onChange(l: (c: ProxyConfig) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(doc: object): void {
    this.config = parseProxyConfig({ apiVersion: 'tsmesh.io/v1alpha1', kind: 'ProxyConfig', ...doc });
    for (const l of this.listeners) l(this.config);
  }
  close(): void {
    this.listeners.clear();
  }
}

type LoopbackSettings = Omit<SidecarOptions, 'identity' | 'config' | 'log' | 'host' | 'outboundPort' | 'inboundPort'> & Partial<Pick<SidecarOptions, 'log'>>;

/**
 * A sidecar on loopback, both listeners on ports 0, holding a certificate of
 * `spiffeId` from `ca`. Loopback has no redirect, so the test says in
 * `settings` what each listener takes as a connection's original destination.
 */
export function loopbackSidecar(ca: CertificateAuthority, spiffeId: string, config: ConfigSource, settings: LoopbackSettings = {}): Promise<Sidecar> {
  return startSidecar({ identity: new FixedIdentity(issueCredentials(ca, spiffeId)), config, log: silentLogger, host: '127.0.0.1', outboundPort: 0, inboundPort: 0, ...settings });
}

/** A client that connects to the outbound port of `pairAndPlain`'s `a` from this address dialled the Service without a sidecar. */
export const PLAIN_CLIENT_ADDRESS = '127.0.0.2';

/**
 * Two ways to the app on `appPort` through one outbound sidecar `a` (web):
 * over a sidecar pair, to Service api (10.96.0.10:80), whose endpoint is
 * `b`'s inbound port (api, mTLS between them); and over `a` alone, to
 * Service legacy (10.96.0.11:80), whose endpoint is the app itself, without
 * a sidecar. Loopback has no redirect: a connection from
 * PLAIN_CLIENT_ADDRESS is taken as dialling legacy, any other api.
 */
export async function pairAndPlain(ca: CertificateAuthority, appPort: number): Promise<{ a: Sidecar; b: Sidecar }> {
  const [web, api, meshedIp, plainIp] = ['spiffe://cluster.local/ns/shop/sa/web', 'spiffe://cluster.local/ns/shop/sa/api', '10.96.0.10', '10.96.0.11'];
  const b = await loopbackSidecar(ca, api, new FixedConfig({}), {
    inboundOriginalDestination: () => ({ address: '127.0.0.1', port: appPort, family: 'IPv4' }),
  });
  const services = [
    { name: 'api', namespace: 'shop', clusterIPs: [meshedIp], ports: [{ port: 80, targetPort: b.inboundPort }], endpoints: [{ address: '127.0.0.1', identity: api }] },
    { name: 'legacy', namespace: 'shop', clusterIPs: [plainIp], ports: [{ port: 80, targetPort: appPort }], endpoints: [{ address: '127.0.0.1' }] },
  ];
  const a = await loopbackSidecar(ca, web, new FixedConfig({ services }), {
    outboundOriginalDestination: (socket) => ({ address: socket.remoteAddress === PLAIN_CLIENT_ADDRESS ? plainIp : meshedIp, port: 80, family: 'IPv4' }),
  });
  return { a, b };
}

/**
 * A whole proxy process on loopback (ephemeral ports) in namespace shop as
 * ServiceAccount `serviceAccount`, whose certificate and config come from
 * the control plane at `controlPlaneAddress` (local mode: the token in
 * `dir`/token, the root in `dir`/root-cert.pem).
 */
export function startLoopbackProxy(controlPlaneAddress: string, dir: string, serviceAccount: string, podName?: string): Promise<RunningProxy> {
  return startProxy(
    {
      ...readProxySettings({}),
      ...(podName ? { podName } : {}),
      podNamespace: 'shop',
      serviceAccount,
      controlPlaneAddress,
      tokenPath: join(dir, 'token'),
      trustBundlePath: join(dir, CA_FILES.rootCert),
      outboundPort: 0,
      inboundPort: 0,
      adminPort: 0,
    },
    { log: silentLogger, host: '127.0.0.1', identityTuning: { backoff: { minMs: 20, maxMs: 100 } } },
  );
}

/** The sum of a family's series in a sidecar's registry whose labels include `labels`. */
export async function metricValue(s: Pick<Sidecar, 'metrics'>, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await s.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { labels: Record<string, string | number>; value: number }[];
  return values.filter((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x)).reduce((sum, v) => sum + v.value, 0);
}
