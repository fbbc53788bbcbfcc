// Forwards HTTP/2 requests over one multiplexed session per endpoint: mTLS
// with ALPN tsmesh/h2 to a meshed endpoint, h2c to the app (inbound) or to an
// endpoint without a sidecar.
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import type { MeshTls } from '../tls/mesh-tls.js';
import { MESH_ALPN } from '../tls/alpn.js';
import { connectEndpoint } from '../upstream.js';
import type { EndpointAddress } from './forward.js';
import { HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_PROTOCOL, HTTP2_HEADER_STATUS, NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR, loadHttp2 } from './h2-module.js';
import { formatGrpcTimeout } from './grpc.js';
import { sendTrailers, trailersOf } from './h2-trailers.js';
import { pump } from './pipe.js';
import { FrameSessions, forwardFrames } from './h2-frames.js';
import { MAX_INTERIM_RESPONSES } from './h1/exchange.js';
import { ResponseHeadTimeoutError } from './timeout.js';
import { HEAD_WAITS, type HeadWait } from './head-waits.js';
import { bufferOf, emptyHeaders, streamOf, type ProxyRequest, type ProxyResponse, type ResponseMeta } from './types.js';

export class H2Sessions {
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  /** Settles once the endpoint's first SETTINGS have come: whether it takes extended CONNECT is known then. */
  private readonly settings = new WeakMap<ClientHttp2Session, Promise<void>>();

  /** With `frames`, meshed endpoints are reached over tsmesh/h2f (h2-frames.ts), the others over node:http2. */
  readonly frames: FrameSessions | undefined;

  constructor(
    private readonly meshTls: MeshTls | undefined,
    frames = false,
  ) {
    this.frames = frames ? new FrameSessions(meshTls) : undefined;
  }

  private static key(ep: EndpointAddress): string {
    return `${ep.address}|${ep.port}|${ep.identity ?? ''}`;
  }

  session(ep: EndpointAddress): Promise<ClientHttp2Session> {
    const key = H2Sessions.key(ep);
    let s = this.sessions.get(key);
    if (!s) {
      s = this.open(ep);
      this.sessions.set(key, s);
      const forget = (): void => {
        if (this.sessions.get(key) === s) this.sessions.delete(key);
      };
      s.then((session) => {
        session.once('close', forget);
        session.once('goaway', forget);
        session.on('error', () => undefined);
      }, forget);
    }
    return s;
  }

  private async open(ep: EndpointAddress): Promise<ClientHttp2Session> {
    const { connect } = await loadHttp2();
    const socket = await connectEndpoint(this.meshTls, ep, MESH_ALPN.http2);
    // HTTP/2 has no half-closed connection, and this socket is half-open capable: a FIN from the
    // endpoint (an app that died or restarted) must end the session, or new streams go to a
    // connection nobody reads and wait for ever.
    socket.once('end', () => socket.destroy());
    const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
    const session = connect(`http://${host}:${ep.port}`, { createConnection: () => socket });
    this.settings.set(session, new Promise((resolve) => session.once('remoteSettings', () => resolve())));
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    return session;
  }

  /**
   * Whether the endpoint takes an extended CONNECT (RFC 8441), from its
   * first SETTINGS: nghttp2 resets a :protocol stream to one that does not.
   */
  async takesExtendedConnect(session: ClientHttp2Session, signal: ProxyRequest['signal']): Promise<boolean> {
    await Promise.race([this.settings.get(session), new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))]);
    return session.remoteSettings.enableConnectProtocol === true;
  }

  retain(keep: readonly EndpointAddress[]): void {
    this.frames?.retain(keep);
    const wanted = new Set(keep.map(H2Sessions.key));
    for (const [key, s] of this.sessions) {
      if (!wanted.has(key)) {
        this.sessions.delete(key);
        void s.then((session) => session.close(), () => undefined);
      }
    }
  }

  async close(): Promise<void> {
    await this.frames?.close();
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.then((session) => new Promise<void>((r) => session.close(() => r())), () => undefined)));
  }
}

/** `headTimeoutMs`: how long the response head may take once the request has been sent whole (0: no bound; http/timeout.ts). */
export async function forwardH2(sessions: H2Sessions, ep: EndpointAddress, req: ProxyRequest, headTimeoutMs = 0): Promise<ProxyResponse> {
  if (sessions.frames && ep.identity) {
    const from = performance.now();
    const client = await sessions.frames.client(ep);
    if (client) return forwardFrames(client, ep, req, headTimeoutMs, performance.now() - from);
  }
  const waitedFrom = performance.now();
  const session = await sessions.session(ep);
  const connectMs = performance.now() - waitedFrom;
  const headers = emptyHeaders<Record<string, string | string[]>>();
  headers[HTTP2_HEADER_METHOD] = req.method;
  headers[HTTP2_HEADER_PATH] = req.path;
  headers[HTTP2_HEADER_AUTHORITY] = req.headers.host ?? `${ep.address}:${ep.port}`;
  for (const k in req.headers) {
    const v = req.headers[k];
    if (v !== undefined && k !== 'host') headers[k] = v;
  }
  if (req.method === 'CONNECT' && req.upgrade !== undefined) {
    if (!(await sessions.takesExtendedConnect(session, req.signal))) {
      throw new Error(`${ep.address}:${ep.port} does not take extended CONNECT (its SETTINGS do not enable the connect protocol, RFC 8441): no ${req.upgrade} over HTTP/2 there`);
    }
    headers[HTTP2_HEADER_PROTOCOL] = req.upgrade;
  }
  // A gRPC call's deadline goes on as what is left of it now: the time spent in the mesh is taken off.
  if (req.deadline !== undefined) headers['grpc-timeout'] = formatGrpcTimeout(req.deadline - performance.now());
  // Node checks only that the signal has `aborted` and listens with addEventListener: a Cancellation serves.
  // A body may be followed by trailers: the stream's end waits for them (none: an empty DATA frame ends it).
  const stream = session.request(headers, { endStream: req.body === null, waitForTrailers: req.body !== null, signal: req.signal as AbortSignal });
  if (req.body) {
    const trailers = req.trailers;
    stream.on('wantTrailers', () => sendTrailers(stream, trailers?.()));
    // A body whole in memory (one tsmesh/h2f brought with its head) is written at once, no stream made for it.
    const bytes = bufferOf(req.body);
    if (bytes) stream.end(bytes);
    else pump(streamOf(req.body), stream);
  }
  const trailers = trailersOf(stream);
  // A peer that resets the stream (RST_STREAM with NO_ERROR, as a server may once it has answered) while the request
  // still waits to send its end: node ends the response's readable side but keeps the stream, whose writable side
  // never finishes, for ever, and the session with it. Once the response has ended on a closed stream, it is let go.
  stream.once('end', () => {
    if (stream.closed && !stream.writableFinished) stream.destroy();
  });
  if (req.informational) passInterims(stream, req.informational);
  let endStream = false;
  const responseHeaders = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
    // From the request's last byte (at once without a body) to the response's head; an interim response starts it again.
    const headWait: HeadWait | undefined =
      headTimeoutMs > 0
        ? {
            headDeadline: 0,
            onHeadTimeout: () => {
              waiting = false;
              reject(new ResponseHeadTimeoutError(headTimeoutMs));
              stream.close(NGHTTP2_CANCEL);
            },
          }
        : undefined;
    let waiting = true;
    const settled = (): void => {
      waiting = false;
      if (headWait) HEAD_WAITS.delete(headWait);
    };
    // Plain listeners: each event comes once per stream, and a once() wrapper apiece was garbage for nothing.
    stream.on('response', (h: IncomingHttpHeaders, flags: number) => {
      settled();
      endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      resolve(h);
    });
    stream.on('error', (e: Error) => {
      settled();
      reject(e);
    });
    stream.on('close', () => {
      settled();
      reject(new Error(`stream closed before a response (code ${stream.rstCode})`));
    });
    if (headWait) {
      const wait = (): void => {
        if (waiting) HEAD_WAITS.add(headWait, headTimeoutMs);
      };
      if (req.body === null) wait();
      else stream.once('finish', wait);
      stream.on('headers', wait);
    }
  });
  const status = Number(responseHeaders[HTTP2_HEADER_STATUS]);
  const out = emptyHeaders<Record<string, string | string[] | undefined>>();
  for (const k in responseHeaders) if (k.charCodeAt(0) !== 0x3a) out[k] = responseHeaders[k];
  const meta: ResponseMeta = ep.identity ? { peerIdentity: ep.identity, connectMs } : { connectMs };
  if (endStream) {
    // A head with END_STREAM (gRPC's trailers-only answer): no body, and it goes on in that shape.
    stream.resume();
    return { status, headers: out, body: null, meta };
  }
  failWhenCut(stream);
  return { status, headers: out, body: stream as unknown as Readable, meta, trailers };
}

/**
 * node:http2 ends a stream's body when the stream closes, whether or not the
 * endpoint ended it: when the connection goes in the middle of a body, the
 * stream ends as if whole (its rstCode CANCEL, set before the end is
 * pushed), and whoever reads it would end the client's message as whole
 * too. Such an end fails the body instead, so that the client's stream is
 * reset. A RST_STREAM from the endpoint fails it already.
 */
function failWhenCut(stream: ClientHttp2Stream): void {
  const push = stream.push;
  stream.push = function (this: ClientHttp2Stream, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null && (stream.rstCode ?? NGHTTP2_NO_ERROR) !== NGHTTP2_NO_ERROR && !stream.readableEnded) {
      stream.destroy(new Error(`the endpoint's stream closed in the middle of the response body (code ${stream.rstCode}): its connection went`));
      return false;
    }
    return push.call(this, chunk, encoding);
  };
}

/**
 * Hands the endpoint's interim responses (103 Early Hints, any 1xx; node
 * emits them as 'headers' before 'response') to the client as they come,
 * as RFC 9110 15.2 has a proxy do; past MAX_INTERIM_RESPONSES a request's
 * are dropped, as on HTTP/1.1, since a client cannot refuse them.
 */
function passInterims(stream: ClientHttp2Stream, informational: NonNullable<ProxyRequest['informational']>): void {
  let count = 0;
  stream.on('headers', (h: IncomingHttpHeaders) => {
    const status = Number(h[HTTP2_HEADER_STATUS]);
    if (status < 100 || status > 199 || ++count > MAX_INTERIM_RESPONSES) return;
    const fields = emptyHeaders<Record<string, string | string[] | undefined>>();
    for (const k in h) if (k.charCodeAt(0) !== 0x3a) fields[k] = h[k];
    informational(status, fields);
  });
}
