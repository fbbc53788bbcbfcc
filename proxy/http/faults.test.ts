import assert from 'node:assert/strict';
import { ManualScheduler, settle } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { compileFaults, faultLayer } from './faults.js';
import { testRequest, testResponse } from './testdata/requests.js';

function rig(policy: Parameters<typeof compileFaults>[0], seed = 1) {
  const clock = new ManualScheduler(0);
  const injected = { abort: 0, delay: 0 };
  let reached = 0;
  const handler = faultLayer({ rules: compileFaults(policy)!, service: 'payments.shop', injected: (k) => injected[k]++, scheduler: clock, random: seededRandom(seed) })(() => {
    reached++;
    return Promise.resolve(testResponse(200));
  });
  return { clock, injected, handler, reached: () => reached };
}

describe('fault injection', () => {
  it('aborts the configured share of requests with the status and says so', async () => {
    const r = rig({ abort: { percent: 5, status: 500 } });
    const statuses = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const res = await r.handler(testRequest());
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 500) assert.equal(res.headers['x-tsmesh-error'], 'fault-injected');
    }
    const aborted = statuses.get(500)!;
    assert.ok(aborted > 140 && aborted < 260, `${aborted} of 4000 aborted`);
    assert.equal(r.injected.abort, aborted);
    assert.equal(r.reached(), 4000 - aborted);
  });

  it('delays the configured share by the duration, on the clock', async () => {
    const r = rig({ delay: { percent: 100, duration: '1500ms' } });
    let done = false;
    const p = r.handler(testRequest()).then((res) => ((done = true), res));
    await settle();
    r.clock.advance(1499);
    await settle();
    assert.equal(done, false);
    assert.equal(r.reached(), 0);
    r.clock.advance(1);
    assert.equal((await p).status, 200);
    assert.equal(r.injected.delay, 1);
  });

  it('delays then aborts when both apply', async () => {
    const r = rig({ delay: { percent: 100, duration: '1s' }, abort: { percent: 100, status: 503 } });
    const p = r.handler(testRequest());
    await settle();
    r.clock.advance(1000);
    assert.equal((await p).status, 503);
    assert.deepEqual(r.injected, { abort: 1, delay: 1 });
    assert.equal(r.reached(), 0);
  });

  it('ends a delay early when the client leaves', async () => {
    const r = rig({ delay: { percent: 100, duration: '10s' } });
    const client = new AbortController();
    const p = r.handler(testRequest({ signal: client.signal }));
    client.abort(new Error('client left'));
    await assert.rejects(p, /client left/);
    assert.deepEqual(r.clock.pending(), []);
  });

  it('compiles nothing when nothing would be injected', () => {
    assert.equal(compileFaults(undefined), undefined);
    assert.equal(compileFaults({ abort: { percent: 0, status: 500 } }), undefined);
  });
});
