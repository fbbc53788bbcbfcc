import assert from 'node:assert/strict';
import { DEFAULT_BACKOFF, backoffDelay } from './backoff.js';

describe('backoffDelay', () => {
  it('doubles from 200ms and stops at 30s', () => {
    const top = Array.from({ length: 12 }, (_, i) => backoffDelay(i, DEFAULT_BACKOFF, () => 0));
    assert.deepEqual(top, [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000, 30000]);
  });

  it('takes up to half of each delay off at random, never more', () => {
    assert.equal(backoffDelay(0, DEFAULT_BACKOFF, () => 1), 100);
    assert.equal(backoffDelay(20, DEFAULT_BACKOFF, () => 1), 15000);
    for (let i = 0; i < 1000; i++) {
      const d = backoffDelay(3, DEFAULT_BACKOFF);
      assert.ok(d >= 800 && d <= 1600, `delay ${d}`);
    }
  });

  it('survives absurd attempt counts', () => {
    assert.equal(backoffDelay(10_000, DEFAULT_BACKOFF, () => 0), 30000);
    assert.equal(backoffDelay(-1, DEFAULT_BACKOFF, () => 0), 200);
  });
});
