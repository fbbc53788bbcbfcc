// TLS session resumption between sidecars, the dialling side. A full mTLS
// handshake signs and verifies certificates; a resumed one (a TLS 1.3 ticket
// of the peer's, with a fresh ECDHE exchange) does neither. What makes it
// safe:
//   - A session is cached only after the full handshake it comes from
//     passed the checks (the chain, and the certificate read as an X.509-SVID
//     naming the identity the config expects); the entry keeps that verified
//     SPIFFE ID and the peer certificate's expiry.
//   - The key is the endpoint (address:port), the expected SPIFFE ID, the
//     ALPNs offered and the generation of this proxy's TLS material (its own
//     certificate and the roots it trusts): another identity for the same
//     address never resumes a session made for the first, and a renewal or a
//     change of the roots empties the cache (MeshTls).
//   - An entry is offered only until min(the ticket's lifetime as the server
//     gave it, this proxy's certificate expiry, the peer certificate's
//     expiry, SESSION_LIFETIME_MS).
// Node runs no checkServerIdentity on a resumed session and has no peer
// certificate to show for it on the client side: the identity of a resumed
// connection is the entry's (upstream.ts checks it again).
import { readChildren, readTlv } from '../../ca/der.js';

/** The longest a session is resumed, on both ends (the server's ticket lifetime and key rotation). */
export const SESSION_LIFETIME_MS = 60 * 60 * 1000;

/** The sessions kept at most (one per endpoint, identity and ALPN list); the oldest goes first. */
export const SESSION_CACHE_ENTRIES = 4096;

export interface CachedSession {
  /** The serialized session of Node's 'session' event. */
  readonly session: Buffer;
  /** The peer's SPIFFE ID, verified on the full handshake. */
  readonly peer: string;
  /** When it stops being offered (ms since the epoch). */
  readonly expiresAt: number;
  /** The bound of the full handshake it comes from: min(both certificates' expiry, that handshake + SESSION_LIFETIME_MS). */
  readonly until: number;
}

export class SessionCache {
  private readonly entries = new Map<string, CachedSession>();

  constructor(
    private readonly maxEntries = SESSION_CACHE_ENTRIES,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cache key of a connection to `where` expecting `expected`, offering `alpn`, under material generation `generation`. */
  static key(generation: number, where: string, expected: string, alpn: readonly string[]): string {
    return `${generation} ${where} ${expected} ${alpn.join(',')}`;
  }

  /** The session to offer for `key`, if one is still good. */
  get(key: string): CachedSession | undefined {
    const e = this.entries.get(key);
    if (e && e.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** The bound of a session from a full handshake now, between certificates that expire at `ownNotAfter` and `peerNotAfter`. */
  fullHandshakeBound(ownNotAfter: number, peerNotAfter: number): number {
    return Math.min(ownNotAfter, peerNotAfter, this.now() + SESSION_LIFETIME_MS);
  }

  /**
   * Keeps `session` (from a connection to `peer`, verified) for `key`, until
   * the earlier of its ticket's lifetime and `until` (ms since the epoch);
   * a session already past either is not kept.
   */
  set(key: string, session: Buffer, peer: string, until: number): void {
    const expiresAt = Math.min(ticketExpiry(session) ?? 0, until);
    this.entries.delete(key);
    if (expiresAt <= this.now()) return;
    this.entries.set(key, { session, peer, expiresAt, until });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * When the ticket in a serialized session (OpenSSL's SSL_SESSION in DER)
 * expires, in ms since the epoch: its time [1] plus the lifetime the server
 * gave the ticket [9], both in seconds. Undefined when it cannot be read
 * (then the session is not kept).
 */
export function ticketExpiry(session: Buffer): number | undefined {
  let time: number | undefined;
  let lifetime: number | undefined;
  try {
    for (const field of readChildren(readTlv(session).value)) {
      if (field.tag !== 0xa1 && field.tag !== 0xa9) continue;
      const n = readTlv(field.value);
      if (n.tag !== 0x02 || n.value.length > 6) return undefined;
      const v = n.value.readUIntBE(0, n.value.length);
      if (field.tag === 0xa1) time = v;
      else lifetime = v;
    }
  } catch {
    return undefined;
  }
  return time === undefined || lifetime === undefined ? undefined : (time + lifetime) * 1000;
}
