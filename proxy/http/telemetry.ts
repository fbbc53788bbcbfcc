// Spans of the requests that pass, in every stack just inside metrics. A
// request is watched only when it is sampled (span export on, and its caller
// sampled it, or it starts a trace that the ratio picks); any other passes at
// the cost of one property read, its trace headers untouched.
//
// A watched request gets a span (client outbound, server inbound) whose parent
// is the caller's span, and the trace context it carries on moves to that span
// (http/trace.ts), so the next span down is its child: caller app -> client
// proxy -> server proxy -> app. The layers inside tell of the route, retries
// and ejections through the request's observer; the span ends when the
// response has gone (its body ended, a gRPC call's status known) or the
// request failed.
import { GRPC, isGrpc, whenGrpcStatus } from './grpc.js';
import { declinesSampling, readTraceContext, writeSpanContext } from './trace.js';
import { MemoryBody, type Handler, type Layer, type ProxyRequest, type ProxyResponse, type RequestObserver } from './types.js';
import type { Telemetry } from '../telemetry/state.js';
import type { ProxySpan, RequestFacts } from '../telemetry/tracer.js';
import { CANCELLED } from '../../contract/vocabulary.js';

export interface TelemetryLabels {
  direction: 'inbound' | 'outbound';
  destinationService: string;
  /** For outbound: this workload; for inbound: the peer (or "" for plain callers). */
  sourceIdentity: () => string;
  /** For inbound: this workload; for outbound: taken from the response. */
  destinationIdentity?: () => string;
}

/** address:port of a balancer key ("address|port|identity", balance/p2c.ts). */
export function endpointAddress(key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  const [address, port] = key.split('|');
  return address?.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** What the layers inside tell of one watched request. */
class Watch implements RequestObserver {
  retries = 0;
  routeName: string | undefined;

  constructor(readonly span: ProxySpan | undefined) {}

  route(name: string): void {
    this.routeName = name;
  }

  retried(reason: string, attempt: number): void {
    this.retries++;
    this.span?.event('retry', { 'tsmesh.retry.reason': reason, 'tsmesh.retry.attempt': attempt });
  }

  ejected(endpointKey: string): void {
    this.span?.event('ejection', { 'tsmesh.endpoint': endpointAddress(endpointKey) ?? endpointKey });
  }
}

/** Whether a span is started for a request: its caller's decision, else the ratio for a new trace. */
function sampledSpan(t: Telemetry, req: ProxyRequest, direction: TelemetryLabels['direction']): ProxySpan | undefined {
  const tracer = t.tracer;
  if (tracer === undefined) return undefined;
  const parent = readTraceContext(req.headers);
  const sampled = parent?.sampled ?? (!declinesSampling(req.headers) && t.random() < t.sampling);
  if (!sampled) return undefined;
  const span = tracer.startSpan(direction, req.method, req.startedAt, parent);
  writeSpanContext(req.headers, span.traceId, span.spanId);
  return span;
}

/** Calls `done` once the response has gone: its body ended or cut off, a gRPC call's status known. */
function whenSent(req: ProxyRequest, res: ProxyResponse, grpc: boolean, done: (grpcStatus: number | undefined, cut: boolean) => void): void {
  if (grpc) {
    whenGrpcStatus(res, () => req.signal.aborted, (code) => done(code, false));
    return;
  }
  const body = res.body;
  if (body === null || body instanceof MemoryBody) {
    done(undefined, false);
    return;
  }
  let settled = false;
  body.once('end', () => settled || ((settled = true), done(undefined, false)));
  body.once('close', () => settled || ((settled = true), done(undefined, !body.readableEnded)));
}

export function telemetryLayer(t: Telemetry, labels: TelemetryLabels): Layer {
  return (next) => (req) => {
    if (t.tracer === undefined) return next(req);
    const span = sampledSpan(t, req, labels.direction);
    if (span === undefined) return next(req);
    return watched(labels, next, req, new Watch(span));
  };
}

async function watched(labels: TelemetryLabels, next: Handler, req: ProxyRequest, watch: Watch): Promise<ProxyResponse> {
  req.observer = watch;
  const grpc = isGrpc(req.headers);
  const queryAt = req.path.indexOf('?');
  const facts = (res: ProxyResponse | undefined, grpcStatus: number | undefined, error: string | undefined): RequestFacts => ({
    direction: labels.direction,
    method: req.method,
    authority: String(req.headers.host ?? ''),
    path: queryAt < 0 ? req.path : req.path.slice(0, queryAt),
    protocol: req.protocol,
    sourceIdentity: labels.sourceIdentity(),
    destinationIdentity: labels.destinationIdentity?.() ?? res?.meta?.peerIdentity ?? '',
    destinationService: labels.destinationService,
    route: watch.routeName,
    status: res?.status ?? 0,
    grpcStatus,
    upstream: endpointAddress(res?.meta?.endpointKey),
    error,
  });
  let res: ProxyResponse;
  try {
    res = await next(req);
  } catch (e) {
    watch.span?.end(facts(undefined, grpc ? GRPC.CANCELLED : undefined, req.signal.aborted ? CANCELLED : 'proxy-error'));
    throw e;
  }
  whenSent(req, res, grpc, (grpcStatus, cut) => watch.span?.end(facts(res, grpcStatus, res.meta?.localReason ?? (!cut ? undefined : req.signal.aborted ? CANCELLED : 'upstream-reset'))));
  return res;
}
