import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { declinesSampling, readTraceContext, traceIdOf, writeSpanContext } from './trace.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const SPAN = 'b7ad6b7169203331';

function written(headers: IncomingHttpHeaders, traceId = TRACE): IncomingHttpHeaders {
  const h = { ...headers };
  writeSpanContext(h, traceId, SPAN);
  return h;
}

describe('trace context', () => {
  it('reads a W3C context with its sampling flag and tracestate', () => {
    assert.deepEqual(readTraceContext({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'a=b' }), { traceId: TRACE, spanId: PARENT, sampled: true, traceState: 'a=b' });
    assert.equal(readTraceContext({ traceparent: `00-${TRACE}-${PARENT}-00` })?.sampled, false);
    assert.equal(readTraceContext({ traceparent: `cc-${TRACE}-${PARENT}-03-future` })?.sampled, true, 'a future version reads as 00');
  });

  it('reads no context from a malformed traceparent', () => {
    for (const bad of [
      `00-${TRACE}-${PARENT}`,
      `00-${'0'.repeat(32)}-${PARENT}-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `ff-${TRACE}-${PARENT}-01`,
      `00-${TRACE.toUpperCase()}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}-01-extra`,
    ]) {
      assert.equal(readTraceContext({ traceparent: bad }), undefined, bad);
    }
  });

  it('reads B3, single and multi-header, a 64-bit trace id padded to 128 bits', () => {
    assert.deepEqual(readTraceContext({ 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' }), {
      traceId: '0000000000000000463ac35c9f6413ad',
      spanId: 'a2fb4a1d1a96d312',
      sampled: true,
    });
    assert.equal(readTraceContext({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT })?.sampled, undefined, 'no x-b3-sampled: deferred');
    assert.equal(readTraceContext({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-flags': '1' })?.sampled, true, 'debug samples');
    assert.deepEqual(readTraceContext({ b3: `${TRACE}-${PARENT}-0` }), { traceId: TRACE, spanId: PARENT, sampled: false });
    assert.equal(readTraceContext({ b3: '0' }), undefined, 'a sampling-only b3 carries no context');
    assert.equal(declinesSampling({ b3: '0' }), true);
    assert.equal(declinesSampling({ 'x-b3-sampled': '0' }), true);
    assert.equal(declinesSampling({}), false);
  });

  it('prefers traceparent when both come', () => {
    assert.equal(traceIdOf({ traceparent: `00-${TRACE}-${PARENT}-01`, 'x-b3-traceid': 'aaaaaaaaaaaaaaaa', 'x-b3-spanid': PARENT }), TRACE);
    assert.equal(traceIdOf({}), undefined);
  });

  it("moves W3C context to the proxy's span, keeping tracestate", () => {
    const h = written({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=opaque' });
    assert.equal(h.traceparent, `00-${TRACE}-${SPAN}-01`);
    assert.equal(h.tracestate, 'vendor=opaque');
  });

  it('drops tracestate with a malformed traceparent it replaces', () => {
    const h = written({ traceparent: 'junk', tracestate: 'a=b' }, 'c'.repeat(32));
    assert.equal(h.traceparent, `00-${'c'.repeat(32)}-${SPAN}-01`);
    assert.equal(h.tracestate, undefined);
  });

  it('moves B3 of the same trace in the form it came, the caller becoming the parent', () => {
    const multi = written({ 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312' }, '0000000000000000463ac35c9f6413ad');
    assert.equal(multi['x-b3-traceid'], '463ac35c9f6413ad');
    assert.equal(multi['x-b3-spanid'], SPAN);
    assert.equal(multi['x-b3-parentspanid'], 'a2fb4a1d1a96d312');
    assert.equal(multi['x-b3-sampled'], '1');
    assert.equal(multi.traceparent, `00-0000000000000000463ac35c9f6413ad-${SPAN}-01`);
    assert.equal(written({ b3: `${TRACE}-${PARENT}-1-0000000000000001` }).b3, `${TRACE}-${SPAN}-1-${PARENT}`);
    assert.equal(written({ b3: `${TRACE}-${PARENT}` }).b3, `${TRACE}-${SPAN}-1-${PARENT}`);
  });

  it('leaves B3 of another trace alone', () => {
    const h = written({ traceparent: `00-${TRACE}-${PARENT}-01`, b3: `${'e'.repeat(32)}-${PARENT}-1` });
    assert.equal(h.b3, `${'e'.repeat(32)}-${PARENT}-1`);
  });
});
