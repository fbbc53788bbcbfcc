// Terminates mesh TLS on raw sockets the inbound listener hands over (it
// never listens itself): requires a client certificate from the mesh's roots
// that is an X.509-SVID of the mesh's trust domain (ca/svid.ts; any other is
// closed right after the handshake, counted and logged with the rule it
// broke), offers the tsmesh ALPNs, follows certificate rotation, and hands
// each finished handshake on with the caller's SPIFFE ID and the original
// port.
//
// Resumption: the server issues TLS 1.3 tickets under keys of its own, made
// in memory and replaced by a new certificate, new roots, or the end of a
// window of at most SESSION_LIFETIME_MS and half the certificate's remaining
// life (Node holds one ticket key: a ticket of the key before is refused and
// its connection does a full handshake). A ticket's lifetime is that window,
// so no session outlives the certificate it was made under. A resumed
// connection's caller is the certificate the session holds, read and checked
// as on a full handshake, and refused if it has expired since.
import type { Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from '../../lib/log.js';
import { socketPeerSvid } from '../../ca/peer.js';
import { SvidError } from '../../ca/svid.js';
import type { RefusalReason } from '../../contract/vocabulary.js';
import { MESH_ALPN_LIST } from '../tls/alpn.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { SESSION_LIFETIME_MS } from '../tls/session-cache.js';

const { randomBytes } = process.getBuiltinModule('node:crypto');

/** Between two proxies a handshake takes milliseconds; an unfinished one is dropped after this. */
export const MESH_HANDSHAKE_TIMEOUT_MS = 5000;

export interface MeshTerminatorOptions {
  readonly log: Logger;
  readonly meshTls: MeshTls;
  /** A connection refused for a reason (counted by the caller). */
  readonly refused: (reason: RefusalReason) => void;
  /** The handshake finished on `raw` (no longer waiting for its caller to be known). */
  readonly handshaken: (raw: Socket) => void;
  /** A verified caller on a mesh connection to `port`. */
  readonly secure: (tls: TLSSocket, peer: string, port: number) => void;
}

export interface MeshTerminator {
  /** Starts the mTLS handshake on a raw socket whose ClientHello offered a tsmesh ALPN. */
  terminate(raw: Socket, port: number): void;
  /** Closes connections still in their handshake (draining: no request can be in flight on them). */
  abortHandshakes(): void;
  /** Stops following certificate rotation. */
  close(): void;
}

type WrappedTls = TLSSocket & { _parent?: Socket };

export function createMeshTerminator(opts: MeshTerminatorOptions): MeshTerminator {
  // The original port travels with the raw socket, which the TLS socket wraps.
  const portOf = new WeakMap<Socket, number>();
  // Raw sockets whose handshake has not finished. A client that gives up
  // mid-handshake leaves no event on the half-open raw socket, so these are
  // bounded by handshakeTimeout.
  const handshaking = new Set<Socket>();
  const server = createTlsServer({
    ...opts.meshTls.options(),
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [...MESH_ALPN_LIST],
    handshakeTimeout: MESH_HANDSHAKE_TIMEOUT_MS,
  });
  // New ticket keys and lifetime with every material and at the end of each window.
  let rotation: NodeJS.Timeout | undefined;
  const renewTickets = (options = opts.meshTls.options()): void => {
    clearTimeout(rotation);
    if (!options) return;
    const windowMs = ticketWindowMs(opts.meshTls.notAfter ?? 0, Date.now());
    server.setSecureContext({ ...options, ticketKeys: randomBytes(48), sessionTimeout: Math.max(1, Math.floor(windowMs / 1000)) });
    rotation = setTimeout(renewTickets, Math.max(windowMs, 1000)).unref();
  };
  renewTickets();
  const stopRotation = opts.meshTls.onRotate((o) => renewTickets(o));
  server.on('tlsClientError', (e: Error, tls: WrappedTls) => {
    opts.refused('tls-handshake');
    opts.log.info('inbound mTLS handshake failed', { error: e.message });
    // Destroying the TLS socket leaves the half-open raw socket behind.
    tls._parent?.destroy();
  });
  server.on('secureConnection', (tls: WrappedTls) => {
    const raw = tls._parent;
    const port = raw ? portOf.get(raw) : undefined;
    if (raw) {
      handshaking.delete(raw);
      opts.handshaken(raw);
    }
    tls.on('error', () => tls.destroy());
    const trustDomain = opts.meshTls.trustDomain;
    if (port === undefined || trustDomain === undefined) {
      opts.refused('tls-peer');
      tls.destroy();
      return;
    }
    const resumed = tls.isSessionReused();
    let peer: string;
    try {
      peer = socketPeerSvid(tls, trustDomain);
    } catch (thrown) {
      const e = thrown instanceof SvidError ? thrown : new SvidError('malformed', (thrown as Error).message);
      opts.refused(e.reason);
      opts.log.warn("inbound mTLS refused: the caller's certificate is not an X.509-SVID of this mesh", {
        direction: 'inbound',
        remote: raw?.remoteAddress,
        port,
        rule: e.rule,
        error: e.message,
      });
      tls.destroy();
      raw?.destroy();
      return;
    }
    if (resumed && !stillValid(tls)) {
      // TLS checked the certificate's validity on the full handshake only.
      opts.refused('tls-handshake');
      opts.log.info("inbound mTLS refused: the caller's certificate of a resumed session has expired", { direction: 'inbound', remote: raw?.remoteAddress, port, identity: peer });
      tls.destroy();
      raw?.destroy();
      return;
    }
    opts.meshTls.handshakes.inbound[resumed ? 'resumed' : 'full']++;
    opts.secure(tls, peer, port);
  });
  return {
    terminate(raw, port) {
      portOf.set(raw, port);
      handshaking.add(raw);
      raw.once('close', () => handshaking.delete(raw));
      server.emit('connection', raw);
    },
    abortHandshakes() {
      for (const socket of handshaking) socket.destroy();
      handshaking.clear();
    },
    close() {
      stopRotation();
      clearTimeout(rotation);
    },
  };
}

/**
 * How long tickets made now live, and their key with them: SESSION_LIFETIME_MS,
 * or half of what is left of the certificate (expiring at `notAfter`) when
 * that is shorter; the identity renews at half its lifetime, so this window
 * ends well before the certificate does.
 */
export function ticketWindowMs(notAfter: number, now: number): number {
  return Math.max(0, Math.min(SESSION_LIFETIME_MS, Math.floor((notAfter - now) / 2)));
}

/** Whether the caller's certificate is still within its validity period. */
function stillValid(tls: TLSSocket): boolean {
  return Date.parse(tls.getPeerX509Certificate()?.validTo ?? '') > Date.now();
}
