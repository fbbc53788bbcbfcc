import assert from 'node:assert/strict';
import { HeadWaits, type HeadWait } from './head-waits.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function wait(): HeadWait & { firedAt?: number } {
  const w: HeadWait & { firedAt?: number } = {
    headDeadline: 0,
    onHeadTimeout: () => {
      w.firedAt = performance.now();
    },
  };
  return w;
}

describe('HeadWaits: one timer for every request waiting for its response head', () => {
  it('ends a wait after its time, within an eighth of it, once; one deleted first never ends; none left, none kept', async () => {
    const waits = new HeadWaits();
    const late = wait();
    const answered = wait();
    const from = performance.now();
    waits.add(late, 80);
    waits.add(answered, 80);
    assert.equal(waits.size, 2);
    await sleep(20);
    waits.delete(answered);
    await sleep(150);
    assert.ok(late.firedAt !== undefined, 'the wait ended');
    const after = late.firedAt - from;
    assert.ok(after >= 80 && after < 1000, `ended ${Math.round(after)} ms after it began, for 80 ms`);
    assert.equal(answered.firedAt, undefined, 'a wait deleted in time never ends');
    assert.equal(waits.size, 0);
  });

  it('starts a wait again when added again (an interim response), and looks more often for a shorter wait', async () => {
    const waits = new HeadWaits();
    const long = wait();
    const short = wait();
    const from = performance.now();
    waits.add(long, 2000);
    waits.add(short, 60);
    await sleep(40);
    waits.add(short, 60);
    await sleep(160);
    assert.ok(short.firedAt !== undefined);
    assert.ok(short.firedAt - from >= 100, `the wait began again at 40 ms: ended at ${Math.round(short.firedAt - from)} ms`);
    assert.equal(long.firedAt, undefined);
    waits.delete(long);
    assert.equal(waits.size, 0);
  });
});

describe('HeadWaits: requests one after another', () => {
  it('arm one timer between them, which stops at its first look with none waiting', async () => {
    const waits = new HeadWaits();
    for (let i = 0; i < 100; i++) {
      const w = wait();
      waits.add(w, 80);
      waits.delete(w);
    }
    assert.equal(waits.size, 0);
    assert.equal(waits.armed, 1, 'one timer for the 100 requests');
    assert.ok(waits.running, 'the timer runs on to its next look');
    await sleep(40);
    assert.equal(waits.running, false, 'the look found none waiting and stopped the timer');
    const w = wait();
    waits.add(w, 80);
    assert.equal(waits.armed, 2);
    waits.delete(w);
  });
});
