import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { ManualScheduler } from '../../lib/testdata/manual-scheduler.js';
import { seededRandom } from '../../lib/testdata/seeded-random.js';
import type { RetryPolicy } from '../../contract/proxy-config.js';
import { RetryBudget } from './retry-budget.js';
import { compileRetryPolicy, DEFAULT_RETRY_RULES, replayability, retryReason } from './retry-policy.js';
import { retryLayer } from './retry.js';
import { bodyText, drive, hang, testRequest, testResponse } from './testdata/requests.js';
import { bufferedBody, localResponse, streamOf, type ProxyRequest, type ProxyResponse } from './types.js';

type Answer = number | 'connect-failure' | 'reset' | 'hang' | { grpc: number };

interface Rig {
  clock: ManualScheduler;
  calls: ProxyRequest[];
  bodies: string[];
  /** When each attempt started, ms after the first. */
  times: number[];
  retried: string[];
  exhausted: number;
  run(req?: Partial<ProxyRequest>): Promise<ProxyResponse>;
}

function rig(policy: RetryPolicy | undefined, answers: Answer[], budget = new RetryBudget(1, 100, 10_000, new ManualScheduler(0))): Rig {
  const clock = new ManualScheduler(0);
  const r: Rig = {
    clock,
    calls: [],
    bodies: [],
    times: [],
    retried: [],
    exhausted: 0,
    run: (over = {}) => drive(clock, handler(testRequest(over))),
  };
  const handler = retryLayer({
    rules: compileRetryPolicy(policy),
    budget,
    service: 'api.shop',
    counters: { retried: (reason) => r.retried.push(reason), budgetExhausted: () => r.exhausted++ },
    scheduler: clock,
    random: seededRandom(1),
  })(async (req) => {
    r.calls.push(req);
    r.times.push(clock.now());
    if (req.body) r.bodies.push(await bodyText({ status: 0, headers: {}, body: req.body }));
    const a = answers[Math.min(r.calls.length - 1, answers.length - 1)]!;
    if (a === 'hang') return hang(req.signal);
    if (a === 'connect-failure') return localResponse(503, 'connect-failure', 'refused');
    if (a === 'reset') return localResponse(502, 'upstream-reset', 'reset');
    if (typeof a === 'object') return { status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': String(a.grpc) }, body: null };
    return testResponse(a, `answer ${a}`);
  });
  return r;
}

const withBody = (text: string, length: boolean): Partial<ProxyRequest> => ({
  method: 'POST',
  body: Readable.from([Buffer.from(text)]),
  headers: length ? { host: 'api.shop', 'content-length': String(Buffer.byteLength(text)) } : { host: 'api.shop', 'transfer-encoding': 'chunked' },
});

describe('retry layer', () => {
  describe('with no policy (the mesh default)', () => {
    it('retries a connect failure of a bodyless GET once', async () => {
      const r = rig(undefined, ['connect-failure', 'connect-failure', 200]);
      const res = await r.run();
      assert.equal(res.status, 503);
      assert.equal(r.calls.length, 2);
      assert.deepEqual(r.retried, ['connect-failure']);
      const ok = rig(undefined, ['connect-failure', 200]);
      assert.equal((await ok.run()).status, 200);
    });

    it('does not retry status codes, resets, or a body that streams', async () => {
      for (const [answer, req] of [
        [503, {}],
        ['reset', {}],
        ['reset', { method: 'POST' }],
        ['connect-failure', { ...withBody('x', true), method: 'PUT' }],
      ] as const) {
        const r = rig(undefined, [answer, 200]);
        await r.run(req);
        assert.equal(r.calls.length, 1, `${JSON.stringify(answer)} ${JSON.stringify(req.method)}`);
      }
    });

    it('retries a connect failure whatever the method, when the body is in memory or absent: the endpoint never saw it', async () => {
      for (const req of [{ method: 'POST' }, { method: 'PATCH', body: bufferedBody(Buffer.from('{"n":1}')) }]) {
        const r = rig(undefined, ['connect-failure', 200]);
        const res = await r.run(req);
        assert.equal(res.status, 200, req.method);
        assert.equal(r.calls.length, 2);
        assert.deepEqual(r.bodies, req.body ? ['{"n":1}', '{"n":1}'] : []);
        assert.deepEqual(r.retried, ['connect-failure']);
      }
      // A status the endpoint answered is not retried that way.
      const r = rig(undefined, [503, 200]);
      await r.run({ method: 'POST' });
      assert.equal(r.calls.length, 1);
    });
  });

  it('retries 5xx up to the attempts, with exponential backoff and jitter, and counts each retry by reason', async () => {
    const r = rig({ attempts: 4, retryOn: ['5xx'], backoff: { base: '100ms', max: '1s' } }, [503, 500, 502, 200]);
    const res = await r.run();
    assert.equal(res.status, 200);
    assert.equal(await bodyText(res), 'answer 200');
    assert.deepEqual(r.retried, ['503', '500', '502']);
    const gaps = r.times.slice(1).map((t, i) => t - r.times[i]!);
    // Backoff ceilings 100, 200, 400 ms, each with up to half taken off at random.
    for (const [i, gap] of gaps.entries()) assert.ok(gap >= 50 * 2 ** i && gap <= 100 * 2 ** i, `gap ${i}: ${gap} ms`);
  });

  it('never sends an upgrade (WebSocket) again once the endpoint may have it: only a connect failure goes again', async () => {
    const upgrade: Partial<ProxyRequest> = { upgrade: 'websocket' };
    for (const answer of [503, 'reset', 101] as const) {
      const r = rig({ attempts: 3, retryOn: ['5xx', 'reset', '101'] }, [answer, 200]);
      const res = await r.run(upgrade);
      assert.equal(res.status, answer === 'reset' ? 502 : answer, String(answer));
      assert.equal(r.calls.length, 1, `${answer}: sent once`);
    }
    const r = rig({ attempts: 3, retryOn: ['5xx'] }, ['connect-failure', 101]);
    assert.equal((await r.run(upgrade)).status, 101);
    assert.deepEqual(r.retried, ['connect-failure']);
  });

  it('returns the last answer when attempts run out', async () => {
    const r = rig({ attempts: 3 }, [503]);
    const res = await r.run();
    assert.equal(res.status, 503);
    assert.equal(r.calls.length, 3);
  });

  it('retries only the named conditions', async () => {
    const cases: [RetryPolicy['retryOn'], Answer, boolean][] = [
      [['503'], 503, true],
      [['503'], 500, false],
      [['gateway-error'], 504, true],
      [['gateway-error'], 500, false],
      [['gateway-error'], 'reset', true],
      [['connect-failure'], 'reset', false],
      [['reset'], 'reset', true],
      [['reset'], 503, false],
      [['5xx'], 'connect-failure', true],
      [['5xx'], 429, false],
    ];
    for (const [retryOn, answer, retried] of cases) {
      const r = rig({ attempts: 2, ...(retryOn ? { retryOn } : {}) }, [answer, 200]);
      await r.run();
      assert.equal(r.calls.length, retried ? 2 : 1, `${JSON.stringify(retryOn)} on ${answer}`);
    }
  });

  it('stays inside the budget however many attempts the policy asks for', async () => {
    const budget = new RetryBudget(0.2, 0, 10_000, new ManualScheduler(0));
    const r = rig({ attempts: 10 }, [503], budget);
    for (let i = 0; i < 100; i++) await r.run();
    assert.equal(r.calls.length, 100 + 20, 'retries are 20% of the requests');
    assert.ok(r.exhausted >= 80);
  });

  it('buffers a small body and sends it whole on every attempt', async () => {
    const r = rig({ attempts: 3 }, [503, 503, 200]);
    const res = await r.run(withBody('{"order":42}', true));
    assert.equal(res.status, 200);
    assert.deepEqual(r.bodies, ['{"order":42}', '{"order":42}', '{"order":42}']);
  });

  it('sends streaming bodies and bodies over 64 KiB once, unretried', async () => {
    const chunked = rig({ attempts: 3 }, [503, 200]);
    assert.equal((await chunked.run(withBody('streamed', false))).status, 503);
    assert.deepEqual(chunked.bodies, ['streamed']);
    const big = 'x'.repeat(64 * 1024 + 1);
    const large = rig({ attempts: 3 }, [503, 200]);
    assert.equal((await large.run(withBody(big, true))).status, 503);
    assert.equal(large.bodies[0]!.length, big.length);
    assert.equal(replayability(compileRetryPolicy({ attempts: 2 }), 'POST', true, String(64 * 1024)), 'buffer');
  });

  it('gives each try its own timeout and retries a try that timed out under 5xx', async () => {
    const r = rig({ attempts: 3, perTryTimeout: '100ms', retryOn: ['5xx'] }, ['hang', 200]);
    const res = await r.run();
    assert.equal(res.status, 200);
    assert.deepEqual(r.retried, ['timeout']);
    assert.ok(r.times[1]! >= 100, 'the second try starts after the first timed out');
  });

  it('answers 504 with x-tsmesh-error: timeout when the last try times out', async () => {
    const r = rig({ attempts: 2, perTryTimeout: '100ms', retryOn: ['503'] }, ['hang']);
    const res = await r.run();
    assert.equal(res.status, 504);
    assert.equal(res.headers['x-tsmesh-error'], 'timeout');
    assert.match(await bodyText(res), /per-try timeout/);
    assert.equal(r.calls.length, 1, '503 only: a timeout is not retried');
  });

  it('stops when the client leaves during the backoff', async () => {
    const clock = new ManualScheduler(0);
    const controller = new AbortController();
    let calls = 0;
    const handler = retryLayer({
      rules: compileRetryPolicy({ attempts: 5, backoff: { base: '1s', max: '1s' } }),
      budget: new RetryBudget(1, 100, 10_000, clock),
      service: 'api.shop',
      counters: { retried: () => undefined, budgetExhausted: () => undefined },
      scheduler: clock,
    })(() => (calls++, Promise.resolve(testResponse(503))));
    const p = handler(testRequest({ signal: controller.signal }));
    p.catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    controller.abort(new Error('client left'));
    await assert.rejects(p, /client left/);
    assert.equal(calls, 1);
    assert.deepEqual(clock.pending(), []);
  });

  describe('gRPC calls', () => {
    /** A gRPC call whose body streams (no content-length), as grpc-js sends one. */
    const grpcCall = (text: string, more?: Readable): Partial<ProxyRequest> => ({
      method: 'POST',
      protocol: 'http2',
      headers: { host: 'api.shop', 'content-type': 'application/grpc', te: 'trailers' },
      body: more ?? Readable.from([Buffer.from(text)]),
    });

    it('retries a trailers-only UNAVAILABLE under retryOn unavailable, replaying the recorded body', async () => {
      const r = rig({ attempts: 3, retryOn: ['unavailable'] }, [{ grpc: 14 }, { grpc: 14 }, { grpc: 0 }]);
      const res = await r.run(grpcCall('\0\0\0\0\x05hello'));
      assert.equal(res.headers['grpc-status'], '0');
      assert.equal(r.calls.length, 3);
      assert.deepEqual(r.bodies, ['\0\0\0\0\x05hello', '\0\0\0\0\x05hello', '\0\0\0\0\x05hello']);
      assert.deepEqual(r.retried, ['unavailable', 'unavailable']);
    });

    it('retries each named status, judged by grpc-status whatever the HTTP status, and nothing else', async () => {
      const cases: [string, number, boolean][] = [
        ['unavailable', 14, true],
        ['cancelled', 1, true],
        ['deadline-exceeded', 4, true],
        ['internal', 13, true],
        ['resource-exhausted', 8, true],
        ['unavailable', 13, false],
        ['5xx', 14, false],
        ['unavailable', 0, false],
      ];
      for (const [on, code, retried] of cases) {
        const r = rig({ attempts: 2, retryOn: [on] }, [{ grpc: code }, { grpc: 0 }]);
        await r.run(grpcCall('x'));
        assert.equal(r.calls.length, retried ? 2 : 1, `${on} on grpc-status ${code}`);
      }
      const rules = compileRetryPolicy({ attempts: 2, retryOn: ['unavailable'] });
      assert.equal(retryReason(rules, { status: 503, headers: { 'grpc-status': '14' }, body: null }), 'unavailable');
      assert.equal(retryReason(rules, { status: 200, headers: {}, body: null }), undefined, 'a status in the trailers is not known when the answer comes');
    });

    it('does not replay a body longer than 64 KiB, nor one that had not ended when the answer came', async () => {
      const big = rig({ attempts: 3, retryOn: ['unavailable'] }, [{ grpc: 14 }, { grpc: 0 }]);
      await big.run(grpcCall('x'.repeat(64 * 1024 + 1)));
      assert.equal(big.calls.length, 1);
      const open = new Readable({ read() {} });
      open.push(Buffer.from('first message'));
      const streaming = retryLayer({
        rules: compileRetryPolicy({ attempts: 3, retryOn: ['unavailable'] }),
        budget: new RetryBudget(1, 100, 10_000, new ManualScheduler(0)),
        service: 'api.shop',
        counters: { retried: () => undefined, budgetExhausted: () => undefined },
        scheduler: new ManualScheduler(0),
      })(async (req) => {
        // The endpoint reads what has come of the body, then answers.
        streamOf(req.body!).resume();
        await new Promise((r) => setImmediate(r));
        return { status: 200, headers: { 'grpc-status': '14' }, body: null };
      });
      const res = await streaming(testRequest(grpcCall('', open)));
      assert.equal(res.headers['grpc-status'], '14', 'a stream still open goes once');
    });

    it('with no policy, sends a call again after a connect failure when nothing of its body was read', async () => {
      let calls = 0;
      const clock = new ManualScheduler(0);
      const handler = retryLayer({
        rules: DEFAULT_RETRY_RULES,
        budget: new RetryBudget(1, 100, 10_000, clock),
        service: 'api.shop',
        counters: { retried: () => undefined, budgetExhausted: () => undefined },
        scheduler: clock,
      })(async (req) => {
        if (++calls === 1) return localResponse(503, 'connect-failure', 'refused');
        return { status: 200, headers: { 'grpc-status': '0' }, body: null, meta: { endpointKey: await bodyText({ status: 0, headers: {}, body: req.body }) } };
      });
      const res = await drive(clock, handler(testRequest(grpcCall('unread'))));
      assert.equal(calls, 2);
      assert.equal(res.meta?.endpointKey, 'unread', 'the second try sent the whole body');
    });
  });

  it('judges outcomes from the compiled rules', () => {
    const rules = compileRetryPolicy({ attempts: 2, retryOn: ['gateway-error', '409'] });
    assert.equal(retryReason(rules, testResponse(409)), '409');
    assert.equal(retryReason(rules, testResponse(500)), undefined);
    assert.equal(retryReason(rules, localResponse(503, 'no-endpoints', '')), undefined, 'local answers other than connection failures are final');
    assert.equal(retryReason(DEFAULT_RETRY_RULES, localResponse(503, 'connect-failure', '')), 'connect-failure');
    assert.equal(replayability(DEFAULT_RETRY_RULES, 'DELETE', false, undefined), 'as-is');
    assert.equal(replayability(DEFAULT_RETRY_RULES, 'PATCH', false, undefined), 'no');
    assert.equal(replayability(compileRetryPolicy({ attempts: 1 }), 'GET', false, undefined), 'no');
  });
});
