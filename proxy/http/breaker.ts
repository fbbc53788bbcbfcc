// Circuit breaking per endpoint (outlier ejection): an endpoint that fails
// `consecutiveFailures` times in a row, or whose failure rate over a window
// reaches a threshold once it has seen `minRequests`, leaves the balancer for
// an ejection time that doubles with each ejection in a row (and shrinks
// back while the endpoint stays healthy). When the time is up, one probe
// request goes to it: success brings it back, failure ejects it again. At
// most `maxEjectionPercent` of the endpoints are out at once, rounded down,
// so a lone endpoint is never ejected; 100 allows an open circuit, where
// requests fail fast with 503 until a probe succeeds.
//
// The breaker only decides; the balancer (balance/p2c.ts) keeps who is out.
import { parseDuration } from '../../lib/duration.js';
import type { Clock } from '../../lib/scheduler.js';
import type { EndpointState } from '../balance/p2c.js';
import type { CircuitBreakerPolicy } from '../../contract/proxy-config.js';
import { SlidingWindow } from '../balance/sliding-window.js';

export interface BreakerRules {
  consecutiveFailures: number | undefined;
  failureRate: { threshold: number; windowMs: number; minRequests: number } | undefined;
  ejectionMs: number;
  /** The backoff stops growing here. */
  maxEjectionMs: number;
  maxEjectionPercent: number;
  /** A request its caller gave up on counts as a failure. */
  countCancellations: boolean;
}

export const DEFAULT_CONSECUTIVE_FAILURES = 5;
export const DEFAULT_EJECTION_MS = 30_000;
export const DEFAULT_MAX_EJECTION_MS = 300_000;
export const DEFAULT_MAX_EJECTION_PERCENT = 50;

/** undefined when the policy sets no breaker. A breaker with neither rule counts consecutive failures (5, as Envoy). */
export function compileBreaker(policy: CircuitBreakerPolicy | undefined): BreakerRules | undefined {
  if (!policy) return undefined;
  const ejectionMs = policy.ejectionTime ? parseDuration(policy.ejectionTime) : DEFAULT_EJECTION_MS;
  const rate = policy.failureRate;
  return {
    consecutiveFailures: policy.consecutiveFailures ?? (rate ? undefined : DEFAULT_CONSECUTIVE_FAILURES),
    failureRate: rate ? { threshold: rate.threshold, windowMs: parseDuration(rate.window), minRequests: rate.minRequests } : undefined,
    ejectionMs,
    maxEjectionMs: Math.max(ejectionMs, DEFAULT_MAX_EJECTION_MS),
    maxEjectionPercent: policy.maxEjectionPercent ?? DEFAULT_MAX_EJECTION_PERCENT,
    countCancellations: policy.countCancellations ?? true,
  };
}

/** What the breaker needs from the balancer. */
export interface Ejector {
  readonly endpoints: readonly EndpointState[];
  readonly ejectedCount: number;
  eject(s: EndpointState, until: number): void;
  restore(s: EndpointState): void;
}

export class Breaker {
  constructor(
    private readonly rules: BreakerRules,
    private readonly ejector: Ejector,
    private readonly clock: Clock,
    private readonly onEject: () => void,
  ) {}

  get countsCancellations(): boolean {
    return this.rules.countCancellations;
  }

  /** Records the outcome of a request to `s`; true when it ejected `s`. */
  record(s: EndpointState, failed: boolean): boolean {
    if (s.probing) {
      if (failed) {
        this.eject(s, this.clock.now());
        return true;
      }
      this.ejector.restore(s);
      this.forget(s);
      return false;
    }
    // Outcomes of requests sent before an ejection change nothing.
    if (s.ejectedUntil !== 0) return false;
    const { consecutiveFailures, failureRate } = this.rules;
    let trip = false;
    if (consecutiveFailures !== undefined) {
      s.consecutiveFailures = failed ? s.consecutiveFailures + 1 : 0;
      trip = s.consecutiveFailures >= consecutiveFailures;
    }
    if (failureRate) {
      let w = s.outcomes;
      if (w?.windowMs !== failureRate.windowMs) w = s.outcomes = new SlidingWindow(failureRate.windowMs, this.clock);
      w.add(1, failed ? 1 : 0);
      if (failed && w.totalA >= failureRate.minRequests && w.totalB >= failureRate.threshold * w.totalA) trip = true;
    }
    if (trip && this.ejector.ejectedCount + 1 <= Math.floor((this.ejector.endpoints.length * this.rules.maxEjectionPercent) / 100)) {
      this.eject(s, this.clock.now());
      return true;
    }
    return false;
  }

  private eject(s: EndpointState, now: number): void {
    const { ejectionMs, maxEjectionMs } = this.rules;
    // The backoff forgets one step for every ejection time spent healthy since the endpoint came back.
    if (s.ejectedUntil === 0) s.ejections = Math.max(0, s.ejections - Math.floor((now - s.returnedAt) / ejectionMs));
    const ms = Math.min(maxEjectionMs, ejectionMs * 2 ** s.ejections);
    s.ejections++;
    this.ejector.eject(s, now + ms);
    this.forget(s);
    this.onEject();
  }

  private forget(s: EndpointState): void {
    s.consecutiveFailures = 0;
    s.outcomes?.reset();
  }
}
