// Spans and access log lines of the requests that pass, in every stack just
// inside metrics. A request is watched only when it is sampled (span export
// on, and its caller sampled it, or it starts a trace that the ratio picks)
// or the access log wants it (all, errors: every request, whose line is
// written if it failed; sampled: the ratio's share); any other passes at the
// cost of a property read or two, its trace headers untouched.
//
// A watched request gets a span (client outbound, server inbound) whose parent
// is the caller's span, and the trace context it carries on moves to that span
// (http/trace.ts), so the next span down is its child: caller app -> client
// proxy -> server proxy -> app. The layers inside tell of the route, retries
// and ejections through the request's observer; the span ends when the
// response has gone (its body ended, a gRPC call's status known) or the
// request failed, and so is the access log line written, with the body bytes
// each way (counted as the bodies' producers push them, so nothing is read
// that would not be) and the retries.
import { GRPC, isGrpc, whenGrpcStatus } from './grpc.js';
import { declinesSampling, readTraceContext, traceIdOf, writeSpanContext } from './trace.js';
import { MemoryBody, type Body, type Handler, type Layer, type ProxyRequest, type ProxyResponse, type RequestObserver } from './types.js';
import { accessLogLine, isErrorOutcome } from '../telemetry/access-log.js';
import type { Telemetry } from '../telemetry/state.js';
import type { AccessLogSettings } from '../../contract/proxy-config.js';
import type { ProxySpan, RequestFacts } from '../telemetry/tracer.js';
import type { TapObservation } from '../tap/hub.js';
import { CANCELLED } from '../../contract/vocabulary.js';

export interface TelemetryLabels {
  direction: 'inbound' | 'outbound';
  destinationService: string;
  /** For outbound: this workload; for inbound: the peer (or "" for plain callers). */
  sourceIdentity: () => string;
  /** For inbound: this workload; for outbound: taken from the response. */
  destinationIdentity?: () => string;
  /** address:port of what every request goes to (inbound: the app); outbound, the endpoint that answered. */
  upstream?: string;
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

/**
 * The bytes of a body so far: those it holds unread now, and those its
 * producer pushes from now on (counted in its push, so the stream flows as
 * it would unwatched).
 */
function bodyBytes(body: Body | null): () => number {
  if (body === null) return () => 0;
  if (body instanceof MemoryBody) return () => body.data.length;
  let n = body.readableLength;
  const push = body.push;
  body.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
    if (typeof chunk === 'string') n += Buffer.byteLength(chunk, encoding);
    else if (chunk instanceof Uint8Array) n += chunk.length;
    return push.call(this, chunk, encoding);
  };
  return () => n;
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
    const log = t.accessLog;
    // A tap (tap/hub.ts) costs a request nothing but this read while nobody taps.
    const tap = t.tap.active ? t.tap.start(req, labels) : undefined;
    if (t.tracer === undefined && log === undefined && tap === undefined) return next(req);
    const span = sampledSpan(t, req, labels.direction);
    const logged = log !== undefined && (log.mode !== 'sampled' || t.random() < log.sampling);
    if (span === undefined && !logged && tap === undefined) return next(req);
    return watched(t, labels, next, req, new Watch(span), logged ? log : undefined, tap);
  };
}

async function watched(t: Telemetry, labels: TelemetryLabels, next: Handler, req: ProxyRequest, watch: Watch, log: AccessLogSettings | undefined, tap: TapObservation | undefined): Promise<ProxyResponse> {
  req.observer = watch;
  const grpc = isGrpc(req.headers);
  const bytesIn = log || tap ? bodyBytes(req.body) : undefined;
  let bytesOut: (() => number) | undefined;
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
    upstream: labels.upstream ?? endpointAddress(res?.meta?.endpointKey),
    error,
  });
  const done = (f: RequestFacts): void => {
    watch.span?.end(f);
    const durationMs = performance.now() - req.startedAt;
    tap?.end(f, durationMs, bytesIn!(), bytesOut?.() ?? 0);
    if (log === undefined || (log.mode === 'errors' && !isErrorOutcome(f))) return;
    t.accessLogWriter.write(
      accessLogLine(
        f,
        {
          startedAtMs: performance.timeOrigin + req.startedAt,
          durationMs,
          bytesIn: bytesIn!(),
          bytesOut: bytesOut?.() ?? 0,
          retries: watch.retries,
          traceId: traceIdOf(req.headers),
          fullPath: req.path,
        },
        log,
      ),
    );
  };
  let res: ProxyResponse;
  try {
    res = await next(req);
  } catch (e) {
    done(facts(undefined, grpc ? GRPC.CANCELLED : undefined, req.signal.aborted ? CANCELLED : 'proxy-error'));
    throw e;
  }
  if (log || tap) bytesOut = bodyBytes(res.body);
  tap?.response(res);
  whenSent(req, res, grpc, (grpcStatus, cut) => done(facts(res, grpcStatus, res.meta?.localReason ?? (!cut ? undefined : req.signal.aborted ? CANCELLED : 'upstream-reset'))));
  return res;
}
