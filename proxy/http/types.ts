// The request and response every HTTP layer sees, and the layer shape:
//   type Layer = (next: Handler) => Handler
// Layers compose in one readable place per direction (outbound/stack.ts,
// inbound/stack.ts).
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import type { RequestSignal } from './cancel.js';
import type { Tunnel, TunnelSide } from '../net/tunnel.js';
import { ERROR_HEADER } from '../../contract/vocabulary.js';
import type { LocalError, OverloadLimit } from '../../contract/vocabulary.js';

export interface ProxyRequest {
  /** How the request arrived, and so how it is forwarded. */
  protocol: 'http1' | 'http2';
  method: string;
  /** Path and query, as received. */
  path: string;
  /** Lowercased names; hop-by-hop headers already removed. HTTP/2's :authority is given as host. */
  headers: IncomingHttpHeaders;
  /** null when the request has no body. */
  body: Body | null;
  /** Monotonic ms (performance.now()) when the request head arrived. */
  startedAt: number;
  /** Aborted when the client goes away, or a layer above gives up (a timeout). */
  signal: RequestSignal;
  /** A retry's: the endpoint (its balancer key) the try before went to, which the balancer avoids when it has another. */
  avoid?: string | undefined;
  /** The fields after the body (HTTP/2 trailers), once it has ended; absent when the protocol carries none. */
  trailers?: TrailerSource | undefined;
  /**
   * HTTP/1.1: the protocols of the Upgrade the client asked for (e.g.
   * "websocket"). Such a request has no body, and is never sent again once
   * sent: a 101 answer turns its connection into the new protocol's.
   */
  upgrade?: string | undefined;
  /**
   * Hands the client an interim (1xx) response of the endpoint as it comes
   * (100 Continue, 103 Early Hints), before the final one; RFC 9110 15.2 has
   * a proxy forward them. Set by the HTTP/1.1 and HTTP/2 servers; called by
   * the forwarders of both.
   */
  informational?: ((status: number, headers: Record<string, string | string[] | undefined>) => void) | undefined;
  /**
   * When (performance.now() ms) a gRPC caller's grpc-timeout runs out
   * (grpc-deadline.ts): the HTTP/2 forwarder sends on what is left of it.
   */
  deadline?: number | undefined;
  /** The TrafficPolicy route it took (http/route.ts), set by the route step for the layers outside it (metrics). */
  route?: string | undefined;
  /**
   * Set while the telemetry layer (http/telemetry.ts: a span, an access log
   * line) watches the request: what the layers inside it tell of it.
   */
  observer?: RequestObserver | undefined;
}

/** What the layers inside the telemetry layer tell of a request as it goes. */
export interface RequestObserver {
  /** The TrafficPolicy route it took (http/route.ts). */
  route(name: string): void;
  /** It goes again (http/retry.ts) after a try that ended for `reason`; `attempt` is the try now starting (2, 3, ...). */
  retried(reason: string, attempt: number): void;
  /** The circuit breaker ejected the endpoint (its balancer key) one of its tries went to. */
  ejected(endpointKey: string): void;
}

export interface ProxyResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Body | null;
  /** Facts layers report to the ones around them (e.g. which identity answered). */
  meta?: ResponseMeta;
  /** The fields after the body (HTTP/2 trailers: gRPC's status), once it has ended. */
  trailers?: TrailerSource | undefined;
  /** A 101 Switching Protocols to an upgrade request: the endpoint's side of the connection, now in the new protocol. */
  upgraded?: UpgradedConnection;
}

/**
 * Trailer fields, read once the body has ended (its 'end' has been emitted):
 * the body's producer sets them before it ends the body. undefined when the
 * message had none.
 */
export type TrailerSource = () => Record<string, string | string[] | undefined> | undefined;

/**
 * The endpoint's side of a connection that switched protocols. Whoever takes
 * the 101 joins it to the client's side, or destroys it; until then what
 * the endpoint sends waits, unread.
 */
export interface UpgradedConnection {
  /** The protocol the endpoint switched to (its Upgrade field). */
  readonly protocol: string;
  /** Joins it to the client's side, whose reads its owner feeds to the tunnel's `a`; idle for `idleMs` either way, both close. */
  join(client: TunnelSide, idleMs: number): Tunnel;
  destroy(): void;
}

export interface ResponseMeta {
  /** SPIFFE ID of the endpoint that answered, when it was meshed. */
  peerIdentity?: string;
  /** Set when the proxy itself produced the response (timeout, no endpoint, fault, denial). */
  localReason?: LocalError;
  /**
   * Milliseconds the request waited for a connection to the endpoint before it
   * went out: opening one (the mTLS handshake included) or waiting for a
   * pooled one to come free. Not the endpoint's latency: the balancer leaves
   * it out, as Linkerd's measures from dispatch on a ready connection.
   */
  connectMs?: number;
  /** The balancer's key of the endpoint that answered (or failed), so a retry can go elsewhere. */
  endpointKey?: string;
  /** Set with localReason "overloaded": which bound turned the request away. */
  overload?: OverloadLimit;
}

export type Handler = (req: ProxyRequest) => Promise<ProxyResponse>;
export type Layer = (next: Handler) => Handler;

/** Applies layers outermost first: compose([a, b], h) handles a request as a(b(h)). */
export function compose(layers: readonly Layer[], inner: Handler): Handler {
  return layers.reduceRight((next, layer) => layer(next), inner);
}

/** Fields that describe one connection, never forwarded (RFC 9110 7.6.1), plus HTTP/2's upgrade field. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);

/**
 * Whether a TE field says only "trailers": the one value HTTP/2 allows, which
 * gRPC servers require (it tells them the client reads trailers), so it goes
 * on end to end as Envoy and Linkerd pass it.
 */
export function isTeTrailers(v: string | string[] | undefined): boolean {
  return typeof v === 'string' && v.trim().toLowerCase() === 'trailers';
}

// The prototype of header objects: empty, and itself without a prototype.
function HeaderFields(): void {
  // Nothing to set: the fields are added one by one as they arrive.
}
HeaderFields.prototype = Object.create(null) as object;

/**
 * An empty object for header fields, whose names are data and never mean
 * anything to JavaScript: it inherits nothing, so a field named
 * constructor, __proto__ or toString is an own property like any other. On
 * `{}`, a `constructor` field was joined to the text of Object's constructor
 * (the lookup found the inherited function) and a `__proto__` one set
 * nothing. Made by a constructor whose prototype has no prototype, not by
 * Object.create(null): V8 keeps the latter's objects as dictionaries, and
 * filling and reading a request's fields took 2.5 times as long.
 * Every header object the proxy fills from the wire is one of these.
 */
export function emptyHeaders<T extends object = IncomingHttpHeaders>(): T {
  return new (HeaderFields as unknown as new () => T)();
}

/** Removes hop-by-hop headers, including those the Connection header names; `te: trailers` stays. */
export function endToEndHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = emptyHeaders();
  copyEndToEnd(headers, out, false);
  return out;
}

/**
 * Copies `from`'s end-to-end fields into `to` (endToEndHeaders' rule), and
 * with `noPseudo` leaves out HTTP/2's pseudo-headers (":status" and the like)
 * too: the HTTP/2 ends fill their outgoing heads with it, one pass and no
 * intermediate object per head.
 */
export function copyEndToEnd(from: IncomingHttpHeaders, to: Record<string, string | string[] | undefined>, noPseudo: boolean): void {
  // HTTP/2 has no Connection field (RFC 9113 8.2.2): most heads name nothing to drop.
  const connection = from.connection;
  const named =
    connection === undefined
      ? undefined
      : String(connection)
          .toLowerCase()
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  for (const k in from) {
    const v = from[k];
    if (v === undefined || (noPseudo && k.charCodeAt(0) === 0x3a) || named?.includes(k)) continue;
    if (HOP_BY_HOP.has(k) && !(k === 'te' && isTeTrailers(v))) continue;
    to[k] = v;
  }
}

/**
 * A body whole in memory: what the server and the forwarder make when a
 * message's body arrives with its head, as small ones do, and the proxy's own
 * responses. It is not a stream, and costs none of a stream's set-up or
 * next-tick work: the HTTP/1.1 server and forwarder write its bytes with the
 * head, a retry keeps them to replay (bufferOf). A consumer that needs a
 * stream (HTTP/2, a test) takes one with streamOf. A Readable per such body
 * was 5% of the CPU per request of a loopback pair at saturation.
 */
export class MemoryBody {
  private stream: Readable | undefined;
  private gone = false;

  constructor(readonly data: Buffer) {}

  /** Let go of, unread or not (its request or response will not be sent). */
  destroy(error?: Error): void {
    this.gone = true;
    this.stream?.destroy(error);
  }

  get destroyed(): boolean {
    return this.gone;
  }

  /** The bytes, while the body has not been handed out as a stream. */
  get bytes(): Buffer | undefined {
    return this.stream === undefined ? this.data : undefined;
  }

  /** The body as a stream: all of its bytes, then its end. Once taken, the bytes are the stream's. */
  toStream(): Readable {
    if (this.stream === undefined) {
      const data = this.data;
      let pushed = false;
      this.stream = new Readable({
        read() {
          if (pushed) return;
          pushed = true;
          this.push(data);
          this.push(null);
        },
      });
      // Destroyed with an error when its client leaves, perhaps unread: that must not be an uncaught error.
      this.stream.on('error', noop);
      if (this.gone) this.stream.destroy();
    }
    return this.stream;
  }
}

/** A message body: bytes in memory, or a stream. */
export type Body = Readable | MemoryBody;

/** A body of these bytes, in memory. */
export function bufferedBody(data: Buffer): MemoryBody {
  return new MemoryBody(data);
}

/**
 * The whole of a body in memory while it has not been taken as a stream: a
 * layer that needs the bytes (a retry keeping them to replay, the forwarder
 * writing them with the head) takes them without streaming.
 */
export function bufferOf(body: Body | null): Buffer | undefined {
  return body instanceof MemoryBody ? body.bytes : undefined;
}

/** The body as a stream, for a consumer that reads it as one. */
export function streamOf(body: Body): Readable {
  return body instanceof MemoryBody ? body.toStream() : body;
}

const noop = (): void => undefined;

/** A response the proxy makes itself, with a header that says so and why. */
export function localResponse(status: number, reason: LocalError, detail: string): ProxyResponse {
  const text = `${detail}\n`;
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), [ERROR_HEADER]: reason },
    body: bufferedBody(Buffer.from(text)),
    meta: { localReason: reason },
  };
}
