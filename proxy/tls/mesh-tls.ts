// The proxy's TLS material, kept current. Every new connection (either side)
// takes the context in force when it starts; a rotation swaps the context
// without touching connections already open.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { IdentitySource, WorkloadCredentials } from '../identity/types.js';

export class MeshTls {
  private context: SecureContext | undefined;
  private creds: WorkloadCredentials | undefined;
  private unsubscribe: () => void;
  private readonly listeners = new Set<(options: SecureContextOptions) => void>();

  constructor(identity: IdentitySource) {
    this.unsubscribe = identity.onChange((c) => this.update(c));
    const now = identity.current();
    if (now) this.update(now);
  }

  /** Roots streamed by the control plane, trusted beside the ones the CA returned. */
  private streamedRoots = '';

  /** Trusts `pem` too (a root added to the mesh reaches running proxies this way). */
  setStreamedRoots(pem: string): void {
    if (pem === this.streamedRoots) return;
    this.streamedRoots = pem;
    if (this.creds) this.update(this.creds);
  }

  private update(creds: WorkloadCredentials): void {
    const options = this.contextOptionsFor(creds);
    this.context = createSecureContext(options);
    this.creds = creds;
    for (const l of this.listeners) l(options);
  }

  /** TLS 1.3 only: both ends are tsmesh proxies. */
  private contextOptionsFor(creds: WorkloadCredentials): SecureContextOptions {
    const ca = this.streamedRoots ? [creds.trustBundlePem, this.streamedRoots] : creds.trustBundlePem;
    return { key: creds.keyPem, cert: creds.certChainPem, ca, minVersion: 'TLSv1.3' };
  }

  /** The options in force, for servers that take options rather than a context. */
  options(): SecureContextOptions | undefined {
    return this.creds ? this.contextOptionsFor(this.creds) : undefined;
  }

  /** Key, certificate and roots for a TLS client of the control plane. */
  clientMaterial(): { key: string; cert: string; ca: string } | undefined {
    const c = this.creds;
    return c ? { key: c.keyPem, cert: c.certChainPem, ca: c.trustBundlePem + this.streamedRoots } : undefined;
  }

  /** Called with new options after every rotation (for tls.Server.setSecureContext). */
  onRotate(listener: (options: SecureContextOptions) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get ready(): boolean {
    return this.context !== undefined;
  }

  /** This workload's SPIFFE ID (the source_identity of its outbound requests). */
  get identity(): string | undefined {
    return this.creds?.spiffeId;
  }

  secureContext(): SecureContext {
    if (!this.context) throw new Error('no workload certificate yet');
    return this.context;
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
  }
}
