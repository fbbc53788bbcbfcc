// The inbound HTTP path for one connection, read top to bottom:
//   metrics -> gRPC answers -> authorization -> gRPC deadline
//     -> forward to the app on 127.0.0.1:<port>.
// Built once per connection: the caller and the port are fixed for it.
import { APP_REFUSED, isConnectFailure } from '../http/balance.js';
import { forward, type EndpointPools } from '../http/forward.js';
import { forwardH2, type H2Sessions } from '../http/h2-forward.js';
import { grpcAnswersLayer } from '../http/grpc-answers.js';
import { grpcDeadlineLayer } from '../http/grpc-deadline.js';
import { OverloadedError, overloadedResponse } from '../http/limits.js';
import { metricsLayer } from '../http/metrics.js';
import { compose, localResponse, type Handler } from '../http/types.js';
import type { ProxyMetrics } from '../metrics.js';
import { monotonicScheduler } from '../../lib/scheduler.js';
import { authzLayer, type Authorizer } from './authz.js';

export interface InboundContext {
  /** The caller's SPIFFE ID ("" for a plain caller in PERMISSIVE mode). */
  peerIdentity: string;
  /** The app port the caller dialled. */
  port: number;
  tls: boolean;
}

export interface InboundDeps {
  metrics: ProxyMetrics;
  appPools: EndpointPools;
  /** h2c sessions to the app, for requests that arrived over HTTP/2. */
  appH2: H2Sessions;
  localIdentity: () => string;
  /** The destination_service label for inbound requests (this workload's service, when known). */
  serviceLabel: (port: number) => string;
  /** Where the app listens; 127.0.0.1 in a pod. */
  appAddress: string;
  /** The authorization policies of the config in force, compiled. */
  authorizer: () => Authorizer;
}

export function inboundStack(ctx: InboundContext, deps: InboundDeps): Handler {
  const app = { address: deps.appAddress, port: ctx.port, identity: undefined };
  const denials = deps.metrics.authzDenials.labels({ source_identity: ctx.peerIdentity, port: String(ctx.port), protocol: 'http' });
  return compose(
    [
      metricsLayer(deps.metrics, {
        direction: 'inbound',
        destinationService: deps.serviceLabel(ctx.port),
        sourceIdentity: () => ctx.peerIdentity,
        destinationIdentity: deps.localIdentity,
        tls: ctx.tls,
      }),
      grpcAnswersLayer,
      authzLayer({ authorizer: deps.authorizer, peer: ctx.peerIdentity, port: ctx.port, denied: () => denials.inc() }),
      grpcDeadlineLayer({ service: `the app on port ${ctx.port}`, scheduler: monotonicScheduler }),
    ],
    async (req) => {
      try {
        return await (req.protocol === 'http2' ? forwardH2(deps.appH2, app, req) : forward(deps.appPools, app, req));
      } catch (e) {
        if (req.signal.aborted) throw e;
        if (e instanceof OverloadedError) return overloadedResponse(e.limit, `the app on port ${ctx.port} is overloaded: ${e.message}`);
        if (isConnectFailure(e)) return localResponse(503, APP_REFUSED, `tsmesh: the app refused the connection on port ${ctx.port} (not started, or stopping): ${(e as Error).message}`);
        return localResponse(502, 'app-unavailable', `tsmesh: the app on port ${ctx.port} did not answer: ${(e as Error).message}`);
      }
    },
  );
}
