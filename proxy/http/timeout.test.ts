import assert from 'node:assert/strict';
import { ManualScheduler, settle } from '../../lib/testdata/manual-scheduler.js';
import { bodyText, hang, testRequest, testResponse } from './testdata/requests.js';
import { MeshTimeoutError, timeoutLayer } from './timeout.js';
import type { ProxyRequest } from './types.js';

describe('timeout layer', () => {
  it('answers 504 with x-tsmesh-error: timeout and cancels the request upstream', async () => {
    const clock = new ManualScheduler(0);
    let seen: ProxyRequest | undefined;
    const handler = timeoutLayer({ ms: 2000, service: 'api.shop', scheduler: clock })((req) => ((seen = req), hang(req.signal)));
    const p = handler(testRequest());
    await settle();
    clock.advance(1999);
    await settle();
    assert.equal(seen!.signal.aborted, false);
    clock.advance(1);
    const res = await p;
    assert.equal(res.status, 504);
    assert.equal(res.headers['x-tsmesh-error'], 'timeout');
    assert.match(await bodyText(res), /api\.shop did not answer within 2000 ms \(route timeout\)/);
    assert.ok(seen!.signal.reason instanceof MeshTimeoutError);
  });

  it('passes a response that comes in time and clears its timer', async () => {
    const clock = new ManualScheduler(0);
    const handler = timeoutLayer({ ms: 2000, service: 'api.shop', scheduler: clock })(() => Promise.resolve(testResponse(200, 'ok')));
    const res = await handler(testRequest());
    assert.equal(res.status, 200);
    assert.deepEqual(clock.pending(), []);
  });

  it('passes the client leaving through to the request, and its error back', async () => {
    const clock = new ManualScheduler(0);
    const client = new AbortController();
    let seen: ProxyRequest | undefined;
    const handler = timeoutLayer({ ms: 2000, service: 'api.shop', scheduler: clock })((req) => ((seen = req), hang(req.signal)));
    const p = handler(testRequest({ signal: client.signal }));
    client.abort(new Error('client left'));
    await assert.rejects(p, /aborted/);
    assert.equal((seen!.signal.reason as Error).message, 'client left');
    assert.deepEqual(clock.pending(), []);
  });
});
