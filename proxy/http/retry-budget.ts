// The retry budget, as Finagle's and Linkerd's: every request deposits
// `ratio` of a retry, every retry withdraws one, and a deposit expires after
// `ttl`; a floor of `minRetriesPerSecond` lets a quiet service retry too. A
// budget is shared by all routes that send to one destination service, so
// however many attempts a policy asks for, retries can never multiply load.
//
// Two things differ from theirs, so that a failing service never sees its
// allowance spent in one burst. Their floor is a reserve of
// minRetriesPerSecond x ttl, whole again whenever the window has moved past
// the retries that spent it: under total failure it came back every ttl and
// was spent in one second (1.5-1.7x the requests in that second). Here the
// floor is a rate that fills up to one second's worth and no more. And the
// deposits of a quiet or healthy spell, or of requests whose failures come
// late (a hung service, answered by the per-try timeout), could be spent all
// at once; here the retries paid by deposits in any second are at most
// SECOND_SHARE_LIMIT x ratio of that second's requests.
import { parseDuration } from '../../lib/duration.js';
import type { RetryBudget as RetryBudgetSpec } from '../../contract/proxy-config.js';
import type { Clock } from '../../lib/scheduler.js';
import { SlidingWindow } from '../balance/sliding-window.js';

/** Retries paid by deposits in any second are at most this x ratio of the requests in that second. */
export const SECOND_SHARE_LIMIT = 1.25;

export class RetryBudget {
  /** totalA: requests, totalB: retries they paid for; a deposit leaves after ttl. */
  private readonly deposits: SlidingWindow;
  /** The same counts over the last second, which bounds how fast deposits are spent. */
  private readonly lastSecond: SlidingWindow;
  /** The floor: a rate of minRetriesPerSecond, holding at most one second's worth. */
  private readonly floorRate: number;
  private readonly floorCapacity: number;
  private floorTokens: number;
  private floorAt: number;

  constructor(
    readonly ratio: number,
    minRetriesPerSecond: number,
    ttlMs: number,
    private readonly clock: Clock,
  ) {
    this.deposits = new SlidingWindow(ttlMs, clock);
    this.lastSecond = new SlidingWindow(1000, clock, 20);
    this.floorRate = minRetriesPerSecond / 1000;
    // A floor below one a second still allows one retry now and then.
    this.floorCapacity = minRetriesPerSecond > 0 ? Math.max(1, minRetriesPerSecond) : 0;
    this.floorTokens = this.floorCapacity;
    this.floorAt = clock.now();
  }

  static from(spec: RetryBudgetSpec, clock: Clock): RetryBudget {
    return new RetryBudget(spec.ratio, spec.minRetriesPerSecond, parseDuration(spec.ttl), clock);
  }

  /** Records a request (not a retry). */
  deposit(): void {
    this.deposits.add(1, 0);
    this.lastSecond.add(1, 0);
  }

  /** Takes one retry from the budget; false when it is spent. */
  withdraw(): boolean {
    return this.fromDeposits() || this.fromFloor();
  }

  private fromDeposits(): boolean {
    if (this.ratio * this.deposits.totalA - this.deposits.totalB < 1) return false;
    if (SECOND_SHARE_LIMIT * this.ratio * this.lastSecond.totalA - this.lastSecond.totalB < 1) return false;
    this.deposits.add(0, 1);
    this.lastSecond.add(0, 1);
    return true;
  }

  private fromFloor(): boolean {
    const now = this.clock.now();
    this.floorTokens = Math.min(this.floorCapacity, this.floorTokens + (now - this.floorAt) * this.floorRate);
    this.floorAt = now;
    if (this.floorTokens < 1) return false;
    this.floorTokens -= 1;
    return true;
  }
}
