// The proxy's TLS material, kept current. Every new connection (either side)
// takes the context in force when it starts; a rotation swaps the context
// without touching connections already open. The trust domain of its own
// SVID is the only one whose peers it accepts (no federation).
//
// The roots it trusts: once the control plane streams a bundle, that bundle
// (it is the mesh's word now: a root added or removed by a root rotation
// reaches the proxy this way), plus always the root its own certificate
// chains to; before, the roots the CA returned with the certificate. A
// config that names the root of its own certificate retired makes the
// identity renew at once.
import { createSecureContext, type PeerCertificate, type SecureContext, type SecureContextOptions } from 'node:tls';
import { splitPemCertificates } from '../../ca/der.js';
import { expectPeerIdentity } from '../../ca/peer.js';
import { TrustBundle } from '../../ca/trust-bundle.js';
import { parseSpiffeId } from '../../contract/spiffe.js';
import type { RefusalReason } from '../../contract/vocabulary.js';
import type { IdentitySource, WorkloadCredentials } from '../identity/types.js';
import { SessionCache } from './session-cache.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { X509Certificate } = process.getBuiltinModule('node:crypto');

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
  /** The root (fingerprint and PEM) that this workload's certificate chains to. */
  private ownRoot: { fingerprint: string; pem: string } | undefined;
  private retiredRoots: readonly string[] = [];
  private materialGeneration = 0;
  /** Sessions of mTLS connections to meshed endpoints, for resumption (session-cache.ts); emptied by every change of the material. */
  readonly sessions = new SessionCache();
  /** Handshakes of mesh mTLS connections, full or resumed, per direction (tsmesh_tls_handshakes_total). */
  readonly handshakes = { inbound: { full: 0, resumed: 0 }, outbound: { full: 0, resumed: 0 } };

  constructor(private readonly source: IdentitySource) {
    this.unsubscribe = source.onChange((c) => this.update(c));
    const now = source.current();
    if (now) this.update(now);
  }

  /** Roots streamed by the control plane: once there are any, the roots trusted (with the root of this workload's own certificate). */
  private streamedRoots = '';

  /**
   * Trusts the mesh's bundle `pem` (a root added to or removed from the mesh
   * reaches running proxies this way); `retiredRoots` are fingerprints of
   * roots being retired: if this workload's certificate chains to one, it is
   * renewed at once.
   */
  setStreamedRoots(pem: string, retiredRoots: readonly string[] = []): void {
    this.retiredRoots = retiredRoots;
    if (pem !== this.streamedRoots) {
      this.streamedRoots = pem;
      if (this.creds) this.update(this.creds);
    }
    this.renewIfRetired();
  }

  /** The fingerprint of the root this workload's certificate chains to (undefined before it has one, or when no root it knows anchors it). */
  get certificateRoot(): string | undefined {
    return this.ownRoot?.fingerprint;
  }

  /** The roots trusted now (PEM). */
  trustedRootsPem(): string | undefined {
    return this.creds ? this.rootsFor(this.creds) : undefined;
  }

  private update(creds: WorkloadCredentials): void {
    const known = new TrustBundle([creds.trustBundlePem, ...(this.streamedRoots ? [this.streamedRoots] : [])]);
    const root = known.anchorOf(splitPemCertificates(creds.certChainPem).map((p) => new X509Certificate(p)));
    this.ownRoot = root ? { fingerprint: root.fingerprint256, pem: root.toString() } : undefined;
    const options = this.contextOptionsFor(creds);
    this.context = createSecureContext(options);
    this.creds = creds;
    // A new certificate or new roots: no session of the old material is resumed.
    this.materialGeneration++;
    this.sessions.clear();
    this.ownTrustDomain = parseSpiffeId(creds.spiffeId).trustDomain;
    for (const l of this.listeners) l(options);
    this.renewIfRetired();
  }

  private renewIfRetired(): void {
    const root = this.ownRoot?.fingerprint;
    if (root !== undefined && this.retiredRoots.includes(root)) this.source.renewNow?.('the root this certificate chains to is being retired (root rotation)');
  }

  /** The streamed bundle and the root of this workload's own certificate; the CA's roots before any bundle was streamed. */
  private rootsFor(creds: WorkloadCredentials): string {
    if (!this.streamedRoots) return creds.trustBundlePem;
    const own = this.ownRoot;
    const streamed = new TrustBundle(this.streamedRoots);
    return own && !streamed.fingerprints().includes(own.fingerprint) ? streamed.toPem() + own.pem : streamed.toPem();
  }

  /** TLS 1.3 only: both ends are tsmesh proxies. */
  private contextOptionsFor(creds: WorkloadCredentials): SecureContextOptions {
    return { key: creds.keyPem, cert: creds.certChainPem, ca: this.rootsFor(creds), minVersion: 'TLSv1.3' };
  }

  /** The options in force, for servers that take options rather than a context. */
  options(): SecureContextOptions | undefined {
    return this.creds ? this.contextOptionsFor(this.creds) : undefined;
  }

  /** Key, certificate and roots for a TLS client of the control plane. */
  clientMaterial(): { key: string; cert: string; ca: string } | undefined {
    const c = this.creds;
    return c ? { key: c.keyPem, cert: c.certChainPem, ca: this.rootsFor(c) } : undefined;
  }

  /** Called with new options after every rotation (for tls.Server.setSecureContext). */
  onRotate(listener: (options: SecureContextOptions) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Changes with every new certificate or set of trusted roots (the generation in session-cache.ts's keys). */
  get generation(): number {
    return this.materialGeneration;
  }

  /** When this workload's certificate expires (ms since the epoch). */
  get notAfter(): number | undefined {
    return this.creds?.notAfter.getTime();
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
