// Opaque TCP between sidecars as streams of pooled tsmesh/mux connections
// (ALPN tsmesh/tcp-mux): an app connection to a meshed opaque port opens a
// stream, not an mTLS connection of its own, so a client that opens a
// connection per request pays no TLS handshake per connection (full, 6-8 ms
// of CPU between two Node proxies; resumed, 3-4 ms).
//
// One pooled connection serves one endpoint address:port (the peer's inbound
// listener reads the original destination port of the connection, and every
// stream of it goes to that port of its app) and one expected SPIFFE ID,
// under the mesh material it was verified with. It takes streams up to
// MAX_STREAMS and until the peer says GOAWAY, then a new one is opened; one
// without streams for IDLE_MS goes away. A peer that predates tsmesh/tcp-mux
// picks tsmesh/tcp, and that connection carries the app's connection alone,
// as before.
//
// Each stream opens on the peer at once (an empty DATA frame), for protocols
// whose server speaks first; half-close passes through both ways; a reset of
// the stream or the loss of its connection closes the app's connection.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ResolvedEndpoint } from '../config/table.js';
import { MESH_ALPN } from '../tls/alpn.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { connectEndpoint, UpstreamConnectError } from '../upstream.js';
import { MAX_STREAMS, MuxSession, type MuxStream } from './mux.js';
import type { SpliceResult } from './splice.js';
import { Tunnel, type TunnelSide } from './tunnel.js';

/** A pooled connection without streams for this long ends (the peer's own bound is longer). */
export const IDLE_MS = 30_000;

type Endpoint = Pick<ResolvedEndpoint, 'address' | 'port' | 'identity'>;

/** One endpoint's pooled connection, or the one being opened. */
class EndpointSessions {
  session: MuxSession | undefined;
  private connecting: Promise<MuxSession | Socket> | undefined;

  constructor(
    private readonly meshTls: MeshTls,
    private readonly ep: Endpoint,
    private readonly idleMs: number,
    private readonly gone: (e: EndpointSessions) => void,
  ) {}

  /** A stream of a pooled connection, or a connection of its own to a peer without tsmesh/tcp-mux. */
  async open(): Promise<MuxStream | Socket> {
    // A connection that is gone again before its first stream (the peer closing at once) is not dialled for ever.
    for (let attempt = 0; ; attempt++) {
      const s = this.session;
      if (s !== undefined && s.usable && s.size < MAX_STREAMS) return openStream(s);
      if (attempt >= 2 && (s === undefined || !s.usable)) throw new UpstreamConnectError(`the tsmesh/tcp-mux connections to ${this.ep.address}:${this.ep.port} closed before their first stream`, 'connect-failure');
      // Full, going away or closed: the next stream goes on a new connection; a full one ends after its last.
      if (s !== undefined) {
        if (s.usable) s.goAway();
        this.session = undefined;
      }
      const dialling = this.connecting === undefined;
      const pending = (this.connecting ??= this.connect());
      let got: MuxSession | Socket;
      try {
        got = await pending;
      } catch (e) {
        if (this.connecting === pending) this.connecting = undefined;
        this.goneIfEmpty();
        throw e;
      }
      if (this.connecting === pending) this.connecting = undefined;
      if (!(got instanceof MuxSession)) {
        // The peer predates tsmesh/tcp-mux: its connection is the caller's; others waiting open their own.
        this.goneIfEmpty();
        if (dialling) return got;
        return (await connectEndpoint(this.meshTls, this.ep, MESH_ALPN.tcp)) as Socket;
      }
    }
  }

  private async connect(): Promise<MuxSession | Socket> {
    const socket = (await connectEndpoint(this.meshTls, this.ep, [MESH_ALPN.tcpMux, MESH_ALPN.tcp])) as TLSSocket;
    if (socket.alpnProtocol !== MESH_ALPN.tcpMux) return socket;
    const session = new MuxSession(socket, { idleMs: this.idleMs });
    this.session = session;
    socket.once('close', () => {
      if (this.session === session) this.session = undefined;
      this.goneIfEmpty();
    });
    return session;
  }

  /** Without a connection or one being opened, the pool forgets the endpoint (it may never be dialled again). */
  private goneIfEmpty(): void {
    if (this.session === undefined && this.connecting === undefined) this.gone(this);
  }
}

function openStream(session: MuxSession): MuxStream {
  const stream = session.open();
  // Either side of a TCP connection may end its bytes first, and the other way stays open.
  stream.allowHalfOpen = true;
  stream.announce();
  return stream;
}

/**
 * The outbound sidecar's pooled tsmesh/tcp-mux connections, per endpoint
 * address:port, expected SPIFFE ID and mesh material (a new certificate or
 * trust bundle opens new connections; the old ones end after their streams).
 */
export class TcpMuxPool {
  private readonly endpoints = new Map<string, EndpointSessions>();

  constructor(
    private readonly meshTls: MeshTls | undefined,
    private readonly idleMs = IDLE_MS,
  ) {}

  /**
   * A stream to `ep` (meshed: it has an identity), or a connection of its own
   * when its proxy does not speak tsmesh/tcp-mux. Rejects as connectEndpoint does.
   */
  open(ep: Endpoint): Promise<MuxStream | Socket> {
    const meshTls = this.meshTls;
    if (ep.identity === undefined || meshTls === undefined) return connectEndpoint(meshTls, ep, MESH_ALPN.tcp) as Promise<Socket>;
    const key = `${meshTls.generation} ${ep.address} ${ep.port} ${ep.identity}`;
    let e = this.endpoints.get(key);
    if (e === undefined) {
      e = new EndpointSessions(meshTls, ep, this.idleMs, (gone) => {
        if (this.endpoints.get(key) === gone) this.endpoints.delete(key);
      });
      this.endpoints.set(key, e);
    }
    return e.open();
  }

  /** Pooled connections now (open ones). */
  get size(): number {
    let n = 0;
    for (const e of this.endpoints.values()) if (e.session !== undefined) n++;
    return n;
  }

  /** Every pooled connection takes no new stream and ends after its last. */
  close(): void {
    for (const e of this.endpoints.values()) e.session?.goAway();
    this.endpoints.clear();
  }
}

/**
 * Joins a TCP connection to a stream until both are done (net/tunnel.ts):
 * half-close passed on, a reset or close of either closes the other, idle for
 * `idleMs` closes both. The bytes read from the socket (fromA) and from the
 * stream (fromB). The stream is resumed here: one paused until the join
 * keeps what came meanwhile.
 */
export function joinStream(socket: Socket, stream: MuxStream, idleMs: number): Promise<SpliceResult> {
  const tunnel = new Tunnel(socket as TunnelSide, stream as TunnelSide, idleMs);
  socket.on('data', (d: Buffer) => tunnel.a.data(d));
  socket.once('end', () => tunnel.a.end());
  socket.once('close', () => tunnel.a.close());
  stream.reader = (d) => tunnel.b.data(d);
  stream.once('end', () => tunnel.b.end());
  stream.once('close', () => tunnel.b.close());
  // A reset of the stream (the peer's app refused or reset the connection, the peer denied the caller, or the
  // pooled connection broke) is reported by its 'close', which closes the socket, as a connection of its own closes.
  stream.on('error', () => undefined);
  if (socket.destroyed) tunnel.a.close();
  if (stream.destroyed) tunnel.b.close();
  stream.resume();
  socket.resume();
  return tunnel.done;
}
