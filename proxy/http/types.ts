// The request and response every HTTP layer sees, and the layer shape:
//   type Layer = (next: Handler) => Handler
// Layers compose in one readable place per direction (outbound/stack.ts,
// inbound/stack.ts).
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { RequestSignal } from './cancel.js';

export interface ProxyRequest {
  /** How the request arrived, and so how it is forwarded. */
  protocol: 'http1' | 'http2';
  method: string;
  /** Path and query, as received. */
  path: string;
  /** Lowercased names; hop-by-hop headers already removed. HTTP/2's :authority is given as host. */
  headers: IncomingHttpHeaders;
  /** null when the request has no body. */
  body: Readable | null;
  /** Monotonic ms (performance.now()) when the request head arrived. */
  startedAt: number;
  /** Aborted when the client goes away, or a layer above gives up (a timeout). */
  signal: RequestSignal;
}

export interface ProxyResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable | null;
  /** Facts layers report to the ones around them (e.g. which identity answered). */
  meta?: ResponseMeta;
}

export interface ResponseMeta {
  /** SPIFFE ID of the endpoint that answered, when it was meshed. */
  peerIdentity?: string;
  /** Set when the proxy itself produced the response (timeout, no endpoint, fault, denial). */
  localReason?: string;
}

export type Handler = (req: ProxyRequest) => Promise<ProxyResponse>;
export type Layer = (next: Handler) => Handler;

/** Applies layers outermost first: compose([a, b], h) handles a request as a(b(h)). */
export function compose(layers: readonly Layer[], inner: Handler): Handler {
  return layers.reduceRight((next, layer) => layer(next), inner);
}

/** Fields that describe one connection, never forwarded (RFC 9110 7.6.1), plus HTTP/2's upgrade field. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);

/** Removes hop-by-hop headers, including those the Connection header names. */
export function endToEndHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = String(headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * A body already in memory, as a stream. Readable.from would do, but it
 * drives an async iterator with a promise per chunk. This one pushes its
 * bytes only when someone reads it as a stream: most such bodies never are
 * (the forwarder and the server write them with the head, a retry keeps the
 * bytes to replay, all through bufferOf), and a push at construction cost
 * next-tick work (emitReadable, maybeReadMore) for nothing. On the loopback
 * pair at saturation that was 2 to 5% of the CPU per request.
 */
export function bufferedBody(data: Buffer): Readable {
  const body = new Readable({ read: pushOnce }) as BufferedReadable;
  body[BUFFERED] = data;
  body[PUSHED] = false;
  // Destroyed with an error when its client leaves, perhaps unread: that must not be an uncaught error.
  body.on('error', noop);
  return body;
}

const BUFFERED = Symbol('tsmesh.bufferedBody');
const PUSHED = Symbol('tsmesh.bufferedBody.pushed');
type BufferedReadable = Readable & { [BUFFERED]?: Buffer; [PUSHED]?: boolean };

function pushOnce(this: BufferedReadable): void {
  if (this[PUSHED]) return;
  this[PUSHED] = true;
  this.push(this[BUFFERED]);
  this.push(null);
}

/**
 * The whole of a body made by bufferedBody, while none of it has been read:
 * a layer that needs the bytes (a retry keeping them to replay, the forwarder
 * writing them with the head) takes them without streaming. The server makes
 * such a body when a request's body arrives with its head, as small ones do.
 */
export function bufferOf(body: Readable | null): Buffer | undefined {
  if (body === null) return undefined;
  const b = body as BufferedReadable;
  const data = b[BUFFERED];
  if (data === undefined || b.readableDidRead) return undefined;
  // Not pushed yet, or pushed and all still in the stream's buffer.
  return b[PUSHED] === false || b.readableLength === data.length ? data : undefined;
}

const noop = (): void => undefined;

/** A response the proxy makes itself, with a header that says so and why. */
export function localResponse(status: number, reason: string, detail: string): ProxyResponse {
  const text = `${detail}\n`;
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), 'x-tsmesh-error': reason },
    body: bufferedBody(Buffer.from(text)),
    meta: { localReason: reason },
  };
}
