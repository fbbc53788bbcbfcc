// Time as the proxy's timed logic sees it. Injected so that identity renewal,
// retries, timeouts, ejections and fault delays run on virtual time in tests
// (testdata/manual-scheduler.ts).

export type TimerHandle = unknown;

/** The narrow view of time for code that only measures (windows, latency). */
export interface Clock {
  /** Milliseconds: since the Unix epoch for systemScheduler; monotonic (performance.now()) for monotonicScheduler. */
  now(): number;
}

export interface Scheduler extends Clock {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

function unrefTimeout(fn: () => void, ms: number): TimerHandle {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

function clear(handle: TimerHandle): void {
  clearTimeout(handle as NodeJS.Timeout);
}

/** Wall-clock time, for what is compared with certificate dates. Timers are unref'd: a pending rotation alone never keeps the process alive. */
export const systemScheduler: Scheduler = { now: () => Date.now(), setTimeout: unrefTimeout, clearTimeout: clear };

/** Monotonic time, for durations on the data path (latency, windows, ejections), which must not jump with the wall clock. */
export const monotonicScheduler: Scheduler = { now: () => performance.now(), setTimeout: unrefTimeout, clearTimeout: clear };
