// The outbound HTTP path for one service port, read top to bottom:
//   metrics -> telemetry (spans) -> gRPC answers -> gRPC deadline
//     -> route (first match) -> response headers -> redirect (answers)
//     -> request headers -> rewrite -> mirrors -> faults -> timeout -> split
//     -> backend's response headers, request headers, mirrors
//     -> retry (inside the backend's budget) -> balance + breaker -> forward
// Everything is compiled here once per config and target: a request only
// runs the layers its route needs, and no layer is composed per request.
// A pinned target (the app dialled a pod's own address, config/table.ts)
// keeps its service's routes for their matches, timeouts, retries and faults,
// but every route goes to that pod alone: the caller chose it, so neither a
// split to other services nor the circuit breaker may take it elsewhere, and
// retries go back to it.
import type { ServiceTarget, RoutingTable } from '../config/table.js';
import type { RetryBudget } from '../../contract/proxy-config.js';
import { balancedForward, type Forwarder } from '../http/balance.js';
import { Breaker, compileBreaker } from '../http/breaker.js';
import { faultLayer, compileFaults } from '../http/faults.js';
import { forward, type EndpointPools } from '../http/forward.js';
import { forwardH2, type H2Sessions } from '../http/h2-forward.js';
import { grpcAnswersLayer } from '../http/grpc-answers.js';
import { grpcDeadlineLayer } from '../http/grpc-deadline.js';
import { compileLimits } from '../http/limits.js';
import { metricsLayer } from '../http/metrics.js';
import { retryLayer } from '../http/retry.js';
import { compileRetryPolicy, type RetryRules } from '../http/retry-policy.js';
import { compileRoutes, resolveBackend, routeRequests, type CompiledBackend, type CompiledRoute } from '../http/route.js';
import { redirectHandler, requestHeadersLayer, responseHeadersLayer, rewriteLayer } from '../http/route-filters.js';
import { mirrorLayer } from '../http/mirror.js';
import type { MirrorFilter, RouteFilters } from '../../contract/proxy-config.js';
import { splitByWeight } from '../http/split.js';
import { telemetryLayer } from '../http/telemetry.js';
import { DEFAULT_RESPONSE_HEAD_TIMEOUT_MS, timeoutLayer } from '../http/timeout.js';
import { compose, localResponse, type Handler, type Layer } from '../http/types.js';
import type { ProxyMetrics } from '../metrics.js';
import type { Telemetry } from '../telemetry/state.js';
import type { MeshTls } from '../tls/mesh-tls.js';
import type { TrafficState } from './traffic-state.js';

export interface OutboundDeps {
  metrics: ProxyMetrics;
  pools: EndpointPools;
  h2: H2Sessions;
  meshTls: MeshTls;
  /** The config in force; backends of a split are looked up in it. */
  table: () => RoutingTable;
  traffic: TrafficState;
  telemetry: Telemetry;
  /** How long a request sent whole waits for its response's head where its route sets no timeout (TSMESH_RESPONSE_HEAD_TIMEOUT; 0: no bound). */
  responseHeadTimeoutMs?: number;
}

export function outboundStack(target: ServiceTarget, deps: OutboundDeps): Handler {
  const table = deps.table();
  const routes = compileRoutes(target, table);
  return compose(
    [
      metricsLayer(deps.metrics, {
        direction: 'outbound',
        destinationService: target.key,
        sourceIdentity: () => deps.meshTls.identity ?? '',
      }),
      telemetryLayer(deps.telemetry, { direction: 'outbound', destinationService: target.key, sourceIdentity: () => deps.meshTls.identity ?? '' }),
      grpcAnswersLayer,
      grpcDeadlineLayer({ service: target.key, scheduler: deps.traffic.scheduler }),
    ],
    routeRequests(routes.map((route) => ({ match: route.match, handler: routeStack(target, route, table, deps) }))),
  );
}

function routeStack(target: ServiceTarget, route: CompiledRoute, table: RoutingTable, deps: OutboundDeps): Handler {
  const { scheduler, random } = deps.traffic;
  // The route taken, for the request's metrics, span and access log line.
  const layers: Layer[] = [(next) => (req) => ((req.route = route.name), req.observer?.route(route.name), next(req))];
  if (route.unmatched) {
    // A port with Gateway API routes: a request none of them matched gets 404, as the Gateway API says.
    return compose(layers, () => Promise.resolve(localResponse(404, 'no-route-match', `tsmesh: no route of ${target.key} port ${target.port.port} matches the request`)));
  }
  const filters = route.filters;
  if (filters?.responseHeaders) layers.push(responseHeadersLayer(filters.responseHeaders));
  if (filters?.redirect) {
    const context = { matchedPrefix: route.matchedPrefix, listenerPort: target.port.port, scheme: 'http' as const, fallbackHost: target.service.name };
    return compose(layers, redirectHandler(filters.redirect, context));
  }
  if (filters?.requestHeaders) layers.push(requestHeadersLayer(filters.requestHeaders));
  if (filters?.rewrite) layers.push(rewriteLayer(filters.rewrite, route.matchedPrefix));
  const mirrors = mirrorsOf(target, filters, table, deps);
  if (mirrors) layers.push(mirrors);
  const faults = compileFaults(route.faults);
  if (faults) {
    const delays = deps.metrics.faultsInjected.labels({ destination_service: target.key, kind: 'delay' });
    const aborts = deps.metrics.faultsInjected.labels({ destination_service: target.key, kind: 'abort' });
    layers.push(faultLayer({ rules: faults, service: target.key, injected: (kind) => (kind === 'abort' ? aborts : delays).inc(), scheduler, random }));
  }
  if (route.timeoutMs > 0) layers.push(timeoutLayer({ ms: route.timeoutMs, service: target.key, scheduler }));
  // The route's own timeouts are the bounds its owner chose: the response head timeout is for routes without one.
  const headTimeoutMs = route.timeoutMs > 0 || route.backendTimeoutMs > 0 ? 0 : (deps.responseHeadTimeoutMs ?? DEFAULT_RESPONSE_HEAD_TIMEOUT_MS);
  const retries = withAttemptBound(compileRetryPolicy(route.retries), route.backendTimeoutMs);
  const budget = route.retries?.budget ?? table.config.mesh.retryBudget;
  const backends = target.pinned ? [{ service: target.key, weight: 1, target }] : route.backends;
  if (backends.length === 0) {
    // A Gateway API rule none of whose backends resolved: every request gets 500.
    return compose(layers, () => Promise.resolve(localResponse(500, 'no-backend', `tsmesh: route ${route.name} of ${target.key} has no backend`)));
  }
  const split = splitByWeight(
    backends.map((backend) => ({ weight: backend.weight, handler: backendStack(backend, retries, budget, deps, headTimeoutMs, table) })),
    random,
  );
  return compose(layers, split);
}

/** A per-attempt bound (Gateway API's backendRequest timeout) with the retry policy's own: the shorter one. */
function withAttemptBound(rules: Readonly<RetryRules>, ms: number): Readonly<RetryRules> {
  if (ms <= 0 || (rules.perTryTimeoutMs > 0 && rules.perTryTimeoutMs <= ms)) return rules;
  return { ...rules, perTryTimeoutMs: ms };
}

/** The mirror layer of a route's or a backend's filters; mirrors to a service or port the config lacks are left out. */
function mirrorsOf(from: ServiceTarget, filters: RouteFilters | undefined, table: RoutingTable, deps: OutboundDeps): Layer | undefined {
  const list = (filters?.mirrors ?? []).flatMap((m: MirrorFilter) => {
    const backend = resolveBackend(from, table, m.service, 1, m.port);
    if (!backend.target) return [];
    return [{ service: backend.service, percent: m.percent ?? 100, send: backendStack(backend, undefined, table.config.mesh.retryBudget, deps, deps.responseHeadTimeoutMs ?? DEFAULT_RESPONSE_HEAD_TIMEOUT_MS, table) }];
  });
  if (list.length === 0) return undefined;
  const counters = new Map(list.map((m) => [m, { sent: deps.metrics.mirrors.labels({ destination_service: from.key, mirror_service: m.service, outcome: 'sent' }), dropped: deps.metrics.mirrors.labels({ destination_service: from.key, mirror_service: m.service, outcome: 'dropped' }) }]));
  return mirrorLayer({ mirrors: list, random: deps.traffic.random, counted: (m, outcome) => counters.get(m as (typeof list)[number])![outcome].inc() });
}

/** One backend of a route: its filters, retries (none for a mirror's copies: `retries` undefined), balancing, breaker and forwarding. */
function backendStack(backend: CompiledBackend, retries: Readonly<RetryRules> | undefined, budget: RetryBudget, deps: OutboundDeps, headTimeoutMs: number, table: RoutingTable): Handler {
  const target = backend.target;
  if (!target) {
    // Gateway API's rule for a backend that does not exist: its share of requests gets 500.
    return () => Promise.resolve(localResponse(500, 'no-backend', `tsmesh: backend ${backend.service} is not a known service on this port`));
  }
  const { metrics, traffic } = deps;
  const service = target.key;
  const balancer = traffic.balancer(target);
  const breakerRules = target.pinned ? undefined : compileBreaker(target.service.trafficPolicy?.circuitBreaker);
  if (!breakerRules) balancer.restoreAll();
  const ejections = metrics.endpointEjections.labels({ destination_service: service });
  const exhausted = metrics.retryBudgetExhausted.labels({ destination_service: service });
  const send: Forwarder = (ep, req) => {
    // A gRPC call's deadline bounds it already (grpc-deadline.ts), as its caller chose.
    const ms = req.deadline === undefined ? headTimeoutMs : 0;
    return req.protocol === 'http2' ? forwardH2(deps.h2, ep, req, ms) : forward(deps.pools, ep, req, ms);
  };
  const layers: Layer[] = [];
  const filters = backend.filters;
  if (filters?.responseHeaders) layers.push(responseHeadersLayer(filters.responseHeaders));
  if (filters?.requestHeaders) layers.push(requestHeadersLayer(filters.requestHeaders));
  const mirrors = mirrorsOf(target, filters, table, deps);
  if (mirrors) layers.push(mirrors);
  if (retries) {
    layers.push(
      retryLayer({
        rules: retries,
        budget: traffic.budget(service, budget),
        service,
        counters: { retried: (reason) => metrics.retries.inc({ destination_service: service, reason }), budgetExhausted: () => exhausted.inc() },
        scheduler: traffic.scheduler,
        random: traffic.random,
      }),
    );
  }
  return compose(
    layers,
    balancedForward({
      service,
      balancer,
      breaker: breakerRules && new Breaker(breakerRules, balancer, traffic.scheduler, () => ejections.inc()),
      forward: send,
      clock: traffic.scheduler,
      limits: compileLimits(target.service.trafficPolicy?.limits),
      queue: traffic.queue(target),
    }),
  );
}
