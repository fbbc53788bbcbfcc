// The response head timeout's clock for every forwarder (h1/connection.ts,
// h2-forward.ts, h2-frames.ts): the requests that wait for their response
// head, and one timer for all of them. A request adds a Set entry and reads
// the clock, and makes no timer of its own. The timer stops at the first
// look that finds no request waiting, not when the last one is answered: at
// a moderate rate requests come one at a time, and a timer armed and cleared
// around each of them cost about 3% of a sidecar's busy time at 1,000 req/s;
// an idle proxy still has none running after one period. The timer looks
// every eighth of the shortest wait (10 ms to 1 s), so a wait ends within
// that much after its deadline: the bound is a safety net (60 s by default),
// not a schedule.

/** A request waiting for its response head. */
export interface HeadWait {
  /** When the wait ends, performance.now() ms; set by HeadWaits.add. */
  headDeadline: number;
  /** No head came in time: called once, after the wait has been removed. */
  onHeadTimeout(): void;
}

export class HeadWaits {
  private readonly waiting = new Set<HeadWait>();
  private timer: NodeJS.Timeout | undefined;
  private everyMs = 0;
  private timersArmed = 0;

  /** Starts (or starts again) `wait`'s `ms`. */
  add(wait: HeadWait, ms: number): void {
    wait.headDeadline = performance.now() + ms;
    this.waiting.add(wait);
    const every = Math.min(1000, Math.max(10, Math.floor(ms / 8)));
    if (this.timer !== undefined && every >= this.everyMs) return;
    clearInterval(this.timer);
    this.everyMs = every;
    this.timersArmed++;
    this.timer = setInterval(() => this.look(), every).unref();
  }

  /** The head came, or the request is over. The timer runs on to its next look. */
  delete(wait: HeadWait): void {
    this.waiting.delete(wait);
  }

  /** Requests waiting now. */
  get size(): number {
    return this.waiting.size;
  }

  /** Whether the timer runs now. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Timers armed so far. */
  get armed(): number {
    return this.timersArmed;
  }

  private look(): void {
    const now = performance.now();
    for (const wait of this.waiting) {
      if (wait.headDeadline > now) continue;
      this.waiting.delete(wait);
      wait.onHeadTimeout();
    }
    if (this.waiting.size === 0) this.stop();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.everyMs = 0;
  }
}

/** The process's one set of head waits. */
export const HEAD_WAITS = new HeadWaits();
