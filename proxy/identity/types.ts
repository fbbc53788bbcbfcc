// What the rest of the proxy needs from its identity: the current key and
// certificate, and a signal when they change.

export interface WorkloadCredentials {
  spiffeId: string;
  /** PKCS#8 PEM; made in memory, never written to disk. */
  keyPem: string;
  /** Leaf then intermediates. */
  certChainPem: string;
  /** The roots peers are verified against. */
  trustBundlePem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IdentitySource {
  /** The credentials in force, or undefined before the first certificate arrives. */
  current(): WorkloadCredentials | undefined;
  /** Called after every rotation (and the first issue); returns an unsubscribe function. */
  onChange(listener: (creds: WorkloadCredentials) => void): () => void;
  /** Renews soon rather than at half-life (the root of the certificate is being retired); a source that cannot renew has none. */
  renewNow?(reason: string): void;
}
