import assert from 'node:assert/strict';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import { DEFAULT_BALANCER, P2cBalancer } from '../balance/p2c.js';
import type { ResolvedEndpoint } from '../config/table.js';
import { balancedForward } from './balance.js';
import { testRequest, testResponse } from './testdata/requests.js';

const endpoint = (n: number): ResolvedEndpoint => ({ endpoint: { address: `10.0.0.${n}` }, address: `10.0.0.${n}`, port: 8080, identity: undefined, weight: 1 });

describe('balanced forward', () => {
  it('leaves the wait for a new connection out of the endpoint\'s latency', async () => {
    const clock = new ManualScheduler(1_000_000);
    // A default estimate of 0: each endpoint is tried once before the estimates steer.
    const balancer = new P2cBalancer(clock, seededRandom(3), { ...DEFAULT_BALANCER, defaultRttMs: 0 });
    balancer.update([endpoint(1), endpoint(2)]);
    const hits = new Map<string, number>();
    const connected = new Set<string>();
    const handler = balancedForward({
      service: 'api.shop',
      balancer,
      breaker: undefined,
      clock,
      // 10.0.0.1 answers in 2 ms but its first connection takes 200 ms to open (a slow handshake);
      // 10.0.0.2 answers in 10 ms on a connection that is always ready.
      forward: (ep) => {
        hits.set(ep.address, (hits.get(ep.address) ?? 0) + 1);
        const res = testResponse(200);
        if (ep.address === '10.0.0.1') {
          const connectMs = connected.has(ep.address) ? 0 : 200;
          connected.add(ep.address);
          clock.advance(connectMs + 2);
          if (connectMs > 0) res.meta = { connectMs };
        } else clock.advance(10);
        return Promise.resolve(res);
      },
    });
    // 50 requests in 0.7 s: within the reprobe time, so one sample that counted the handshake would keep 10.0.0.1 out.
    for (let i = 0; i < 50; i++) assert.equal((await handler(testRequest())).status, 200);
    const fast = balancer.endpoints.find((s) => s.ep.address === '10.0.0.1')!;
    assert.ok(fast.ewmaMs < 5, `10.0.0.1's estimate is ${fast.ewmaMs} ms`);
    assert.ok((hits.get('10.0.0.1') ?? 0) >= 45, `the faster endpoint took ${hits.get('10.0.0.1') ?? 0} of 50 requests`);
  });
});
