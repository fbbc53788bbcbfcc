// The outbound listener (15001): every TCP connection the app opens arrives
// here. Unknown destinations are egress (egress.ts: passed through, counted,
// refused in registry-only mode); a meshed service gets L7
// HTTP/1.1 handling, or L4 mTLS for opaque ports and protocols. A service is
// known by its ClusterIP:port and by its meshed endpoints' own address:port
// (pod IPs: headless Services, StatefulSet pods' names), then pinned to that
// endpoint; another port of a meshed pod is carried as opaque TCP over mTLS
// to that pod (config/table.ts).
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../lib/log.js';
import { lookupTarget, type MeshedPod, type ServiceTarget } from '../config/table.js';
import { createHttpServer, type ProxyHttpServer } from '../http/server.js';
import { createH2Server, type ProxyH2Server } from '../http/h2-server.js';
import { localResponse, type Handler } from '../http/types.js';
import { portKind, sniff, type PortKind, type Sniffed } from '../net/sniff.js';
import { MuxStream } from '../net/mux.js';
import { splice, type SpliceResult } from '../net/splice.js';
import { joinStream, TcpMuxPool } from '../net/tcp-mux.js';
import { DEFAULT_PENDING_LIMIT, WaitingConnections } from '../net/waiting.js';
import type { OriginalDestination } from '../orig-dst.js';
import { Egress } from './egress.js';
import { outboundStack, type OutboundDeps } from './stack.js';

export const PASSTHROUGH = 'passthrough';

export interface OutboundOptions extends OutboundDeps {
  log: Logger;
  /** Reads where the app meant to go (SO_ORIGINAL_DST in a pod). */
  originalDestination: (socket: Socket) => OriginalDestination;
  /** Ports of this proxy's own listeners: a connection "to" them would loop. */
  ownPorts: ReadonlySet<number>;
  /** How long to wait for the client's first bytes before treating the protocol as server-first. */
  sniffTimeoutMs?: number;
  /**
   * Ports, as dialled, carried to a mesh destination as opaque TCP with no protocol detection (the pod's
   * tsmesh.io/opaque-ports): a server-first protocol there waits for no sniff timeout.
   */
  opaquePorts?: ReadonlySet<number>;
  /** TCP connections idle this long are closed. */
  idleTimeoutMs?: number;
  /**
   * At most this many connections still being sniffed; more shed the oldest.
   * A client that speaks first is sniffed at once, a server-first one waits
   * the sniff timeout: the default allows 1,024 new server-first connections
   * a second.
   */
  pendingLimit?: number;
  /** HTTP/1.1 request bodies: the period in which each must bring 1 KiB (http/server.ts). */
  requestBodyTimeoutMs?: number;
}

export interface OutboundListener {
  server: Server;
  /** Active connections, for draining. */
  connections: Set<Socket>;
  /** Handles a connection whose destination is already known (explicit outbound ports, without iptables). */
  accept(socket: Socket, destination?: OriginalDestination): void;
  http: ProxyHttpServer;
  h2: ProxyH2Server;
  /** Connections to destinations outside the mesh; close() ends its pools. */
  egress: Egress;
  /** The pooled tsmesh/tcp-mux connections that carry opaque TCP to meshed endpoints; close() ends them after their streams. */
  tcpMux: TcpMuxPool;
}

const DEFAULT_SNIFF_TIMEOUT_MS = 1000;

/** Where the app meant to go, with its routing table key made once per connection. */
interface Dialled {
  address: string;
  port: number;
  key: string;
}
const noRoute: Handler = () => Promise.resolve(localResponse(503, 'no-route', 'tsmesh: the service is gone from the config'));
const DEFAULT_IDLE_MS = 3600_000;

export function createOutbound(opts: OutboundOptions): OutboundListener {
  const connections = new Set<Socket>();
  const handlers = new WeakMap<ServiceTarget, Handler>();
  // Per connection, the address the app dialled; the target is looked up per
  // request, so a keep-alive connection follows config changes.
  const dialled = new WeakMap<object, Dialled>();
  // Per connection to a destination outside the mesh that egress serves as HTTP: its requests' handler.
  const egressHttp = new WeakMap<object, Handler>();
  const http = createHttpServer({
    log: opts.log,
    handlerFor: (socket) => {
      const dst = dialled.get(socket);
      return dst === undefined ? egressHttp.get(socket) : handlerFor(dst);
    },
    // A WebSocket (an HTTP/1.1 upgrade) idles as long as an opaque TCP connection may.
    tunnelIdleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_MS,
    ...(opts.requestBodyTimeoutMs !== undefined ? { bodyIdleTimeoutMs: opts.requestBodyTimeoutMs } : {}),
  });
  const h2 = createH2Server({ log: opts.log });
  function handlerFor(dst: Dialled): Handler | undefined {
    const target = lookupTarget(opts.table(), dst.address, dst.port, dst.key);
    if (!target) return undefined;
    let h = handlers.get(target);
    if (!h) handlers.set(target, (h = outboundStack(target, opts)));
    return h;
  }
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
  const sniffTimeoutMs = opts.sniffTimeoutMs ?? DEFAULT_SNIFF_TIMEOUT_MS;
  const egress = new Egress({ log: opts.log, metrics: opts.metrics, sniffTimeoutMs });
  const sniffing = new WaitingConnections(opts.pendingLimit ?? DEFAULT_PENDING_LIMIT, (socket) => {
    opts.metrics.connectionsRefused.inc({ direction: 'outbound', reason: 'overload' });
    socket.destroy();
  });

  const tcpMux = new TcpMuxPool(opts.meshTls);

  /**
   * Splices the app's connection to the connection or tsmesh/tcp-mux stream `connectTo` opens; the bytes each
   * way, or undefined when it could not open.
   */
  const tcp = async (socket: Socket, serviceLabel: string, connectTo: () => Promise<Socket | MuxStream>, tls: boolean): Promise<SpliceResult | undefined> => {
    const labels = { direction: 'outbound', destination_service: serviceLabel } as const;
    let upstream: Socket | MuxStream;
    try {
      upstream = await connectTo();
    } catch (e) {
      opts.log.info('outbound connection failed', { destination: serviceLabel, error: (e as Error).message });
      socket.destroy();
      return undefined;
    }
    opts.metrics.tcpOpened.inc({ ...labels, tls: String(tls) });
    const moved = upstream instanceof MuxStream ? await joinStream(socket, upstream, idleMs) : await splice(socket, upstream, idleMs);
    opts.metrics.tcpClosed.inc({ ...labels, tls: String(tls) });
    opts.metrics.tcpSent.inc(labels, moved.fromA);
    opts.metrics.tcpReceived.inc(labels, moved.fromB);
    return moved;
  };

  // Balanced per connection: "in flight" counts open connections, latency is the connect time.
  // No probes of ejected endpoints here: only HTTP outcomes feed the breaker.
  const meshTcp = (socket: Socket, target: ServiceTarget): Promise<void> => {
    const balancer = opts.traffic.balancer(target);
    const s = balancer.pick(false);
    if (!s) {
      opts.log.info('no ready endpoints', { service: target.key });
      socket.destroy();
      return Promise.resolve();
    }
    const { ep } = s;
    const clock = opts.traffic.scheduler;
    const started = clock.now();
    s.pending++;
    const connectTo = (): Promise<Socket | MuxStream> =>
      tcpMux.open(ep).then(
        (upstream) => (balancer.observe(s, clock.now() - started, true), upstream),
        (e: unknown) => {
          balancer.observe(s, clock.now() - started, false);
          throw e;
        },
      );
    return tcp(socket, target.key, connectTo, ep.identity !== undefined).then(
      (moved) => {
        s.pending--;
        // The app sent and the endpoint gave nothing back before the connection ended: most often
        // its proxy could not reach its app (stopping, restarting), which it can only show by
        // closing. Recorded as no answer, so the next connections go to the other endpoints.
        if (moved !== undefined && moved.fromA > 0 && moved.fromB === 0) balancer.observe(s, 0, false);
      },
      () => void s.pending--,
    );
  };

  // A port of a meshed pod that no Service names: the pod's sidecar requires mTLS, so L4 over mTLS
  // with the pod's identity, to that pod and port (no balancing: the app chose both).
  const podTcp = (socket: Socket, pod: MeshedPod, port: number): Promise<unknown> =>
    tcp(socket, pod.key, () => tcpMux.open({ address: pod.address, port, identity: pod.identity }), true);

  /** Sniffs a connection, counted among those waiting (the oldest shed past the limit). */
  const sniffWaiting = async (socket: Socket, kind: PortKind): Promise<Sniffed> => {
    sniffing.wait(socket);
    try {
      return await sniff(socket, sniffTimeoutMs, kind);
    } finally {
      sniffing.forget(socket);
    }
  };

  const onConnection = async (socket: Socket, known?: OriginalDestination): Promise<void> => {
    socket.on('error', () => socket.destroy());
    let dst: OriginalDestination;
    try {
      dst = known ?? opts.originalDestination(socket);
    } catch (e) {
      opts.metrics.connectionsRefused.inc({ direction: 'outbound', reason: 'no-original-destination' });
      opts.log.warn('outbound connection without an original destination; closing', { error: (e as Error).message });
      socket.destroy();
      return;
    }
    if (opts.ownPorts.has(dst.port) && (dst.address === socket.localAddress || dst.address.startsWith('127.') || dst.address === '::1')) {
      opts.metrics.connectionsRefused.inc({ direction: 'outbound', reason: 'loop' });
      socket.destroy();
      return;
    }
    const table = opts.table();
    const to: Dialled = { address: dst.address, port: dst.port, key: `${dst.address}:${dst.port}` };
    const target = lookupTarget(table, to.address, to.port, to.key);
    if (!target) {
      const pod = table.pods.get(dst.address);
      if (pod?.opaqueMtls(dst.port)) await podTcp(socket, pod, dst.port);
      else
        await egress.connection(socket, dst, table.config, () => sniffWaiting(socket, 'auto'), {
          passthrough: () => tcp(socket, PASSTHROUGH, () => dial(dst), false),
          http: (handler) => {
            egressHttp.set(socket, handler);
            http.accept(socket);
            socket.resume();
          },
        });
      return;
    }
    if (target.port.protocol === 'tcp' || opts.opaquePorts?.has(dst.port)) {
      await meshTcp(socket, target);
      return;
    }
    // A port declared HTTP is never carried as opaque TCP: what is not HTTP/2 goes to the HTTP/1.1
    // server, which answers 400 to bytes that cannot begin a request and 408 to a head that stops,
    // and closes a silent connection at its header timeout (L4 would open an mTLS connection to an
    // endpoint for each, and skip every HTTP policy). net/sniff.ts has the rule of detected ports.
    const kind = portKind(target.port.protocol);
    const declared = kind === 'declared-http';
    const sniffed = await sniffWaiting(socket, kind);
    if (sniffed.protocol === 'closed' || socket.destroyed) {
      socket.destroy();
    } else if (sniffed.protocol === 'http2') {
      // One HTTP/2 connection carries many requests: the target is resolved per request.
      h2.accept(socket, (req) => (handlerFor(to) ?? noRoute)(req));
    } else if (sniffed.protocol === 'http1' || declared) {
      dialled.set(socket, to);
      http.accept(socket);
      socket.resume();
    } else {
      // On a detected port: TLS originated by the app, server-first and other protocols: L4 over mTLS.
      await meshTcp(socket, target);
    }
  };

  const accept = (socket: Socket, destination?: OriginalDestination): void => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    onConnection(socket, destination).catch((e: unknown) => {
      opts.log.error('outbound connection handling failed', { error: (e as Error).message });
      socket.destroy();
    });
  };
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => accept(socket));
  // Draining closed the listener and its connections: the pooled connections end after their last streams.
  server.once('close', () => tcpMux.close());
  return { server, connections, http, h2, accept, egress, tcpMux };
}

function dial(dst: OriginalDestination): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: dst.address, port: dst.port, allowHalfOpen: true, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
