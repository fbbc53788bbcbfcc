// The innermost outbound handler for one destination service: pick an
// endpoint (balance/p2c.ts), forward, and report the outcome back: latency
// to the balancer (from dispatch on a ready connection: the wait for one is
// left out), success or failure to the circuit breaker. Connection
// failures become local responses that say which kind they were, so the
// retry layer above can tell a connect failure from a reset.
import type { Clock } from '../../lib/scheduler.js';
import type { P2cBalancer } from '../balance/p2c.js';
import type { ResolvedEndpoint } from '../config/table.js';
import { UpstreamConnectError } from '../upstream.js';
import type { Breaker } from './breaker.js';
import { MeshTimeoutError } from './timeout.js';
import { localResponse, type Handler, type ProxyRequest, type ProxyResponse } from './types.js';

export type Forwarder = (ep: ResolvedEndpoint, req: ProxyRequest) => Promise<ProxyResponse>;

/** localReason values the retry layer acts on. */
export const CONNECT_FAILURE = 'connect-failure';
export const UPSTREAM_RESET = 'upstream-reset';

export interface BalancedOptions {
  /** "name.namespace", for messages. */
  service: string;
  balancer: P2cBalancer;
  breaker: Breaker | undefined;
  forward: Forwarder;
  clock: Clock;
}

export function isConnectFailure(e: unknown): boolean {
  const err = e as Error & { cause?: unknown };
  return err instanceof UpstreamConnectError || err.cause instanceof UpstreamConnectError;
}

export function balancedForward(o: BalancedOptions): Handler {
  const { balancer, breaker, forward, clock } = o;
  return async (req) => {
    const s = balancer.pick();
    if (!s) {
      return balancer.endpoints.length === 0
        ? localResponse(503, 'no-endpoints', `tsmesh: ${o.service} has no ready endpoints`)
        : localResponse(503, 'circuit-open', `tsmesh: every endpoint of ${o.service} is ejected by the circuit breaker`);
    }
    const started = clock.now();
    s.pending++;
    let res: ProxyResponse;
    try {
      res = await forward(s.ep, req);
    } catch (e) {
      s.pending--;
      const rtt = clock.now() - started;
      if (req.signal.aborted) {
        // A mesh timeout is the endpoint's failure; a client that left is nobody's.
        if (req.signal.reason instanceof MeshTimeoutError) {
          balancer.observe(s, rtt, false);
          breaker?.record(s, true);
        } else if (s.probing) balancer.abandonProbe(s);
        throw e;
      }
      balancer.observe(s, rtt, false);
      breaker?.record(s, true);
      const connect = isConnectFailure(e);
      const where = `${o.service} at ${s.ep.address}:${s.ep.port}`;
      return localResponse(connect ? 503 : 502, connect ? CONNECT_FAILURE : UPSTREAM_RESET, `tsmesh: ${where}: ${(e as Error).message}`);
    }
    s.pending--;
    // Counted, the wait for a connection (an mTLS handshake) would make a new endpoint look slow
    // until it had been idle for the reprobe time.
    balancer.observe(s, Math.max(0, clock.now() - started - (res.meta?.connectMs ?? 0)), true);
    breaker?.record(s, res.status >= 500);
    return res;
  };
}
