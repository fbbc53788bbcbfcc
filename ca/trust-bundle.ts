// The set of roots a workload trusts. Several roots may be held at once, so a
// new root can be added, used, and the old one removed without restarting
// anything that verifies peers.
import { splitPemCertificates } from './der.js';
import { CaError } from './errors.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { X509Certificate } = process.getBuiltinModule('node:crypto');
type X509Certificate = InstanceType<typeof X509Certificate>;

export class TrustBundle {
  readonly roots: readonly X509Certificate[];

  constructor(rootsPem: string | readonly string[]) {
    const pems = typeof rootsPem === 'string' ? [rootsPem] : rootsPem;
    const blocks = pems.flatMap(splitPemCertificates);
    if (blocks.length === 0) throw new CaError('internal', 'the trust bundle holds no certificate; give it at least one root in PEM');
    const seen = new Set<string>();
    const roots: X509Certificate[] = [];
    for (const block of blocks) {
      const cert = new X509Certificate(block);
      if (!cert.ca) throw new CaError('internal', `trust bundle entry ${cert.subject} is not a CA certificate`);
      if (seen.has(cert.fingerprint256)) continue;
      seen.add(cert.fingerprint256);
      roots.push(cert);
    }
    this.roots = roots;
  }

  toPem(): string {
    return this.roots.map((r) => r.toString()).join('');
  }

  /** The bundle with `rootPem` added (root rotation, step one). */
  with(rootPem: string): TrustBundle {
    return new TrustBundle([this.toPem(), rootPem]);
  }

  /** The bundle without the root whose SHA-256 fingerprint is given (root rotation, last step). */
  without(fingerprint256: string): TrustBundle {
    return new TrustBundle(this.roots.filter((r) => r.fingerprint256 !== fingerprint256).map((r) => r.toString()));
  }

  /**
   * Whether `chain` (issuer-first is not required: leaf first, then
   * intermediates) ends in a root of this bundle, every link signed by the next.
   */
  anchors(chain: readonly X509Certificate[], at: Date = new Date()): boolean {
    return this.anchorOf(chain, at) !== undefined;
  }

  /** The root of this bundle that `chain` (leaf first) ends in, as `anchors` checks it; undefined when none. */
  anchorOf(chain: readonly X509Certificate[], at: Date = new Date()): X509Certificate | undefined {
    for (let i = 0; i < chain.length; i++) {
      const cert = chain[i]!;
      if (at < new Date(cert.validFrom) || at > new Date(cert.validTo)) return undefined;
      const root = this.roots.find((r) => r.fingerprint256 === cert.fingerprint256 || (cert.checkIssued(r) && cert.verify(r.publicKey)));
      if (root) return at >= new Date(root.validFrom) && at <= new Date(root.validTo) ? root : undefined;
      const next = chain[i + 1];
      if (!next || !cert.checkIssued(next) || !cert.verify(next.publicKey)) return undefined;
    }
    return undefined;
  }

  /** The SHA-256 fingerprints of the roots (Node's spelling, AA:BB:...). */
  fingerprints(): string[] {
    return this.roots.map((r) => r.fingerprint256);
  }
}
