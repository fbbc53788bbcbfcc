// Overload bounds for one destination service port (TrafficPolicy `limits`,
// after Envoy's circuit-breaker thresholds): at most maxRequestsPerEndpoint
// requests in flight to any one endpoint; a request that finds every
// endpoint at its limit waits, first come first served, among at most
// maxPendingRequests others and for at most pendingTimeout. Past either
// bound it is answered 503 `x-tsmesh-error: overloaded` at once: a caller
// learns the service is overloaded in microseconds instead of joining a
// queue nobody drains, and a caller that goes away leaves the queue at once,
// so nothing it asked for is sent later. The defaults bound what one proxy
// can pile on a hung service without limiting a healthy one.
import { parseDuration } from '../../lib/duration.js';
import type { Scheduler, TimerHandle } from '../../lib/scheduler.js';
import type { LimitsPolicy } from '../../contract/proxy-config.js';
import type { RequestSignal } from './cancel.js';
import { localResponse, type ProxyResponse, type ResponseMeta } from './types.js';
import type { LocalError } from '../../contract/vocabulary.js';

export interface LimitRules {
  maxRequestsPerEndpoint: number;
  maxPendingRequests: number;
  pendingTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<LimitRules> = { maxRequestsPerEndpoint: 256, maxPendingRequests: 256, pendingTimeoutMs: 1000 };

export function compileLimits(policy: LimitsPolicy | undefined): Readonly<LimitRules> {
  if (!policy) return DEFAULT_LIMITS;
  return {
    maxRequestsPerEndpoint: policy.maxRequestsPerEndpoint ?? DEFAULT_LIMITS.maxRequestsPerEndpoint,
    maxPendingRequests: policy.maxPendingRequests ?? DEFAULT_LIMITS.maxPendingRequests,
    pendingTimeoutMs: policy.pendingTimeout ? parseDuration(policy.pendingTimeout) : DEFAULT_LIMITS.pendingTimeoutMs,
  };
}

export const OVERLOADED = 'overloaded' satisfies LocalError;

/** A pool turned a request away: its wait for a connection was over a bound (answered 503 overloaded). */
export class OverloadedError extends Error {
  override name = 'OverloadedError';
  constructor(
    readonly limit: OverloadLimit,
    message: string,
  ) {
    super(message);
  }
}

/** Which bound turned a request away (the `limit` label of tsmesh_overload_rejections_total). */
export type OverloadLimit = NonNullable<ResponseMeta['overload']>;

export function overloadedResponse(limit: OverloadLimit, detail: string): ProxyResponse {
  const res = localResponse(503, OVERLOADED, `tsmesh: ${detail}`);
  res.meta!.overload = limit;
  return res;
}

interface Waiter {
  wake: () => void;
  /** Removed (woken, aborted or timed out): a stale entry the queue skips. */
  gone: boolean;
}

/**
 * Requests waiting for capacity, oldest first. Each waiter leaves on its
 * own abort or deadline; wake() hands a freed slot to the oldest one still
 * waiting.
 */
export class PendingQueue {
  private readonly waiters: Waiter[] = [];
  private head = 0;
  /** Waiting now (stale entries not counted). */
  size = 0;

  constructor(private readonly scheduler: Scheduler) {}

  /**
   * Waits until woken ('woken'), or until `deadline` (a time of the scheduler: 'timeout'); 'full'
   * at once when `max` already wait. Rejects with the signal's reason when it aborts.
   */
  wait(signal: RequestSignal, deadline: number, max: number): Promise<'woken' | 'timeout' | 'full'> {
    if (this.size >= max) return Promise.resolve('full');
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        gone: false,
        wake: () => {
          leave();
          resolve('woken');
        },
      };
      const leave = (): void => {
        w.gone = true;
        this.size--;
        this.scheduler.clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        leave();
        reject(signal.reason as Error);
      };
      // Only leave() reads it, and only after this line.
      const timer: TimerHandle = this.scheduler.setTimeout(
        () => {
          leave();
          resolve('timeout');
        },
        Math.max(0, deadline - this.scheduler.now()),
      );
      signal.addEventListener('abort', onAbort, { once: true });
      this.size++;
      this.waiters.push(w);
    });
  }

  /** Every waiter wakes (the capacity went away: they find out for themselves). */
  wakeAll(): void {
    while (this.size > 0) this.wake();
  }

  /** A slot came free: the oldest waiter still there takes it. */
  wake(): void {
    if (this.size === 0) {
      this.waiters.length = this.head = 0;
      return;
    }
    while (this.head < this.waiters.length) {
      const w = this.waiters[this.head++]!;
      if (!w.gone) {
        w.wake();
        break;
      }
    }
    // Drop what was passed over once it is most of the array.
    if (this.head > 64 && this.head * 2 > this.waiters.length) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
  }
}
