// Counts every request and times it to the response head, with the labels
// DESIGN.md fixes. A gRPC call is counted when its status is known: at once
// for a trailers-only answer, else when its body has ended. The layer sits
// outside routing: the route a request took is what the route step wrote on
// it (req.route, outbound/stack.ts), read once the answer is back.
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

/** A label set of a stack's requests and its bound child. */
interface Series<C> {
  source: string;
  destination: string;
  route: string;
  code: string;
  grpc: string;
  tls: string;
  child: C;
}

/**
 * The children of one family for a stack's label sets: bound once and looked
 * up by a short key; the set of the request before is kept at hand, as most
 * requests of a stack carry the labels of the one before, so counting one
 * like it allocates nothing.
 */
function seriesCache<C>(bind: (source: string, destination: string, route: string, code: string, grpc: string, tls: string) => C) {
  const all = new Map<string, Series<C>>();
  let last: Series<C> | undefined;
  return (source: string, destination: string, route: string, code: string, grpc: string, tls: string): C => {
    if (last !== undefined && last.code === code && last.route === route && last.grpc === grpc && last.source === source && last.destination === destination && last.tls === tls) {
      return last.child;
    }
    const key = `${code}|${grpc}|${tls}|${route}|${source}|${destination}`;
    let s = all.get(key);
    if (!s) {
      s = { source, destination, route, code, grpc, tls, child: bind(source, destination, route, code, grpc, tls) };
      all.set(key, s);
    }
    last = s;
    return s.child;
  };
}

export function metricsLayer(metrics: ProxyMetrics, labels: RequestLabels): Layer {
  const { direction, destinationService: destination_service } = labels;
  const counter = seriesCache<CounterChild>((source_identity, destination_identity, route, response_code, grpc_status, tls) =>
    metrics.requests.labels({ direction, source_identity, destination_identity, destination_service, route, response_code, grpc_status, tls }),
  );
  // The histogram carries neither grpc_status nor tls: called with both empty.
  const histogram = seriesCache<HistogramChild>((source_identity, destination_identity, route, response_code) =>
    metrics.requestDuration.labels({ direction, source_identity, destination_identity, destination_service, route, response_code }),
  );
  const errors = (error: string) => metrics.httpErrors.labels({ direction: labels.direction, destination_service: labels.destinationService, error });
  return (next) => async (req) => {
    let res: ProxyResponse;
    const grpc = isGrpc(req.headers);
    try {
      res = await next(req);
    } catch (e) {
      if (req.signal.aborted) {
        // The caller went away before an answer: a class of its own, with how long it waited.
        const source = labels.sourceIdentity();
        const destination = labels.destinationIdentity?.() ?? '';
        const route = req.route ?? '';
        counter(source, destination, route, '0', grpc ? grpcText(GRPC.CANCELLED) : '', labels.tls === true ? 'true' : 'false').inc();
        histogram(source, destination, route, '0', '', '').observe((performance.now() - req.startedAt) / 1000);
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
    const route = req.route ?? '';
    const code = STATUS_TEXT[res.status] ?? String(res.status);
    const tls = labels.tls ?? peer !== undefined ? 'true' : 'false';
    histogram(source, destination, route, code, '', '').observe((performance.now() - req.startedAt) / 1000);
    if (res.upgraded !== undefined) res.upgraded = countedAsTcp(metrics, labels.direction, labels.destinationService, tls, res.upgraded);
    // A gRPC call's outcome is its status: in a trailers-only head, or in the trailers once the body has gone.
    if (grpc) whenGrpcStatus(res, () => req.signal.aborted, (status) => counter(source, destination, route, code, grpcText(status), tls).inc());
    else counter(source, destination, route, code, '', tls).inc();
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
