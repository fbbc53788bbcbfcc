// The inbound HTTP path for one connection, read top to bottom:
//   metrics -> telemetry (spans) -> gRPC answers -> caller identity -> authorization -> gRPC deadline
//     -> forward to the app on 127.0.0.1:<port>.
// Built once per connection: the caller and the port are fixed for it.
import { APP_REFUSED, BAD_RESPONSE, isConnectFailure } from '../http/balance.js';
import { forward, type EndpointPools } from '../http/forward.js';
import { forwardH2, type H2Sessions } from '../http/h2-forward.js';
import { grpcAnswersLayer } from '../http/grpc-answers.js';
import { grpcDeadlineLayer } from '../http/grpc-deadline.js';
import { HttpParseError } from '../http/h1/head.js';
import { OverloadedError, overloadedResponse } from '../http/limits.js';
import { metricsLayer } from '../http/metrics.js';
import { telemetryLayer } from '../http/telemetry.js';
import { compose, localResponse, type Handler } from '../http/types.js';
import type { ProxyMetrics } from '../metrics.js';
import type { Telemetry } from '../telemetry/state.js';
import { monotonicScheduler } from '../../lib/scheduler.js';
import type { Logger } from '../../lib/log.js';
import { authzLayer, type Authorizer, type Finding } from './authz.js';
import { clientIdentityLayer, type VerifiedCaller } from './client-id.js';

export interface InboundContext {
  /** The caller's SPIFFE ID ("" for a plain caller in PERMISSIVE mode). */
  peerIdentity: string;
  /** The caller's certificate, for the app's x-forwarded-client-cert; absent for a plain caller. */
  certHash?: string;
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
  telemetry: Telemetry;
  log: Logger;
}

/** An audit is logged at most this often per policy rule, caller and port; every one is counted. */
const AUDIT_LOG_INTERVAL_MS = 10_000;
const auditLogged = new Map<string, number>();

/** Counts a denial or an audit (tsmesh_authz_denials_total, tsmesh_authz_audits_total) and logs an audit. */
export function recordFinding(deps: Pick<InboundDeps, 'metrics' | 'log'>, f: Finding, peer: string, port: number, protocol: 'http' | 'tcp'): void {
  const labels = { source_identity: peer, port: String(port), protocol, policy: f.policy, rule: f.rule };
  if (f.kind === 'deny') {
    deps.metrics.authzDenials.inc(labels);
    return;
  }
  deps.metrics.authzAudits.inc(labels);
  const key = `${f.policy}\n${f.rule}\n${peer}\n${port}\n${protocol}`;
  const now = Date.now();
  if ((auditLogged.get(key) ?? -Infinity) + AUDIT_LOG_INTERVAL_MS > now) return;
  if (auditLogged.size >= 10_000) auditLogged.clear();
  auditLogged.set(key, now);
  deps.log.info('an AUDIT authorization policy would deny this call; it goes on', { policy: f.policy, rule: f.rule, protocol, reason: f.reason });
}

export function inboundStack(ctx: InboundContext, deps: InboundDeps): Handler {
  const app = { address: deps.appAddress, port: ctx.port, identity: undefined };
  const caller: VerifiedCaller | undefined = ctx.certHash !== undefined ? { spiffeId: ctx.peerIdentity, certHash: ctx.certHash } : undefined;
  return compose(
    [
      metricsLayer(deps.metrics, {
        direction: 'inbound',
        destinationService: deps.serviceLabel(ctx.port),
        sourceIdentity: () => ctx.peerIdentity,
        destinationIdentity: deps.localIdentity,
        tls: ctx.tls,
      }),
      telemetryLayer(deps.telemetry, {
        direction: 'inbound',
        destinationService: deps.serviceLabel(ctx.port),
        sourceIdentity: () => ctx.peerIdentity,
        destinationIdentity: deps.localIdentity,
        upstream: `${deps.appAddress.includes(':') ? `[${deps.appAddress}]` : deps.appAddress}:${ctx.port}`,
      }),
      grpcAnswersLayer,
      clientIdentityLayer(caller, deps.localIdentity()),
      authzLayer({ authorizer: deps.authorizer, peer: ctx.peerIdentity, port: ctx.port, found: (f) => recordFinding(deps, f, ctx.peerIdentity, ctx.port, 'http') }),
      grpcDeadlineLayer({ service: `the app on port ${ctx.port}`, scheduler: monotonicScheduler }),
    ],
    async (req) => {
      try {
        return await (req.protocol === 'http2' ? forwardH2(deps.appH2, app, req) : forward(deps.appPools, app, req));
      } catch (e) {
        if (req.signal.aborted) throw e;
        if (e instanceof OverloadedError) return overloadedResponse(e.limit, `the app on port ${ctx.port} is overloaded: ${e.message}`);
        if (isConnectFailure(e)) return localResponse(503, APP_REFUSED, `tsmesh: the app refused the connection on port ${ctx.port} (not started, or stopping): ${(e as Error).message}`);
        if (e instanceof HttpParseError) return localResponse(502, BAD_RESPONSE, `tsmesh: the app on port ${ctx.port} sent a response the proxy will not read: ${e.message}`);
        return localResponse(502, 'app-unavailable', `tsmesh: the app on port ${ctx.port} did not answer: ${(e as Error).message}`);
      }
    },
  );
}
