// Counts every request and times it to the response head, with the labels
// DESIGN.md fixes. A gRPC call is counted when its status is known: at once
// for a trailers-only answer, else when its body has ended.
import type { CounterChild, HistogramChild } from '../../lib/prom-hot.js';
import type { Direction, ProxyMetrics } from '../metrics.js';
import type { Layer, ProxyResponse, UpgradedConnection } from './types.js';
import { CANCELLED } from '../../contract/vocabulary.js';
import { GRPC, isGrpc, whenGrpcStatus } from './grpc.js';

/** The error of a request whose caller went away before its answer. */
export { CANCELLED };

export interface RequestLabels {
  direction: Direction;
  destinationService: string;
  /** For outbound: this workload; for inbound: the peer (or "" for plain callers). */
  sourceIdentity: () => string;
  /** For inbound: this workload; for outbound: taken from the response. */
  destinationIdentity?: () => string;
  /** Whether the caller's connection was mTLS (inbound); unset: whether the answering endpoint was reached over mTLS (outbound). */
  tls?: boolean;
}

/** Status codes as label values, made once. */
const STATUS_TEXT: readonly string[] = Array.from({ length: 600 }, (_, i) => String(i));
const GRPC_TEXT: readonly string[] = Array.from({ length: 17 }, (_, i) => String(i));
const grpcText = (code: number): string => GRPC_TEXT[code] ?? String(code);

export function metricsLayer(metrics: ProxyMetrics, labels: RequestLabels): Layer {
  // The few label sets one stack sees are bound once and looked up by a short key.
  const counts = new Map<string, CounterChild>();
  const durations = new Map<string, HistogramChild>();
  // Most requests of a stack carry the labels of the one before: that set is kept at hand.
  let last: { source: string; destination: string; code: string; grpc: string; tls: string; count: CounterChild } | undefined;
  const count = (source: string, destination: string, code: string, grpc: string, tls: string): void => {
    if (last !== undefined && last.code === code && last.grpc === grpc && last.source === source && last.destination === destination && last.tls === tls) {
      last.count.inc();
      return;
    }
    const key = `${code}|${grpc}|${tls}|${source}|${destination}`;
    let c = counts.get(key);
    if (!c) {
      c = metrics.requests.labels({
        direction: labels.direction,
        source_identity: source,
        destination_identity: destination,
        destination_service: labels.destinationService,
        response_code: code,
        grpc_status: grpc,
        tls,
      });
      counts.set(key, c);
    }
    last = { source, destination, code, grpc, tls, count: c };
    c.inc();
  };
  const observe = (code: string, seconds: number): void => {
    let d = durations.get(code);
    if (!d) {
      d = metrics.requestDuration.labels({ direction: labels.direction, destination_service: labels.destinationService, response_code: code });
      durations.set(code, d);
    }
    d.observe(seconds);
  };
  const errors = (error: string) => metrics.httpErrors.labels({ direction: labels.direction, destination_service: labels.destinationService, error });
  return (next) => async (req) => {
    let res: ProxyResponse;
    const grpc = isGrpc(req.headers);
    try {
      res = await next(req);
    } catch (e) {
      if (req.signal.aborted) {
        // The caller went away before an answer: a class of its own, with how long it waited.
        count(labels.sourceIdentity(), labels.destinationIdentity?.() ?? '', '0', grpc ? grpcText(GRPC.CANCELLED) : '', labels.tls === true ? 'true' : 'false');
        observe('0', (performance.now() - req.startedAt) / 1000);
        errors(CANCELLED).inc();
      }
      throw e;
    }
    const local = res.meta?.localReason;
    if (local !== undefined) {
      errors(local).inc();
      const limit = res.meta?.overload;
      if (limit !== undefined) metrics.overloadRejections.inc({ direction: labels.direction, destination_service: labels.destinationService, limit });
    }
    const peer = res.meta?.peerIdentity;
    const source = labels.sourceIdentity();
    const destination = labels.destinationIdentity?.() ?? peer ?? '';
    const code = STATUS_TEXT[res.status] ?? String(res.status);
    const tls = labels.tls ?? peer !== undefined ? 'true' : 'false';
    observe(code, (performance.now() - req.startedAt) / 1000);
    if (res.upgraded !== undefined) res.upgraded = countedAsTcp(metrics, labels.direction, labels.destinationService, tls, res.upgraded);
    // A gRPC call's outcome is its status: in a trailers-only head, or in the trailers once the body has gone.
    if (grpc) whenGrpcStatus(res, () => req.signal.aborted, (status) => count(source, destination, code, grpcText(status), tls));
    else count(source, destination, code, '', tls);
    return res;
  };
}

/**
 * An upgraded connection (a WebSocket) counted as the TCP connection it
 * becomes, with the labels an opaque one of this stack would get: opened
 * when it is joined to the client's, closed with its bytes each way when the
 * tunnel ends (as opaque TCP is counted, at its close). The client's side is
 * the tunnel's a: outbound sends what it gives, inbound receives it.
 */
function countedAsTcp(metrics: ProxyMetrics, direction: Direction, service: string, tls: string, upgraded: UpgradedConnection): UpgradedConnection {
  const labels = { direction, destination_service: service };
  return {
    protocol: upgraded.protocol,
    join(client, idleMs) {
      const tunnel = upgraded.join(client, idleMs);
      metrics.tcpOpened.inc({ ...labels, tls });
      void tunnel.done.then(({ fromA, fromB }) => {
        metrics.tcpClosed.inc({ ...labels, tls });
        metrics.tcpSent.inc(labels, direction === 'outbound' ? fromA : fromB);
        metrics.tcpReceived.inc(labels, direction === 'outbound' ? fromB : fromA);
      });
      return tunnel;
    },
    destroy: () => upgraded.destroy(),
  };
}
