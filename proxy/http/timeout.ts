// The route timeout: when no response head has arrived after `ms`, the
// request is cancelled upstream and the client gets 504 with
// `x-tsmesh-error: timeout`. It bounds the whole exchange up to the response
// head, retries and their backoff included; a response body that has begun
// streaming is not cut (long downloads and streams stay possible).
//
// Without a route timeout, the response head timeout bounds each try
// instead (ResponseHeadTimeoutError, raised by the forwarders): counted from
// when the request has been sent whole, so that a large upload is not cut,
// to the response's head (an interim response starts it again); past it the
// endpoint's connection or stream is closed and the client gets 504 with
// `x-tsmesh-error: response-head-timeout`. A route timeout, or a gRPC
// call's grpc-timeout, is the bound the caller chose, and replaces it.
import { parseDuration } from '../../lib/duration.js';
import type { Scheduler } from '../../lib/scheduler.js';
import { PROXY_DEFAULTS, PROXY_ENV } from '../../contract/env.js';
import { withCancellation } from './cancel.js';
import { localResponse, type Layer, type ProxyResponse } from './types.js';
import type { LocalError } from '../../contract/vocabulary.js';

/** The abort reason when the mesh, not the client, gave up on a request. */
export class MeshTimeoutError extends Error {
  override name = 'MeshTimeoutError';
  constructor(
    /** deadline: a gRPC call's grpc-timeout (grpc-deadline.ts). */
    readonly kind: 'route' | 'per-try' | 'deadline',
    readonly ms: number,
  ) {
    super(`no response within ${ms} ms (${kind === 'deadline' ? "the call's grpc-timeout" : `${kind} timeout`})`);
  }

  /** What was not met, for messages: "route timeout", "per-try timeout", "the call's grpc-timeout". */
  get what(): string {
    return this.kind === 'deadline' ? "the call's grpc-timeout" : `${this.kind} timeout`;
  }
}

export const TIMEOUT_REASON = 'timeout' satisfies LocalError;
export const RESPONSE_HEAD_TIMEOUT_REASON = 'response-head-timeout' satisfies LocalError;

/** The response head timeout when the proxy's settings give none (TSMESH_RESPONSE_HEAD_TIMEOUT's default). */
export const DEFAULT_RESPONSE_HEAD_TIMEOUT_MS = parseDuration(PROXY_DEFAULTS.RESPONSE_HEAD_TIMEOUT, PROXY_ENV.RESPONSE_HEAD_TIMEOUT);

/** An endpoint sent no response head within the response head timeout of the request's last byte (a forwarder's error). */
export class ResponseHeadTimeoutError extends Error {
  override name = 'ResponseHeadTimeoutError';
  constructor(readonly ms: number) {
    super(`no response head within ${ms} ms of the request's end (the response head timeout, ${PROXY_ENV.RESPONSE_HEAD_TIMEOUT}; a route timeout or a gRPC deadline replaces it)`);
  }
}

export function timeoutResponse(service: string, err: MeshTimeoutError): ProxyResponse {
  return localResponse(504, TIMEOUT_REASON, `tsmesh: ${service} did not answer within ${err.ms} ms (${err.what})`);
}

export interface TimeoutOptions {
  ms: number;
  /** "name.namespace", for the message. */
  service: string;
  scheduler: Scheduler;
}

export function timeoutLayer(o: TimeoutOptions): Layer {
  return (next) => (outer) =>
    new Promise<ProxyResponse>((resolve, reject) => {
      const { req, cancel } = withCancellation(outer);
      let timedOut = false;
      const timer = o.scheduler.setTimeout(() => {
        timedOut = true;
        const err = new MeshTimeoutError('route', o.ms);
        cancel.abort(err);
        resolve(timeoutResponse(o.service, err));
      }, o.ms);
      const done = (): void => {
        o.scheduler.clearTimeout(timer);
        cancel.dispose();
      };
      next(req).then(
        (res) => {
          done();
          if (timedOut) res.body?.destroy();
          else resolve(res);
        },
        (e: unknown) => {
          done();
          if (!timedOut) reject(e as Error);
        },
      );
    });
}
