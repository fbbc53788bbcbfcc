import assert from 'node:assert/strict';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { DEFAULT_BALANCER, P2cBalancer } from '../balance/p2c.js';
import type { ResolvedEndpoint } from '../config/table.js';
import { balancedForward } from './balance.js';
import { Cancellation } from './cancel.js';
import { compileLimits, DEFAULT_LIMITS, PendingQueue } from './limits.js';
import { RetryBudget } from './retry-budget.js';
import { compileRetryPolicy } from './retry-policy.js';
import { retryLayer } from './retry.js';
import { drive, testRequest, testResponse } from './testdata/requests.js';
import type { ProxyResponse } from './types.js';

const endpoint = (n: number): ResolvedEndpoint => ({ endpoint: { address: `10.0.0.${n}` }, address: `10.0.0.${n}`, port: 8080, identity: undefined, weight: 1 });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Two endpoints that answer only when the test says so. */
function rig(policy: Parameters<typeof compileLimits>[0]) {
  const clock = new ManualScheduler(1_000_000);
  const balancer = new P2cBalancer(clock, seededRandom(7), { ...DEFAULT_BALANCER, defaultRttMs: 0 });
  balancer.update([endpoint(1), endpoint(2)]);
  const held: { address: string; answer: (res: ProxyResponse) => void }[] = [];
  const queue = new PendingQueue(clock);
  const handler = balancedForward({
    service: 'api.shop',
    balancer,
    breaker: undefined,
    clock,
    limits: compileLimits(policy),
    queue,
    forward: (ep, req) =>
      new Promise<ProxyResponse>((resolve, reject) => {
        held.push({ address: ep.address, answer: resolve });
        req.signal.addEventListener('abort', () => reject(req.signal.reason as Error));
      }),
  });
  return { clock, balancer, held, queue, handler };
}

describe('overload limits', () => {
  it('defaults: 256 in flight per endpoint, 256 waiting, 1 s', () => {
    assert.deepEqual(compileLimits(undefined), DEFAULT_LIMITS);
    assert.deepEqual(compileLimits({ maxPendingRequests: 3, pendingTimeout: '250ms' }), { maxRequestsPerEndpoint: 256, maxPendingRequests: 3, pendingTimeoutMs: 250 });
  });

  it('holds each endpoint to its limit, queues the next requests in order, and answers 503 overloaded past the queue, at once', async () => {
    const r = rig({ maxRequestsPerEndpoint: 2, maxPendingRequests: 2, pendingTimeout: '5s' });
    const results: (ProxyResponse | undefined)[] = [];
    const send = (i: number): void => void r.handler(testRequest({ path: `/${i}` })).then((res) => (results[i] = res));
    for (let i = 0; i < 4; i++) send(i);
    await tick();
    assert.equal(r.held.length, 4, 'two in flight on each endpoint');
    assert.deepEqual(r.balancer.endpoints.map((s) => s.pending), [2, 2]);
    send(4);
    send(5);
    await tick();
    assert.equal(r.queue.size, 2);
    send(6);
    await tick();
    assert.equal(results[6]?.status, 503);
    assert.equal(results[6]?.headers['x-tsmesh-error'], 'overloaded');
    assert.equal(results[6]?.meta?.overload, 'max-pending-requests');
    // One answer frees one slot: the oldest waiter takes it.
    r.held.shift()!.answer(testResponse(200));
    await tick();
    await tick();
    assert.equal(r.queue.size, 1);
    assert.equal(r.held.length, 4);
  });

  it('a waiter that reaches pendingTimeout gets 503 overloaded; one whose caller leaves is gone from the queue at once', async () => {
    const r = rig({ maxRequestsPerEndpoint: 1, maxPendingRequests: 10, pendingTimeout: '300ms' });
    void r.handler(testRequest());
    void r.handler(testRequest());
    await tick();
    const cancel = new Cancellation();
    const left = r.handler(testRequest({ signal: cancel }));
    let timedOut: ProxyResponse | undefined;
    void r.handler(testRequest()).then((res) => (timedOut = res));
    await tick();
    assert.equal(r.queue.size, 2);
    cancel.abort(new Error('client left'));
    await assert.rejects(left, /client left/);
    assert.equal(r.queue.size, 1);
    r.clock.advance(300);
    await tick();
    assert.equal(timedOut?.status, 503);
    assert.equal(timedOut?.meta?.overload, 'pending-timeout');
    assert.equal(r.queue.size, 0);
    // The slots that free later go to nobody: no request of a caller that left is ever sent.
    const sent = r.held.length;
    for (const h of r.held.splice(0)) h.answer(testResponse(200));
    await tick();
    assert.equal(r.held.length, 0);
    assert.equal(sent, 2);
  });

  it('a hung endpoint whose callers give up looks slow, and the balancer moves to the other', async () => {
    const r = rig({});
    const hung = r.balancer.endpoints[0]!;
    const other = r.balancer.endpoints[1]!;
    r.balancer.observe(other, 5, true);
    r.balancer.observe(hung, 5, true);
    hung.pending = 1;
    r.balancer.observeAtLeast(hung, 1000);
    hung.pending = 0;
    assert.equal(hung.ewmaMs, 1000);
    r.balancer.observeAtLeast(hung, 10);
    assert.equal(hung.ewmaMs, 1000, 'a shorter wait never pulls the estimate down');
    let toOther = 0;
    for (let i = 0; i < 100; i++) if (r.balancer.pick() === other) toOther++;
    assert.equal(toOther, 100);
  });
});

describe('balancer: retries elsewhere, and no endpoint a pariah', () => {
  it('a retry avoids the endpoint that just failed when another is in service', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(1));
    b.update([endpoint(1), endpoint(2), endpoint(3)]);
    const first = b.endpoints[0]!;
    for (let i = 0; i < 200; i++) assert.notEqual(b.pick(true, first.key), first);
    const two = new P2cBalancer(clock, seededRandom(2));
    two.update([endpoint(1), endpoint(2)]);
    for (let i = 0; i < 50; i++) assert.equal(two.pick(true, two.endpoints[0]!.key), two.endpoints[1]);
    const one = new P2cBalancer(clock, seededRandom(2));
    one.update([endpoint(1)]);
    assert.equal(one.pick(true, one.endpoints[0]!.key), one.endpoints[0], 'a lone endpoint is retried itself');
  });

  it('an endpoint penalised long ago gets its share back from its first good answer after the reprobe time', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(3));
    b.update([endpoint(1), endpoint(2)]);
    const [sick, well] = b.endpoints as [typeof b.endpoints[0] & object, typeof b.endpoints[0] & object];
    b.observe(sick, 5, false); // the no-answer penalty: 1 s
    b.observe(well, 5, true);
    clock.advance(2000);
    b.observe(sick, 5, true);
    assert.equal(sick.ewmaMs, 5, 'the first sample after the reprobe time replaces the estimate');
    b.observe(well, 5, true);
    let toSick = 0;
    for (let i = 0; i < 1000; i++) if (b.pick() === sick) toSick++;
    assert.ok(toSick > 300 && toSick < 700, `${toSick} of 1000 to the healed endpoint`);
  });
});

describe('retries through the balancer', () => {
  it('a retry goes to the other endpoint: with one of two endpoints failing, every request succeeds on its second try', async () => {
    const clock = new ManualScheduler(0);
    const balancer = new P2cBalancer(clock, seededRandom(5));
    balancer.update([endpoint(1), endpoint(2)]);
    const seen: string[] = [];
    const handler = retryLayer({
      rules: compileRetryPolicy({ attempts: 2, retryOn: ['5xx'], backoff: { base: '1ms', max: '1ms' } }),
      budget: new RetryBudget(1, 100, 10_000, clock),
      service: 'api.shop',
      counters: { retried: () => undefined, budgetExhausted: () => undefined },
      scheduler: clock,
      random: seededRandom(1),
    })(
      balancedForward({
        service: 'api.shop',
        balancer,
        breaker: undefined,
        clock,
        forward: (ep) => {
          seen.push(ep.address);
          return Promise.resolve(testResponse(ep.address === '10.0.0.1' ? 503 : 200));
        },
      }),
    );
    for (let i = 0; i < 40; i++) assert.equal((await drive(clock, handler(testRequest()))).status, 200);
    for (let i = 1; i < seen.length; i++) if (seen[i - 1] === '10.0.0.1') assert.equal(seen[i], '10.0.0.2', 'the retry after 10.0.0.1 failed went to 10.0.0.2');
    assert.ok(seen.includes('10.0.0.1'));
  });
});

describe('overload limits and L4 connections', () => {
  it('connections carried as L4 on the same port (a fallback after protocol detection) count as load, not against the HTTP limit', async () => {
    const r = rig({ maxRequestsPerEndpoint: 2, maxPendingRequests: 1, pendingTimeout: '1s' });
    for (const s of r.balancer.endpoints) s.pending += 500; // what meshTcp counts for open L4 connections
    const results: ProxyResponse[] = [];
    for (let i = 0; i < 4; i++) void r.handler(testRequest()).then((res) => results.push(res));
    await tick();
    assert.equal(r.held.length, 4, 'every HTTP request went out');
    assert.deepEqual(results, []);
  });
});
