// The proxy's TLS material, kept current. Every new connection (either side)
// takes the context in force when it starts; a rotation swaps the context
// without touching connections already open. The trust domain of its own
// SVID is the only one whose peers it accepts (no federation).
import { createSecureContext, type PeerCertificate, type SecureContext, type SecureContextOptions } from 'node:tls';
import { expectPeerIdentity } from '../../ca/peer.js';
import { parseSpiffeId } from '../../contract/spiffe.js';
import type { RefusalReason } from '../../contract/vocabulary.js';
import type { IdentitySource, WorkloadCredentials } from '../identity/types.js';

/** An mTLS connection to a meshed endpoint refused for its certificate, or a failed handshake. */
export interface PeerRefusal {
  reason: RefusalReason;
  /** The endpoint, address:port. */
  where: string;
  /** The identity the config gives for it. */
  expected: string;
  /** The SVID rule broken (ca/svid.ts), when it was one. */
  rule?: string;
  error: string;
}

export class MeshTls {
  private context: SecureContext | undefined;
  private creds: WorkloadCredentials | undefined;
  private unsubscribe: () => void;
  private readonly listeners = new Set<(options: SecureContextOptions) => void>();
  private readonly refusalListeners = new Set<(r: PeerRefusal) => void>();
  private ownTrustDomain: string | undefined;

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
    this.ownTrustDomain = parseSpiffeId(creds.spiffeId).trustDomain;
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

  /** The trust domain of this workload's SVID: peers must hold an X.509-SVID of it. */
  get trustDomain(): string | undefined {
    return this.ownTrustDomain;
  }

  /**
   * tls.connect's checkServerIdentity for the meshed endpoint `where`: its
   * certificate must be an X.509-SVID of this trust domain naming `expected`.
   * A refusal is reported to onPeerRefused before tls.connect emits it.
   */
  serverIdentityCheck(expected: string, where: string): (host: string, cert: PeerCertificate) => Error | undefined {
    const trustDomain = this.ownTrustDomain;
    const check = trustDomain === undefined ? undefined : expectPeerIdentity(expected, trustDomain);
    return (host, cert) => {
      const e = check ? check(host, cert) : new Error('no workload certificate, so no trust domain to check peers against');
      if (e) {
        const { reason, rule } = e as Error & { reason?: RefusalReason; rule?: string };
        this.peerRefused({ reason: reason ?? 'tls-peer', where, expected, ...(rule === undefined ? {} : { rule }), error: e.message });
      }
      return e;
    };
  }

  /** Reports an outbound mTLS connection refused (a failed handshake, or the checks above). */
  peerRefused(r: PeerRefusal): void {
    for (const l of this.refusalListeners) l(r);
  }

  /** Called for every refused outbound mTLS connection (the sidecar counts and logs it). */
  onPeerRefused(listener: (r: PeerRefusal) => void): () => void {
    this.refusalListeners.add(listener);
    return () => this.refusalListeners.delete(listener);
  }

  secureContext(): SecureContext {
    if (!this.context) throw new Error('no workload certificate yet');
    return this.context;
  }

  close(): void {
    this.unsubscribe();
    this.listeners.clear();
    this.refusalListeners.clear();
  }
}
