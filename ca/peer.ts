// Peers are named by the URI SAN of their certificate (their SPIFFE ID), not
// by host name.
import type { PeerCertificate, TLSSocket } from 'node:tls';

/** The SPIFFE ID in a subjectAltName text ("URI:spiffe://..., DNS:..."), as Node gives it. */
function spiffeIdOfSan(san: string | undefined): string | undefined {
  if (!san) return undefined;
  const uris = san
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  // An X.509-SVID has exactly one URI SAN; anything else is not a workload identity.
  return uris.length === 1 && uris[0]!.startsWith('spiffe://') ? uris[0] : undefined;
}

export function peerSpiffeId(cert: PeerCertificate | Record<string, never> | null | undefined): string | undefined {
  return spiffeIdOfSan((cert as PeerCertificate | undefined)?.subjectaltname);
}

/**
 * The SPIFFE ID of a TLS socket's peer. getPeerX509Certificate() wraps the
 * certificate and reads the SAN alone (2.4 us here); getPeerCertificate()
 * converts every field to JavaScript (20 us), once per accepted connection.
 */
export function socketPeerSpiffeId(socket: TLSSocket): string | undefined {
  return spiffeIdOfSan(socket.getPeerX509Certificate()?.subjectAltName);
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
