import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { monotonicScheduler } from '../../lib/scheduler.js';
import { grpcAnswersLayer } from './grpc-answers.js';
import { grpcDeadlineLayer } from './grpc-deadline.js';
import { hang, testRequest } from './testdata/requests.js';
import { compose, streamOf, type Handler, type ProxyRequest, type ProxyResponse } from './types.js';

const GRPC_HEADERS = { host: 'api.shop', 'content-type': 'application/grpc', te: 'trailers' };

function stack(inner: Handler): Handler {
  return compose([grpcAnswersLayer, grpcDeadlineLayer({ service: 'api.shop', scheduler: monotonicScheduler })], inner);
}

describe('gRPC deadline layer', () => {
  it('passes calls without grpc-timeout, with one that does not parse, and other requests, as they are', async () => {
    const seen: ProxyRequest[] = [];
    const h = stack((req) => (seen.push(req), Promise.resolve({ status: 200, headers: {}, body: null })));
    const plain = testRequest({ headers: { host: 'api.shop', 'grpc-timeout': '10m' } });
    const bad = testRequest({ headers: { ...GRPC_HEADERS, 'grpc-timeout': '10 seconds' } });
    await h(plain);
    await h(bad);
    assert.equal(seen[0], plain);
    assert.equal(seen[1], bad);
    assert.equal(seen[1]?.deadline, undefined);
  });

  it('gives the request its deadline, from when it reached the proxy', async () => {
    let got: ProxyRequest | undefined;
    const startedAt = performance.now() - 40;
    await stack((req) => ((got = req), Promise.resolve({ status: 200, headers: {}, body: null })))(testRequest({ headers: { ...GRPC_HEADERS, 'grpc-timeout': '1S' }, startedAt }));
    assert.equal(got?.deadline, startedAt + 1000);
  });

  it('answers DEADLINE_EXCEEDED (trailers-only) and cancels upstream when no answer came in time', async () => {
    let cancelled = false;
    const t0 = performance.now();
    const res = await stack((req) => {
      req.signal.addEventListener('abort', () => (cancelled = true));
      return hang(req.signal);
    })(testRequest({ headers: { ...GRPC_HEADERS, 'grpc-timeout': '50m' }, startedAt: performance.now() }));
    assert.ok(performance.now() - t0 >= 45);
    assert.equal(res.status, 200);
    assert.equal(res.body, null);
    assert.equal(res.headers['grpc-status'], '4');
    assert.equal(res.headers['x-tsmesh-error'], 'timeout');
    assert.ok(cancelled, 'the upstream call was cancelled');
  });

  it('ends an answer that streams past the deadline with DEADLINE_EXCEEDED in its trailers, and resets the upstream body', async () => {
    const upstream = new PassThrough();
    const res: ProxyResponse = await stack(() => Promise.resolve({ status: 200, headers: { 'content-type': 'application/grpc' }, body: upstream, trailers: () => ({ 'grpc-status': '0' }) }))(
      testRequest({ headers: { ...GRPC_HEADERS, 'grpc-timeout': '60m' }, startedAt: performance.now() }),
    );
    upstream.write('first');
    const chunks: string[] = [];
    const body = streamOf(res.body!);
    body.on('data', (c: Buffer) => chunks.push(c.toString()));
    await new Promise((r) => body.once('end', r));
    assert.deepEqual(chunks, ['first']);
    assert.equal(res.trailers?.()?.['grpc-status'], '4');
    assert.equal(upstream.destroyed, true, 'the upstream body was let go of');
  });

  it("leaves an answer that ends in time with the endpoint's own trailers", async () => {
    const upstream = new PassThrough();
    const res = await stack(() => Promise.resolve({ status: 200, headers: {}, body: upstream, trailers: () => ({ 'grpc-status': '0' }) }))(
      testRequest({ headers: { ...GRPC_HEADERS, 'grpc-timeout': '1S' }, startedAt: performance.now() }),
    );
    upstream.end('all');
    const body = streamOf(res.body!);
    body.resume();
    await new Promise((r) => body.once('end', r));
    assert.equal(res.trailers?.()?.['grpc-status'], '0');
  });
});
