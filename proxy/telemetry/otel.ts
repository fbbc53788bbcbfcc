// Span export with the OpenTelemetry JS SDK: its data model (spans, events,
// resource) and its OTLP/HTTP exporter (protobuf), behind the ProxyTracer of
// telemetry/tracer.ts. Loaded by telemetry/state.ts with import() once span
// export is on, never before: the SDK and the exporter cost the proxy about
// 15 MB of RSS and 0.4 s to load (docs/performance.md), which a proxy that
// exports nothing should not pay.
//
// Sampling is decided before a span is started (http/telemetry.ts: the
// caller's decision, else the ratio for a new trace), so the SDK's sampler
// takes every span it is given. The queue to the collector is bounded: a span
// that finds it full is dropped and counted, as is a batch the collector
// refuses or does not take in time; a request never waits for the collector.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Attributes, type Span } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_NAMESPACE,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import type { SpanDropReason } from '../../contract/vocabulary.js';
import type { TraceContext } from '../http/trace.js';
import { isGrpcServerFailure } from '../http/grpc.js';
import type { EventAttributes, ProxySpan, ProxyTracer, RequestFacts } from './tracer.js';

// Attributes the semantic conventions still call incubating: their entry point
// is a 1 MB module, so the few used here are named here.
const ATTR_RPC_SYSTEM = 'rpc.system';
const ATTR_RPC_SERVICE = 'rpc.service';
const ATTR_RPC_METHOD = 'rpc.method';
const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';
const ATTR_K8S_NAMESPACE_NAME = 'k8s.namespace.name';
const ATTR_K8S_POD_NAME = 'k8s.pod.name';

/** The mesh's own attributes, beside the conventions' (both SPIFFE IDs, the service and route, the proxy's error). */
export const MESH_ATTRIBUTES = {
  sourceIdentity: 'tsmesh.source.identity',
  destinationIdentity: 'tsmesh.destination.identity',
  destinationService: 'tsmesh.destination.service',
  route: 'tsmesh.route',
  error: 'tsmesh.error',
} as const;

export interface SpanCounters {
  exported(n: number): void;
  dropped(reason: SpanDropReason, n: number): void;
}

export interface OtelTracerOptions {
  /** The collector's OTLP/HTTP traces URL. */
  collector: string;
  /** service.name of the spans: the workload ("<serviceaccount>.<namespace>"). */
  serviceName: string;
  namespace?: string | undefined;
  podName?: string | undefined;
  counters: SpanCounters;
  /** Spans held for export at most (default 2048); more are dropped. */
  maxQueue?: number;
  /** Spans in one request to the collector (default 512). */
  maxBatch?: number;
  /** How long a span may wait for a batch to fill (default 1000 ms). */
  delayMs?: number;
  /** How long the collector has to answer one batch (default 10 s). */
  exportTimeoutMs?: number;
  /** The exporter (default OTLP/HTTP protobuf to `collector`); tests may put another real one. */
  exporter?: SpanExporter;
}

/**
 * Batches finished spans to the exporter, one request at a time. Unlike the
 * SDK's BatchSpanProcessor, every span it lets go of is counted, by why.
 */
export class BoundedBatchProcessor implements SpanProcessor {
  private queue: ReadableSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly exporter: SpanExporter,
    private readonly counters: SpanCounters,
    private readonly maxQueue: number,
    private readonly maxBatch: number,
    private readonly delayMs: number,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.stopped || this.queue.length >= this.maxQueue) {
      this.counters.dropped('queue-full', 1);
      return;
    }
    this.queue.push(span);
    if (this.inFlight !== undefined) return;
    if (this.queue.length >= this.maxBatch) this.sendNext();
    else this.timer ??= setTimeout(() => this.sendNext(), this.delayMs).unref();
  }

  private sendNext(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight !== undefined || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight = new Promise<void>((resolve) => {
      this.exporter.export(batch, (result) => {
        if (result.code === ExportResultCode.SUCCESS) this.counters.exported(batch.length);
        else this.counters.dropped('export-failed', batch.length);
        resolve();
      });
    }).then(() => {
      this.inFlight = undefined;
      if (this.queue.length >= this.maxBatch || (this.stopped && this.queue.length > 0)) this.sendNext();
      else if (this.queue.length > 0) this.timer ??= setTimeout(() => this.sendNext(), this.delayMs).unref();
    });
  }

  /** Sends every queued span, a batch at a time. */
  async forceFlush(): Promise<void> {
    while (this.inFlight !== undefined || this.queue.length > 0) {
      if (this.inFlight === undefined) this.sendNext();
      await this.inFlight;
    }
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    await this.forceFlush();
    await this.exporter.shutdown();
  }
}

const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);

/** host and port of an authority ("api.shop", "api.shop:8080", "[::1]:80"). */
function hostAndPort(authority: string): { host: string; port: number | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] === undefined ? undefined : Number(m[2]) };
}

/** The attributes of a finished request, by the HTTP (and RPC, for gRPC) semantic conventions; and its error, if any. */
export function requestAttributes(f: RequestFacts): { attributes: Attributes; error: string | undefined } {
  const client = f.direction === 'outbound';
  const a: Attributes = {};
  const method = f.method.toUpperCase();
  if (KNOWN_METHODS.has(method)) a[ATTR_HTTP_REQUEST_METHOD] = method;
  else {
    a[ATTR_HTTP_REQUEST_METHOD] = '_OTHER';
    a[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = f.method;
  }
  const { host, port } = hostAndPort(f.authority);
  if (host) a[ATTR_SERVER_ADDRESS] = host;
  a[ATTR_SERVER_PORT] = port ?? 80;
  a[ATTR_NETWORK_PROTOCOL_NAME] = 'http';
  a[ATTR_NETWORK_PROTOCOL_VERSION] = f.protocol === 'http2' ? '2' : '1.1';
  if (client) a[ATTR_URL_FULL] = `http://${f.authority}${f.path}`;
  else {
    a[ATTR_URL_PATH] = f.path;
    a[ATTR_URL_SCHEME] = 'http';
  }
  if (f.status > 0) a[ATTR_HTTP_RESPONSE_STATUS_CODE] = f.status;
  if (client && f.upstream) {
    const peer = hostAndPort(f.upstream);
    a[ATTR_NETWORK_PEER_ADDRESS] = peer.host;
    if (peer.port !== undefined) a[ATTR_NETWORK_PEER_PORT] = peer.port;
  }
  if (f.grpcStatus !== undefined) {
    a[ATTR_RPC_SYSTEM] = 'grpc';
    const [, service, rpc] = /^\/([^/]+)\/([^/]+)$/.exec(f.path) ?? [];
    if (service && rpc) {
      a[ATTR_RPC_SERVICE] = service;
      a[ATTR_RPC_METHOD] = rpc;
    }
    a[ATTR_RPC_GRPC_STATUS_CODE] = f.grpcStatus;
  }
  if (f.sourceIdentity) a[MESH_ATTRIBUTES.sourceIdentity] = f.sourceIdentity;
  if (f.destinationIdentity) a[MESH_ATTRIBUTES.destinationIdentity] = f.destinationIdentity;
  if (f.destinationService) a[MESH_ATTRIBUTES.destinationService] = f.destinationService;
  if (f.route !== undefined) a[MESH_ATTRIBUTES.route] = f.route;
  if (f.error !== undefined) a[MESH_ATTRIBUTES.error] = f.error;
  // A client span fails on a 4xx too; a server span on a 5xx only (the conventions' rule), and likewise for gRPC.
  let error = f.error;
  if (error === undefined && f.grpcStatus !== undefined && f.grpcStatus !== 0 && (client || isGrpcServerFailure(f.grpcStatus))) error = String(f.grpcStatus);
  if (error === undefined && f.grpcStatus === undefined && f.status >= (client ? 400 : 500)) error = String(f.status);
  if (error !== undefined) a[ATTR_ERROR_TYPE] = error;
  return { attributes: a, error };
}

class OtelSpan implements ProxySpan {
  readonly traceId: string;
  readonly spanId: string;
  constructor(private readonly span: Span) {
    const c = span.spanContext();
    this.traceId = c.traceId;
    this.spanId = c.spanId;
  }
  event(name: string, attributes: EventAttributes): void {
    this.span.addEvent(name, attributes);
  }
  end(facts: RequestFacts): void {
    const { attributes, error } = requestAttributes(facts);
    this.span.setAttributes(attributes);
    if (error !== undefined) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    this.span.end();
  }
}

export function createOtelTracer(o: OtelTracerOptions): ProxyTracer {
  const exporter = o.exporter ?? new OTLPTraceExporter({ url: o.collector, timeoutMillis: o.exportTimeoutMs ?? 10_000 });
  const processor = new BoundedBatchProcessor(exporter, o.counters, o.maxQueue ?? 2048, o.maxBatch ?? 512, o.delayMs ?? 1000);
  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: o.serviceName,
    ...(o.namespace ? { [ATTR_SERVICE_NAMESPACE]: o.namespace, [ATTR_K8S_NAMESPACE_NAME]: o.namespace } : {}),
    ...(o.podName ? { [ATTR_K8S_POD_NAME]: o.podName } : {}),
  });
  const provider = new BasicTracerProvider({ resource, sampler: new AlwaysOnSampler(), spanProcessors: [processor], spanLimits: { attributeValueLengthLimit: 2048 } });
  const tracer = provider.getTracer('tsmesh-proxy');
  return {
    startSpan(direction, method, startedAt, parent: TraceContext | undefined) {
      const ctx = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true });
      const kind = direction === 'outbound' ? SpanKind.CLIENT : SpanKind.SERVER;
      return new OtelSpan(tracer.startSpan(method, { kind, startTime: startedAt }, ctx));
    },
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([provider.shutdown(), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs).unref()))]);
      clearTimeout(timer);
    },
  };
}
