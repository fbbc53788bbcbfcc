import assert from 'node:assert/strict';
import { DEFAULT_ROTATION, MIN_ROTATION_DELAY_FRACTION, rotationDelay } from './rotation.js';

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
