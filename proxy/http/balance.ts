// The innermost outbound handler for one destination service: pick an
// endpoint (balance/p2c.ts), forward, and report the outcome back: latency
// to the balancer (from dispatch on a ready connection: the wait for one is
// left out), success or failure to the circuit breaker. Connection
// failures become local responses that say which kind they were, so the
// retry layer above can tell a connect failure from a reset.
import type { Scheduler } from '../../lib/scheduler.js';
import type { EndpointState, P2cBalancer } from '../balance/p2c.js';
import type { ResolvedEndpoint } from '../config/table.js';
import { UpstreamConnectError } from '../upstream.js';
import { UpstreamResetError } from './h1/exchange.js';
import { HttpParseError } from './h1/head.js';
import type { Breaker } from './breaker.js';
import { DEFAULT_LIMITS, OverloadedError, overloadedResponse, PendingQueue, type LimitRules } from './limits.js';
import { isGrpc, isGrpcServerFailure, whenGrpcStatus } from './grpc.js';
import { MeshTimeoutError, RESPONSE_HEAD_TIMEOUT_REASON, ResponseHeadTimeoutError } from './timeout.js';
import { localResponse, type Handler, type ProxyRequest, type ProxyResponse } from './types.js';
import { ERROR_HEADER } from '../../contract/vocabulary.js';
import type { LocalError } from '../../contract/vocabulary.js';

export type Forwarder = (ep: ResolvedEndpoint, req: ProxyRequest) => Promise<ProxyResponse>;

/** localReason values the retry layer acts on. */
export const CONNECT_FAILURE = 'connect-failure' satisfies LocalError;
/**
 * x-tsmesh-error of the 503 an inbound proxy answers when its app refused the
 * connection: the request never reached the app, and the caller's proxy may
 * send it again elsewhere whatever its method (a rolling restart's window
 * between an app stopping and its endpoint leaving the config).
 */
export const APP_REFUSED = 'app-refused' satisfies LocalError;
export const UPSTREAM_RESET = 'upstream-reset' satisfies LocalError;
/** x-tsmesh-error of the 502 for a response the endpoint sent that the proxy will not read (h1/exchange.ts); never retried, as it would only come again. */
export const BAD_RESPONSE = 'bad-response' satisfies LocalError;

export interface BalancedOptions {
  /** "name.namespace", for messages. */
  service: string;
  balancer: P2cBalancer;
  breaker: Breaker | undefined;
  forward: Forwarder;
  clock: Scheduler;
  /** Default: DEFAULT_LIMITS. */
  limits?: Readonly<LimitRules>;
  /** Requests waiting for an endpoint under its limit; it outlives the stack (outbound/traffic-state.ts). */
  queue?: PendingQueue;
}

export function isConnectFailure(e: unknown): boolean {
  const err = e as Error & { cause?: unknown };
  return err instanceof UpstreamConnectError || err.cause instanceof UpstreamConnectError;
}

export function balancedForward(o: BalancedOptions): Handler {
  const { balancer, breaker, forward, clock } = o;
  const limits = o.limits ?? DEFAULT_LIMITS;
  const queue = o.queue ?? new PendingQueue(clock);
  /** The picked endpoint was at its limit: another with room, waiting for one if every endpoint is at it; or the answer that there is none. */
  const waitForRoom = async (req: ProxyRequest): Promise<EndpointState | ProxyResponse> => {
    const deadline = clock.now() + limits.pendingTimeoutMs;
    for (;;) {
      const s = balancer.pickUnder(limits.maxRequestsPerEndpoint);
      if (s) return s;
      if (balancer.endpoints.length - balancer.ejectedCount === 0) return noEndpoint();
      const waited = await queue.wait(req.signal, deadline, limits.maxPendingRequests);
      if (waited === 'full') {
        return overloadedResponse('max-pending-requests', `${o.service} is overloaded: every endpoint has ${limits.maxRequestsPerEndpoint} requests in flight (limits.maxRequestsPerEndpoint) and ${limits.maxPendingRequests} more wait (limits.maxPendingRequests)`);
      }
      if (waited === 'timeout') {
        return overloadedResponse('pending-timeout', `${o.service} is overloaded: no endpoint came under its ${limits.maxRequestsPerEndpoint} requests in flight (limits.maxRequestsPerEndpoint) within ${limits.pendingTimeoutMs} ms (limits.pendingTimeout)`);
      }
    }
  };
  const noEndpoint = (): ProxyResponse =>
    balancer.endpoints.length === 0
      ? localResponse(503, 'no-endpoints', `tsmesh: ${o.service} has no ready endpoints`)
      : localResponse(503, 'circuit-open', `tsmesh: every endpoint of ${o.service} is ejected by the circuit breaker`);
  /** The outcome of a try to the circuit breaker; an ejection it makes is told to the request's observer. */
  const record = (s: EndpointState, req: ProxyRequest, failed: boolean): void => {
    if (breaker?.record(s, failed)) req.observer?.ejected(s.key);
  };
  /** A request to `s` ended: a waiting one may take its slot. */
  const done = (s: EndpointState): void => {
    s.pending--;
    s.requests--;
    if (queue.size > 0) queue.wake();
  };
  return async (req) => {
    let s = balancer.pick(true, req.avoid);
    if (s === undefined) return noEndpoint();
    if (s.requests >= limits.maxRequestsPerEndpoint) {
      const chosen = await waitForRoom(req);
      if ('status' in chosen) return chosen;
      s = chosen;
    }
    const started = clock.now();
    s.pending++;
    s.requests++;
    let res: ProxyResponse;
    try {
      res = await forward(s.ep, req);
    } catch (e) {
      done(s);
      // The pool's own bound: no failure of the endpoint, which never saw the request.
      if (e instanceof OverloadedError) return overloadedResponse(e.limit, `${o.service} is overloaded: ${e.message}`);
      const rtt = clock.now() - started;
      if (req.signal.aborted) {
        if (req.signal.reason instanceof MeshTimeoutError) {
          // A mesh timeout is the endpoint's failure.
          balancer.observe(s, rtt, false);
          record(s, req, true);
        } else {
          // The caller gave up: the endpoint took at least this long (a hung one must look slow,
          // not idle), and, unless the policy says otherwise, it failed to answer in time.
          balancer.observeAtLeast(s, rtt);
          if (breaker?.countsCancellations) record(s, req, true);
          else if (s.probing) balancer.abandonProbe(s);
        }
        throw e;
      }
      balancer.observe(s, rtt, false);
      record(s, req, true);
      // Refused unread by the endpoint's proxy (it is going away): as good as never sent.
      const connect = isConnectFailure(e) || (e instanceof UpstreamResetError && e.refused);
      const where = `${o.service} at ${s.ep.address}:${s.ep.port}`;
      if (e instanceof ResponseHeadTimeoutError) {
        // A hung endpoint: its connection or stream is closed, and the caller hears why.
        const late = localResponse(504, RESPONSE_HEAD_TIMEOUT_REASON, `tsmesh: ${where} sent ${e.message}`);
        late.meta!.endpointKey = s.key;
        return late;
      }
      const reason = connect ? CONNECT_FAILURE : e instanceof HttpParseError ? BAD_RESPONSE : UPSTREAM_RESET;
      const failed = localResponse(connect ? 503 : 502, reason, `tsmesh: ${where}: ${(e as Error).message}`);
      failed.meta!.endpointKey = s.key;
      return failed;
    }
    done(s);
    const meta = (res.meta ??= {});
    meta.endpointKey = s.key;
    // Counted, the wait for a connection (an mTLS handshake) would make a new endpoint look slow
    // until it had been idle for the reprobe time.
    const rtt = Math.max(0, clock.now() - started - (meta.connectMs ?? 0));
    // (Whatever the status: to a gRPC caller the endpoint's proxy answers it as UNAVAILABLE.)
    if (s.ep.identity !== undefined && res.headers[ERROR_HEADER] === APP_REFUSED) {
      // The endpoint's proxy could not connect to its app: the app never saw the request, so
      // the retry layer may send it again, whatever its method, as after a connect failure;
      // and the endpoint is as good as unreachable, not fast (its answers come at once).
      meta.localReason = CONNECT_FAILURE;
      balancer.observe(s, rtt, false);
    } else balancer.observe(s, rtt, true);
    if (breaker) {
      // A gRPC call failed by its status (in the head, or in the trailers when its body ends), whatever its HTTP status.
      if (isGrpc(req.headers)) whenGrpcStatus(res, () => req.signal.aborted, (code) => record(s, req, isGrpcServerFailure(code)));
      else record(s, req, res.status >= 500);
    }
    return res;
  };
}
