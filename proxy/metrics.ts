// The proxy's Prometheus families, created from the catalogue in contract/metrics.ts.
import { Counter, Gauge, Registry } from '../lib/prom.js';
import { HotCounter, HotHistogram } from '../lib/prom-hot.js';
import { proxyMuxBudget } from './net/mux.js';
import { family, type LabelOf } from '../contract/metrics.js';

import type { Direction } from '../contract/vocabulary.js';

export type { Direction };

export interface ProxyMetrics {
  registry: Registry;
  /** Counted on every request: prom-client compatible, with no per-call label hashing (lib/prom-hot.ts). */
  requests: HotCounter<LabelOf<'tsmesh_requests_total'>>;
  requestDuration: HotHistogram<LabelOf<'tsmesh_request_duration_seconds'>>;
  retries: Counter<LabelOf<'tsmesh_retries_total'>>;
  retryBudgetExhausted: Counter<LabelOf<'tsmesh_retry_budget_exhausted_total'>>;
  endpointEjections: Counter<LabelOf<'tsmesh_endpoint_ejections_total'>>;
  faultsInjected: Counter<LabelOf<'tsmesh_faults_injected_total'>>;
  mirrors: Counter<LabelOf<'tsmesh_mirrors_total'>>;
  /** Inbound requests (protocol http) and connections (protocol tcp) refused by authorization. */
  authzDenials: Counter<LabelOf<'tsmesh_authz_denials_total'>>;
  /** Inbound requests and connections an AUDIT policy's rule matched (they went on). */
  authzAudits: Counter<LabelOf<'tsmesh_authz_audits_total'>>;
  tcpOpened: Counter<LabelOf<'tsmesh_tcp_connections_opened_total'>>;
  tcpClosed: Counter<LabelOf<'tsmesh_tcp_connections_closed_total'>>;
  tcpSent: Counter<LabelOf<'tsmesh_tcp_sent_bytes_total'>>;
  tcpReceived: Counter<LabelOf<'tsmesh_tcp_received_bytes_total'>>;
  configUpdates: Counter;
  /** Connections refused before any request: mTLS mode, loops, bad input. */
  connectionsRefused: Counter<LabelOf<'tsmesh_connections_refused_total'>>;
  /** The process's tsmesh/mux budget (net/mux.ts), read when scraped: bytes held for paused readers. */
  muxBuffered: Gauge;
  /** Streams tsmesh/mux refused because that budget was spent. */
  muxStreamsRefused: Counter;
  /** Mesh mTLS handshakes, full or resumed, read when scraped from `handshakesSource`. */
  tlsHandshakes: Counter<LabelOf<'tsmesh_tls_handshakes_total'>>;
  /** Set by the sidecar: the handshakes counted so far (tls/mesh-tls.ts). */
  handshakesSource: (() => Readonly<Record<Direction, { full: number; resumed: number }>>) | undefined;
  /**
   * HTTP requests the proxy ended itself, by why: the x-tsmesh-error of its
   * answer (overloaded, timeout, circuit-open, connect-failure, ...), or
   * cancelled when the caller went away first (also counted in
   * tsmesh_requests_total with response_code "0", as Istio counts DC).
   */
  httpErrors: Counter<LabelOf<'tsmesh_http_errors_total'>>;
  /** 503 overloaded answers, by the bound that turned the request away (http/limits.ts). */
  overloadRejections: Counter<LabelOf<'tsmesh_overload_rejections_total'>>;
  /** Endpoints out of service now (ejected or being probed), read when scraped from `ejectedSource`. */
  endpointsEjected: Gauge<LabelOf<'tsmesh_endpoints_ejected'>>;
  /** Set by the sidecar: ejected endpoints per destination service. */
  ejectedSource: (() => ReadonlyMap<string, number>) | undefined;
  /** Spans the collector took (telemetry/otel.ts). */
  spansExported: Counter;
  /** Spans let go of instead of exported: queue-full, export-failed. */
  spansDropped: Counter<LabelOf<'tsmesh_trace_spans_dropped_total'>>;
}

export function createProxyMetrics(registry = new Registry()): ProxyMetrics {
  const r = [registry];
  const metrics: ProxyMetrics = {
    registry,
    requests: new HotCounter({
      ...family('tsmesh_requests_total'),
      registers: r,
    }),
    requestDuration: new HotHistogram({
      ...family('tsmesh_request_duration_seconds'),
      registers: r,
    }),
    retries: new Counter({ ...family('tsmesh_retries_total'), registers: r }),
    retryBudgetExhausted: new Counter({
      ...family('tsmesh_retry_budget_exhausted_total'),
      registers: r,
    }),
    endpointEjections: new Counter({
      ...family('tsmesh_endpoint_ejections_total'),
      registers: r,
    }),
    faultsInjected: new Counter({
      ...family('tsmesh_faults_injected_total'),
      registers: r,
    }),
    mirrors: new Counter({ ...family('tsmesh_mirrors_total'), registers: r }),
    authzDenials: new Counter({
      ...family('tsmesh_authz_denials_total'),
      registers: r,
    }),
    authzAudits: new Counter({ ...family('tsmesh_authz_audits_total'), registers: r }),
    tcpOpened: new Counter({ ...family('tsmesh_tcp_connections_opened_total'), registers: r }),
    tcpClosed: new Counter({ ...family('tsmesh_tcp_connections_closed_total'), registers: r }),
    tcpSent: new Counter({ ...family('tsmesh_tcp_sent_bytes_total'), registers: r }),
    tcpReceived: new Counter({ ...family('tsmesh_tcp_received_bytes_total'), registers: r }),
    configUpdates: new Counter({ ...family('tsmesh_config_updates_total'), registers: r }),
    connectionsRefused: new Counter({
      ...family('tsmesh_connections_refused_total'),
      registers: r,
    }),
    muxBuffered: new Gauge({
      ...family('tsmesh_mux_buffered_bytes'),
      registers: r,
      collect() {
        this.set(proxyMuxBudget.buffered);
      },
    }),
    muxStreamsRefused: new Counter({
      ...family('tsmesh_mux_streams_refused_total'),
      registers: r,
      collect() {
        this.reset();
        this.inc(proxyMuxBudget.refusedStreams);
      },
    }),
    tlsHandshakes: new Counter({
      ...family('tsmesh_tls_handshakes_total'),
      registers: r,
      collect() {
        this.reset();
        for (const [direction, n] of Object.entries(metrics.handshakesSource?.() ?? {})) {
          this.inc({ direction, resumed: 'false' }, n.full);
          this.inc({ direction, resumed: 'true' }, n.resumed);
        }
      },
    }),
    handshakesSource: undefined,
    httpErrors: new Counter({
      ...family('tsmesh_http_errors_total'),
      registers: r,
    }),
    overloadRejections: new Counter({
      ...family('tsmesh_overload_rejections_total'),
      registers: r,
    }),
    endpointsEjected: new Gauge({
      ...family('tsmesh_endpoints_ejected'),
      registers: r,
      collect() {
        this.reset();
        for (const [service, n] of metrics.ejectedSource?.() ?? []) this.set({ destination_service: service }, n);
      },
    }),
    ejectedSource: undefined,
    spansExported: new Counter({ ...family('tsmesh_trace_spans_exported_total'), registers: r }),
    spansDropped: new Counter({ ...family('tsmesh_trace_spans_dropped_total'), registers: r }),
  };
  return metrics;
}
