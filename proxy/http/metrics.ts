// Counts every request and times it to the response head, with the labels
// DESIGN.md fixes.
import type { CounterChild, HistogramChild } from '../../lib/prom-hot.js';
import type { Direction, ProxyMetrics } from '../metrics.js';
import type { Layer, ProxyResponse } from './types.js';
import { CANCELLED } from '../../contract/vocabulary.js';

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

interface Children {
  count: CounterChild;
  duration: HistogramChild;
}

export function metricsLayer(metrics: ProxyMetrics, labels: RequestLabels): Layer {
  // The few label sets one stack sees are bound once and looked up by a short key.
  const children = new Map<string, Children>();
  // Most requests of a stack carry the labels of the one before: that set is kept at hand.
  let last: { source: string; destination: string; code: string; tls: string; children: Children } | undefined;
  const bind = (source: string, destination: string, code: string, tls: string): Children => {
    if (last !== undefined && last.code === code && last.source === source && last.destination === destination && last.tls === tls) return last.children;
    const key = `${code}|${tls}|${source}|${destination}`;
    let c = children.get(key);
    if (!c) {
      c = {
        count: metrics.requests.labels({
          direction: labels.direction,
          source_identity: source,
          destination_identity: destination,
          destination_service: labels.destinationService,
          response_code: code,
          tls,
        }),
        duration: metrics.requestDuration.labels({ direction: labels.direction, destination_service: labels.destinationService, response_code: code }),
      };
      children.set(key, c);
    }
    last = { source, destination, code, tls, children: c };
    return c;
  };
  const errors = (error: string) => metrics.httpErrors.labels({ direction: labels.direction, destination_service: labels.destinationService, error });
  return (next) => async (req) => {
    let res: ProxyResponse;
    try {
      res = await next(req);
    } catch (e) {
      if (req.signal.aborted) {
        // The caller went away before an answer: a class of its own, with how long it waited.
        const c = bind(labels.sourceIdentity(), labels.destinationIdentity?.() ?? '', '0', labels.tls === true ? 'true' : 'false');
        c.count.inc();
        c.duration.observe((performance.now() - req.startedAt) / 1000);
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
    const c = bind(labels.sourceIdentity(), labels.destinationIdentity?.() ?? peer ?? '', STATUS_TEXT[res.status] ?? String(res.status), labels.tls ?? peer !== undefined ? 'true' : 'false');
    c.count.inc();
    c.duration.observe((performance.now() - req.startedAt) / 1000);
    return res;
  };
}
