import assert from 'node:assert/strict';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { DEFAULT_BALANCER, P2cBalancer } from '../balance/p2c.js';
import type { ResolvedEndpoint } from '../config/table.js';
import type { CircuitBreakerPolicy } from '../../contract/proxy-config.js';
import { balancedForward } from './balance.js';
import { Breaker, compileBreaker } from './breaker.js';
import { testRequest, testResponse } from './testdata/requests.js';
import { MeshTimeoutError } from './timeout.js';
import { UpstreamConnectError } from '../upstream.js';
import type { Handler, ProxyResponse } from './types.js';

const endpoint = (n: number): ResolvedEndpoint => ({ endpoint: { address: `10.0.0.${n}` }, address: `10.0.0.${n}`, port: 8080, identity: undefined, weight: 1 });

interface Rig {
  clock: ManualScheduler;
  balancer: P2cBalancer;
  handler: Handler;
  hits: Map<string, number>;
  ejections: () => number;
  /** Sends `n` requests one after another; returns their statuses. */
  send(n: number): Promise<number[]>;
}

function rig(count: number, policy: CircuitBreakerPolicy, answer: (address: string) => number | Promise<ProxyResponse>, seed = 1): Rig {
  const clock = new ManualScheduler(1_000_000);
  // Answers take no virtual time: with no default estimate either, every endpoint costs the same and only the breaker steers.
  const balancer = new P2cBalancer(clock, seededRandom(seed), { ...DEFAULT_BALANCER, defaultRttMs: 0 });
  balancer.update(Array.from({ length: count }, (_, i) => endpoint(i + 1)));
  let ejected = 0;
  const breaker = new Breaker(compileBreaker(policy)!, balancer, clock, () => ejected++);
  const hits = new Map<string, number>();
  const handler = balancedForward({
    service: 'api.shop',
    balancer,
    breaker,
    clock,
    forward: (ep) => {
      hits.set(ep.address, (hits.get(ep.address) ?? 0) + 1);
      const a = answer(ep.address);
      return typeof a === 'number' ? Promise.resolve(testResponse(a)) : a;
    },
  });
  return {
    clock,
    balancer,
    handler,
    hits,
    ejections: () => ejected,
    async send(n) {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await handler(testRequest())).status);
      return out;
    },
  };
}

describe('circuit breaker', () => {
  it('ejects an endpoint after consecutive failures, probes it once after the ejection time, and backs off while it keeps failing', async () => {
    let bad = true;
    const r = rig(3, { consecutiveFailures: 3, ejectionTime: '30s' }, (a) => (a === '10.0.0.1' && bad ? 503 : 200));
    await r.send(100);
    assert.equal(r.hits.get('10.0.0.1'), 3, 'three failures in a row, then out');
    assert.equal(r.ejections(), 1);

    r.hits.clear();
    r.clock.advance(29_999);
    await r.send(50);
    assert.equal(r.hits.get('10.0.0.1'), undefined, 'out for the whole ejection time');

    r.clock.advance(1);
    await r.send(50);
    assert.equal(r.hits.get('10.0.0.1'), 1, 'one probe, which fails: ejected again');
    assert.equal(r.ejections(), 2);

    r.hits.clear();
    r.clock.advance(30_000);
    await r.send(50);
    assert.equal(r.hits.get('10.0.0.1'), undefined, 'the second ejection lasts twice as long (60 s)');
    bad = false;
    r.clock.advance(30_000);
    await r.send(200);
    assert.ok(r.hits.get('10.0.0.1')! > 20, `back in service after a good probe: ${r.hits.get('10.0.0.1')} requests`);
    assert.equal(r.balancer.ejectedCount, 0);
  });

  it('forgets the backoff while the endpoint stays healthy', async () => {
    let bad = true;
    const r = rig(2, { consecutiveFailures: 1, ejectionTime: '10s' }, (a) => (a === '10.0.0.1' && bad ? 503 : 200));
    await r.send(20);
    r.clock.advance(10_000);
    await r.send(1); // failed probe: next ejection 20 s
    bad = false;
    r.clock.advance(20_000);
    await r.send(20); // good probe: back
    const s = r.balancer.endpoints[0]!;
    assert.equal(s.ejections, 2);
    r.clock.advance(25_000); // two ejection times healthy: two steps forgotten
    bad = true;
    r.hits.clear();
    await r.send(20);
    assert.equal(s.ejections, 1);
    assert.equal(s.ejectedUntil, r.clock.now() + 10_000, 'ejected for the base time again');
  });

  it('ejects on failure rate only once the window holds minRequests', async () => {
    const random = seededRandom(42);
    const r = rig(4, { failureRate: { threshold: 0.5, window: '10s', minRequests: 20 } }, (a) => (a === '10.0.0.1' && random() < 0.7 ? 500 : 200));
    for (let i = 0; i < 400 && r.ejections() === 0; i++) {
      await r.send(1);
    }
    assert.equal(r.ejections(), 1);
    assert.ok(r.hits.get('10.0.0.1')! >= 20, `ejected after ${r.hits.get('10.0.0.1')} requests`);
  });

  it('leaves an endpoint failing below the threshold in service', async () => {
    const random = seededRandom(7);
    const r = rig(2, { failureRate: { threshold: 0.5, window: '10s', minRequests: 20 } }, (a) => (a === '10.0.0.1' && random() < 0.2 ? 500 : 200));
    for (let i = 0; i < 50; i++) {
      await r.send(20);
      r.clock.advance(500);
    }
    assert.equal(r.ejections(), 0);
  });

  it('never ejects more than maxEjectionPercent (default 50%), and never a lone endpoint', async () => {
    const two = rig(2, { consecutiveFailures: 2 }, () => 503);
    const statuses = await two.send(100);
    assert.equal(two.ejections(), 1);
    assert.equal(two.balancer.ejectedCount, 1);
    assert.ok(statuses.every((s) => s === 503), 'the remaining endpoint keeps answering (badly)');
    const one = rig(1, { consecutiveFailures: 1 }, () => 503);
    await one.send(20);
    assert.equal(one.ejections(), 0);
  });

  it('with maxEjectionPercent 100 opens the circuit: fail fast until a probe succeeds', async () => {
    let bad = true;
    const r = rig(2, { consecutiveFailures: 2, maxEjectionPercent: 100, ejectionTime: '5s' }, () => (bad ? 503 : 200));
    await r.send(10);
    assert.equal(r.balancer.ejectedCount, 2);
    const res = await r.handler(testRequest());
    assert.equal(res.status, 503);
    assert.equal(res.headers['x-tsmesh-error'], 'circuit-open');
    bad = false;
    r.clock.advance(5_000);
    assert.deepEqual(await r.send(3), [200, 200, 200]);
    assert.equal(r.balancer.ejectedCount, 0);
  });

  it('counts a client that gave up as a failure by default (a hung endpoint shows so), and as nothing with countCancellations false', async () => {
    const abortedBy = (reason: unknown): AbortSignal => {
      const c = new AbortController();
      c.abort(reason);
      return c.signal;
    };
    for (const countCancellations of [undefined, false]) {
      const r = rig(3, { consecutiveFailures: 3, ...(countCancellations === undefined ? {} : { countCancellations }) }, () => Promise.reject(new Error('aborted')));
      const target = r.balancer.endpoints[0]!;
      r.balancer.eject(r.balancer.endpoints[1]!, Infinity);
      r.balancer.eject(r.balancer.endpoints[2]!, Infinity);
      for (let i = 0; i < 2; i++) await assert.rejects(r.handler(testRequest({ signal: abortedBy(new Error('client left')) })));
      assert.equal(target.consecutiveFailures, countCancellations === false ? 0 : 2);
    }
  });

  it('counts mesh timeouts and connect failures as failures, and with countCancellations false a client that left as nothing', async () => {
    let mode: 'timeout' | 'connect' | 'cancel' = 'timeout';
    const r = rig(3, { consecutiveFailures: 2, countCancellations: false }, () => Promise.reject(mode === 'connect' ? new UpstreamConnectError('connecting to 10.0.0.1:8080 failed: connect ECONNREFUSED', 'connect-failure') : new Error('aborted')));
    const abortedBy = (reason: unknown): AbortSignal => {
      const c = new AbortController();
      c.abort(reason);
      return c.signal;
    };
    const target = r.balancer.endpoints[0]!;
    // Only endpoint 1 is in service, so every request goes there.
    r.balancer.eject(r.balancer.endpoints[1]!, Infinity);
    r.balancer.eject(r.balancer.endpoints[2]!, Infinity);
    mode = 'cancel';
    for (let i = 0; i < 5; i++) await assert.rejects(r.handler(testRequest({ signal: abortedBy(new Error('client left')) })));
    assert.equal(target.consecutiveFailures, 0);
    mode = 'timeout';
    await assert.rejects(r.handler(testRequest({ signal: abortedBy(new MeshTimeoutError('per-try', 100)) })));
    assert.equal(target.consecutiveFailures, 1);
    mode = 'connect';
    const res = await r.handler(testRequest());
    assert.equal(res.status, 503);
    assert.equal(res.meta?.localReason, 'connect-failure');
    // Two failures in a row, but ejecting the last endpoint in service would pass the 50% cap.
    assert.equal(target.consecutiveFailures, 2);
    assert.equal(target.ejectedUntil, 0);
  });

  it('abandons a probe whose client went away, so the next request probes again', async () => {
    const r = rig(2, { consecutiveFailures: 1, ejectionTime: '1s', countCancellations: false }, () => Promise.reject(new Error('aborted')));
    const s = r.balancer.endpoints[0]!;
    r.balancer.eject(s, r.clock.now() + 1000);
    r.clock.advance(1000);
    const c = new AbortController();
    c.abort(new Error('client left'));
    await assert.rejects(r.handler(testRequest({ signal: c.signal })));
    assert.equal(s.probing, false);
    assert.notEqual(s.ejectedUntil, 0);
    assert.equal(r.balancer.pick(), s, 'probed again');
  });

  it('compiles defaults: 5 consecutive failures, 30 s, at most 50% out, cancellations counted', () => {
    assert.deepEqual(compileBreaker({}), { consecutiveFailures: 5, failureRate: undefined, ejectionMs: 30_000, maxEjectionMs: 300_000, maxEjectionPercent: 50, countCancellations: true });
    assert.equal(compileBreaker({ failureRate: { threshold: 0.5, window: '10s', minRequests: 20 } })!.consecutiveFailures, undefined);
    assert.equal(compileBreaker(undefined), undefined);
  });
});
