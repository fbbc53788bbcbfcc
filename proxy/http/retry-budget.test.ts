import assert from 'node:assert/strict';
import { backoffDelay } from '../../lib/backoff.js';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { DEFAULT_RETRY_BUDGET } from '../../contract/proxy-config.js';
import { RetryBudget } from './retry-budget.js';
import { compileRetryPolicy } from './retry-policy.js';
import { SlidingWindow } from '../balance/sliding-window.js';

describe('SlidingWindow', () => {
  it('counts over the window and lets old slots drop out as time moves', () => {
    const clock = new ManualScheduler(0);
    const w = new SlidingWindow(10_000, clock);
    w.add(5, 1);
    clock.advance(4_000);
    w.add(3, 2);
    assert.deepEqual([w.totalA, w.totalB], [8, 3]);
    clock.advance(6_500); // the first slot (t=0..1s) is now older than the window
    assert.deepEqual([w.totalA, w.totalB], [3, 2]);
    clock.advance(60_000);
    assert.deepEqual([w.totalA, w.totalB], [0, 0]);
    w.add(1, 0);
    assert.equal(w.totalA, 1);
  });
});

/** Retries with the default backoff between attempts (retry-policy.ts). */
const BACKOFF = compileRetryPolicy({ attempts: 3 }).backoff;

interface Traffic {
  /** Request arrival times (ms), in order. */
  arrivals: number[];
  /** Which of them fail; the rest succeed. */
  fails?: (at: number) => boolean;
  /** How long after it was sent an attempt fails (a hung service answered by the per-try timeout: that timeout). */
  failAfterMs?: number;
  attempts?: number;
}

/**
 * Runs requests through a budget as retry.ts does, on virtual time: each
 * request deposits; each failed attempt withdraws for the next one, which
 * goes out after the backoff. Returns when requests and retries reached the
 * service.
 */
function run(budget: RetryBudget, clock: ManualScheduler, t: Traffic): { requests: number[]; retries: number[] } {
  const requests: number[] = [];
  const retries: number[] = [];
  const random = seededRandom(3);
  const attempts = t.attempts ?? 3;
  const failAfter = t.failAfterMs ?? 2;
  const failed = (n: number): void => {
    if (n >= attempts || !budget.withdraw()) return;
    clock.setTimeout(() => {
      retries.push(clock.now());
      clock.setTimeout(() => failed(n + 1), failAfter);
    }, backoffDelay(n - 1, BACKOFF, random));
  };
  const end = t.arrivals.at(-1)! + failAfter * attempts + 2 * BACKOFF.maxMs * attempts;
  let next = 0;
  while (clock.now() <= end) {
    for (; next < t.arrivals.length && t.arrivals[next]! <= clock.now(); next++) {
      budget.deposit();
      requests.push(clock.now());
      if (t.fails?.(clock.now()) ?? true) clock.setTimeout(() => failed(1), failAfter);
    }
    clock.advance(1);
  }
  return { requests, retries };
}

/** Arrival times at `perSecond` from `fromMs` for `forMs`, evenly spaced. */
function steady(perSecond: number, fromMs: number, forMs: number): number[] {
  return Array.from({ length: Math.floor((perSecond * forMs) / 1000) }, (_, i) => fromMs + Math.floor((i * 1000) / perSecond));
}

/** The largest (requests + retries) / requests reaching the service in any 1 s window that lies inside one of `spans` ([from, to) ms), slid 10 ms at a time. */
function worstSecond(r: { requests: number[]; retries: number[] }, spans: [number, number][]): { ratio: number; at: number } {
  const count = (xs: number[], from: number): number => xs.filter((x) => x >= from && x < from + 1000).length;
  let worst = { ratio: 0, at: 0 };
  for (const [from, to] of spans) {
    for (let s = from; s + 1000 <= to; s += 10) {
      const requests = count(r.requests, s);
      const ratio = (requests + count(r.retries, s)) / requests;
      if (ratio > worst.ratio) worst = { ratio, at: s };
    }
  }
  return worst;
}

describe('RetryBudget', () => {
  it('allows retries of 20% of the requests, spent no faster than 25% of a second\'s requests, plus 10 a second (the mesh default)', () => {
    const clock = new ManualScheduler(0);
    const budget = RetryBudget.from(DEFAULT_RETRY_BUDGET, clock);
    for (let i = 0; i < 1000; i++) budget.deposit();
    let granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 0.2 * 1000 + 10);
  });

  it('spends deposits no faster than 1.25 x ratio of the last second\'s requests', () => {
    const clock = new ManualScheduler(0);
    const budget = RetryBudget.from(DEFAULT_RETRY_BUDGET, clock);
    for (let i = 0; i < 1000; i++) budget.deposit();
    clock.advance(2000);
    for (let i = 0; i < 100; i++) budget.deposit();
    let granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 0.25 * 100 + 10, '220 deposited, but 100 requests in the last second allow 25, and the floor 10');
  });

  it('holds however many retries are asked for: a 100%-failing service gets at most ratio x requests + the floor', () => {
    const clock = new ManualScheduler(0);
    const budget = new RetryBudget(0.2, 10, 10_000, clock);
    let sent = 0;
    let requests = 0;
    // 1000 requests a second for a minute, each asking for 9 retries.
    for (let ms = 0; ms < 60_000; ms++) {
      requests++;
      budget.deposit();
      sent++;
      for (let r = 0; r < 9 && budget.withdraw(); r++) sent++;
      clock.advance(1);
    }
    assert.ok(sent / requests <= 1.2 + 10 / 1000 + 0.01, `load multiplied by ${sent / requests}`);
    assert.ok(sent / requests >= 1.19, `load multiplied by ${sent / requests}`);
  });

  for (const perSecond of [200, 1000]) {
    it(`never lets a second exceed 1.3x the requests under total failure at a steady ${perSecond} requests a second, across ttl boundaries`, () => {
      const clock = new ManualScheduler(0);
      const r = run(RetryBudget.from(DEFAULT_RETRY_BUDGET, clock), clock, { arrivals: steady(perSecond, 0, 45_000) });
      const worst = worstSecond(r, [[0, 45_000]]);
      const overall = (r.requests.length + r.retries.length) / r.requests.length;
      console.log(`      worst second ${worst.ratio.toFixed(3)}x at ${worst.at} ms; ${overall.toFixed(3)}x over the run`);
      assert.ok(worst.ratio <= 1.3, `${worst.ratio}x the requests in the second from ${worst.at} ms`);
      assert.ok(overall >= 1.2, `only ${overall}x over the run: the budget should allow its 20% and the floor`);
    });
  }

  it('never lets a second exceed 1.3x the requests of a burst after an idle spell, under total failure', () => {
    const clock = new ManualScheduler(0);
    // Idle 15 s, 3 s at 500 a second, idle 5 s, 2 s at 1000 a second, idle 11 s, 3 s at 300 a second.
    const bursts: [number, number, number][] = [
      [15_000, 3000, 500],
      [23_000, 2000, 1000],
      [36_000, 3000, 300],
    ];
    const r = run(RetryBudget.from(DEFAULT_RETRY_BUDGET, clock), clock, { arrivals: bursts.flatMap(([from, ms, rate]) => steady(rate, from, ms)) });
    const worst = worstSecond(
      r,
      bursts.map(([from, ms]) => [from, from + ms]),
    );
    console.log(`      worst second ${worst.ratio.toFixed(3)}x at ${worst.at} ms`);
    assert.ok(worst.ratio <= 1.3, `${worst.ratio}x the requests in the second from ${worst.at} ms`);
  });

  it('spends what a healthy spell deposited no faster than 1.25 x ratio of the requests when the service then fails', () => {
    const clock = new ManualScheduler(0);
    // 10 s healthy at 500 a second (1,000 retries deposited), then 10 s of total failure.
    const r = run(RetryBudget.from(DEFAULT_RETRY_BUDGET, clock), clock, { arrivals: steady(500, 0, 20_000), fails: (at) => at >= 10_000 });
    const worst = worstSecond(r, [[10_000, 20_000]]);
    console.log(`      worst second ${worst.ratio.toFixed(3)}x at ${worst.at} ms`);
    assert.ok(worst.ratio <= 1.3, `${worst.ratio}x the requests in the second from ${worst.at} ms`);
  });

  it('spends what a hung service let pile up (failures 1 s late, at the per-try timeout) no faster than 1.25 x ratio of the requests', () => {
    const clock = new ManualScheduler(0);
    const r = run(RetryBudget.from(DEFAULT_RETRY_BUDGET, clock), clock, { arrivals: steady(500, 0, 20_000), failAfterMs: 1000 });
    const worst = worstSecond(r, [[0, 20_000]]);
    console.log(`      worst second ${worst.ratio.toFixed(3)}x at ${worst.at} ms`);
    assert.ok(worst.ratio <= 1.3, `${worst.ratio}x the requests in the second from ${worst.at} ms`);
  });

  it('gives a quiet service its floor: 10 retries a second with no requests, never more than one second\'s worth at once', () => {
    const clock = new ManualScheduler(0);
    const budget = new RetryBudget(0.2, 10, 10_000, clock);
    let granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 10);
    clock.advance(500);
    granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 5, 'half a second refills half the floor');
    clock.advance(60_000);
    granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 10, 'a minute unused holds one second\'s worth');
  });

  it('lets deposits expire after the ttl', () => {
    const clock = new ManualScheduler(0);
    const budget = new RetryBudget(0.2, 0, 10_000, clock);
    const withdrawAll = (): number => {
      let granted = 0;
      while (budget.withdraw()) granted++;
      return granted;
    };
    for (let i = 0; i < 100; i++) budget.deposit();
    clock.advance(5000);
    for (let i = 0; i < 40; i++) budget.deposit();
    assert.equal(withdrawAll(), 10, 'deposits of 5 s ago pay, within 1.25 x 20% of the 40 requests of the last second');
    clock.advance(6000);
    for (let i = 0; i < 40; i++) budget.deposit();
    assert.equal(withdrawAll(), 6, 'those of 11 s ago have expired: 20% of the 80 requests since, less the 10 retries they paid');
  });

  it('with ratio 0 and no floor allows no retry at all', () => {
    const budget = new RetryBudget(0, 0, 10_000, new ManualScheduler(0));
    for (let i = 0; i < 100; i++) budget.deposit();
    assert.equal(budget.withdraw(), false);
  });
});
