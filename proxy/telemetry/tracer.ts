// What the telemetry layer (http/telemetry.ts) asks of a tracer, with no
// OpenTelemetry in it: the proxy loads the OpenTelemetry SDK and exporter
// (telemetry/otel.ts) only once span export is on, and the layer, which every
// request passes, must not load them. The layer gathers facts about a
// request; the tracer turns them into a span of the OpenTelemetry data model
// with the semantic conventions' attributes, and exports it.
import type { TraceContext } from '../http/trace.js';

/** What the proxy knows of one request once it has ended. */
export interface RequestFacts {
  /** outbound: a client span (the app called out); inbound: a server span (a caller reached the app). */
  direction: 'inbound' | 'outbound';
  method: string;
  /** The Host, or HTTP/2's :authority. */
  authority: string;
  /** The path without its query. */
  path: string;
  protocol: 'http1' | 'http2';
  sourceIdentity: string;
  destinationIdentity: string;
  /** "name.namespace:port" of the service called (outbound), or the service this workload serves on the port (inbound). */
  destinationService: string;
  /** The TrafficPolicy route the request took (outbound). */
  route: string | undefined;
  /** The response status; 0 when there was none (the caller went away, or the proxy failed). */
  status: number;
  /** A gRPC call's status; undefined for other requests. */
  grpcStatus: number | undefined;
  /** address:port of the endpoint that answered (outbound), or the app (inbound). */
  upstream: string | undefined;
  /** Why the proxy answered or ended the request itself: its x-tsmesh-error, or "cancelled". */
  error: string | undefined;
}

export type EventAttributes = Record<string, string | number>;

/** A span in progress; ended once with the request's facts. */
export interface ProxySpan {
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** 16 lowercase hex digits. */
  readonly spanId: string;
  event(name: string, attributes: EventAttributes): void;
  end(facts: RequestFacts): void;
}

export interface ProxyTracer {
  /**
   * Starts a sampled span for a request that arrived at `startedAt`
   * (performance.now() ms), as the child of `parent` (the caller's span), or
   * as the root of a new trace.
   */
  startSpan(direction: RequestFacts['direction'], method: string, startedAt: number, parent: TraceContext | undefined): ProxySpan;
  /** Sends what is queued (bounded by `timeoutMs`) and stops. */
  shutdown(timeoutMs: number): Promise<void>;
}
