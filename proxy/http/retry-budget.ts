// The retry budget: over a sliding `ttl` window, retries may add at most
// `ratio` of the requests plus a floor of `minRetriesPerSecond` (so a quiet
// service can still retry). Every request deposits, every retry withdraws;
// a budget is shared by all routes that send to one destination service, so
// however many attempts a policy asks for, retries can never multiply load
// (Linkerd's and tower's retry budget).
import { parseDuration } from '../../lib/duration.js';
import type { RetryBudget as RetryBudgetSpec } from '../config/types.js';
import type { Clock } from '../../lib/scheduler.js';
import { SlidingWindow } from './sliding-window.js';

export class RetryBudget {
  /** totalA: requests, totalB: retries. */
  private readonly window: SlidingWindow;
  private readonly reserve: number;

  constructor(
    readonly ratio: number,
    minRetriesPerSecond: number,
    ttlMs: number,
    clock: Clock,
  ) {
    this.window = new SlidingWindow(ttlMs, clock);
    this.reserve = (minRetriesPerSecond * ttlMs) / 1000;
  }

  static from(spec: RetryBudgetSpec, clock: Clock): RetryBudget {
    return new RetryBudget(spec.ratio, spec.minRetriesPerSecond, parseDuration(spec.ttl), clock);
  }

  /** Records a request (not a retry). */
  deposit(): void {
    this.window.add(1, 0);
  }

  /** Takes one retry from the budget; false when it is spent. */
  withdraw(): boolean {
    const allowed = this.ratio * this.window.totalA + this.reserve;
    if (this.window.totalB + 1 > allowed) return false;
    this.window.add(0, 1);
    return true;
  }
}
