// Which outcomes a retry policy retries, compiled once per route so that
// judging a response is a few comparisons. retryOn values as in
// config/validate.ts:
//   connect-failure  the endpoint was never reached
//   reset            the connection broke before a response, or a per-try timeout
//   gateway-error    502, 503, 504, plus connect failures, resets and per-try timeouts
//   5xx              any 5xx, plus connect failures, resets and per-try timeouts
//   "503", ...       that status from the endpoint
//   unavailable, cancelled, deadline-exceeded, internal, resource-exhausted
//                    a gRPC answer with that grpc-status in its head (a
//                    trailers-only answer: a status in the trailers comes
//                    after the body has gone to the caller); a gRPC answer
//                    is judged by its grpc-status alone, whatever its HTTP status
import type { BackoffOptions } from '../../lib/backoff.js';
import { parseDuration } from '../../lib/duration.js';
import type { RetryPolicy } from '../../contract/proxy-config.js';
import { GRPC_RETRY_CONDITIONS } from '../../contract/vocabulary.js';
import { CONNECT_FAILURE, UPSTREAM_RESET } from './balance.js';
import { GRPC_RETRY_CODES, headGrpcStatus } from './grpc.js';
import { TIMEOUT_REASON } from './timeout.js';
import type { ProxyResponse } from './types.js';

export interface RetryRules {
  /** Tries in all, the first included. */
  attempts: number;
  /** 0: none. */
  perTryTimeoutMs: number;
  backoff: BackoffOptions;
  /** Indexed by status code. */
  onStatus: Uint8Array;
  /** Indexed by gRPC status code. */
  onGrpc: Uint8Array;
  onConnectFailure: boolean;
  onReset: boolean;
  onTimeout: boolean;
  /**
   * idempotent-bodyless: only GET, HEAD, OPTIONS, TRACE, PUT and DELETE without a body (the default policy);
   * buffered: any method without a body or with one of at most `maxBodyBytes`, buffered to replay it.
   */
  replay: 'idempotent-bodyless' | 'buffered';
  maxBodyBytes: number;
}

/** Request bodies up to this size are buffered so the request can be replayed; larger or streaming bodies are never retried. */
export const MAX_RETRY_BODY_BYTES = 64 * 1024;
export const DEFAULT_BACKOFF_BASE_MS = 25;
export const DEFAULT_BACKOFF_MAX_MS = 250;
/** Explicit policies that name no condition retry server errors, as Linkerd's retries do. */
export const DEFAULT_RETRY_ON: readonly string[] = ['5xx'];

const backoff = (baseMs: number, maxMs: number): BackoffOptions => ({ minMs: baseMs, maxMs, factor: 2, jitter: 0.5 });

function statuses(codes: Iterable<number>): Uint8Array {
  const table = new Uint8Array(600);
  for (const c of codes) table[c] = 1;
  return table;
}

function grpcStatuses(codes: Iterable<number>): Uint8Array {
  const table = new Uint8Array(GRPC_CODE_COUNT);
  for (const c of codes) table[c] = 1;
  return table;
}

const GRPC_CODE_COUNT = 17;
/** The tsmesh_retries_total reason of each retried gRPC status: its condition's name. */
const GRPC_REASONS: readonly (string | undefined)[] = Array.from({ length: GRPC_CODE_COUNT }, (_, code) =>
  Object.entries(GRPC_RETRY_CODES).find(([, c]) => c === code)?.[0],
);

/**
 * With no policy, the mesh retries once, and only a connect failure of a
 * bodyless idempotent request: the endpoint never saw it, so replaying it
 * cannot repeat a side effect, and it costs nothing on the hot path (no
 * body to buffer). Status codes are retried only when a policy asks, since
 * an overloaded service answering 503 must not get more load by default.
 * The retry budget bounds it like any other retry.
 */
export const DEFAULT_RETRY_RULES: Readonly<RetryRules> = {
  attempts: 2,
  perTryTimeoutMs: 0,
  backoff: backoff(DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS),
  onStatus: statuses([]),
  onGrpc: grpcStatuses([]),
  onConnectFailure: true,
  onReset: false,
  onTimeout: false,
  replay: 'idempotent-bodyless',
  maxBodyBytes: 0,
};

export function compileRetryPolicy(policy: RetryPolicy | undefined): Readonly<RetryRules> {
  if (!policy) return DEFAULT_RETRY_RULES;
  const on = new Set(policy.retryOn ?? DEFAULT_RETRY_ON);
  const codes: number[] = [];
  for (const c of on) if (/^\d{3}$/.test(c)) codes.push(Number(c));
  if (on.has('5xx')) for (let c = 500; c < 600; c++) codes.push(c);
  if (on.has('gateway-error')) codes.push(502, 503, 504);
  const broad = on.has('5xx') || on.has('gateway-error');
  return {
    attempts: policy.attempts,
    perTryTimeoutMs: policy.perTryTimeout ? parseDuration(policy.perTryTimeout) : 0,
    backoff: policy.backoff ? backoff(parseDuration(policy.backoff.base), parseDuration(policy.backoff.max)) : DEFAULT_RETRY_RULES.backoff,
    onStatus: statuses(codes),
    onGrpc: grpcStatuses(GRPC_RETRY_CONDITIONS.filter((c) => on.has(c)).map((c) => GRPC_RETRY_CODES[c])),
    onConnectFailure: broad || on.has('connect-failure'),
    onReset: broad || on.has('reset'),
    onTimeout: broad || on.has('reset'),
    replay: 'buffered',
    maxBodyBytes: MAX_RETRY_BODY_BYTES,
  };
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * How a request can be replayed: as it is, after buffering its body, by
 * recording its body as it goes out (a gRPC call's), or not at all.
 */
export function replayability(rules: RetryRules, method: string, hasBody: boolean, contentLength: string | undefined, grpc = false): 'as-is' | 'buffer' | 'record' | 'no' {
  if (rules.attempts < 2) return 'no';
  if (rules.replay === 'idempotent-bodyless') return !hasBody && IDEMPOTENT.has(method) ? 'as-is' : 'no';
  if (!hasBody) return 'as-is';
  // A body without a length is a stream: it cannot be held back to replay. A gRPC call's goes out
  // as it comes (a streaming call's may not end before its answers begin), recorded to replay.
  if (contentLength === undefined) return grpc ? 'record' : 'no';
  const n = Number(contentLength);
  return Number.isInteger(n) && n >= 0 && n <= rules.maxBodyBytes ? 'buffer' : 'no';
}

/** Why `res` should be retried (the tsmesh_retries_total reason), or undefined. */
export function retryReason(rules: RetryRules, res: ProxyResponse): string | undefined {
  const local = res.meta?.localReason;
  if (local !== undefined) {
    if (local === CONNECT_FAILURE) return rules.onConnectFailure ? CONNECT_FAILURE : undefined;
    if (local === UPSTREAM_RESET) return rules.onReset ? 'reset' : undefined;
    if (local === TIMEOUT_REASON) return rules.onTimeout ? 'timeout' : undefined;
    // Other local answers (no endpoints, open circuit) would only repeat.
    return undefined;
  }
  const grpc = headGrpcStatus(res);
  if (grpc !== undefined) return rules.onGrpc[grpc] === 1 ? GRPC_REASONS[grpc] : undefined;
  return rules.onStatus[res.status] === 1 ? String(res.status) : undefined;
}
