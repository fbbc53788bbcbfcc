// Test fixtures for the proxy: real certificates from a real CA, given to the
// proxy through the same IdentitySource interface the CA client implements.
import { generateKeyPairSync } from 'node:crypto';
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
