// Terminates mesh TLS on raw sockets the inbound listener hands over (it
// never listens itself): requires a client certificate from the mesh's roots
// that is an X.509-SVID of the mesh's trust domain (ca/svid.ts; any other is
// closed right after the handshake, counted and logged with the rule it
// broke), offers the tsmesh ALPNs, follows certificate rotation, and hands
// each finished handshake on with the caller's SPIFFE ID and the original
// port.
import type { Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from '../../lib/log.js';
import { socketPeerSvid } from '../../ca/peer.js';
import { SvidError } from '../../ca/svid.js';
import type { RefusalReason } from '../../contract/vocabulary.js';
import { MESH_ALPN_LIST } from '../tls/alpn.js';
import type { MeshTls } from '../tls/mesh-tls.js';

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
  const stopRotation = opts.meshTls.onRotate((o) => server.setSecureContext(o));
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
    close: stopRotation,
  };
}
