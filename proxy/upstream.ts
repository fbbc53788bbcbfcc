// Opening connections to endpoints: mutual TLS to a meshed endpoint (its
// certificate checked as an X.509-SVID of the mesh naming the SPIFFE ID the
// config gives), plain TCP to one without a sidecar. Used by L4 forwarding and
// by the HTTP pools.
import { connect as netConnect, type OnReadOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { ResolvedEndpoint } from './config/table.js';
import type { MeshTls } from './tls/mesh-tls.js';
import type { MeshAlpn } from './tls/alpn.js';
import { SessionCache, type CachedSession } from './tls/session-cache.js';

export const CONNECT_TIMEOUT_MS = 10_000;

export class UpstreamConnectError extends Error {
  override name = 'UpstreamConnectError';
  constructor(
    message: string,
    /** connect-failure (refused, unreachable, timeout) or tls (handshake, wrong identity). */
    readonly kind: 'connect-failure' | 'tls',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Opens a connection to `ep`: mTLS offering `alpn` when the endpoint is meshed,
 * plain otherwise. With `onread` (net's option) the socket hands each read to
 * its callback and emits no 'data'.
 */
export function connectEndpoint(
  meshTls: MeshTls | undefined,
  ep: Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>,
  alpn: MeshAlpn | readonly MeshAlpn[],
  timeoutMs = CONNECT_TIMEOUT_MS,
  onread?: OnReadOpts,
): Promise<Socket | TLSSocket> {
  const where = `${ep.address}:${ep.port}`;
  if (!ep.identity) return whenOpen(netConnect({ host: ep.address, port: ep.port, allowHalfOpen: true, ...(onread ? { onread } : {}) }), 'connect', where, timeoutMs, (e) => failure(e, 'connecting to', where));
  if (!meshTls?.ready) return Promise.reject(new UpstreamConnectError(`no workload certificate yet to reach ${where}`, 'tls'));
  const identity = ep.identity;
  const alpns = typeof alpn === 'string' ? [alpn] : [...alpn];
  const resumption = sessionFor(meshTls, where, identity, alpns);
  const socket = tlsConnect({
    host: ep.address,
    port: ep.port,
    secureContext: meshTls.secureContext(),
    ALPNProtocols: alpns,
    checkServerIdentity: meshTls.serverIdentityCheck(identity, where),
    ...(resumption.offered ? { session: resumption.offered.session } : {}),
    ...(onread ? { onread } : {}),
  });
  return whenOpen(
    socket,
    'secureConnect',
    where,
    timeoutMs,
    (e) => {
      const ours = e.code === 'ERR_TSMESH_PEER_IDENTITY' || e.code === 'ERR_TSMESH_SVID';
      const f = failure(e, 'mTLS to', where, ours);
      // The certificate checks report their own refusals; a handshake that failed before them is reported here.
      if (f.kind === 'tls' && !ours) meshTls.peerRefused({ reason: 'tls-handshake', where, expected: identity, error: e.message });
      return f;
    },
    (s) => resumption.opened(s),
  );
}

/**
 * Resumption of a connection to `where` expecting `expected`: the session
 * offered, if one is cached (tls/session-cache.ts), and once the handshake is
 * done, the check of a resumed one and the keeping of the tickets that come.
 * Node runs no checkServerIdentity on a resumed session and shows no peer
 * certificate for it: its peer is the one verified on the full handshake
 * the session comes from, which the cache entry holds. A resumed connection
 * without such an entry naming `expected` is refused, never served.
 */
function sessionFor(meshTls: MeshTls, where: string, expected: string, alpns: readonly string[]): { offered: CachedSession | undefined; opened: (s: TLSSocket) => UpstreamConnectError | undefined } {
  const generation = meshTls.generation;
  const key = SessionCache.key(generation, where, expected, alpns);
  const offered = meshTls.sessions.get(key);
  return {
    offered,
    opened(socket) {
      if (socket.isSessionReused()) {
        if (offered === undefined || offered.peer !== expected || offered.until <= Date.now()) {
          meshTls.sessions.delete(key);
          const error = `a resumed session to ${where} has no verified peer ${expected}`;
          meshTls.peerRefused({ reason: 'tls-peer', where, expected, error });
          return new UpstreamConnectError(`mTLS to ${where} failed: ${error}`, 'tls');
        }
        // The ticket offered stays in use until the entry expires; the server's new ones are not taken
        // (Node serializes a session only for a 'session' listener, which costs more than it would save).
        meshTls.handshakes.outbound.resumed++;
        return undefined;
      }
      // The full handshake passed serverIdentityCheck: the peer is `expected`.
      meshTls.handshakes.outbound.full++;
      const peerNotAfter = Date.parse(socket.getPeerX509Certificate()?.validTo ?? '');
      const until = Number.isNaN(peerNotAfter) ? 0 : meshTls.sessions.fullHandshakeBound(meshTls.notAfter ?? 0, peerNotAfter);
      // TLS 1.3 tickets come after the handshake; the first is kept, unless the material changed meanwhile.
      socket.once('session', (session: Buffer) => {
        if (meshTls.generation === generation) meshTls.sessions.set(key, session, expected, until);
      });
      return undefined;
    },
  };
}

/** A connection's error as an UpstreamConnectError: a TLS failure (`tlsWhat` where; always with `tlsError`) or a connect failure. */
export function failure(e: NodeJS.ErrnoException, tlsWhat: string, where: string, tlsError = false): UpstreamConnectError {
  const tls = tlsError || !e.syscall || /certificate|ssl|tls/i.test(e.message);
  return new UpstreamConnectError(`${tls ? tlsWhat : 'connecting to'} ${where} failed: ${e.message}`, tls ? 'tls' : 'connect-failure', { cause: e });
}

/**
 * `socket` once it emits `ready` ('connect', or 'secureConnect' after the
 * handshake), with Nagle off; rejected with what `failed` makes of its
 * error, or as a connect failure after `timeoutMs`, or with what `check`
 * finds wrong with the open socket (then closed).
 */
export function whenOpen<S extends Socket>(
  socket: S,
  ready: 'connect' | 'secureConnect',
  where: string,
  timeoutMs: number,
  failed: (e: NodeJS.ErrnoException) => UpstreamConnectError,
  check?: (socket: S) => UpstreamConnectError | undefined,
): Promise<S> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamConnectError(`connecting to ${where} timed out after ${timeoutMs} ms`, 'connect-failure'));
    }, timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      const wrong = check?.(socket);
      if (wrong) {
        socket.destroy();
        reject(wrong);
        return;
      }
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(failed(e));
    });
  });
}
