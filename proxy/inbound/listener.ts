// The inbound listener (15006): every TCP connection to the pod arrives here.
// Mesh TLS (a ClientHello offering a tsmesh ALPN) is handed to the mesh
// terminator (mesh-terminator.ts), and each verified caller's connection is
// served by its ALPN: tsmesh/mux, HTTP/1.1, HTTP/2, opaque TCP, or opaque TCP
// connections as streams of one (tsmesh/tcp-mux, each stream authorized and
// counted as a connection). Anything
// else is refused on a port whose mTLS mode is STRICT; on a PERMISSIVE one it
// is served as a caller without a mesh identity: plain HTTP/1.1 and h2c
// through the HTTP path (authorization, the caller-identity headers removed),
// anything else passed to the app as TCP if authorization lets it.
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../../lib/log.js';
import type { MtlsMode } from '../../contract/proxy-config.js';
import type { PortProtocol } from '../../contract/vocabulary.js';
import { createHttpServer, type ProxyHttpServer } from '../http/server.js';
import { createH2Server, type ProxyH2Server } from '../http/h2-server.js';
import { serveFrames, type FrameServer } from '../http/h2-frames.js';
import { readClientHello } from '../net/client-hello-read.js';
import { MuxSession, MuxStream } from '../net/mux.js';
import { portKind, sniff } from '../net/sniff.js';
import { splice, type SpliceResult } from '../net/splice.js';
import { joinStream } from '../net/tcp-mux.js';
import { DEFAULT_PENDING_LIMIT, WaitingConnections } from '../net/waiting.js';
import type { OriginalDestination } from '../orig-dst.js';
import { MESH_ALPN, MESH_ALPN_LIST } from '../tls/alpn.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import type { Handler } from '../http/types.js';
import { createMeshTerminator } from './mesh-terminator.js';
import { tapCallerIdentity } from '../../contract/tap.js';
import { inboundStack, recordFinding, type InboundDeps } from './stack.js';
import { verifiedCaller } from './client-id.js';
import type { Finding } from './authz.js';
import { ERROR_HEADER } from '../../contract/vocabulary.js';
import type { LocalError, RefusalReason } from '../../contract/vocabulary.js';

/** How long a refused plain HTTP client has to read its 403 before the connection is closed. */
const PLAIN_HTTP_LINGER_MS = 1000;

/** A tsmesh/mux connection with no stream open for this long is ended (GOAWAY). */
const MUX_IDLE_MS = 5 * 60_000;

export { MESH_HANDSHAKE_TIMEOUT_MS } from './mesh-terminator.js';

export interface InboundOptions extends InboundDeps {
  log: Logger;
  meshTls: MeshTls;
  /** The mTLS mode of a port of the workload, in the config in force. */
  mtlsMode: (port: number) => MtlsMode;
  originalDestination: (socket: Socket) => OriginalDestination;
  ownPorts: ReadonlySet<number>;
  /** Clients speak first on mesh connections: the first bytes and the whole ClientHello must arrive within this. */
  firstBytesTimeoutMs?: number;
  idleTimeoutMs?: number;
  /**
   * At most this many connections whose caller is not known yet (no whole
   * ClientHello, no finished handshake); more shed the oldest of the source
   * holding the most. Anyone who reaches the pod can open them.
   */
  pendingLimit?: number;
  /** HTTP/1.1 request bodies: the period in which each must bring 1 KiB (http/server.ts). */
  requestBodyTimeoutMs?: number;
  /** The protocol the config declares for a port of this workload; undefined where no Service names it. */
  portProtocol?: (port: number) => PortProtocol | undefined;
}

export interface InboundListener {
  server: Server;
  connections: Set<Socket>;
  http: ProxyHttpServer;
  h2: ProxyH2Server;
  /** Closes connections still in their mTLS handshake (draining). */
  abortHandshakes(): void;
  /** Draining: every tsmesh/mux connection refuses new streams and ends after its last. */
  goAway(): void;
}

// Plain HTTP to a STRICT port gets an answer a person can read, not an empty reply. The request is
// read and dropped until the client closes (closing with unread bytes would reset the connection
// before the answer is read), for a second at most.
function answerPlainHttp(socket: Socket, port: number): void {
  const body =
    `tsmesh: port ${port} of this pod accepts only mutual TLS from a meshed client (mtlsMode STRICT), and this request came in plain HTTP.\n` +
    `Mesh the client (its namespace labelled tsmesh.io/inject=enabled, or its pod injected with tsmesh inject), ` +
    `or set mtlsMode PERMISSIVE for this workload to accept plain text as well.\n`;
  socket.end(
    `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n${ERROR_HEADER}: ${'mtls-required' satisfies LocalError}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  const timer = setTimeout(() => socket.destroy(), PLAIN_HTTP_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy());
  socket.resume();
}

/**
 * Splices a connection, or a tsmesh/tcp-mux stream, to the app's port, counting it and its bytes; the app
 * refusing it closes it (a stream is reset).
 */
async function toApp(opts: InboundOptions, client: Socket | TLSSocket | MuxStream, port: number, tls: boolean, idleMs: number): Promise<void> {
  const labels = { direction: 'inbound', destination_service: opts.serviceLabel(port) } as const;
  const app = netConnect({ host: opts.appAddress, port, allowHalfOpen: true, noDelay: true });
  try {
    await new Promise<void>((resolve, reject) => {
      app.once('connect', resolve);
      app.once('error', reject);
    });
  } catch (e) {
    opts.log.info('the app refused a connection', { port, error: (e as Error).message });
    client.destroy();
    return;
  }
  opts.metrics.tcpOpened.inc({ ...labels, tls: String(tls) });
  let moved: SpliceResult;
  if (client instanceof MuxStream) {
    const fromApp = await joinStream(app, client, idleMs);
    moved = { fromA: fromApp.fromB, fromB: fromApp.fromA };
  } else moved = await splice(client, app, idleMs);
  opts.metrics.tcpClosed.inc({ ...labels, tls: String(tls) });
  opts.metrics.tcpReceived.inc(labels, moved.fromA);
  opts.metrics.tcpSent.inc(labels, moved.fromB);
}

export function createInbound(opts: InboundOptions): InboundListener {
  const connections = new Set<Socket>();
  // One handler per terminated connection: its caller and port are fixed.
  const handlers = new WeakMap<object, Handler>();
  const muxSessions = new Set<MuxSession>();
  const frameServers = new Set<FrameServer>();
  let goingAway = false;
  const idleMs = opts.idleTimeoutMs ?? 3600_000;
  // A WebSocket (an HTTP/1.1 upgrade) idles as long as an opaque TCP connection may.
  const http = createHttpServer({
    log: opts.log,
    handlerFor: (socket) => handlers.get(socket),
    tunnelIdleTimeoutMs: idleMs,
    ...(opts.requestBodyTimeoutMs !== undefined ? { bodyIdleTimeoutMs: opts.requestBodyTimeoutMs } : {}),
  });
  const h2 = createH2Server({ log: opts.log });
  const firstBytesMs = opts.firstBytesTimeoutMs ?? 5000;

  const refuse = (socket: { destroy(): unknown }, reason: RefusalReason): void => {
    opts.metrics.connectionsRefused.inc({ direction: 'inbound', reason });
    socket.destroy();
  };
  const pending = new WaitingConnections(opts.pendingLimit ?? DEFAULT_PENDING_LIMIT, (socket) => refuse(socket, 'overload'));

  /** Whether an opaque TCP connection of `peer` to `port` may go on; a denied one is counted and closed. */
  const tcpAllowed = (socket: { destroy(): unknown }, peer: string, port: number): boolean => {
    const f: Finding | undefined = opts.authorizer().connection(peer, port).tcp;
    if (f === undefined) return true;
    recordFinding(opts, f, peer, port, 'tcp');
    if (f.kind === 'audit') return true;
    refuse(socket, 'unauthorized');
    return false;
  };


  // A verified caller: its connection carries HTTP (one stack per connection, or per tsmesh/mux session) or opaque TCP.
  /** Serves a tsmesh/mux or tsmesh/tcp-mux connection: its streams go to onStream; the session is drained with the listener. */
  const serveMuxSession = (tls: TLSSocket, peer: string, alpn: string, onStream: (stream: MuxStream) => void): void => {
    const session = new MuxSession(tls, {
      onStream,
      onError: (message) => opts.log.warn(`${alpn} protocol error; connection closed`, { peer, error: message }),
      // The client ends a session it no longer uses well before this; this covers one that vanished.
      idleMs: MUX_IDLE_MS,
    });
    muxSessions.add(session);
    tls.once('close', () => muxSessions.delete(session));
    if (goingAway) session.goAway();
  };

  const serveMesh = (tls: TLSSocket, peer: string, port: number): void => {
    if (tls.alpnProtocol === MESH_ALPN.tap) {
      // Tap shows every request of the workload (tap/hub.ts): only the control plane may ask for it.
      if (peer !== tapCallerIdentity(opts.meshTls.trustDomain ?? '')) {
        opts.log.warn('tap refused: only the control plane may tap this proxy', { peer });
        refuse(tls, 'unauthorized');
        return;
      }
      opts.telemetry.tap.serve(tls, opts.log.child('tap'));
      return;
    }
    if (tls.alpnProtocol === MESH_ALPN.tcpMux) {
      // Each stream is one opaque TCP connection of the same caller to the same port, authorized as a connection of
      // its own (a denied one is reset and counted); the caller's first frame opens it at once, for server-first apps.
      serveMuxSession(tls, peer, MESH_ALPN.tcpMux, (stream) => {
        // Held until the app's connection is open: what comes meanwhile waits in the stream, within its window.
        stream.pause();
        if (tcpAllowed(stream, peer, port)) void toApp(opts, stream, port, true, idleMs);
      });
      return;
    }
    // L4 has no request to answer 403 to: a denied caller's connection is closed.
    const carriesHttp = tls.alpnProtocol === MESH_ALPN.mux || tls.alpnProtocol === MESH_ALPN.http1 || tls.alpnProtocol === MESH_ALPN.http2 || tls.alpnProtocol === MESH_ALPN.frames;
    if (!carriesHttp) {
      if (tcpAllowed(tls, peer, port)) void toApp(opts, tls, port, true, idleMs);
      return;
    }
    const ctx = { peerIdentity: peer, port, tls: true, certHash: verifiedCaller(peer, tls.getPeerCertificate().raw).certHash };
    if (tls.alpnProtocol === MESH_ALPN.mux) {
      // Each stream is an HTTP/1.1 connection from the same caller to the same port: one stack serves them all.
      const stack = inboundStack(ctx, opts);
      serveMuxSession(tls, peer, MESH_ALPN.mux, (stream) => {
        handlers.set(stream, stack);
        http.accept(stream as unknown as Socket);
      });
      return;
    }
    if (tls.alpnProtocol === MESH_ALPN.http1) {
      handlers.set(tls, inboundStack(ctx, opts));
      http.accept(tls);
    } else if (tls.alpnProtocol === MESH_ALPN.frames) {
      const frames = serveFrames(tls, inboundStack(ctx, opts), opts.log);
      frameServers.add(frames);
      tls.once('close', () => frameServers.delete(frames));
      if (goingAway) frames.goAway();
    } else {
      h2.accept(tls, inboundStack(ctx, opts));
    }
  };
  const terminator = createMeshTerminator({
    log: opts.log,
    meshTls: opts.meshTls,
    refused: (reason) => opts.metrics.connectionsRefused.inc({ direction: 'inbound', reason }),
    handshaken: (raw) => pending.serve(raw),
    secure: serveMesh,
  });

  const onConnection = async (socket: Socket): Promise<void> => {
    socket.on('error', () => socket.destroy());
    const started = Date.now();
    pending.wait(socket);
    socket.once('close', () => pending.forget(socket));
    let dst: OriginalDestination;
    try {
      dst = opts.originalDestination(socket);
    } catch (e) {
      opts.log.warn('inbound connection without an original destination; closing', { error: (e as Error).message });
      refuse(socket, 'no-original-destination');
      return;
    }
    // A connection to a port of the proxy's own is a loop, but for the control plane's tap, which
    // dials the inbound port itself (a pod may serve no port a Service names): a ClientHello that
    // offers tsmesh/tap alone.
    const ownPort = opts.ownPorts.has(dst.port);
    const sniffed = await sniff(socket, firstBytesMs);
    if (sniffed.protocol === 'closed') {
      socket.destroy();
      return;
    }
    if (sniffed.protocol === 'tls') {
      // One deadline for the first bytes and the whole ClientHello: a trickled hello gets no fresh timer.
      const hello = await readClientHello(socket, sniffed.head, Math.max(0, started + firstBytesMs - Date.now()));
      if (socket.destroyed) return;
      const mesh = hello.kind === 'client-hello' && (ownPort ? hello.alpn.length === 1 && hello.alpn[0] === MESH_ALPN.tap : hello.alpn.some((p) => MESH_ALPN_LIST.includes(p)));
      if (mesh) {
        if (!opts.meshTls.ready) {
          refuse(socket, 'no-certificate');
          return;
        }
        terminator.terminate(socket, dst.port);
        return;
      }
    }
    if (ownPort) {
      refuse(socket, 'loop');
      return;
    }
    if (opts.mtlsMode(dst.port) === 'STRICT') {
      if (sniffed.protocol === 'silent') {
        refuse(socket, 'first-bytes-timeout');
      } else if (sniffed.protocol === 'http1') {
        opts.metrics.connectionsRefused.inc({ direction: 'inbound', reason: 'plaintext' });
        pending.forget(socket);
        answerPlainHttp(socket, dst.port);
      } else {
        refuse(socket, 'plaintext');
      }
      return;
    }
    // PERMISSIVE: a caller without a mesh identity. HTTP goes through the HTTP path like a mesh caller's;
    // on a port declared http or http2 everything but HTTP/2 does (the HTTP/1.1 server answers 400 to
    // bytes that are not a request), never spliced to the app past the HTTP policies (net/sniff.ts).
    pending.serve(socket);
    if (sniffed.protocol === 'http1' || (sniffed.protocol !== 'http2' && portKind(opts.portProtocol?.(dst.port)) === 'declared-http')) {
      handlers.set(socket, inboundStack({ peerIdentity: '', port: dst.port, tls: false }, opts));
      http.accept(socket);
      socket.resume();
      return;
    }
    if (sniffed.protocol === 'http2') {
      h2.accept(socket, inboundStack({ peerIdentity: '', port: dst.port, tls: false }, opts));
      return;
    }
    if (tcpAllowed(socket, '', dst.port)) await toApp(opts, socket, dst.port, false, idleMs);
  };

  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    onConnection(socket).catch((e: unknown) => {
      opts.log.error('inbound connection handling failed', { error: (e as Error).message });
      socket.destroy();
    });
  });
  server.once('close', () => terminator.close());
  return {
    server,
    connections,
    http,
    h2,
    abortHandshakes: () => terminator.abortHandshakes(),
    goAway() {
      goingAway = true;
      for (const session of muxSessions) session.goAway();
      for (const frames of frameServers) frames.goAway();
    },
  };
}
