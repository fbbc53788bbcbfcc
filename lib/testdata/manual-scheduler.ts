// Virtual time for timing tests: timers fire only when the test advances the
// clock, in due order, each at its own instant.
import type { Scheduler, TimerHandle } from '../scheduler.js';

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class ManualScheduler implements Scheduler {
  private clock: number;
  private nextId = 1;
  private timers: Timer[] = [];

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.clock = start;
  }

  now(): number {
    return this.clock;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { id: this.nextId++, at: this.clock + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Delays of the pending timers from now, soonest first. */
  pending(): number[] {
    return this.timers.map((t) => t.at - this.clock).sort((a, b) => a - b);
  }

  /** Moves the clock forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.clock + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.clock = Math.max(this.clock, due.at);
      due.fn();
    }
    this.clock = end;
  }

  /** Moves the clock to the next timer and fires it; returns the delay, or undefined when none is pending. */
  runNext(): number | undefined {
    const next = this.pending()[0];
    if (next === undefined) return undefined;
    this.advance(next);
    return next;
  }
}

/** Lets promise callbacks and I/O completions that are already due run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}
