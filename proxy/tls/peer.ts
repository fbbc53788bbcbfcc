// Peers are named by the URI SAN of their certificate (their SPIFFE ID), not
// by host name.
import type { PeerCertificate } from 'node:tls';

export function peerSpiffeId(cert: PeerCertificate | Record<string, never> | null | undefined): string | undefined {
  const san = (cert as PeerCertificate | undefined)?.subjectaltname;
  if (!san) return undefined;
  const uris = san
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  // An X.509-SVID has exactly one URI SAN; anything else is not a workload identity.
  return uris.length === 1 && uris[0]!.startsWith('spiffe://') ? uris[0] : undefined;
}

export class PeerIdentityError extends Error {
  override name = 'PeerIdentityError';
  readonly code = 'ERR_TSMESH_PEER_IDENTITY';
}

/** A checkServerIdentity for tls.connect: the server must present exactly `expected`. */
export function expectPeerIdentity(expected: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const actual = peerSpiffeId(cert);
    return actual === expected ? undefined : new PeerIdentityError(`peer presented ${actual ?? 'no SPIFFE ID'}, expected ${expected}`);
  };
}
