// Gateway API's RequestMirror: a copy of a request to another service,
// sent without waiting for it, whose answer is discarded. The copy goes to
// the mirror backend's balanced stack without retries (outbound/stack.ts),
// so it never draws on a retry budget; it never delays or fails the
// request itself, which goes on as if there were no mirror.
//
// The copy's body: a body whole in memory is shared; a streamed one is
// teed as it passes to the backend, and the copy goes once it has ended,
// while it stays within maxBodyBytes. Past that the copy is dropped (and
// counted dropped) and the stream goes on alone: a mirror never holds a
// large upload in memory.
import { PassThrough, type Readable } from 'node:stream';
import { Cancellation } from './cancel.js';
import { bufferOf, bufferedBody, emptyHeaders, streamOf, type Handler, type Layer, type ProxyRequest, type ProxyResponse } from './types.js';

/** The largest request body a mirror copies. */
export const MAX_MIRROR_BODY_BYTES = 64 * 1024;

export interface Mirror {
  /** "name.namespace", for the count. */
  service: string;
  /** 0-100: the share of requests copied. */
  percent: number;
  /** The mirror backend's stack. */
  send: Handler;
}

export interface MirrorOptions {
  mirrors: readonly Mirror[];
  random: () => number;
  counted: (mirror: Mirror, outcome: 'sent' | 'dropped') => void;
  maxBodyBytes?: number;
}

export function mirrorLayer(o: MirrorOptions): Layer {
  const max = o.maxBodyBytes ?? MAX_MIRROR_BODY_BYTES;
  return (next) => (req) => {
    // An upgrade is the caller's connection: it cannot be had twice.
    if (req.upgrade !== undefined) return next(req);
    let chosen: Mirror[] | undefined;
    for (const m of o.mirrors) if (m.percent >= 100 || (m.percent > 0 && o.random() * 100 < m.percent)) (chosen ??= []).push(m);
    if (!chosen) return next(req);
    const targets = chosen;
    const fire = (body: Buffer | null): void => {
      for (const m of targets) {
        o.counted(m, 'sent');
        send(m, copyOf(req, body));
      }
    };
    // The request goes first; its copies after, so they never stand before it.
    const bytes = req.body === null ? null : bufferOf(req.body);
    if (bytes !== undefined) {
      const answer = next(req);
      fire(bytes);
      return answer;
    }
    return next({ ...req, body: tee(streamOf(req.body!), max, fire, () => targets.forEach((m) => o.counted(m, 'dropped'))) });
  };
}

/** A stream of `source`'s bytes for the request; `done` gets them all when it ends within `max` bytes, else `dropped` is told once. */
function tee(source: Readable, max: number, done: (body: Buffer) => void, dropped: () => void): Readable {
  const out = new PassThrough();
  let chunks: Buffer[] | undefined = [];
  let size = 0;
  source.on('data', (chunk: Buffer) => {
    if (!chunks) return;
    size += chunk.length;
    if (size > max) {
      chunks = undefined;
      dropped();
    } else chunks.push(chunk);
  });
  source.once('end', () => {
    if (chunks) done(Buffer.concat(chunks));
    chunks = undefined;
  });
  source.once('error', (e) => {
    chunks = undefined;
    out.destroy(e);
  });
  out.once('close', () => {
    if (!source.readableEnded) source.destroy();
  });
  source.pipe(out);
  return out;
}

/** The copy: the request's head, its own cancellation, no trailers, no interim responses, no observer. */
function copyOf(req: ProxyRequest, body: Buffer | null): ProxyRequest {
  const headers = emptyHeaders();
  for (const k in req.headers) headers[k] = req.headers[k];
  if (body !== null && req.headers['content-length'] === undefined && req.protocol === 'http1') {
    delete headers['transfer-encoding'];
    headers['content-length'] = String(body.length);
  }
  return {
    protocol: req.protocol,
    method: req.method,
    path: req.path,
    headers,
    body: body === null ? null : bufferedBody(body),
    startedAt: performance.now(),
    signal: new Cancellation(),
    route: req.route,
  };
}

function send(m: Mirror, req: ProxyRequest): void {
  m.send(req).then(discard, () => undefined);
}

/** Reads and drops an answer nobody waits for, so its connection is free again. */
function discard(res: ProxyResponse): void {
  const body = res.body;
  if (!body) return;
  const bytes = bufferOf(body);
  if (bytes !== undefined) {
    body.destroy();
    return;
  }
  const s = streamOf(body);
  s.on('error', () => undefined);
  s.resume();
}
