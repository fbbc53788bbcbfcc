// Time as the identity manager sees it. Injected so that retry and rotation
// run on virtual time in tests (testdata/manual-scheduler.ts).

export type TimerHandle = unknown;

export interface Scheduler {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Real time. Timers are unref'd: a pending rotation alone never keeps the process alive. */
export const systemScheduler: Scheduler = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
