import assert from 'node:assert/strict';
import { DurationError, formatDuration, parseDuration } from './duration.js';

describe('durations', () => {
  it('parses units and compound forms', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('2d'), 172_800_000);
  });
  for (const bad of ['', '5', '1 h', '1x', '-1s', 'h', '1h-', 'ms']) {
    it(`refuses ${JSON.stringify(bad)} with a hint`, () => {
      assert.throws(() => parseDuration(bad, '--timeout'), (e: unknown) => e instanceof DurationError && /--timeout .* e\.g\. 500ms/.test((e as Error).message));
    });
  }
  it('formats the shortest exact form', () => {
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(90_000), '1m30s');
    assert.equal(formatDuration(1_250), '1s250ms');
    assert.equal(formatDuration(0), '0s');
  });
});
