// The outbound HTTP path for one service port, read top to bottom:
//   metrics -> pick an endpoint -> forward over a pooled (m)TLS connection.
// Traffic policy layers (route, split, timeout, retry, breaker, faults) slot
// in between as they are built.
import type { ServiceTarget } from '../config/table.js';
import { pickEndpoint } from '../balance/pick.js';
import { forward, type EndpointPools } from '../http/forward.js';
import { forwardH2, type H2Sessions } from '../http/h2-forward.js';
import { metricsLayer } from '../http/metrics.js';
import { compose, localResponse, type Handler } from '../http/types.js';
import type { ProxyMetrics } from '../metrics.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import { UpstreamConnectError } from '../upstream.js';

export interface OutboundDeps {
  metrics: ProxyMetrics;
  pools: EndpointPools;
  h2: H2Sessions;
  meshTls: MeshTls;
}

function balanced(target: ServiceTarget, deps: OutboundDeps): Handler {
  return async (req) => {
    const ep = pickEndpoint(target.endpoints);
    if (!ep) return localResponse(503, 'no-endpoints', `tsmesh: ${target.key} has no ready endpoints`);
    try {
      return await (req.protocol === 'http2' ? forwardH2(deps.h2, ep, req) : forward(deps.pools, ep, req));
    } catch (e) {
      if (req.signal.aborted) throw e;
      const err = e as Error & { cause?: unknown };
      const connect = err instanceof UpstreamConnectError || err.cause instanceof UpstreamConnectError || /ECONNREFUSED|connect/i.test(err.message);
      return localResponse(connect ? 503 : 502, connect ? 'connect-failure' : 'upstream-reset', `tsmesh: ${target.key} at ${ep.address}:${ep.port}: ${err.message}`);
    }
  };
}

export function outboundStack(target: ServiceTarget, deps: OutboundDeps): Handler {
  return compose(
    [
      metricsLayer(deps.metrics, {
        direction: 'outbound',
        destinationService: target.key,
        sourceIdentity: () => deps.meshTls.identity ?? '',
      }),
    ],
    balanced(target, deps),
  );
}
