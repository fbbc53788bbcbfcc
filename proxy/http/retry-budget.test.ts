import assert from 'node:assert/strict';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { DEFAULT_RETRY_BUDGET } from '../config/types.js';
import { RetryBudget } from './retry-budget.js';
import { SlidingWindow } from './sliding-window.js';

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

describe('RetryBudget', () => {
  it('allows retries of 20% of the requests plus 10 per second over 10 s (the mesh default)', () => {
    const clock = new ManualScheduler(0);
    const budget = RetryBudget.from(DEFAULT_RETRY_BUDGET, clock);
    for (let i = 0; i < 1000; i++) budget.deposit();
    let granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 0.2 * 1000 + 10 * 10);
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
    assert.ok(sent / requests <= 1.2 + 100 / 10_000 + 0.01, `load multiplied by ${sent / requests}`);
    assert.ok(sent / requests >= 1.19, `load multiplied by ${sent / requests}`);
  });

  it('gives a quiet service its floor: 10 retries a second with no requests', () => {
    const clock = new ManualScheduler(0);
    const budget = new RetryBudget(0.2, 10, 10_000, clock);
    let granted = 0;
    while (budget.withdraw()) granted++;
    assert.equal(granted, 100);
    clock.advance(5_000);
    assert.equal(budget.withdraw(), false, 'retries made 5 s ago still count');
    clock.advance(6_000);
    assert.equal(budget.withdraw(), true, 'they leave the window after the ttl');
  });

  it('with ratio 0 and no floor allows no retry at all', () => {
    const budget = new RetryBudget(0, 0, 10_000, new ManualScheduler(0));
    for (let i = 0; i < 100; i++) budget.deposit();
    assert.equal(budget.withdraw(), false);
  });
});
