import assert from 'node:assert/strict';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import type { ResolvedEndpoint } from '../config/table.js';
import { P2cBalancer, type EndpointState } from './p2c.js';

const endpoint = (n: number, weight = 1): ResolvedEndpoint => ({ endpoint: { address: `10.0.0.${n}` }, address: `10.0.0.${n}`, port: 8080, identity: undefined, weight });

function count(b: P2cBalancer, picks: number, onPick?: (s: EndpointState) => void): Map<string, number> {
  const seen = new Map<string, number>();
  for (let i = 0; i < picks; i++) {
    const s = b.pick()!;
    seen.set(s.ep.address, (seen.get(s.ep.address) ?? 0) + 1);
    onPick?.(s);
  }
  return seen;
}

/**
 * Runs `total` requests through the balancer, `concurrency` at a time, each
 * taking `latency(endpoint)` ms of virtual time; returns requests per endpoint.
 */
function simulate(b: P2cBalancer, clock: ManualScheduler, total: number, concurrency: number, latency: (s: EndpointState) => number): Map<string, number> {
  const seen = new Map<string, number>();
  let started = 0;
  const start = (): void => {
    if (started >= total) return;
    started++;
    const s = b.pick()!;
    seen.set(s.ep.address, (seen.get(s.ep.address) ?? 0) + 1);
    s.pending++;
    const ms = latency(s);
    clock.setTimeout(() => {
      s.pending--;
      b.observe(s, ms, true);
      start();
    }, ms);
  };
  for (let i = 0; i < concurrency; i++) start();
  while (clock.runNext() !== undefined);
  return seen;
}

/**
 * Callers in a closed loop, `concurrency` at a time for `ms` of virtual time, against endpoints
 * that answer in `latency` ms, or never (undefined): then the caller gives up after `boundMs`, and
 * the balancer hears it as a caller that went away (observeAtLeast). Requests per endpoint.
 */
function closedLoop(b: P2cBalancer, clock: ManualScheduler, ms: number, concurrency: number, boundMs: number, latency: (s: EndpointState) => number | undefined): Map<string, number> {
  const seen = new Map<string, number>();
  const end = clock.now() + ms;
  const start = (): void => {
    if (clock.now() >= end) return;
    const s = b.pick()!;
    seen.set(s.ep.address, (seen.get(s.ep.address) ?? 0) + 1);
    s.pending++;
    s.requests++;
    const answerMs = latency(s);
    clock.setTimeout(() => {
      s.pending--;
      s.requests--;
      if (answerMs === undefined) b.observeAtLeast(s, boundMs);
      else b.observe(s, answerMs, true);
      start();
    }, answerMs ?? boundMs);
  };
  for (let i = 0; i < concurrency; i++) start();
  while (clock.runNext() !== undefined);
  return seen;
}

describe('P2cBalancer', () => {
  it('spreads evenly over equal endpoints', () => {
    const b = new P2cBalancer(new ManualScheduler(0), seededRandom(1));
    b.update([endpoint(1), endpoint(2), endpoint(3), endpoint(4)]);
    const seen = count(b, 4000);
    for (const n of seen.values()) assert.ok(n > 800 && n < 1200, `uneven: ${[...seen.values()].join(', ')}`);
  });

  it('sends less to a slow endpoint', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(2));
    b.update([endpoint(1), endpoint(2), endpoint(3)]);
    const seen = simulate(b, clock, 3000, 10, (s) => (s.ep.address === '10.0.0.3' ? 50 : 5));
    assert.ok(seen.get('10.0.0.3')! < 300, `the slow endpoint got ${seen.get('10.0.0.3')} of 3000`);
  });

  it('gives endpoints load in proportion to their weights under concurrency', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(3));
    b.update([endpoint(1, 1), endpoint(2, 3)]);
    const seen = simulate(b, clock, 8000, 16, () => 10);
    const share = seen.get('10.0.0.2')! / 8000;
    assert.ok(share > 0.65 && share < 0.85, `the weight-3 endpoint got ${share} of the requests`);
  });

  it('steers away from an endpoint with requests piling up', () => {
    const b = new P2cBalancer(new ManualScheduler(0), seededRandom(4));
    b.update([endpoint(1), endpoint(2)]);
    b.endpoints[0]!.pending = 50;
    const seen = count(b, 100);
    assert.equal(seen.get('10.0.0.1'), undefined);
  });

  it('penalizes an endpoint that did not answer, and forgives it as the estimate fades', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(5));
    b.update([endpoint(1), endpoint(2)]);
    const [one, two] = b.endpoints as [EndpointState, EndpointState];
    b.observe(one, 2, false);
    b.observe(two, 2, true);
    assert.equal(one.ewmaMs, 1000);
    assert.equal(count(b, 50).get('10.0.0.1'), undefined);
    // An idle estimate fades toward zero (10 s time constant) while the other endpoint keeps measuring 2 ms:
    // a minute and a half later the penalty has faded below it.
    clock.advance(90_000);
    b.observe(two, 2, true);
    const seen = count(b, 1000);
    assert.ok(seen.get('10.0.0.1')! > 300, `still avoided: ${seen.get('10.0.0.1')}`);
  });

  it('does not send every caller to an endpoint that never answers, known long before it is first called', () => {
    // Two endpoints a minute in the config, never called: one hangs (accepts, never answers), the other answers in 5 ms.
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(12));
    b.update([endpoint(1), endpoint(2)]);
    clock.advance(60_000);
    const seen = closedLoop(b, clock, 15_000, 4, 15_000, (s) => (s.ep.address === '10.0.0.1' ? undefined : 5));
    // Without a measurement, the first callers may land on the hung one; none after its silence shows.
    assert.ok((seen.get('10.0.0.1') ?? 0) <= 2, `the hung endpoint took ${seen.get('10.0.0.1')} callers of 4`);
    assert.ok((seen.get('10.0.0.2') ?? 0) > 5000, `the other answered only ${seen.get('10.0.0.2')} in 15 s`);
  });

  it('steers away from an endpoint that stops answering: its silence with requests waiting counts as latency', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(13));
    b.update([endpoint(1), endpoint(2)]);
    closedLoop(b, clock, 2000, 4, 15_000, () => 5);
    const seen = closedLoop(b, clock, 15_000, 4, 15_000, (s) => (s.ep.address === '10.0.0.1' ? undefined : 5));
    assert.ok((seen.get('10.0.0.1') ?? 0) <= 2, `the hung endpoint took ${seen.get('10.0.0.1')} callers of 4`);
    assert.ok((seen.get('10.0.0.2') ?? 0) > 5000, `the other answered only ${seen.get('10.0.0.2')} in 15 s`);
  });

  it('replaces the default estimate of a new endpoint with its first measurement', () => {
    const b = new P2cBalancer(new ManualScheduler(0), seededRandom(11));
    b.update([endpoint(1)]);
    const s = b.endpoints[0]!;
    assert.equal(s.ewmaMs, 30);
    b.observe(s, 2, true);
    assert.equal(s.ewmaMs, 2);
  });

  it('takes a slower sample at once (peak) and lets faster ones pull it down gradually', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(6));
    b.update([endpoint(1)]);
    const s = b.endpoints[0]!;
    b.observe(s, 10, true);
    b.observe(s, 100, true);
    assert.equal(s.ewmaMs, 100);
    clock.advance(1000);
    b.observe(s, 10, true);
    assert.ok(s.ewmaMs > 90 && s.ewmaMs < 100, `estimate ${s.ewmaMs}`);
    clock.advance(30_000);
    b.observe(s, 10, true);
    assert.ok(s.ewmaMs < 20, `estimate ${s.ewmaMs}`);
  });

  it('keeps the state of endpoints that stay across an update and drops the others', () => {
    const b = new P2cBalancer(new ManualScheduler(0), seededRandom(7));
    b.update([endpoint(1), endpoint(2)]);
    const kept = b.endpoints[1]!;
    kept.ewmaMs = 42;
    b.eject(kept, 5000);
    b.update([endpoint(2, 5), endpoint(3)]);
    assert.equal(b.endpoints[0], kept);
    assert.equal(kept.ep.weight, 5);
    assert.equal(b.ejectedCount, 1);
    b.update([]);
    assert.equal(b.pick(), undefined);
  });

  it('never picks an ejected endpoint, then probes it once when its time is up', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(8));
    b.update([endpoint(1), endpoint(2), endpoint(3)]);
    const out = b.endpoints[2]!;
    b.eject(out, 1000);
    assert.equal(count(b, 200).get('10.0.0.3'), undefined);
    clock.advance(1000);
    assert.equal(b.pick(), out, 'the first pick after the ejection time is the probe');
    assert.equal(out.probing, true);
    assert.equal(count(b, 200).get('10.0.0.3'), undefined, 'no second request while the probe is in flight');
    b.restore(out);
    assert.ok(count(b, 300).get('10.0.0.3')! > 50);
  });

  it('does not probe for L4 connections (pick(false)), whose outcomes the breaker never hears', () => {
    const clock = new ManualScheduler(0);
    const b = new P2cBalancer(clock, seededRandom(9));
    b.update([endpoint(1), endpoint(2)]);
    b.eject(b.endpoints[0]!, 10);
    clock.advance(20);
    for (let i = 0; i < 50; i++) assert.equal(b.pick(false)!.ep.address, '10.0.0.2');
  });

  it('returns undefined when every endpoint is out and none is due', () => {
    const b = new P2cBalancer(new ManualScheduler(0), seededRandom(10));
    b.update([endpoint(1)]);
    b.eject(b.endpoints[0]!, 1000);
    assert.equal(b.pick(), undefined);
  });
});
