import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { propagateTrace, randomTraceIds, traceLayer, type TraceIds } from './trace.js';
import { testRequest, testResponse } from './testdata/requests.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function fixedIds(): TraceIds & { spans: number } {
  const ids = {
    spans: 0,
    traceId: () => 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    spanId: () => `${++ids.spans}`.padStart(16, 'b'),
  };
  return ids;
}

function hop(headers: IncomingHttpHeaders, ids: TraceIds = fixedIds()): IncomingHttpHeaders {
  const h = { ...headers };
  propagateTrace(h, ids);
  return h;
}

describe('trace propagation', () => {
  it('keeps the W3C trace id and flags, makes a new span the parent, and passes tracestate', () => {
    const h = hop({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=opaque' });
    assert.equal(h.traceparent, `00-${TRACE}-bbbbbbbbbbbbbbb1-01`);
    assert.equal(h.tracestate, 'vendor=opaque');
  });

  it('gives every hop a new span id', () => {
    const ids = fixedIds();
    const one = hop({ traceparent: `00-${TRACE}-${PARENT}-00` }, ids);
    const two = hop(one, ids);
    assert.equal(two.traceparent, `00-${TRACE}-bbbbbbbbbbbbbbb2-00`);
  });

  it('starts a sampled trace when the request has none', () => {
    assert.equal(hop({}).traceparent, '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbb1-01');
    const ids = randomTraceIds();
    const h = hop({}, ids);
    assert.match(String(h.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.notEqual(hop({}, ids).traceparent, h.traceparent);
  });

  it('restarts the trace and drops tracestate when traceparent is malformed', () => {
    for (const bad of [
      `00-${TRACE}-${PARENT}`,
      `00-${'0'.repeat(32)}-${PARENT}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `ff-${TRACE}-${PARENT}-01`,
      `00-${TRACE.toUpperCase()}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}-01-extra`,
    ]) {
      const h = hop({ traceparent: bad, tracestate: 'a=b' });
      assert.equal(h.traceparent, '00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbb1-01', bad);
      assert.equal(h.tracestate, undefined);
    }
  });

  it('reads a future version as 00', () => {
    assert.equal(hop({ traceparent: `cc-${TRACE}-${PARENT}-01-more-fields` }).traceparent, `00-${TRACE}-bbbbbbbbbbbbbbb1-01`);
  });

  it('moves B3 headers to the new span, the old span becoming the parent, and derives traceparent from them', () => {
    const h = hop({ 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' });
    assert.equal(h['x-b3-traceid'], '463ac35c9f6413ad');
    assert.equal(h['x-b3-spanid'], 'bbbbbbbbbbbbbbb1');
    assert.equal(h['x-b3-parentspanid'], 'a2fb4a1d1a96d312');
    assert.equal(h.traceparent, '00-0000000000000000463ac35c9f6413ad-bbbbbbbbbbbbbbb1-01');
  });

  it('rewrites the single b3 header in its own form', () => {
    assert.equal(hop({ b3: `${TRACE}-${PARENT}-1-0000000000000001` }).b3, `${TRACE}-bbbbbbbbbbbbbbb1-1-${PARENT}`);
    assert.equal(hop({ b3: `${TRACE}-${PARENT}` }).b3, `${TRACE}-bbbbbbbbbbbbbbb1`);
    const sampledOnly = hop({ b3: '0' });
    assert.equal(sampledOnly.b3, '0', 'a sampling-only b3 carries no context to move');
  });

  it('updates W3C and B3 with the same span when both come', () => {
    const h = hop({ traceparent: `00-${TRACE}-${PARENT}-01`, 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT });
    assert.equal(h.traceparent, `00-${TRACE}-bbbbbbbbbbbbbbb1-01`);
    assert.equal(h['x-b3-spanid'], 'bbbbbbbbbbbbbbb1');
  });

  it('as a layer rewrites the request headers before passing it on', async () => {
    let seen: IncomingHttpHeaders = {};
    const handler = traceLayer(fixedIds())((req) => ((seen = req.headers), Promise.resolve(testResponse(200))));
    await handler(testRequest({ headers: { traceparent: `00-${TRACE}-${PARENT}-01` } }));
    assert.equal(seen.traceparent, `00-${TRACE}-bbbbbbbbbbbbbbb1-01`);
  });
});
