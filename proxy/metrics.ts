// The proxy's Prometheus metrics: names and labels as DESIGN.md fixes them.
import { Counter, Gauge, Registry } from '../lib/prom.js';
import { HotCounter, HotHistogram } from '../lib/prom-hot.js';
import { proxyMuxBudget } from './net/mux.js';

export type Direction = 'inbound' | 'outbound';

export interface ProxyMetrics {
  registry: Registry;
  /** Counted on every request: prom-client compatible, with no per-call label hashing (lib/prom-hot.ts). */
  requests: HotCounter<'direction' | 'source_identity' | 'destination_identity' | 'destination_service' | 'response_code' | 'tls'>;
  requestDuration: HotHistogram<'direction' | 'destination_service' | 'response_code'>;
  retries: Counter<'destination_service' | 'reason'>;
  retryBudgetExhausted: Counter<'destination_service'>;
  endpointEjections: Counter<'destination_service'>;
  faultsInjected: Counter<'destination_service' | 'kind'>;
  /** Inbound requests (protocol http) and connections (protocol tcp) refused by authorization. */
  authzDenials: Counter<'source_identity' | 'port' | 'protocol'>;
  tcpOpened: Counter<'direction' | 'destination_service' | 'tls'>;
  tcpClosed: Counter<'direction' | 'destination_service' | 'tls'>;
  tcpSent: Counter<'direction' | 'destination_service'>;
  tcpReceived: Counter<'direction' | 'destination_service'>;
  configUpdates: Counter;
  /** Connections refused before any request: mTLS mode, loops, bad input. */
  connectionsRefused: Counter<'direction' | 'reason'>;
  /** The process's tsmesh/mux budget (net/mux.ts), read when scraped: bytes held for paused readers. */
  muxBuffered: Gauge;
  /** Streams tsmesh/mux refused because that budget was spent. */
  muxStreamsRefused: Counter;
  /**
   * HTTP requests the proxy ended itself, by why: the x-tsmesh-error of its
   * answer (overloaded, timeout, circuit-open, connect-failure, ...), or
   * cancelled when the caller went away first (also counted in
   * tsmesh_requests_total with response_code "0", as Istio counts DC).
   */
  httpErrors: Counter<'direction' | 'destination_service' | 'error'>;
  /** 503 overloaded answers, by the bound that turned the request away (http/limits.ts). */
  overloadRejections: Counter<'direction' | 'destination_service' | 'limit'>;
  /** Endpoints out of service now (ejected or being probed), read when scraped from `ejectedSource`. */
  endpointsEjected: Gauge<'destination_service'>;
  /** Set by the sidecar: ejected endpoints per destination service. */
  ejectedSource: (() => ReadonlyMap<string, number>) | undefined;
}

export function createProxyMetrics(registry = new Registry()): ProxyMetrics {
  const r = [registry];
  const metrics: ProxyMetrics = {
    registry,
    requests: new HotCounter({
      name: 'tsmesh_requests_total',
      help: 'HTTP requests handled by the proxy.',
      labelNames: ['direction', 'source_identity', 'destination_identity', 'destination_service', 'response_code', 'tls'],
      registers: r,
    }),
    requestDuration: new HotHistogram({
      name: 'tsmesh_request_duration_seconds',
      help: 'Time from the request arriving at the proxy to the response head leaving it.',
      labelNames: ['direction', 'destination_service', 'response_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    retries: new Counter({ name: 'tsmesh_retries_total', help: 'Requests retried, by why.', labelNames: ['destination_service', 'reason'], registers: r }),
    retryBudgetExhausted: new Counter({
      name: 'tsmesh_retry_budget_exhausted_total',
      help: 'Retries not made because the retry budget was spent.',
      labelNames: ['destination_service'],
      registers: r,
    }),
    endpointEjections: new Counter({
      name: 'tsmesh_endpoint_ejections_total',
      help: 'Endpoints ejected by the circuit breaker.',
      labelNames: ['destination_service'],
      registers: r,
    }),
    faultsInjected: new Counter({
      name: 'tsmesh_faults_injected_total',
      help: 'Faults injected by policy, by kind (abort, delay).',
      labelNames: ['destination_service', 'kind'],
      registers: r,
    }),
    authzDenials: new Counter({
      name: 'tsmesh_authz_denials_total',
      help: 'Inbound requests (http) and connections (tcp) denied by authorization policy.',
      labelNames: ['source_identity', 'port', 'protocol'],
      registers: r,
    }),
    tcpOpened: new Counter({ name: 'tsmesh_tcp_connections_opened_total', help: 'TCP connections opened.', labelNames: ['direction', 'destination_service', 'tls'], registers: r }),
    tcpClosed: new Counter({ name: 'tsmesh_tcp_connections_closed_total', help: 'TCP connections closed.', labelNames: ['direction', 'destination_service', 'tls'], registers: r }),
    tcpSent: new Counter({ name: 'tsmesh_tcp_sent_bytes_total', help: 'Bytes sent to the peer of the connection.', labelNames: ['direction', 'destination_service'], registers: r }),
    tcpReceived: new Counter({ name: 'tsmesh_tcp_received_bytes_total', help: 'Bytes received from the peer of the connection.', labelNames: ['direction', 'destination_service'], registers: r }),
    configUpdates: new Counter({ name: 'tsmesh_config_updates_total', help: 'Configs taken into use.', registers: r }),
    connectionsRefused: new Counter({
      name: 'tsmesh_connections_refused_total',
      help: 'Connections closed before any request, by reason.',
      labelNames: ['direction', 'reason'],
      registers: r,
    }),
    muxBuffered: new Gauge({
      name: 'tsmesh_mux_buffered_bytes',
      help: `Bytes tsmesh/mux holds for paused readers in the whole proxy (its budget: ${proxyMuxBudget.limit} bytes).`,
      registers: r,
      collect() {
        this.set(proxyMuxBudget.buffered);
      },
    }),
    muxStreamsRefused: new Counter({
      name: 'tsmesh_mux_streams_refused_total',
      help: 'tsmesh/mux streams refused because the memory they may hold was spent.',
      registers: r,
      collect() {
        this.reset();
        this.inc(proxyMuxBudget.refusedStreams);
      },
    }),
    httpErrors: new Counter({
      name: 'tsmesh_http_errors_total',
      help: 'HTTP requests the proxy ended itself, by error: its x-tsmesh-error, or cancelled when the caller went away first.',
      labelNames: ['direction', 'destination_service', 'error'],
      registers: r,
    }),
    overloadRejections: new Counter({
      name: 'tsmesh_overload_rejections_total',
      help: 'Requests answered 503 overloaded, by the limit that turned them away.',
      labelNames: ['direction', 'destination_service', 'limit'],
      registers: r,
    }),
    endpointsEjected: new Gauge({
      name: 'tsmesh_endpoints_ejected',
      help: 'Endpoints the circuit breaker holds out of service now (ejected or being probed).',
      labelNames: ['destination_service'],
      registers: r,
      collect() {
        this.reset();
        for (const [service, n] of metrics.ejectedSource?.() ?? []) this.set({ destination_service: service }, n);
      },
    }),
    ejectedSource: undefined,
  };
  return metrics;
}
