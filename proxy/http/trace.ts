// Trace context, W3C (traceparent, tracestate) and B3 (the x-b3-* headers or
// the single b3 header), read and written for the proxy's own spans.
//
// The proxy is no hop of a trace unless it exports spans: with span export
// off (the default) no layer touches these headers, so the app sees its
// caller's context byte for byte, and a request without any context gets
// none (the app's own sampler decides, as it would without a mesh). A span id
// the proxy wrote there without exporting it would leave the app's spans
// pointing at a parent no tracing backend has, and a trace the proxy started
// sampled would force every tracer behind it to record everything.
//
// With export on, the proxy's span (proxy/http/span.ts) becomes the parent of
// what follows: writeSpanContext moves the headers to it, and only for a span
// that is sampled, so exported.
import type { IncomingHttpHeaders } from 'node:http';

/** The context a request came with: its trace, its caller's span, and the caller's sampling decision. */
export interface TraceContext {
  /** 32 lowercase hex digits (a 64-bit B3 trace id left-padded with zeros). */
  traceId: string;
  /** 16 lowercase hex digits: the caller's span. */
  spanId: string;
  /** The caller's decision; undefined when B3 left it to the receiver (no x-b3-sampled). */
  sampled: boolean | undefined;
  /** tracestate, passed on beside a valid traceparent. */
  traceState?: string | undefined;
}

const ZERO = /^0+$/;
const HEX = /^[0-9a-f]+$/;

function isHexId(s: string | undefined, lengths: readonly number[]): s is string {
  return s !== undefined && lengths.includes(s.length) && HEX.test(s) && !ZERO.test(s);
}

const TRACE_ID = [32];
const SPAN_ID = [16];
const B3_TRACE_ID = [16, 32];

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** The W3C parts of a valid traceparent (any version but ff; a future version reads as 00). */
export function parseTraceparent(v: string): { traceId: string; parentId: string; flags: number } | undefined {
  if (v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  const version = v.slice(0, 2);
  if (!HEX.test(version) || version === 'ff' || (version === '00' && v.length !== 55)) return undefined;
  if (v.length > 55 && v[55] !== '-') return undefined;
  const traceId = v.slice(3, 35);
  const parentId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!isHexId(traceId, TRACE_ID) || !isHexId(parentId, SPAN_ID) || !HEX.test(flags)) return undefined;
  return { traceId, parentId, flags: parseInt(flags, 16) };
}

/** B3's sampling states: "1" and "d" (debug) sample, "0" does not; absent: deferred. */
function b3Sampled(v: string | undefined, debug = false): boolean | undefined {
  if (debug || v === '1' || v === 'd' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

/** The B3 context of a request: the single b3 header first, then the x-b3-* headers. */
function readB3(headers: IncomingHttpHeaders): { traceId: string; spanId: string; sampled: boolean | undefined; single: boolean } | undefined {
  const single = first(headers.b3);
  if (single !== undefined) {
    const [traceId, spanId, sampling, ...rest] = single.split('-');
    if (isHexId(traceId, B3_TRACE_ID) && isHexId(spanId, SPAN_ID) && rest.length <= 1) return { traceId, spanId, sampled: b3Sampled(sampling), single: true };
  }
  const traceId = first(headers['x-b3-traceid']);
  const spanId = first(headers['x-b3-spanid']);
  if (!isHexId(traceId, B3_TRACE_ID) || !isHexId(spanId, SPAN_ID)) return undefined;
  return { traceId, spanId, sampled: b3Sampled(first(headers['x-b3-sampled']), first(headers['x-b3-flags']) === '1'), single: false };
}

/** The trace context a request carries: a valid traceparent, else B3; undefined when it has none. */
export function readTraceContext(headers: IncomingHttpHeaders): TraceContext | undefined {
  const tp = first(headers.traceparent);
  const w3c = tp === undefined ? undefined : parseTraceparent(tp);
  if (w3c) return { traceId: w3c.traceId, spanId: w3c.parentId, sampled: (w3c.flags & 1) === 1, traceState: first(headers.tracestate) };
  const b3 = readB3(headers);
  if (b3) return { traceId: b3.traceId.padStart(32, '0'), spanId: b3.spanId, sampled: b3.sampled };
  return undefined;
}

/** Whether a request without context asks not to be sampled (b3: 0, or x-b3-sampled: 0 alone). */
export function declinesSampling(headers: IncomingHttpHeaders): boolean {
  return first(headers.b3) === '0' || b3Sampled(first(headers['x-b3-sampled'])) === false;
}

/** The trace id a request carries (W3C or B3), for logs; undefined when it has none. */
export function traceIdOf(headers: IncomingHttpHeaders): string | undefined {
  return readTraceContext(headers)?.traceId;
}

/**
 * Makes the proxy's sampled span `spanId` of trace `traceId` the parent of
 * what follows: traceparent names it (tracestate stays beside a valid one and
 * goes with a malformed one, as the W3C recommendation says), and B3 headers
 * of the same trace move to it in the form they came in, the caller's span
 * becoming their parent.
 */
export function writeSpanContext(headers: IncomingHttpHeaders, traceId: string, spanId: string): void {
  const tp = first(headers.traceparent);
  if (tp !== undefined && !parseTraceparent(tp)) delete headers.tracestate;
  headers.traceparent = `00-${traceId}-${spanId}-01`;
  const b3 = readB3(headers);
  if (!b3 || b3.traceId.padStart(32, '0') !== traceId) return;
  if (b3.single) {
    headers.b3 = `${b3.traceId}-${spanId}-1-${b3.spanId}`;
    return;
  }
  headers['x-b3-parentspanid'] = b3.spanId;
  headers['x-b3-spanid'] = spanId;
  if (first(headers['x-b3-flags']) !== '1') headers['x-b3-sampled'] = '1';
}
