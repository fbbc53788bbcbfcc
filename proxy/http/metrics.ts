// Counts every request and times it to the response head, with the labels
// DESIGN.md fixes.
import type { Direction, ProxyMetrics } from '../metrics.js';
import type { Layer } from './types.js';

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

export function metricsLayer(metrics: ProxyMetrics, labels: RequestLabels): Layer {
  return (next) => async (req) => {
    const res = await next(req);
    const code = String(res.status);
    const seconds = (performance.now() - req.startedAt) / 1000;
    metrics.requests.inc({
      direction: labels.direction,
      source_identity: labels.sourceIdentity(),
      destination_identity: labels.destinationIdentity?.() ?? res.meta?.peerIdentity ?? '',
      destination_service: labels.destinationService,
      response_code: code,
      tls: String(labels.tls ?? res.meta?.peerIdentity !== undefined),
    });
    metrics.requestDuration.observe({ direction: labels.direction, destination_service: labels.destinationService, response_code: code }, seconds);
    return res;
  };
}
