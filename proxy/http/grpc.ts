// What the proxy knows of gRPC: a request is gRPC by its content-type
// (application/grpc, application/grpc+proto, ...; not grpc-web, which is
// plain HTTP to the proxy); its outcome is the grpc-status of the response,
// in the head of a trailers-only answer or in the trailers after the body,
// whatever the HTTP status. The proxy's own answers to gRPC callers are
// gRPC statuses (HTTP 200, trailers-only, as Envoy answers them), and
// grpc-timeout is read and written here.
import type { GrpcRetryCondition, LocalError } from '../../contract/vocabulary.js';
import { ERROR_HEADER } from '../../contract/vocabulary.js';
import { MemoryBody, type ProxyResponse } from './types.js';

/** The status codes of gRPC (grpc/doc/statuscodes.md). */
export const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCode = (typeof GRPC)[keyof typeof GRPC];

/** The retryOn condition of each status a policy may retry (Envoy's names). */
export const GRPC_RETRY_CODES: Readonly<Record<GrpcRetryCondition, GrpcCode>> = {
  cancelled: GRPC.CANCELLED,
  'deadline-exceeded': GRPC.DEADLINE_EXCEEDED,
  internal: GRPC.INTERNAL,
  'resource-exhausted': GRPC.RESOURCE_EXHAUSTED,
  unavailable: GRPC.UNAVAILABLE,
};

/** Whether a content-type is gRPC's: application/grpc, alone or with a +suffix or parameters. */
export function isGrpcContentType(contentType: string | string[] | undefined): boolean {
  if (typeof contentType !== 'string' || contentType.length < 16) return false;
  if (!contentType.startsWith('application/grpc') && !contentType.toLowerCase().startsWith('application/grpc')) return false;
  const next = contentType.charCodeAt(16);
  // "application/grpc", "application/grpc+proto", "application/grpc;...": not "application/grpc-web".
  return Number.isNaN(next) || next === 0x2b || next === 0x3b || next === 0x20;
}

/** Whether a request (by its headers) is a gRPC call. */
export function isGrpc(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  return isGrpcContentType(headers['content-type']);
}

/** A grpc-status value as a code; a value that is not one reads as UNKNOWN, as gRPC's clients read it. */
export function parseGrpcStatus(v: string | string[] | undefined): number | undefined {
  if (v === undefined) return undefined;
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || !/^\d{1,3}$/.test(s)) return GRPC.UNKNOWN;
  return Number(s);
}

/**
 * The gRPC status a caller reads from an HTTP status that came without one
 * (grpc/doc/http-grpc-status-mapping.md): what an HTTP proxy's error becomes.
 */
export function grpcStatusFromHttp(status: number): GrpcCode {
  switch (status) {
    case 400:
      return GRPC.INTERNAL;
    case 401:
      return GRPC.UNAUTHENTICATED;
    case 403:
      return GRPC.PERMISSION_DENIED;
    case 404:
      return GRPC.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC.UNAVAILABLE;
    default:
      return GRPC.UNKNOWN;
  }
}

/**
 * The statuses the circuit breaker counts as the endpoint failing: those
 * whose HTTP equivalent is a 5xx (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
 * INTERNAL, UNAVAILABLE, DATA_LOSS, as Envoy maps them). As with a 4xx, a
 * NOT_FOUND or INVALID_ARGUMENT says the call was wrong, not that the
 * endpoint is sick.
 */
export function isGrpcServerFailure(code: number): boolean {
  return code === GRPC.UNKNOWN || code === GRPC.DEADLINE_EXCEEDED || code === GRPC.UNIMPLEMENTED || code === GRPC.INTERNAL || code === GRPC.UNAVAILABLE || code === GRPC.DATA_LOSS;
}

/** The status a gRPC caller gets for each of the proxy's own answers. */
const LOCAL_GRPC_STATUS: Readonly<Record<LocalError, GrpcCode | 'by-http-status'>> = {
  'no-route': GRPC.UNAVAILABLE,
  'no-backend': GRPC.UNAVAILABLE,
  'no-route-match': GRPC.UNIMPLEMENTED,
  'no-endpoints': GRPC.UNAVAILABLE,
  'circuit-open': GRPC.UNAVAILABLE,
  overloaded: GRPC.RESOURCE_EXHAUSTED,
  timeout: GRPC.DEADLINE_EXCEEDED,
  'response-head-timeout': GRPC.DEADLINE_EXCEEDED,
  'connect-failure': GRPC.UNAVAILABLE,
  'upstream-reset': GRPC.UNAVAILABLE,
  'bad-response': GRPC.UNAVAILABLE,
  'fault-injected': 'by-http-status',
  denied: GRPC.PERMISSION_DENIED,
  'mtls-required': GRPC.PERMISSION_DENIED,
  'egress-denied': GRPC.PERMISSION_DENIED,
  'egress-tls-failed': GRPC.UNAVAILABLE,
  'app-refused': GRPC.UNAVAILABLE,
  'app-unavailable': GRPC.UNAVAILABLE,
  'proxy-error': GRPC.INTERNAL,
  'bad-request': 'by-http-status',
};

export function grpcStatusOfLocal(reason: LocalError, httpStatus: number): GrpcCode {
  const s = LOCAL_GRPC_STATUS[reason];
  return s === 'by-http-status' ? grpcStatusFromHttp(httpStatus) : s;
}

/** grpc-message's encoding: UTF-8, every byte outside printable ASCII and "%" itself as %XX. */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function decodeGrpcMessage(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** A trailers-only gRPC answer: HTTP 200 with the status and message in its head, and no body. */
export function grpcResponse(code: GrpcCode, message: string, extra: Record<string, string> = {}): ProxyResponse {
  return {
    status: 200,
    headers: { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message), ...extra },
    body: null,
  };
}

/**
 * One of the proxy's own answers (meta.localReason) as a gRPC caller must get
 * it: the matching status, the text as grpc-message, x-tsmesh-error kept.
 * Other answers, and answers that are gRPC already, are returned as they are.
 */
export function asGrpcAnswer(res: ProxyResponse): ProxyResponse {
  const reason = res.meta?.localReason;
  if (reason === undefined || res.headers['grpc-status'] !== undefined) return res;
  const text = res.body instanceof MemoryBody ? res.body.data.toString('utf8').trimEnd() : `tsmesh: ${reason}`;
  res.body?.destroy();
  const answer = grpcResponse(grpcStatusOfLocal(reason, res.status), text, { [ERROR_HEADER]: reason });
  answer.meta = res.meta!;
  return answer;
}

/** The status of a response whose head carries it (trailers-only), else undefined. */
export function headGrpcStatus(res: ProxyResponse): number | undefined {
  return parseGrpcStatus(res.headers['grpc-status']);
}

/**
 * Calls `done` once with a gRPC response's status: at once for a head that
 * carries it, else when the body ends, from its trailers (none: as the HTTP
 * status reads, UNKNOWN for a 200); a body cut off before its end gives
 * CANCELLED when `cancelled()` says the caller left, else UNAVAILABLE, what
 * the caller reads from the reset stream.
 */
export function whenGrpcStatus(res: ProxyResponse, cancelled: () => boolean, done: (code: number) => void): void {
  const head = headGrpcStatus(res);
  if (head !== undefined) {
    done(head);
    return;
  }
  const body = res.body;
  if (body === null || body instanceof MemoryBody) {
    // A body whole in memory has its trailers already (tsmesh/h2f's answers); a local answer has none.
    done((body && parseGrpcStatus(res.trailers?.()?.['grpc-status'])) ?? grpcStatusFromHttp(res.status));
    return;
  }
  let settled = false;
  const settle = (code: number): void => {
    if (settled) return;
    settled = true;
    done(code);
  };
  // Plain listeners (settle runs once): a once() wrapper apiece per call was garbage for nothing.
  body.on('end', () => settle(parseGrpcStatus(res.trailers?.()?.['grpc-status']) ?? grpcStatusFromHttp(res.status)));
  body.on('close', () => settle(cancelled() ? GRPC.CANCELLED : GRPC.UNAVAILABLE));
}

/** grpc-timeout's units, in milliseconds. */
const TIMEOUT_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** A grpc-timeout value (1 to 8 digits and a unit: H M S m u n) in milliseconds; undefined when it is not one. */
export function parseGrpcTimeout(v: string | string[] | undefined): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * TIMEOUT_UNITS[m[2]!]!;
}

/**
 * Milliseconds as a grpc-timeout value: the finest unit whose count fits in
 * 8 digits, rounded up, so the callee never gets less time than is left
 * (at least 1 ms: an expired deadline is the proxy's to answer).
 */
export function formatGrpcTimeout(ms: number): string {
  const left = Math.max(1, ms);
  for (const unit of ['u', 'm', 'S', 'M'] as const) {
    const n = Math.ceil(left / TIMEOUT_UNITS[unit]!);
    if (n <= 99_999_999) return `${n}${unit}`;
  }
  return `${Math.min(99_999_999, Math.ceil(left / TIMEOUT_UNITS.H!))}H`;
}
