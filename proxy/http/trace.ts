// Trace context propagation, W3C (traceparent, tracestate) and B3 (the
// x-b3-* headers or the single b3 header). The proxy is one hop of the
// trace: it keeps the trace id, gives the request a new span id and makes
// the caller's span its parent. A request without any trace context starts
// a trace (sampled, so that apps whose tracer samples by parent, as
// OpenTelemetry does by default, keep recording as they would for a root).
// tracestate passes unchanged; B3 is rewritten only when the request came
// with it. A malformed traceparent restarts the trace and drops tracestate,
// as the W3C recommendation says.
import type { IncomingHttpHeaders } from 'node:http';
import type { Layer } from './types.js';

// Through getBuiltinModule: an ESM import of this built-in loads more of Node than is used (proxy/module-graph.test.ts).
const { randomFillSync } = process.getBuiltinModule('node:crypto');

export interface TraceIds {
  /** 32 lowercase hex digits, not all zero. */
  traceId(): string;
  /** 16 lowercase hex digits, not all zero. */
  spanId(): string;
}

/** Random ids from a pooled buffer of random bytes, refilled when used up. */
export function randomTraceIds(): TraceIds {
  const pool = Buffer.alloc(4096);
  let offset = pool.length;
  const hex = (bytes: number): string => {
    for (;;) {
      if (offset + bytes > pool.length) {
        randomFillSync(pool);
        offset = 0;
      }
      const s = pool.toString('hex', offset, (offset += bytes));
      if (!ZERO.test(s)) return s;
    }
  };
  return { traceId: () => hex(16), spanId: () => hex(8) };
}

const ZERO = /^0+$/;
const TRACE_ID = [32];
const SPAN_ID = [16];
const B3_TRACE_ID = [16, 32];
const HEX = /^[0-9a-f]+$/;

function isHexId(s: string | undefined, lengths: readonly number[]): s is string {
  return s !== undefined && lengths.includes(s.length) && HEX.test(s) && !ZERO.test(s);
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** The W3C parts of a valid traceparent (any version but ff; future versions read as 00). */
function parseTraceparent(v: string): { traceId: string; parentId: string; flags: string } | undefined {
  if (v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  const version = v.slice(0, 2);
  if (!HEX.test(version) || version === 'ff' || (version === '00' && v.length !== 55)) return undefined;
  if (v.length > 55 && v[55] !== '-') return undefined;
  const traceId = v.slice(3, 35);
  const parentId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!isHexId(traceId, TRACE_ID) || !isHexId(parentId, SPAN_ID) || !HEX.test(flags)) return undefined;
  return { traceId, parentId, flags };
}

/** Rewrites the trace headers of a request in place for one more hop. */
export function propagateTrace(headers: IncomingHttpHeaders, ids: TraceIds): void {
  const spanId = ids.spanId();
  const b3 = rewriteB3(headers, spanId);
  const incoming = first(headers.traceparent);
  const w3c = incoming === undefined ? undefined : parseTraceparent(incoming);
  if (w3c) {
    headers.traceparent = `00-${w3c.traceId}-${spanId}-${w3c.flags}`;
    return;
  }
  if (incoming !== undefined) delete headers.tracestate;
  if (b3) {
    headers.traceparent = `00-${b3.traceId.padStart(32, '0')}-${spanId}-${b3.sampled ? '01' : '00'}`;
    return;
  }
  headers.traceparent = `00-${ids.traceId()}-${spanId}-01`;
}

/** Moves B3 context to `spanId`; returns the trace it carries, or undefined when there is no (valid) B3. */
function rewriteB3(headers: IncomingHttpHeaders, spanId: string): { traceId: string; sampled: boolean } | undefined {
  const single = first(headers.b3);
  if (single !== undefined) {
    const [traceId, parent, sampling, ...rest] = single.split('-');
    if (isHexId(traceId, B3_TRACE_ID) && isHexId(parent, SPAN_ID) && rest.length <= 1) {
      headers.b3 = sampling === undefined ? `${traceId}-${spanId}` : `${traceId}-${spanId}-${sampling}-${parent}`;
      return { traceId, sampled: sampling === '1' || sampling === 'd' };
    }
  }
  const traceId = first(headers['x-b3-traceid']);
  if (!isHexId(traceId, B3_TRACE_ID)) return undefined;
  const parent = first(headers['x-b3-spanid']);
  if (isHexId(parent, SPAN_ID)) headers['x-b3-parentspanid'] = parent;
  else delete headers['x-b3-parentspanid'];
  headers['x-b3-spanid'] = spanId;
  return { traceId, sampled: headers['x-b3-sampled'] === '1' || headers['x-b3-flags'] === '1' };
}

export function traceLayer(ids: TraceIds = randomTraceIds()): Layer {
  return (next) => (req) => {
    propagateTrace(req.headers, ids);
    return next(req);
  };
}
