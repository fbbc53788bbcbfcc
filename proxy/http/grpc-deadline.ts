// A gRPC call's deadline (its grpc-timeout) holds in the mesh as a route
// timeout does, counted from when the call reached the proxy: when it passes
// before the answer's head, the call is cancelled upstream (the endpoint's
// stream is reset) and the caller gets DEADLINE_EXCEEDED, a local `timeout`
// answer that grpc-answers.ts turns into the gRPC status. Unlike a route
// timeout it also bounds the answer's body, for a streaming call: when it
// passes mid-body the upstream stream is reset and the caller's ends with
// trailers carrying DEADLINE_EXCEEDED. The forwarder sends on what is left
// of the deadline (h2-forward.ts, `ProxyRequest.deadline`), so each hop
// gets the time the ones before have not used. A call without grpc-timeout,
// or with one that does not parse, goes on as it is.
import { PassThrough, type Readable } from 'node:stream';
import type { Scheduler } from '../../lib/scheduler.js';
import { withCancellation } from './cancel.js';
import { encodeGrpcMessage, GRPC, isGrpc, parseGrpcTimeout } from './grpc.js';
import { MeshTimeoutError, timeoutResponse } from './timeout.js';
import { MemoryBody, type Layer, type ProxyResponse } from './types.js';

export interface DeadlineOptions {
  /** "name.namespace", for messages. */
  service: string;
  scheduler: Scheduler;
}

export function grpcDeadlineLayer(o: DeadlineOptions): Layer {
  return (next) => (outer) => {
    const ms = isGrpc(outer.headers) ? parseGrpcTimeout(outer.headers['grpc-timeout']) : undefined;
    if (ms === undefined) return next(outer);
    const deadline = outer.startedAt + ms;
    return new Promise<ProxyResponse>((resolve, reject) => {
      const { req, cancel } = withCancellation({ ...outer, deadline });
      const err = new MeshTimeoutError('deadline', Math.round(ms));
      /** Set once the answer's head is here and its body is being cut at the deadline. */
      let cut: (() => void) | undefined;
      let timedOut = false;
      const timer = o.scheduler.setTimeout(
        () => {
          timedOut = true;
          cancel.abort(err);
          if (cut) cut();
          else resolve(timeoutResponse(o.service, err));
        },
        Math.max(0, deadline - performance.now()),
      );
      const done = (): void => {
        o.scheduler.clearTimeout(timer);
        cancel.dispose();
      };
      next(req).then(
        (res) => {
          if (timedOut) {
            res.body?.destroy();
            return;
          }
          if (res.body === null || res.body instanceof MemoryBody) {
            done();
            resolve(res);
            return;
          }
          const bounded = boundedBody(res, res.body, done);
          cut = bounded.cut;
          resolve(bounded.res);
        },
        (e: unknown) => {
          done();
          if (!timedOut) reject(e as Error);
        },
      );
    });
  };
}

/**
 * The answer with its body passed through a stream the deadline can end:
 * cut() resets the upstream body and ends the caller's with trailers saying
 * DEADLINE_EXCEEDED. `done` runs once the body is over either way.
 */
function boundedBody(res: ProxyResponse, body: Readable, done: () => void): { res: ProxyResponse; cut: () => void } {
  const out = new PassThrough();
  let deadlineTrailers: Record<string, string> | undefined;
  body.once('close', () => {
    // The upstream's body broke off (not cut by the deadline): the caller's breaks off too.
    if (!body.readableEnded && deadlineTrailers === undefined) out.destroy(new Error('the answer ended before its body did'));
  });
  out.once('close', () => {
    done();
    // The caller went away: the upstream's stream is let go of.
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(out);
  const cut = (): void => {
    deadlineTrailers = { 'grpc-status': String(GRPC.DEADLINE_EXCEEDED), 'grpc-message': encodeGrpcMessage("tsmesh: the call's grpc-timeout passed while its answer streamed") };
    body.unpipe(out);
    body.destroy();
    out.end();
  };
  const upstream = res.trailers;
  return { res: { ...res, body: out, trailers: () => deadlineTrailers ?? upstream?.() }, cut };
}
