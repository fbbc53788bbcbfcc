// Assembles the sidecar: identity -> TLS material, config -> routing table,
// the outbound and inbound listeners, and draining on shutdown. The proxy
// process (proxy/process.ts) and the tests both start it through here.
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Logger } from '../lib/log.js';
import { buildRoutingTable, type RoutingTable, type ServiceTarget } from './config/table.js';
import type { ConfigSource } from './config/source.js';
import type { ProxyConfig } from '../contract/proxy-config.js';
import { EndpointPools } from './http/forward.js';
import { H2Sessions } from './http/h2-forward.js';
import { ALLOW_ALL, compileAuthorization, inboundMtlsMode, type Authorizer } from './inbound/authz.js';
import type { IdentitySource } from './identity/types.js';
import { createInbound } from './inbound/listener.js';
import { createProxyMetrics, type ProxyMetrics } from './metrics.js';
import { originalDestination as soOriginalDst, type OriginalDestination } from './orig-dst.js';
import { createOutbound } from './outbound/listener.js';
import { TrafficState, type TrafficStateOptions } from './outbound/traffic-state.js';
import { Telemetry, type TelemetryOptions } from './telemetry/state.js';
import { createTapCounters, TapHub } from './tap/hub.js';
import { parseWorkloadSpiffeId } from '../contract/spiffe.js';
import { MeshTls } from './tls/mesh-tls.js';
import { DEFAULT_TRUST_DOMAIN } from '../contract/spiffe.js';

/**
 * The accept queue of the proxy's ports: node's default (511) overflowed when
 * a thousand connections came at once (dropped SYNs, each a 1 s retransmit
 * for a legitimate caller behind them); the kernel caps it at somaxconn.
 */
export const LISTEN_BACKLOG = 4096;

export interface SidecarOptions {
  identity: IdentitySource;
  config: ConfigSource;
  log: Logger;
  metrics?: ProxyMetrics;
  host?: string;
  outboundPort?: number;
  inboundPort?: number;
  /** Ports the proxy owns (admin included), never forwarded to. */
  reservedPorts?: readonly number[];
  /** Ports the app dials that are carried as opaque TCP, never sniffed (TSMESH_OPAQUE_PORTS). */
  opaquePorts?: readonly number[];
  /** Where the app listens (127.0.0.1 in a pod). */
  appAddress?: string;
  /** SO_ORIGINAL_DST by default; tests on loopback pass their own. */
  outboundOriginalDestination?: (socket: Socket) => OriginalDestination;
  inboundOriginalDestination?: (socket: Socket) => OriginalDestination;
  /** Clock and randomness of traffic management (tests). */
  traffic?: TrafficStateOptions;
  /** Span export: the pod's name for the spans' resource; the sampling's randomness, the tracer's tuning and where access log lines go (tests). */
  telemetry?: { podName?: string | undefined } & Pick<TelemetryOptions, 'random' | 'tracerTuning' | 'accessLogSink'>;
  /**
   * Where iptables cannot redirect (no root): extra outbound listeners, each
   * standing for one destination the app would have dialled.
   */
  explicitOutbound?: readonly { port: number; destination: OriginalDestination }[];
  /** HTTP/1.1 request bodies: the period in which each must bring 1 KiB (TSMESH_REQUEST_BODY_TIMEOUT; http/server.ts). */
  requestBodyTimeoutMs?: number;
  /** Outbound: how long a request sent whole waits for its response's head where its route sets no timeout (TSMESH_RESPONSE_HEAD_TIMEOUT, its default when absent; 0: no bound; http/timeout.ts). */
  responseHeadTimeoutMs?: number;
  /** Outbound HTTP/2 to meshed endpoints as tsmesh/h2f frames instead of tsmesh/h2 (TSMESH_H2_FRAMES; http/h2-frames.ts). */
  h2Frames?: boolean;
}

export interface Sidecar {
  outboundPort: number;
  inboundPort: number;
  /** The ports of `explicitOutbound`, in order. */
  explicitOutboundPorts: number[];
  metrics: ProxyMetrics;
  meshTls: MeshTls;
  /** The telemetry settings in force and the tracer. */
  telemetry: Telemetry;
  /** The config in force (for /config). */
  config(): ProxyConfig | undefined;
  /** Client connections open on the outbound and inbound listeners. */
  openConnections(): number;
  /** Stops accepting, waits up to `graceMs` for open connections, then closes the rest. */
  drain(graceMs: number): Promise<void>;
}

const EMPTY_TABLE: RoutingTable = buildRoutingTable({
  apiVersion: 'tsmesh.io/v1alpha1',
  kind: 'ProxyConfig',
  version: '',
  mesh: { trustDomain: DEFAULT_TRUST_DOMAIN, mtlsMode: 'STRICT', retryBudget: { ratio: 0.2, minRetriesPerSecond: 10, ttl: '10s' } },
  services: [],
  inbound: {},
});

export async function startSidecar(opts: SidecarOptions): Promise<Sidecar> {
  const { log } = opts;
  const metrics = opts.metrics ?? createProxyMetrics();
  const meshTls = new MeshTls(opts.identity);
  const pools = new EndpointPools(meshTls);
  const appPools = new EndpointPools(undefined);
  const h2 = new H2Sessions(meshTls, opts.h2Frames === true);
  const appH2 = new H2Sessions(undefined);
  const appAddress = opts.appAddress ?? '127.0.0.1';

  const traffic = new TrafficState(opts.traffic);
  const telemetry = new Telemetry({
    log: log.child('telemetry'),
    counters: { exported: (n) => metrics.spansExported.inc(n), dropped: (reason, n) => metrics.spansDropped.inc({ reason }, n) },
    workload: () => {
      const w = meshTls.identity === undefined ? undefined : parseWorkloadSpiffeId(meshTls.identity);
      return { serviceName: w ? `${w.serviceAccount}.${w.namespace}` : 'tsmesh-proxy', namespace: w?.namespace, podName: opts.telemetry?.podName };
    },
    ...(opts.telemetry?.random ? { random: opts.telemetry.random } : {}),
    ...(opts.telemetry?.tracerTuning ? { tracerTuning: opts.telemetry.tracerTuning } : {}),
    ...(opts.telemetry?.accessLogSink ? { accessLogSink: opts.telemetry.accessLogSink } : {}),
    tap: new TapHub({ counters: createTapCounters(metrics.registry), podName: opts.telemetry?.podName }),
  });
  metrics.ejectedSource = () => traffic.ejected();
  metrics.handshakesSource = () => meshTls.handshakes;
  let table = EMPTY_TABLE;
  let authorizer: Authorizer = ALLOW_ALL;
  // destination_service of inbound requests: the service whose endpoint this workload is, by port;
  // where several are, the one a caller dialling the pod's address gets (config/table.ts).
  // Its port's protocol, as the outbound side of a caller takes it: a port declared HTTP is never opaque.
  let inboundServices = new Map<number, ServiceTarget>();
  const servedServices = (): Map<number, ServiceTarget> => {
    const me = meshTls.identity;
    const out = new Map<number, ServiceTarget>();
    if (me) for (const pod of table.pods.values()) for (const p of pod.ports) if (p.endpoint.identity === me && !out.has(p.port)) out.set(p.port, p.target);
    return out;
  };
  // Authorization by namespace or service account holds for callers of this workload's own trust domain only.
  let authorizedDomain: string | undefined;
  const compileAuthorizer = (c: ProxyConfig): void => {
    authorizedDomain = meshTls.trustDomain ?? c.mesh.trustDomain;
    authorizer = compileAuthorization(c, authorizedDomain);
  };
  const apply = (c: ProxyConfig): void => {
    table = buildRoutingTable(c);
    compileAuthorizer(c);
    traffic.retain(table);
    inboundServices = servedServices();
    if (c.trustBundle) meshTls.setStreamedRoots(c.trustBundle, c.retiredRoots);
    // Connections to endpoints that left the config close; a meshed one that is not ready stays
    // reachable by its own address (a headless Service may publish it).
    const endpoints = [...table.byName.values()].flatMap((ports) => [...ports.values()].flatMap((t) => t.endpoints));
    for (const pod of table.pods.values()) for (const p of pod.ports) if (p.endpoint.endpoint.ready === false) endpoints.push(p.endpoint);
    pools.retain(endpoints);
    h2.retain(endpoints);
    telemetry.apply(c);
    metrics.configUpdates.inc();
    log.info('config in force', { version: c.version, services: c.services.length });
  };
  const stopRecompute = meshTls.onRotate(() => {
    inboundServices = servedServices();
    if (table !== EMPTY_TABLE && meshTls.trustDomain !== authorizedDomain) compileAuthorizer(table.config);
  });
  const outboundLog = log.child('outbound');
  const stopRefusals = meshTls.onPeerRefused((r) => {
    metrics.connectionsRefused.inc({ direction: 'outbound', reason: r.reason });
    const fields = { direction: 'outbound', endpoint: r.where, identity: r.expected, ...(r.rule ? { rule: r.rule } : {}), error: r.error };
    if (r.reason === 'tls-handshake') outboundLog.info('outbound mTLS handshake failed', fields);
    else outboundLog.warn("outbound mTLS refused: the endpoint's certificate is not an X.509-SVID of this mesh naming its identity", fields);
  });
  const first = opts.config.current();
  if (first) apply(first);
  const unsubscribe = opts.config.onChange(apply);

  const reserved = new Set(opts.reservedPorts ?? []);
  const outbound = createOutbound({
    log: outboundLog,
    metrics,
    pools,
    h2,
    meshTls,
    table: () => table,
    traffic,
    telemetry,
    originalDestination: opts.outboundOriginalDestination ?? soOriginalDst,
    ownPorts: reserved,
    opaquePorts: new Set(opts.opaquePorts ?? []),
    ...(opts.requestBodyTimeoutMs !== undefined ? { requestBodyTimeoutMs: opts.requestBodyTimeoutMs } : {}),
    ...(opts.responseHeadTimeoutMs !== undefined ? { responseHeadTimeoutMs: opts.responseHeadTimeoutMs } : {}),
  });
  const inbound = createInbound({
    log: log.child('inbound'),
    metrics,
    meshTls,
    appPools,
    appH2,
    appAddress,
    localIdentity: () => meshTls.identity ?? '',
    serviceLabel: (port) => inboundServices.get(port)?.key ?? '',
    portProtocol: (port) => inboundServices.get(port)?.port.protocol,
    authorizer: () => authorizer,
    telemetry,
    mtlsMode: (port) => inboundMtlsMode(table.config, port),
    originalDestination: opts.inboundOriginalDestination ?? soOriginalDst,
    ownPorts: reserved,
    ...(opts.requestBodyTimeoutMs !== undefined ? { requestBodyTimeoutMs: opts.requestBodyTimeoutMs } : {}),
  });
  const host = opts.host ?? '0.0.0.0';
  const listen = async (server: Server, port: number): Promise<number> => {
    server.listen({ port, host, backlog: LISTEN_BACKLOG });
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  const explicit = (opts.explicitOutbound ?? []).map(({ destination }) => createServer({ allowHalfOpen: true, noDelay: true }, (socket) => outbound.accept(socket, destination)));
  const explicitOutboundPorts: number[] = [];
  let outboundPort: number, inboundPort: number;
  try {
    outboundPort = await listen(outbound.server, opts.outboundPort ?? 15001);
    inboundPort = await listen(inbound.server, opts.inboundPort ?? 15006);
    reserved.add(outboundPort).add(inboundPort);
    for (const [i, server] of explicit.entries()) explicitOutboundPorts.push(await listen(server, opts.explicitOutbound![i]!.port));
  } catch (e) {
    // A port that is taken fails the start and leaves nothing behind: no listener, no subscription.
    unsubscribe();
    stopRecompute();
    stopRefusals();
    for (const server of [outbound.server, inbound.server, ...explicit]) if (server.listening) server.close();
    meshTls.close();
    throw e;
  }

  return {
    outboundPort,
    inboundPort,
    explicitOutboundPorts,
    metrics,
    meshTls,
    telemetry,
    config: () => (table === EMPTY_TABLE ? undefined : table.config),
    openConnections: () => outbound.connections.size + inbound.connections.size,
    async drain(graceMs) {
      unsubscribe();
      stopRecompute();
      stopRefusals();
      if (outbound.server.listening) outbound.server.close();
      if (inbound.server.listening) inbound.server.close();
      for (const server of explicit) if (server.listening) server.close();
      const open = (): number => outbound.connections.size + inbound.connections.size;
      const deadline = Date.now() + graceMs;
      inbound.abortHandshakes();
      inbound.goAway();
      while (open() > 0 && Date.now() < deadline) {
        // Keep-alive connections close as soon as they fall idle.
        outbound.http.drain();
        inbound.http.drain();
        outbound.h2.drain();
        inbound.h2.drain();
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const s of [...outbound.connections, ...inbound.connections]) s.destroy();
      await Promise.all([pools.close(), appPools.close(), h2.close(), appH2.close(), outbound.egress.close()]);
      await telemetry.close();
      meshTls.close();
      log.info('drained', { leftOpen: open() });
    },
  };
}
