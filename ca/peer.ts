// Peers are named by the URI SAN of their certificate (their SPIFFE ID), not
// by host name, and only a certificate that is an X.509-SVID of the expected
// trust domain names anyone (svid.ts).
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { SvidError, svidSpiffeId } from './svid.js';
import { parseSpiffeId } from '../contract/spiffe.js';

/**
 * The SPIFFE ID of a TLS socket's peer, its certificate read as an
 * X.509-SVID of `trustDomain`; throws SvidError. The chain is TLS's to have
 * verified. getPeerX509Certificate() wraps the certificate without converting
 * every field to JavaScript as getPeerCertificate() does.
 */
export function socketPeerSvid(socket: TLSSocket, trustDomain: string): string {
  const cert = socket.getPeerX509Certificate();
  if (!cert) throw new SvidError('malformed', 'the peer presented no certificate');
  return svidSpiffeId(cert.raw, trustDomain);
}

export class PeerIdentityError extends Error {
  override name = 'PeerIdentityError';
  readonly code = 'ERR_TSMESH_PEER_IDENTITY';
}

/**
 * A checkServerIdentity for tls.connect: the server's certificate must be an
 * X.509-SVID of `trustDomain` (by default `expected`'s) naming exactly
 * `expected`. Returns SvidError or PeerIdentityError, which tls.connect emits.
 */
export function expectPeerIdentity(expected: string, trustDomain = parseSpiffeId(expected).trustDomain): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    let actual: string;
    try {
      if (!cert?.raw) throw new SvidError('malformed', 'the peer presented no certificate');
      actual = svidSpiffeId(cert.raw, trustDomain);
    } catch (e) {
      return e as Error;
    }
    return actual === expected ? undefined : new PeerIdentityError(`peer presented ${actual}, expected ${expected}`);
  };
}
