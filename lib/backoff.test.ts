import assert from 'node:assert/strict';
import { DEFAULT_BACKOFF, backoffDelay } from './backoff.js';
import { DEFAULT_ROTATION, MIN_ROTATION_DELAY_FRACTION, rotationDelay } from './rotation.js';

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

describe('rotationDelay', () => {
  const notBefore = new Date('2030-01-01T00:00:00Z');
  const notAfter = new Date('2030-01-01T01:00:00Z');
  const hour = 3_600_000;

  it('renews at half the lifetime, counted from notBefore', () => {
    assert.equal(rotationDelay({ notBefore, notAfter }, notBefore.getTime(), DEFAULT_ROTATION, () => 0.5), hour / 2);
    // Issued backdated by a minute: half-life is 29 minutes from now.
    assert.equal(rotationDelay({ notBefore, notAfter }, notBefore.getTime() + 60_000, DEFAULT_ROTATION, () => 0.5), hour / 2 - 60_000);
  });

  it('jitters by 10% of the lifetime either way', () => {
    assert.equal(rotationDelay({ notBefore, notAfter }, notBefore.getTime(), DEFAULT_ROTATION, () => 0), 0.4 * hour);
    assert.equal(rotationDelay({ notBefore, notAfter }, notBefore.getTime(), DEFAULT_ROTATION, () => 1), 0.6 * hour);
  });

  it('never renews sooner than 5% of the lifetime, even when the clock says the certificate is due', () => {
    assert.equal(rotationDelay({ notBefore, notAfter }, notAfter.getTime() + hour, DEFAULT_ROTATION, () => 0.5), MIN_ROTATION_DELAY_FRACTION * hour);
  });
});
