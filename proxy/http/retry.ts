// Retries, as undici splits them: this layer only decides whether a request
// can be replayed and runs the attempts; which outcomes are retried is
// retry-policy.ts, how many retries the destination can take is
// retry-budget.ts. Every request deposits into the budget; every retry must
// withdraw from it, whatever the policy's attempts, so retries never
// multiply load. Between attempts: exponential backoff with jitter. Each
// attempt may have its own timeout (per-try); the route timeout above bounds
// them all.
//
// Request bodies: a request with a body is retried only when the body has a
// length of at most MAX_RETRY_BODY_BYTES, which is buffered before the first
// attempt. Larger bodies and streaming bodies (no content-length) go out
// once and are never retried: they cannot be replayed. A gRPC call's body
// streams (its messages have no content-length, and a streaming call's may
// not end before its answers begin): it goes out as it comes, with a copy
// kept up to MAX_RETRY_BODY_BYTES, and a retry replays the copy when the
// body had ended within it (every unary call's has by its answer).
import { PassThrough, type Readable } from 'node:stream';
import { backoffDelay } from '../../lib/backoff.js';
import type { Scheduler } from '../../lib/scheduler.js';
import { CONNECT_FAILURE } from './balance.js';
import type { RetryBudget } from './retry-budget.js';
import { replayability, retryReason, type RetryRules } from './retry-policy.js';
import { withCancellation, type RequestSignal } from './cancel.js';
import { MeshTimeoutError, timeoutResponse } from './timeout.js';
import { isGrpc } from './grpc.js';
import { bufferedBody, bufferOf, MemoryBody, streamOf, type Body, type Handler, type Layer, type ProxyRequest, type ProxyResponse } from './types.js';

export interface RetryCounters {
  /** A retry was made, and why. */
  retried(reason: string): void;
  /** A retry was wanted but the budget was spent. */
  budgetExhausted(): void;
}

export interface RetryOptions {
  rules: Readonly<RetryRules>;
  budget: RetryBudget;
  /** "name.namespace", for messages. */
  service: string;
  counters: RetryCounters;
  scheduler: Scheduler;
  random?: () => number;
}

export function retryLayer(o: RetryOptions): Layer {
  const { rules, budget } = o;
  return (next) => (req) => {
    budget.deposit();
    // An upgrade is never sent twice: once the endpoint has it, it may have switched protocols.
    const replay = req.upgrade !== undefined ? 'no' : replayability(rules, req.method, req.body !== null, req.headers['content-length'], isGrpc(req.headers));
    if (replay === 'no') {
      // A request the endpoint never saw (a connect failure, a stream refused unread, an app that
      // refused its proxy) repeats no side effect: it may go again whatever its method, when its
      // body is whole in memory, it has none, or nothing of its stream was read.
      if (rules.onConnectFailure && rules.attempts > 1) {
        const inMemory = req.body === null ? null : bufferOf(req.body);
        if (inMemory !== undefined) return attempts(o, next, req, memoryReplay(req, inMemory), true);
        if (!(req.body instanceof MemoryBody)) return attempts(o, next, req, unreadReplay(req.body!), true);
      }
      return rules.perTryTimeoutMs > 0 ? attempt(o, next, req) : next(req);
    }
    if (replay === 'as-is') return attempts(o, next, req, memoryReplay(req, null));
    if (replay === 'record') return attempts(o, next, req, recordedReplay(streamOf(req.body!), rules.maxBodyBytes));
    const buffered = bufferOf(req.body);
    if (buffered !== undefined) return attempts(o, next, req, memoryReplay(req, buffered));
    return readBody(streamOf(req.body!), rules.maxBodyBytes).then((body) => attempts(o, next, req, memoryReplay(req, body)));
  };
}

/** The body of each try: the request's own for the first, and for a retry a copy, or undefined when it cannot go again. */
type Replay = (attempt: number) => Body | null | undefined;

/** A body in memory (or none): the request's own for the first try when nobody has read it, a fresh copy for every other. */
function memoryReplay(req: ProxyRequest, body: Buffer | null): Replay {
  return (n) => (body === null ? null : n === 1 && bufferOf(req.body) === body ? req.body : bufferedBody(body));
}

/** A stream that can go again only while nothing of it has been read (the try before failed to connect). */
function unreadReplay(body: Readable): Replay {
  return (n) => (n === 1 || !body.readableDidRead ? body : undefined);
}

/**
 * A body that streams (a gRPC call's messages: no content-length) goes out
 * as it comes, and a copy of it is kept while it is at most `limit` bytes; a
 * retry sends the copy once the body has ended within the limit (a unary
 * call's has by the time its answer comes), else there is none. A body that
 * a try never read goes again as it is.
 */
function recordedReplay(source: Readable, limit: number): Replay {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  const onData = (c: Buffer): void => {
    size += c.length;
    if (size > limit) {
      source.off('data', onData);
      chunks.length = 0;
    } else chunks.push(c);
  };
  source.on('data', onData);
  source.once('end', () => (ended = true));
  // A client that leaves destroys its body: the try's copy goes with it.
  source.once('close', () => {
    if (!ended) out.destroy(new Error('the client closed the request before its body ended'));
  });
  source.pipe(out);
  return (n) => {
    // The first try, or one before it that never read the body: the stream, as good as new.
    if (n === 1 || !out.readableDidRead) return out;
    return ended && size <= limit ? bufferedBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)) : undefined;
  };
}

/** `undeliveredOnly`: the request may be replayed only if the endpoint never saw it. */
async function attempts(o: RetryOptions, next: Handler, req: ProxyRequest, replay: Replay, undeliveredOnly = false): Promise<ProxyResponse> {
  const { rules, budget } = o;
  /** The endpoint the try before went to: a retry goes to another when the balancer has one. */
  let avoid: string | undefined;
  let body = replay(1);
  for (let n = 1; ; n++) {
    const tried = body === req.body && avoid === undefined ? req : { ...req, body: body as Body | null, avoid };
    const res = await attempt(o, next, tried);
    avoid = res.meta?.endpointKey;
    const reason = retryReason(rules, res);
    if (reason === undefined || n >= rules.attempts || req.signal.aborted || (undeliveredOnly && reason !== CONNECT_FAILURE)) return res;
    body = replay(n + 1);
    if (body === undefined) return res;
    if (!budget.withdraw()) {
      o.counters.budgetExhausted();
      return res;
    }
    discard(res);
    o.counters.retried(reason);
    req.observer?.retried(reason, n + 1);
    await sleep(o.scheduler, backoffDelay(n - 1, rules.backoff, o.random), req.signal);
  }
}

/** One try, under the per-try timeout when there is one: a timeout becomes a local 504. */
async function attempt(o: RetryOptions, next: Handler, req: ProxyRequest): Promise<ProxyResponse> {
  const ms = o.rules.perTryTimeoutMs;
  if (ms === 0) return next(req);
  const { req: tried, cancel } = withCancellation(req);
  let timedOut: MeshTimeoutError | undefined;
  const timer = o.scheduler.setTimeout(() => cancel.abort((timedOut = new MeshTimeoutError('per-try', ms))), ms);
  try {
    return await next(tried);
  } catch (e) {
    if (timedOut && !req.signal.aborted) return timeoutResponse(o.service, timedOut);
    throw e;
  } finally {
    o.scheduler.clearTimeout(timer);
    cancel.dispose();
  }
}

/** Lets go of a response that will not be sent: small error bodies are drained so the connection stays reusable. */
function discard(res: ProxyResponse): void {
  if (res.body === null || res.body instanceof MemoryBody) {
    res.body?.destroy();
    return;
  }
  const body = res.body as Readable & { dump?: (opts: { limit: number }) => Promise<void> };
  if (typeof body.dump === 'function') void body.dump({ limit: 64 * 1024 }).catch(() => undefined);
  else body.destroy();
}

function sleep(scheduler: Scheduler, ms: number, signal: RequestSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      scheduler.clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = scheduler.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reads a body of at most `limit` bytes (its content-length said so). */
function readBody(stream: Readable, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) {
        cleanup();
        stream.destroy();
        reject(new Error(`request body longer than its content-length`));
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('the client closed the request before its body ended'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
