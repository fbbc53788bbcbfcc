// Two counts over a sliding window of time (requests and retries, requests
// and failures), kept in a ring of slots so that counting allocates nothing:
// a slot's counts drop out as the window moves past it.
import type { Clock } from '../../lib/scheduler.js';

export class SlidingWindow {
  private readonly slotMs: number;
  private readonly a: Float64Array;
  private readonly b: Float64Array;
  private head = 0;
  private headStart: number;
  private sumA = 0;
  private sumB = 0;

  constructor(
    readonly windowMs: number,
    private readonly clock: Clock,
    private readonly slots = 10,
  ) {
    this.slotMs = Math.max(1, windowMs / slots);
    this.a = new Float64Array(slots);
    this.b = new Float64Array(slots);
    this.headStart = clock.now();
  }

  /** Adds to the counts of the current slot. */
  add(a: number, b: number): void {
    this.rotate();
    this.a[this.head]! += a;
    this.b[this.head]! += b;
    this.sumA += a;
    this.sumB += b;
  }

  /** The first count over the window. */
  get totalA(): number {
    this.rotate();
    return this.sumA;
  }

  /** The second count over the window. */
  get totalB(): number {
    this.rotate();
    return this.sumB;
  }

  reset(): void {
    this.a.fill(0);
    this.b.fill(0);
    this.sumA = this.sumB = 0;
    this.headStart = this.clock.now();
  }

  private rotate(): void {
    const elapsed = this.clock.now() - this.headStart;
    if (elapsed < this.slotMs) return;
    const steps = Math.floor(elapsed / this.slotMs);
    if (steps >= this.slots) {
      this.a.fill(0);
      this.b.fill(0);
      this.sumA = this.sumB = 0;
    } else {
      for (let i = 0; i < steps; i++) {
        this.head = (this.head + 1) % this.slots;
        this.sumA -= this.a[this.head]!;
        this.sumB -= this.b[this.head]!;
        this.a[this.head] = 0;
        this.b[this.head] = 0;
      }
    }
    this.headStart += steps * this.slotMs;
  }
}
